"""`mmlake submit`: a pipeline through the Ray Jobs API of a real (local) Ray head."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from synth.shapes import write_caption_folder
from tests.conftest import free_port

from .conftest import write_spec


def test_submit_runs_the_pipeline_on_a_ray_cluster(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    write_caption_folder(raw, 30, seed=8, size=(128, 96))
    spec = write_spec(tmp_path / "spec.yaml", input=str(raw), partition_size=10)
    bindir = str(Path(sys.executable).parent)
    ray_tmp = Path(tempfile.mkdtemp(prefix="rs", dir="/tmp"))
    env = {**os.environ, "PATH": f"{bindir}:{os.environ['PATH']}", "RAY_TMPDIR": str(ray_tmp),
           "MMLAKE_HOME": str(tmp_path / "home"),
           # Ray's token authentication, as a real cluster has it: the head and the client share a token
           "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(16)}
    port, dash = free_port(), free_port()
    session = None
    try:
        head = subprocess.Popen([f"{bindir}/ray", "start", "--head", f"--port={port}", f"--dashboard-port={dash}",
                                 f"--ray-client-server-port={free_port()}", "--dashboard-host=127.0.0.1",
                                 "--include-dashboard=true", "--num-cpus=2", "--object-store-memory=200000000",
                                 "--disable-usage-stats", f"--temp-dir={ray_tmp}"],
                                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        session = head.pid  # every process of this Ray head lives in this session: cleaned up below
        assert head.wait(120) == 0
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{dash}/api/version", timeout=2)
                break
            except urllib.error.HTTPError:  # it answers (perhaps asking for Ray's auth token): it is up
                break
            except OSError:
                assert time.monotonic() < deadline, "the Ray dashboard did not come up"
                time.sleep(0.5)
        res = subprocess.run([f"{bindir}/mmlake", "submit", str(spec), "--ray-address", f"http://127.0.0.1:{dash}",
                              "--json"], env=env, capture_output=True, text=True, timeout=300)
        assert res.returncode == 0, res.stderr[-3000:]
        out = json.loads(res.stdout)
        assert out["status"] == "SUCCEEDED" and out["summary"]["runner"] == "ray"
        assert out["summary"]["output"] == "clean@1" and out["summary"]["samples_in"] == 30
        listed = subprocess.run([f"{bindir}/mmlake", "datasets", "show", "clean@1", "--json"], env=env,
                                capture_output=True, text=True, timeout=60)
        assert json.loads(listed.stdout)["samples"] == out["summary"]["kept"]  # recorded in our registry
    finally:
        if session is not None:
            subprocess.run(["pkill", "-9", "-s", str(session)], capture_output=True)
        subprocess.run(["pkill", "-9", "-f", str(ray_tmp)], capture_output=True)
        shutil.rmtree(ray_tmp, ignore_errors=True)
