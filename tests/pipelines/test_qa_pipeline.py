"""QA stages in a pipeline: template QA over registered knowledge data, then model QA with
rejection sampling against a scripted OpenAI-compatible server on 127.0.0.1 -- only verified
answers kept, every rejected seed and candidate with its reason, and a run killed mid-way
re-run without one repeated request."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from synth.qa.template import template_sample
from tests.synth.qa_server import Script, ScriptedServer


def _mmlake(home: Path, *args: str) -> subprocess.Popen[str]:
    exe = str(Path(sys.executable).with_name("mmlake"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("MMLAKE_")}
    return subprocess.Popen([exe, *args], env={**env, "MMLAKE_HOME": str(home)}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)


def _ok(proc: subprocess.Popen[str]) -> dict[str, Any]:
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-3000:]
    return json.loads(out)  # type: ignore[no-any-return]


def _spec(path: Path, url: str, **qa: Any) -> Path:
    path.write_text(yaml.safe_dump({
        "name": "qa", "input": "kn@latest", "output": "kn-qa", "partition_size": 4,
        "runner": "local", "runner_options": {"workers": 1},
        "stages": [{"qa_template": {"max_questions": 2, "seed": 3}},
                   {"qa_model": {"base_url": url, "model": "scripted-vlm", "k": 4, "max_questions": 2,
                                 "timeout_s": 1.0, "backoff_s": 0.05, **qa}}]}))
    return path


def test_model_qa_keeps_verified_answers_and_a_killed_run_pays_no_request_twice(tmp_path: Path) -> None:
    home = tmp_path / "home"
    _ok(_mmlake(home, "synth", "chart", "table", "geometry", "--dataset", "kn", "-n", "12", "--seed", "4", "--json"))
    from mmlake.settings import load_settings

    # the server knows the answer to every question the template stage asks of the registered data
    registered = [template_sample(s, seed=3, max_questions=2) for s in load_settings({"MMLAKE_HOME": str(home)})
                  .open_lake().open_version("kn")]
    answers: dict[str, str] = {}
    clash = set()
    asks: dict[str, list[str]] = {}
    for s in registered:
        assert s is not None
        for m, n in zip(s.messages[::2], s.messages[1::2], strict=True):
            q, a = m.content[-1].text, n.content[0].text
            if answers.get(q, a) != a:
                clash.add(q)
            answers[q] = a
            asks.setdefault(s.key, []).append(q)
    clean = [k for k in sorted(asks) if not set(asks[k]) & clash]
    wrong_key, slow_key, throttled, flaky = clean[:4]
    script = Script(answers=answers, always_wrong=clash | set(asks[wrong_key]), slow=set(asks[slow_key]),
                    slow_s=2.0, throttle=set(asks[throttled]), flaky=set(asks[flaky]))

    with ScriptedServer(script) as srv:
        spec = _spec(tmp_path / "qa.yaml", srv.url)
        # first run: killed (SIGKILL, whole process group) when the 45th request arrives (one task of 4 seeds is done)
        proc = _mmlake(home, "run", str(spec), "--json")

        def kill_at(n: int) -> bool:
            if n == 45:
                os.killpg(proc.pid, signal.SIGKILL)
                return False
            return True

        script.on_request = kill_at
        proc.wait(timeout=300)
        assert proc.returncode == -signal.SIGKILL
        before = srv.answered()
        n_before = len(srv.log)
        assert len(before) >= 35
        script.on_request = None
        res = _ok(_mmlake(home, "run", str(spec), "--json"))
        rerun = srv.log[n_before:]
        assert not {r["hash"] for r in rerun} & before, "a request answered before the kill was sent again"
        # every answered request was answered once over both runs
        hashes = [r["hash"] for r in srv.log if r["status"] == 200]
        assert len(hashes) == len(set(hashes))
        # a third run of the same spec is answered wholly from the cache
        n_second = len(srv.log)
        again = _ok(_mmlake(home, "run", str(spec), "--json"))
        late = [r for r in srv.log[n_second:] if r["question"] not in script.slow]
        assert late == [] and again["output"] == res["output"]

    assert res["samples_in"] == 12 and res["tasks"]["resumed"] >= 1  # a finished task is not redone
    assert res["kept"] + sum(res["filtered"].values()) + sum(res["rejected"].values()) == 12
    assert res["rejected"] == {"timeout": 1} and res["filtered"].get("no_verified_answer", 0) >= 1
    statuses = {r["status"] for r in srv.log if r["question"] in script.throttle | script.flaky}
    assert {429, 500, 200} <= statuses
    settings = load_settings({"MMLAKE_HOME": str(home)})
    rows = settings.registry_client().get_run(res["run_id"])
    assert rows.status == "succeeded"
    out = list(settings.open_lake().open_version("kn-qa"))
    assert len(out) == res["kept"] >= 6
    assert not {slow_key, wrong_key} & {s.key for s in out} and {throttled, flaky} <= {s.key for s in out}
    for s in out:
        assert s.meta["synthetic"] and s.meta["generator"] == "qa_model" and s.meta["model"] == "scripted-vlm"
        for it in s.meta["qa"]["questions"]:
            for c in it["candidates"]:
                assert c["verdicts"] and all(v["reason"] for v in c["verdicts"])
            if it["chosen"] is not None:
                chosen = it["candidates"][it["chosen"]]
                assert all(v["ok"] for v in chosen["verdicts"]) and chosen["answer"] == answers[it["question"]]
        for m, n in zip(s.messages[::2], s.messages[1::2], strict=True):  # every kept answer is the truth
            assert n.content[0].text.endswith(f"Answer: {answers[m.content[-1].text]}")
    assert rows.counts["kept"] == res["kept"]

