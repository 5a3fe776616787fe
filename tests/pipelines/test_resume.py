"""Killed runs resume: finished tasks are not redone and the output digest is unchanged."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from synth.shapes import write_caption_folder

from .conftest import write_spec


def mmlake(home: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    exe = str(Path(sys.executable).with_name("mmlake"))
    return subprocess.Popen([exe, *args], env={**os.environ, "MMLAKE_HOME": str(home), **(env or {})},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)


def markers(home: Path) -> list[Path]:
    return list((home / "lake" / "datasets" / "clean").rglob("pass0/*.result.pkl"))


def kill_after_markers(proc: subprocess.Popen[str], home: Path, n: int, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while len(markers(home)) < n:
        if proc.poll() is not None:
            raise AssertionError(f"finished before it could be killed: {proc.stderr.read() if proc.stderr else ''}")
        if time.monotonic() > deadline:
            raise AssertionError("no progress to kill")
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


@pytest.mark.parametrize("runner", ["local", "ray"])
def test_killed_run_resumes_and_reproduces_the_digest(tmp_path: Path, runner: str) -> None:
    raw = tmp_path / "raw"
    write_caption_folder(raw, 90, seed=3, size=(128, 96))
    spec = write_spec(tmp_path / "spec.yaml", input=str(raw), partition_size=6,
                      runner=runner, runner_options={"workers": 1} if runner == "local" else {"num_cpus": 1})
    ray_tmp = Path(tempfile.mkdtemp(prefix="rk", dir="/tmp"))  # short: Ray's socket paths must fit
    env = {"RAY_TMPDIR": str(ray_tmp)}
    try:
        # an uninterrupted run, for reference
        ref = mmlake(tmp_path / "ref", "run", str(spec), "--runner", runner, "--json", env=env)
        out, err = ref.communicate(timeout=300)
        assert ref.returncode == 0, err
        expected = json.loads(out)
        # the same job, killed (SIGKILL, whole process group) once a few tasks have finished
        home = tmp_path / "home"
        proc = mmlake(home, "run", str(spec), "--runner", runner, "--json", env=env)
        kill_after_markers(proc, home, 3)
        done_before = len(markers(home))
        assert not list((home / "lake" / "datasets" / "clean").glob("versions/*.json"))  # no half version
        again = mmlake(home, "run", str(spec), "--runner", runner, "--json", env=env)
        out, err = again.communicate(timeout=300)
        assert again.returncode == 0, err
        resumed = json.loads(out)
        assert resumed["version"] == expected["version"]  # same digest
        assert resumed["tasks"]["resumed"] >= done_before >= 3
        assert resumed["tasks"]["computed"] < expected["tasks"]["computed"]
        for k in ("kept", "filtered", "duplicates", "rejected"):
            assert resumed[k] == expected[k]
    finally:
        subprocess.run(["pkill", "-9", "-f", str(ray_tmp)], capture_output=True)
        shutil.rmtree(ray_tmp, ignore_errors=True)
