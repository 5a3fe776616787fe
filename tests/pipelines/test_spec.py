"""Specs are validated up front; errors name the field and the fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipelines.run import plan_passes
from pipelines.spec import load_spec, parse_spec
from pipelines.stage import SpecError

BASE = {"name": "j", "input": "raw@latest", "output": "out", "stages": [{"decode": {}}, {"dedupe_exact": {}}]}


@pytest.mark.parametrize("change, words", [
    ({"stages": [{"text_filter": {"min_word": 3}}]}, r"stages\[0\]\.stage text_filter: unknown parameter\(s\) \['min_word'\]"),
    ({"stages": [{"text_filter": {"min_words": "three"}}]}, "min_words must be"),
    ({"stages": [{"teleport": {}}]}, "unknown stage 'teleport'; known stages:"),
    ({"stages": [{"dedupe_text": {"threshold": 1.5}}]}, "threshold is a Jaccard similarity"),
    ({"stages": []}, "stages must be a non-empty list"),
    ({"stages": [{"decode": {}, "text_filter": {}}]}, r"stages\[0\] must be one"),
    ({"stages": [{"decode": {}}, {"decode": {}}]}, "appears twice"),
    ({"runner": "dask"}, "runner 'dask' is not one of"),
    ({"output": "bad/name"}, "output 'bad/name' must be a dataset name"),
    ({"input": []}, "input must be a string or a non-empty list"),
    ({"partition_size": 0}, "partition_size must be a positive integer"),
    ({"colour": "red"}, r"unknown field\(s\) \['colour'\]"),
    ({"against": ["x@1"], "stages": [{"decode": {}}]}, "'against' needs at least one dedupe stage"),
])
def test_spec_errors(change: dict, words: str) -> None:
    with pytest.raises(SpecError, match=words):
        parse_spec({**BASE, **change})
    missing = dict(BASE)
    del missing["output"]
    with pytest.raises(SpecError, match="field 'output' is required"):
        parse_spec(missing)


def test_shipped_specs_are_valid() -> None:
    specs = sorted((Path(__file__).resolve().parents[2] / "pipelines" / "specs").glob("*.yaml"))
    assert specs
    for p in specs:
        spec = load_spec(p)
        assert spec.stages and spec.output


def test_passes_cut_at_dedupe_blocks() -> None:
    spec = parse_spec({**BASE, "stages": [{"decode": {}}, {"text_filter": {}}, {"dedupe_exact": {}},
                                          {"dedupe_text": {}}, {"image_filter": {}}]})
    assert plan_passes(spec.build()) == [((0, 1), (2, 3)), ((4,), ())]
    spec = parse_spec({**BASE, "stages": [{"dedupe_exact": {}}]})
    assert plan_passes(spec.build()) == [((), (0,)), ((), ())]
    spec = parse_spec({**BASE, "stages": [{"decode": {}}]})
    assert plan_passes(spec.build()) == [((0,), ())]
    assert spec.with_runner("ray").runner == "ray"
