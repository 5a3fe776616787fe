"""Real clusters. A Spark standalone cluster (master + worker from the pyspark distribution's own
scripts, on 127.0.0.1): `mmlake run` with `master: spark://...` writes the same version as the
local runner. The project's code reaches the executors through the workers' environment (the
venv's Python as PYSPARK_PYTHON, the repository on PYTHONPATH), as docs/deploy.md describes."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pyspark

from datalake import Lake, LocalStore
from pipelines.run import run_pipeline
from pipelines.spec import parse_spec
from registry.service import Registry
from tests.conftest import free_port

from .conftest import SPEC, make_corpus

REPO = Path(__file__).resolve().parents[2]


def _wait_for(url: str, what: str, timeout: float = 90) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                return json.loads(r.read())  # type: ignore[no-any-return]
        except OSError:
            assert time.monotonic() < deadline, f"{what} did not come up at {url}"
            time.sleep(0.5)


def test_a_pipeline_on_a_spark_standalone_cluster_writes_the_local_version(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    make_corpus(raw)
    spark_class = str(Path(pyspark.__file__).parent / "bin" / "spark-class")
    if not shutil.which("java"):
        raise AssertionError("Java is needed for Spark (Debian: default-jre-headless; make setup installs it)")
    env = {**os.environ, "SPARK_LOCAL_IP": "127.0.0.1", "PYSPARK_PYTHON": sys.executable,
           "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
           "SPARK_WORKER_DIR": str(tmp_path / "work"), "SPARK_LOG_DIR": str(tmp_path / "logs"),
           "MMLAKE_HOME": str(tmp_path / "home")}
    port, ui, wui = free_port(), free_port(), free_port()
    procs = []
    try:
        procs.append(subprocess.Popen([spark_class, "org.apache.spark.deploy.master.Master", "--host", "127.0.0.1",
                                       "--port", str(port), "--webui-port", str(ui)], env=env,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True))
        _wait_for(f"http://127.0.0.1:{ui}/json/", "the Spark master")
        procs.append(subprocess.Popen([spark_class, "org.apache.spark.deploy.worker.Worker", f"spark://127.0.0.1:{port}",
                                       "--host", "127.0.0.1", "--cores", "2", "--memory", "2g", "--webui-port", str(wui)],
                                      env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                      start_new_session=True))
        deadline = time.monotonic() + 90
        while not _wait_for(f"http://127.0.0.1:{ui}/json/", "the Spark master").get("aliveworkers"):
            assert time.monotonic() < deadline, "the Spark worker did not register with the master"
            time.sleep(0.5)
        spec = tmp_path / "spec.json"
        spec.write_text(json.dumps({**SPEC, "input": str(raw), "runner": "spark",
                                    "runner_options": {"master": f"spark://127.0.0.1:{port}"}}))
        res = subprocess.run([f"{Path(sys.executable).parent}/mmlake", "run", str(spec), "--lake",
                              str(tmp_path / "cluster-lake"), "--json"], env=env, capture_output=True, text=True,
                             timeout=600)
        assert res.returncode == 0, res.stderr[-3000:]
        cluster = json.loads(res.stdout)
        apps = _wait_for(f"http://127.0.0.1:{ui}/json/", "the Spark master")
        assert apps["completedapps"] or apps["activeapps"]  # the job ran on this cluster's executors
    finally:
        for p in procs:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    _same_as_local(cluster, raw, tmp_path, "spark")


def test_a_pipeline_on_a_ray_cluster_of_a_head_and_a_worker_writes_the_local_version(tmp_path: Path) -> None:
    """`ray start --head` and one `ray start --address` worker (separate processes, fixed small
    resources); `mmlake run` with `address:` joins that cluster."""
    import secrets
    import tempfile

    raw = tmp_path / "raw"
    make_corpus(raw)
    bindir = str(Path(sys.executable).parent)
    ray_tmp = Path(tempfile.mkdtemp(prefix="rc", dir="/tmp"))
    env = {**os.environ, "PATH": f"{bindir}:{os.environ['PATH']}", "RAY_TMPDIR": str(ray_tmp),
           "MMLAKE_HOME": str(tmp_path / "home"), "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(16),
           "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    port = free_port()
    common = ["--num-cpus=1", "--object-store-memory=150000000", "--disable-usage-stats"]
    sessions: list[int] = []
    try:
        for args in (["--head", f"--port={port}", "--include-dashboard=false", f"--temp-dir={ray_tmp}",
                      f"--ray-client-server-port={free_port()}"], [f"--address=127.0.0.1:{port}"]):
            # each in its own session: its daemons are killed by session below (not `ray stop`,
            # which would stop every Ray on the machine)
            p = subprocess.Popen([f"{bindir}/ray", "start", "--node-ip-address=127.0.0.1", *args, *common], env=env,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
            sessions.append(p.pid)
            _, err = p.communicate(timeout=180)
            assert p.returncode == 0, err[-2000:]
        spec = tmp_path / "spec.json"
        spec.write_text(json.dumps({**SPEC, "input": str(raw), "runner": "ray",
                                    "runner_options": {"address": f"127.0.0.1:{port}"}}))
        res = subprocess.run([f"{bindir}/mmlake", "run", str(spec), "--lake", str(tmp_path / "cluster-lake"), "--json"],
                             env=env, capture_output=True, text=True, timeout=600)
        assert res.returncode == 0, res.stderr[-3000:]
        cluster = json.loads(res.stdout)
        status = subprocess.run([f"{bindir}/ray", "status", f"--address=127.0.0.1:{port}"], env=env,
                                capture_output=True, text=True, timeout=60)
        assert status.stdout.count("node_") >= 2, status.stdout[-2000:]  # both nodes were in the cluster
    finally:
        for sid in sessions:
            subprocess.run(["pkill", "-9", "-s", str(sid)], capture_output=True)
        subprocess.run(["pkill", "-9", "-f", str(ray_tmp)], capture_output=True)
        shutil.rmtree(ray_tmp, ignore_errors=True)
    _same_as_local(cluster, raw, tmp_path, "ray")


def _same_as_local(cluster: dict, raw: Path, tmp_path: Path, runner: str) -> None:
    lake = Lake(LocalStore(tmp_path / "local-lake"))
    reg = Registry(f"sqlite:///{tmp_path / 'local.db'}")
    local = run_pipeline(parse_spec({**SPEC, "input": str(raw), "runner": "local"}), lake, reg, progress=False)
    reg.close()
    for k in ("samples_in", "kept", "filtered", "duplicates", "rejected"):
        assert cluster[k] == local[k], k
    assert cluster["runner"] == runner
    assert cluster["version"] == local["version"]  # the same version digest
