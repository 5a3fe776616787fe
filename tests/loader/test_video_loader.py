"""Video samples in the loader: frames + timestamps within the pixel budget, segments rendered
as timestamps, deterministic, identical batches after a resume."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from datalake.version import Lake, write_version
from loader import LoaderConfig, SourceSpec, build_loader
from loader.render import SampleProcessor
from loader.tokenizer import load_tokenizer
from synth.video import render_video, video_sample
from tests.loader.conftest import batch_digest, take

VIDEO = {"augment": None, "seq_len": 2048, "batch_size": 1, "pack_buffer": 4, "num_workers": 0,
         "video_fps": 2.0, "video_max_frames": 6, "video_max_pixels": 112 * 84}


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> str:
    lake = Lake.open(str(tmp_path_factory.mktemp("video-lake")))
    return write_version(lake, "vids", [video_sample(render_video(8, i, size=(224, 168))) for i in range(6)],
                         shard_samples=3).uri


def test_a_video_becomes_timestamped_frames_within_the_budget() -> None:
    tok = load_tokenizer(None)
    proc = SampleProcessor(tok, seed=0, policy=None, seq_len=4096, video_fps=2.0, video_max_frames=6,
                           video_max_pixels=112 * 84)
    v = render_video(8, 0, size=(224, 168))
    s = video_sample(v)
    out = proc.process(s, dataset="vids", epoch=0)
    want = proc.frame_times(v.duration_s)
    assert len(want) == 6 and want == sorted(want) and want[-1] < v.duration_s  # capped, spread over the video
    assert len(out.patches) == len(out.grids) == 6
    assert all(gh * gw * 14 * 14 <= 112 * 84 for gh, gw in out.grids)
    text = tok.decode(out.ids.tolist())
    stamps = [f"<{t:.1f}s>" for t in want]
    assert all(x in text for x in stamps) and text.index(stamps[0]) < text.index(stamps[-1])
    # {segment:i} renders as the object's span
    o = v.objects[0]
    assert f"{o.f0 / v.fps:.2f}s-{o.f1 / v.fps:.2f}s" in text and "{segment:" not in text
    # timestamps and media tokens carry no loss; the answers do
    assert np.all(out.labels[np.isin(out.ids, [tok.media_pad, tok.media_start, tok.media_end])] == -100)
    again = proc.process(s, dataset="vids", epoch=3)
    assert all(np.array_equal(a, b) for a, b in zip(out.patches, again.patches, strict=True))
    short = SampleProcessor(tok, seed=0, policy=None, seq_len=4096, video_fps=0.5, video_max_frames=16)
    assert len(short.process(s, dataset="vids", epoch=0).patches) == max(1, int(v.duration_s * 0.5))


def test_video_batches_resume_identically(videos: str) -> None:
    cfg = LoaderConfig(sources=[SourceSpec(videos, 1.0)], **VIDEO)
    full = [batch_digest(b) for b in take(build_loader(cfg), 6)]
    first = build_loader(cfg)
    got = [batch_digest(b) for b in take(first, 3)]
    state = json.loads(json.dumps(first.state_dict()))
    second = build_loader(LoaderConfig(sources=[SourceSpec(videos, 1.0)], **{**VIDEO, "num_workers": 1}))
    second.load_state_dict(state)
    got += [batch_digest(b) for b in take(second, 3)]
    assert got == full
    b = take(build_loader(cfg), 1)[0]
    assert b["image_grid_hw"].shape[0] >= 6  # a whole video's frames in one batch
    other = LoaderConfig(sources=[SourceSpec(videos, 1.0)], **{**VIDEO, "video_max_frames": 4})
    with pytest.raises(ValueError, match="video"):
        build_loader(other).load_state_dict(state)  # another frame plan is another stream


def test_video_path_does_not_touch_image_samples(tmp_path: Path) -> None:
    from synth.shapes import shape_samples

    tok = load_tokenizer(None)
    s = shape_samples(1, seed=1, size=(112, 84))[0]
    a = SampleProcessor(tok, seed=0, policy=None, seq_len=512).process(s, dataset="d", epoch=0)
    b = SampleProcessor(tok, seed=0, policy=None, seq_len=512, video_fps=5.0).process(s, dataset="d", epoch=0)
    assert a.ids.tolist() == b.ids.tolist() and len(a.patches) == 1


def test_long_videos_are_routed_to_their_own_source(tmp_path: Path) -> None:
    """One dataset, two routes: the main stage takes the videos up to 4 s, the long-context stage
    (longer seq_len) the longer ones; each sees only its share and counts the rest as routed."""
    lake = Lake.open(str(tmp_path))
    vids = [render_video(9, i, size=(112, 84), n_scenes=2 if i % 2 else 4) for i in range(6)]
    uri = write_version(lake, "mixed", [video_sample(v) for v in vids], shard_samples=3).uri
    short = {v.key for v in vids if v.duration_s < 4.0}  # [min, max): a 4.0 s video is long
    assert 0 < len(short) < len(vids)
    seen: dict[str, set[str]] = {}
    for name, spec, seq in (("main", SourceSpec(uri, 1.0, max_video_s=4.0), 2048),
                            ("long", SourceSpec(uri, 1.0, min_video_s=4.0), 8192)):
        ld = build_loader(LoaderConfig(sources=[spec], **{**VIDEO, "seq_len": seq, "video_max_frames": 2}))
        keys = {k.split("/")[-1] for b in take(ld, 8) for row in b["sample_keys"] for k in row}
        seen[name] = keys
        assert ld.counts["skipped"]["video route"] > 0
    assert seen["main"] == short and seen["long"] == {v.key for v in vids} - short
    with pytest.raises(ValueError, match="min_video_s < max_video_s"):
        SourceSpec(uri, min_video_s=5.0, max_video_s=2.0)
