"""The step-log report: the figures the README quotes, computed from a log, and the picture."""

from __future__ import annotations

import json
from pathlib import Path

from training.report import main, read_log, summarise


def _log(path: Path, waits: list[float]) -> Path:
    rows = [{"step": i, "loss": 5.0 / (i + 1), "loss_by_source": {"a@1": 4.0 / (i + 1)}, "step_s": 0.5,
             "data_wait_s": 0.5 * w, "data_wait_share": w, "tokens_per_s": 1000.0 + i, "mfu": 0.1,
             "mem_gb": 1.0 + i / 100, "expert_load": [[3.0, 1.0], [2.0, 2.0]]} for i, w in enumerate(waits)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_summary_counts_slow_steps_and_skips_the_first_for_waits(tmp_path: Path, capsys) -> None:
    waits = [0.5] + [0.001] * 97 + [0.03, 0.01]  # the first step waits for the workers to start
    rows = read_log(_log(tmp_path / "rank0.jsonl", waits))
    s = summarise(rows)
    assert s["steps_logged"] == 100 and s["steps_over_goal"] == 1  # the start-up step is not counted
    assert s["max_data_wait_share"] == 0.03
    assert 0.001 <= s["p99_data_wait_share"] <= 0.03
    assert s["median_data_wait_share"] == 0.001 and s["peak_mem_gb"] == 1.99
    assert s["expert_max_over_mean"] == 1.25  # median of 1.5 and 1.0
    main([str(tmp_path / "rank0.jsonl"), "--png", str(tmp_path / "r.png"), "--json"])
    assert json.loads(capsys.readouterr().out)["steps_over_goal"] == 1
    assert (tmp_path / "r.png").stat().st_size > 5000
