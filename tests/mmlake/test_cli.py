"""The mmlake command: help everywhere, --json contracts, settings precedence, clean errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from mmlake.cli import main
from mmlake.settings import load_settings


def all_commands(group=main, prefix=()):  # type: ignore[no-untyped-def]
    yield prefix
    for name, cmd in getattr(group, "commands", {}).items():
        yield from all_commands(cmd, (*prefix, name))


def test_help_everywhere() -> None:
    runner = CliRunner()
    paths = list(all_commands())
    assert ("ingest",) in paths and ("datalake", "verify") in paths
    for path in paths:
        res = runner.invoke(main, [*path, "--help"], prog_name="mmlake")
        assert res.exit_code == 0, (path, res.output)
        assert "Usage: mmlake" in res.output


def run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).with_name("mmlake")
    return subprocess.run([str(exe), *args], capture_output=True, text=True, env=env, timeout=120)


def test_ingest_json_then_inspect(tmp_path: Path, caption_folder: tuple[Path, dict[str, int]]) -> None:
    root, expected = caption_folder
    env = {**os.environ, "MMLAKE_HOME": str(tmp_path / "home")}
    res = run(["ingest", str(root), "--dataset", "caps", "--json"], env)
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)  # exactly one JSON object on stdout
    assert set(out) >= {"output", "manifest", "inputs", "ingested", "rejected"}
    assert out["output"].startswith("caps@") and out["manifest"].startswith("file://")
    assert out["ingested"] == 24 and out["ingested"] + sum(out["rejected"].values()) == out["inputs"]
    assert (tmp_path / "home" / "lake" / "datasets" / "caps").is_dir()  # embedded default lake

    runner = CliRunner(env=env)
    show = json.loads(runner.invoke(main, ["datalake", "show", "caps", "--json"]).output)
    assert show["samples"] == 24 and show["rejects"]["count"] == 6
    ls = json.loads(runner.invoke(main, ["datalake", "ls", "caps", "--json"]).output)
    assert [v["ref"] for v in ls["versions"]] == [out["output"]]
    head = runner.invoke(main, ["datalake", "head", "caps", "-n", "2", "--json"]).output.splitlines()
    assert len(head) == 2 and json.loads(head[0])["kind"] == "caption"
    ver = runner.invoke(main, ["datalake", "verify", out["output"], "--json"])
    assert ver.exit_code == 0 and json.loads(ver.output)["ok"] is True
    rej = json.loads(runner.invoke(main, ["datalake", "rejects", "caps", "--json", "-n", "0"]).output)
    assert len(rej["rejects"]) == 6
    human = runner.invoke(main, ["ingest", str(root), "--dataset", "caps"])
    assert "ingested 24, rejected 6" in human.output and "of 30 inputs" in human.output


def test_user_errors_are_one_clean_line(tmp_path: Path) -> None:
    runner = CliRunner(env={"MMLAKE_HOME": str(tmp_path)})
    res = runner.invoke(main, ["datalake", "show", "nothing@latest"])
    assert res.exit_code == 2 and "Error: dataset 'nothing' has no versions" in res.output
    assert "Traceback" not in res.output
    res = runner.invoke(main, ["ingest", str(tmp_path / "missing"), "--dataset", "x"])
    assert res.exit_code == 2 and "does not exist" in res.output
    res = runner.invoke(main, ["ingest", str(tmp_path), "--dataset", "bad/name"])
    assert res.exit_code == 2 and "invalid dataset name" in res.output


def test_verify_exits_1_on_corruption(tmp_path: Path, caption_folder: tuple[Path, dict[str, int]]) -> None:
    root, _ = caption_folder
    runner = CliRunner(env={"MMLAKE_HOME": str(tmp_path / "h")})
    assert runner.invoke(main, ["ingest", str(root), "--dataset", "c", "--json"]).exit_code == 0
    tar = next((tmp_path / "h" / "lake").rglob("*.tar"))
    tar.write_bytes(tar.read_bytes()[:-1024] + b"\0" * 1024 + b"x")
    res = runner.invoke(main, ["datalake", "verify", "c"])
    assert res.exit_code == 1 and "does not match its checksum" in res.output


def test_settings_precedence(tmp_path: Path) -> None:
    home = tmp_path / "h"
    home.mkdir()
    assert load_settings({"MMLAKE_HOME": str(home)}).lake == str(home / "lake")
    assert load_settings({"MMLAKE_HOME": str(home)}).registry == f"sqlite:///{home / 'registry.db'}"
    (home / "config.toml").write_text('lake = "s3://b/lake"\ns3_endpoint = "http://127.0.0.1:9000"\ns3_rate_limit = 50\n')
    s = load_settings({"MMLAKE_HOME": str(home)})
    assert (s.lake, s.s3_endpoint, s.s3_rate_limit, s.config_file) == ("s3://b/lake", "http://127.0.0.1:9000", 50.0,
                                                                       str(home / "config.toml"))
    s = load_settings({"MMLAKE_HOME": str(home), "MMLAKE_LAKE": "/data/lake", "MMLAKE_S3_RATE_LIMIT": "7"})
    assert (s.lake, s.s3_rate_limit) == ("/data/lake", 7.0)
    assert s.s3_options().rate_limit == 7.0 and s.s3_options().endpoint_url == "http://127.0.0.1:9000"
    (home / "config.toml").write_text('lake_uri = "x"\n')
    with pytest.raises(ValueError, match=r"unknown setting\(s\) \['lake_uri'\]"):
        load_settings({"MMLAKE_HOME": str(home)})
    with pytest.raises(ValueError, match="MMLAKE_S3_RATE_LIMIT: s3_rate_limit must be float"):
        load_settings({"MMLAKE_HOME": str(tmp_path), "MMLAKE_S3_RATE_LIMIT": "fast"})
    res = CliRunner(env={"MMLAKE_HOME": str(home)}).invoke(main, ["config"])
    assert res.exit_code == 2 and "unknown setting" in res.output


def test_demo_runs_end_to_end(tmp_path: Path) -> None:
    runner = CliRunner(env={"MMLAKE_HOME": str(tmp_path)})
    res = runner.invoke(main, ["demo", "--samples", "12"])
    assert res.exit_code == 0, res.output
    assert "ingested 12, rejected 6" in res.output and "shard(s): OK" in res.output
    assert "[5/10] loader:" in res.output and "identical batches" in res.output
    assert "[6/10] synthetic data: 6 OCR pages (text, text-cjk, handwriting) -> synth-ocr@1" in res.output
    assert "8 knowledge QA (geometry, chart, table, html-table) -> synth-knowledge@1" in res.output
    assert "skipped" not in res.output.split("[6/10]")[1].split("[7/10]")[0]
    gui = [ln for ln in res.output.splitlines() if ln.startswith("[7/10] GUI agent data")]
    assert len(gui) == 2 and all(float(ln.split("click verification ")[1].split("%")[0]) >= 99.0 for ln in gui), gui
    docs = [ln for ln in res.output.splitlines() if ln.startswith("[8/10] interleaved documents")]
    assert len(docs) == 1 and "all in source DOM order" in docs[0] and "rejected {}" in docs[0], docs
    qa = [ln for ln in res.output.splitlines() if ln.startswith("[9/10] template QA")]
    assert len(qa) == 1 and "25 seeds -> 25 QA samples" in qa[0] and "chart" in qa[0] and "gui" in qa[0], qa
    vids = [ln for ln in res.output.splitlines() if ln.startswith("[10/10] videos")]
    assert len(vids) == 1 and "4 synthetic, 2 real" in vids[0] and "cut F1 on the synthetic ones 1.00" in vids[0], vids
    cer_pct = float(res.output.split("CER ")[1].split("%")[0])
    assert cer_pct <= 2.0, res.output
    peek = runner.invoke(main, ["loader", "peek", "demo-shapes@latest=1", "--seq-len", "1024", "--batches", "1",
                                "--augment", "none", "--json"])
    assert peek.exit_code == 0, peek.output
    out = json.loads(peek.output)
    b = out["batches"][0]
    assert b["rows"] == 2 and b["samples"] == len([k for r in b["sample_keys"] for k in r]) and b["images"] >= 2
    assert all(k.startswith("demo-shapes@") for r in b["sample_keys"] for k in r) and 0 < b["fill"] <= 1
    human = runner.invoke(main, ["loader", "peek", "demo-shapes@latest", "--seq-len", "1024", "--batches", "1",
                                 "--decode"])
    assert "batch 0: 2 rows" in human.output and "<|media_start|><|media_pad|>x" in human.output
    bad = runner.invoke(main, ["loader", "peek", "nope@latest"])
    assert bad.exit_code != 0 and "nope" in bad.output


def test_ingest_registers_and_datasets_commands_read_the_registry(tmp_path: Path,
                                                                  caption_folder: tuple[Path, dict[str, int]]) -> None:
    root, _ = caption_folder
    env = {"MMLAKE_HOME": str(tmp_path / "h"), "MMLAKE_OPENLINEAGE": str(tmp_path / "ol.jsonl")}
    runner = CliRunner(env=env)
    out = json.loads(runner.invoke(main, ["ingest", str(root), "--dataset", "caps", "--json"]).output)
    assert out["registered"] == "caps@1" and out["run_id"]
    assert (tmp_path / "h" / "registry.db").is_file()  # the embedded SQLite registry
    listed = json.loads(runner.invoke(main, ["datasets", "list", "--json"]).output)
    assert [(d["name"], d["latest"], d["samples"]) for d in listed] == [("caps", 1, 24)]
    shown = json.loads(runner.invoke(main, ["datasets", "show", "caps@1", "--json"]).output)
    assert shown["created_by_run"] == out["run_id"] and shown["rejects"]["count"] == 6
    lineage = json.loads(runner.invoke(main, ["datasets", "lineage", "caps@1", "--json"]).output)
    assert {n["type"] for n in lineage["nodes"]} == {"run", "version"}
    human = runner.invoke(main, ["datasets", "lineage", "caps@1"]).output
    assert "run ingest caps [succeeded]  ->  caps@1" in human
    res = runner.invoke(main, ["datasets", "state", "caps@1", "deleted"])
    assert res.exit_code == 2 and "can move to deprecated, not deleted" in res.output
    assert "now deprecated" in runner.invoke(main, ["datasets", "state", "caps@1", "deprecated"]).output
    token = json.loads(runner.invoke(main, ["registry", "create-user", "ana", "--role", "writer", "--json"]).output)
    assert token["token"].startswith("mml_")
    events = [json.loads(line)["eventType"] for line in (tmp_path / "ol.jsonl").read_text().splitlines()]
    assert events == ["START", "COMPLETE"]
    res = runner.invoke(main, ["ingest", str(root), "--dataset", "caps", "--no-register", "--json"])
    assert "registered" not in json.loads(res.output)
