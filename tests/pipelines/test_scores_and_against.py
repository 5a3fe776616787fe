"""Thresholds re-applied from stored scores; dedupe against earlier versions; bad stages."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from datalake import Lake, LocalStore, write_version
from datalake.sample import TextPart
from pipelines.execute import MAX_CONSECUTIVE_ERRORS
from pipelines.run import run_pipeline
from pipelines.spec import parse_spec
from pipelines.stage import STAGES, FilterStage, register
from registry.service import Registry
from synth.shapes import shape_samples


@pytest.fixture
def env(tmp_path: Path) -> tuple[Lake, Registry]:
    lake = Lake(LocalStore(tmp_path / "lake"))
    reg = Registry(f"sqlite:///{tmp_path / 'r.db'}")
    samples = shape_samples(60, seed=21, size=(160, 120))
    # vary the text length so a threshold on words has something to cut
    samples = [dataclasses.replace(s, content=(s.content[0], TextPart(" ".join(["word"] * (i % 12 + 1)) + f" {i}")))
               for i, s in enumerate(samples)]
    reg.register_version(write_version(lake, "src", samples))
    return lake, reg


def spec(**over: object):  # type: ignore[no-untyped-def]
    return parse_spec({"name": "p", "input": "src@1", "output": "out", "partition_size": 20,
                       "stages": [{"image_filter": {"min_side": 10}}, {"text_filter": {"min_words": 4}}], **over})


def test_thresholds_reapplied_from_stored_scores(env: tuple[Lake, Registry]) -> None:
    lake, reg = env
    first = run_pipeline(spec(), lake, reg, progress=False)
    assert first["scored"] > 0 and first["filtered"] == {"too_few_words": 10}
    stricter = {"stages": [{"image_filter": {"min_side": 10}}, {"text_filter": {"min_words": 8}}]}
    fresh = run_pipeline(spec(**stricter, output="fresh"), lake, reg, progress=False)
    reused = run_pipeline(spec(**stricter, output="reused", reuse_scores=first["output"]), lake, reg, progress=False)
    assert reused["scored"] == 0  # no score was recomputed
    assert fresh["scored"] > 0
    for k in ("kept", "filtered", "duplicates", "rejected"):
        assert reused[k] == fresh[k]
    assert reused["filtered"] == {"too_few_words": 30}
    assert [s.key for s in reg.open_version(reused["output"])] == [s.key for s in reg.open_version(fresh["output"])]
    # a task turns only its own samples' rows into Python objects
    from pipelines.execute import _scores

    v = reg.open_version(first["output"])
    whole = _scores(v.store.url(v.manifest.extras["scores"]))
    some = {k for k, _ in list(whole)[::7]}
    assert _scores(v.store.url(v.manifest.extras["scores"]), some) == {kk: sc for kk, sc in whole.items() if kk[0] in some}
    assert len(some) < len({k for k, _ in whole})


def test_dedupe_against_an_earlier_version(env: tuple[Lake, Registry]) -> None:
    lake, reg = env
    base = run_pipeline(spec(stages=[{"dedupe_exact": {}}]), lake, reg, progress=False)
    old = reg.open_version(base["output"])
    new = shape_samples(10, seed=99, size=(160, 120)) + [dataclasses.replace(s, key=f"again-{s.key}") for s in list(old)[:5]]
    reg.register_version(write_version(lake, "more", new))
    out = run_pipeline(parse_spec({"name": "q", "input": "more@1", "output": "more-clean", "against": [base["output"]],
                                   "stages": [{"dedupe_exact": {}}]}), lake, reg, progress=False)
    assert out["duplicates"] == 5 and out["kept"] == 10
    rows = reg.open_version(out["output"]).read_rejects().to_pylist()
    assert all(r["duplicate_of"].startswith(f"{base['output']}/") for r in rows)


class _Broken(FilterStage):
    name = "broken_for_test"

    @dataclasses.dataclass(frozen=True)
    class Config:
        fail_every: int = 1

    def score(self, sample):  # type: ignore[no-untyped-def]
        if int(sample.meta["i"]) % self.config.fail_every == 0:
            raise KeyError("boom")
        return {}

    def decide(self, scores):  # type: ignore[no-untyped-def]
        return None


def test_a_bad_sample_never_kills_a_run_but_a_systematic_failure_does(env: tuple[Lake, Registry]) -> None:
    lake, reg = env
    if "broken_for_test" not in STAGES:
        register(_Broken)
    try:
        out = run_pipeline(spec(stages=[{"broken_for_test": {"fail_every": 7}}], runner_options={"workers": 1}),
                           lake, reg, progress=False)
        assert out["rejected"] == {"stage_error": 9} and out["kept"] == 51
        with pytest.raises(RuntimeError, match=r"stage broken_for_test failed on 20 samples in a row, last at "
                                               r"dataset src@1, src@1 task 0 .* key 's00019'"):
            run_pipeline(spec(stages=[{"broken_for_test": {}}], output="never", runner_options={"workers": 1}),
                         lake, reg, progress=False)
        assert MAX_CONSECUTIVE_ERRORS == 20
        assert reg.list_runs(status="failed")[0].name == "p"
        assert "never" not in [d.name for d in reg.list_datasets()]
    finally:
        STAGES.pop("broken_for_test", None)
