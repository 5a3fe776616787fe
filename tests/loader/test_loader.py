"""The loader end to end: batch contract, determinism, resume, exactly-once, masks, limits."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import numpy as np
import pytest

from loader import LoaderConfig, SourceSpec, build_loader
from loader.core import _Work
from tests.loader.conftest import batch_digest, take

FAST = {"augment": None, "seq_len": 256, "batch_size": 2, "pack_buffer": 16, "num_workers": 0}


def cfg(sources: list[SourceSpec], **kw: Any) -> LoaderConfig:
    return LoaderConfig(sources=sources, **{**FAST, **kw})


def test_batch_contract(versions: dict[str, str]) -> None:
    ld = build_loader(cfg([SourceSpec(versions["shapes"], 0.6), SourceSpec(versions["chat"], 0.4)],
                          augment="default", seq_len=512))
    tok = ld.tokenizer
    for batch in take(ld, 4):
        b, n = batch["input_ids"].shape
        assert (b, n) == (2, 512)
        ids, labels = batch["input_ids"].numpy(), batch["labels"].numpy()
        pos, seg = batch["position_ids"].numpy(), batch["segment_ids"].numpy()
        cu = batch["cu_seqlens"].numpy()
        grids = batch["image_grid_hw"].numpy()
        # every image: its patches are in pixel_values and it has one pad per merged 2x2 patch
        assert batch["pixel_values"].shape == (int((grids[:, 0] * grids[:, 1]).sum()), 14 * 14 * 3)
        assert int((ids == tok.media_pad).sum()) == int((grids[:, 0] * grids[:, 1] // 4).sum())
        assert np.all(labels[np.isin(ids, [tok.media_pad, tok.media_start, tok.media_end])] == -100)
        # segments: positions restart per sample, cu_seqlens are the flattened boundaries
        flat_seg = seg.reshape(-1)
        bounds = [0] + [i for i in range(1, b * n) if flat_seg[i] != flat_seg[i - 1] or i % n == 0] + [b * n]
        assert cu.tolist() == sorted(set(bounds))
        for r in range(b):
            keys = batch["sample_keys"][r]
            assert seg[r].max() == len(keys) - 1
            for s in range(len(keys)):
                m = seg[r] == s
                assert pos[r][m].tolist() == list(range(int(m.sum())))  # no leakage across samples
            pad = seg[r] == -1
            assert np.all(labels[r][pad] == -100) and (not pad.any() or pad[-1])
            assert np.all(ids[r][pad] == tok.pad) and tok.pad not in (tok.eot, tok.im_end)  # its own id
            assert not np.any(ids[r][~pad] == tok.pad)
        assert all(k.split("/")[0] in {s.ref for s in ld.sources} for row in batch["sample_keys"] for k in row)


def test_stream_does_not_depend_on_workers(versions: dict[str, str]) -> None:
    srcs = [SourceSpec(versions["shapes"], 0.7), SourceSpec(versions["small"], 0.3)]
    runs = [[batch_digest(b) for b in take(build_loader(cfg(srcs, num_workers=w, augment="default")), 5)]
            for w in (0, 1, 2)]
    assert runs[0] == runs[1] == runs[2]
    other_seed = [batch_digest(b) for b in take(build_loader(cfg(srcs, seed=1, augment="default")), 5)]
    assert other_seed != runs[0]


@pytest.mark.parametrize("workers_before,workers_after", [(0, 2), (2, 1), (1, 0)])
def test_resume_continues_identically(versions: dict[str, str], workers_before: int, workers_after: int) -> None:
    srcs = [SourceSpec(versions["shapes"], 0.5), SourceSpec(versions["chat"], 0.5)]
    full = [batch_digest(b) for b in take(build_loader(cfg(srcs, augment="default")), 9)]
    first = build_loader(cfg(srcs, augment="default", num_workers=workers_before))
    got = [batch_digest(b) for b in take(first, 4)]
    state = json.loads(json.dumps(first.state_dict()))  # JSON round trip: what a checkpoint stores
    assert len(json.dumps(state)) < 4000 and state["pending"]  # small; the packer's buffer is ids
    second = build_loader(cfg(srcs, augment="default", num_workers=workers_after))
    second.load_state_dict(state)
    got += [batch_digest(b) for b in take(second, 5)]
    assert got == full


def test_resume_is_a_seek_not_a_replay(versions: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    """After resuming late in a run, the first batch processes only the packer's pending
    samples plus what the new rows need -- not the samples before the resume point."""
    srcs = [SourceSpec(versions["shapes"])]
    ld = build_loader(cfg(srcs))
    take(ld, 40)  # several epochs of 'small' worth of samples
    state = ld.state_dict()
    calls = Counter()
    orig = _Work.__call__

    def counting(self: _Work, sid: tuple[int, int]) -> Any:
        calls["n"] += 1
        return orig(self, sid)

    monkeypatch.setattr(_Work, "__call__", counting)
    ld2 = build_loader(cfg(srcs))
    ld2.load_state_dict(state)
    take(ld2, 1)
    per_batch = ld.metrics()["samples"] / 40
    assert calls["n"] <= len(state["pending"]) + 3 * per_batch + 2


def test_config_change_that_breaks_determinism_is_refused(versions: dict[str, str]) -> None:
    ld = build_loader(cfg([SourceSpec(versions["shapes"])]))
    take(ld, 1)
    state = ld.state_dict()
    with pytest.raises(ValueError, match=r"seq_len: state has 256, config has 512"):
        build_loader(cfg([SourceSpec(versions["shapes"])], seq_len=512)).load_state_dict(state)
    with pytest.raises(ValueError, match="sources"):
        build_loader(cfg([SourceSpec(versions["small"])])).load_state_dict(state)
    with pytest.raises(ValueError, match="no state for rank 1"):
        build_loader(cfg([SourceSpec(versions["shapes"])], rank=1, world_size=2)).load_state_dict(
            {**state, "world_size": 2})
    with pytest.raises(ValueError, match="not an mmlake loader state"):
        ld.load_state_dict({"position": 3})


def _delivered(batches: list[dict[str, Any]]) -> list[str]:
    return [k for b in batches for row in b["sample_keys"] for k in row]


def _draws_of(batches: list[dict[str, Any]]) -> list[tuple[int, int]]:
    return _draws(batches)


def _draws(batches: list[dict[str, Any]]) -> list[tuple[int, int]]:
    return [tuple(d) for b in batches for row in b["sample_draws"] for d in row]


def test_world_size_changes_deliver_every_sample_exactly_once(versions: dict[str, str]) -> None:
    """4 ranks -> 2 -> 3 -> 1, states passed as the list of all old ranks' states: every item
    the lanes gave out arrives exactly once -- delivered, or still held by the last packer --
    and, over the first epoch's draws that the lanes have passed, every key arrives once."""
    from loader.plan import Stream, decode_cursors, items_below

    src = [SourceSpec(versions["shapes"])]
    delivered: list[tuple[int, int]] = []
    states: list[dict[str, Any]] | None = None
    for world, steps in ((4, 2), (2, 3), (3, 2)):
        new_states = []
        for r in range(world):
            ld = build_loader(cfg(src, rank=r, world_size=world))
            if states is not None:
                ld.load_state_dict(states)
            delivered += _draws(take(ld, steps + r % 2))  # ranks advance unevenly
            new_states.append(json.loads(json.dumps(ld.state_dict())))
        states = new_states
    last = build_loader(cfg(src))
    last.load_state_dict(states)
    delivered += _draws(take(last, 12))
    final = last.state_dict()
    counts = Counter(delivered)
    assert max(counts.values()) == 1, counts.most_common(3)  # nothing twice
    given_out = Counter(items_below(Stream.from_json(final["stream"]), decode_cursors(final["cursors"])))
    held = Counter(tuple(p) for p in final["pending"] + final["prefix"])
    assert given_out == counts + held  # nothing lost
    assert len(decode_cursors(final["cursors"])) == 4  # the first run's world size fixed the lanes


def test_new_weights_from_here_on(versions: dict[str, str]) -> None:
    """Resuming with other weights: deterministic from there on, and nothing already
    delivered comes again within the epoch."""
    a, b = versions["shapes"], versions["small"]
    first = build_loader(cfg([SourceSpec(a, 0.5), SourceSpec(b, 0.5)]))
    before = take(first, 3)
    state = first.state_dict()
    runs = []
    for _ in range(2):
        ld = build_loader(cfg([SourceSpec(a, 0.9), SourceSpec(b, 0.1)]))
        ld.load_state_dict(state)
        runs.append(_draws(take(ld, 6)))
    assert runs[0] == runs[1]
    held = {tuple(p) for p in state["pending"]}
    new = [d for d in runs[0] if d not in held]  # drawn after the resume point
    share_a = sum(s == 0 for s, _ in new) / len(new)
    assert abs(share_a - 0.9) <= 1.5 / len(new)  # the new weights, low-discrepancy
    draws_a = [k for s, k in _draws_of(before) + runs[0] if s == 0]
    assert len(draws_a) == len(set(draws_a))


def test_loss_masks_for_conversations_and_captions(versions: dict[str, str]) -> None:
    ld = build_loader(cfg([SourceSpec(versions["chat"])], seq_len=1024))
    tok = ld.tokenizer
    batch = take(ld, 1)[0]
    ids, labels, seg = batch["input_ids"][0].numpy(), batch["labels"][0].numpy(), batch["segment_ids"][0].numpy()
    one = ids[seg == 0]
    lab = labels[seg == 0]
    text = tok.decode(one.tolist())
    assert text.startswith("<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>user\n<|media_start|>")
    learned = tok.decode(lab[lab != -100].tolist())
    # only the assistant's answer (box rendered in 0-1000 after augmentation) and its <|im_end|>
    assert learned.startswith("It is at (") and learned.endswith(").<|im_end|>")
    assert "Where is the cat" not in learned and "system" not in learned
    # a caption: loss on the text and the closing <|endoftext|>, never on media tokens
    ld2 = build_loader(cfg([SourceSpec(versions["small"])]))
    b2 = take(ld2, 1)[0]
    ids2, lab2 = b2["input_ids"][0].numpy(), b2["labels"][0].numpy()
    assert tok.decode(lab2[(b2["segment_ids"][0].numpy() == 0) & (lab2 != -100)].tolist()).startswith("An image of")
    assert np.all(lab2[ids2 == tok.media_pad] == -100)


def test_placeholders_follow_flips(versions: dict[str, str]) -> None:
    """With a forced flip, the box rendered in the text is the mirrored box, and left/right
    words are swapped."""
    from datalake.version import DatasetVersion
    from loader.render import SampleProcessor
    from loader.tokenizer import default_tokenizer

    sample = DatasetVersion.open(versions["chat"]).get(0)
    sample = type(sample)(**{**sample.__dict__, "kind": "caption", "messages": (),
                             "content": (sample.messages[1].content[0],
                                         type(sample.messages[1].content[1])("the cat on the left at {box:0}"))})
    tok = default_tokenizer()
    outs = {}
    for flip in (0.0, 1.0):
        p = SampleProcessor(tok, seed=0, policy={"hflip_p": flip}, seq_len=512, coords="pixels")
        item = p.process(sample, dataset="chat@x", epoch=0)
        outs[flip] = tok.decode(item.ids.tolist()).split("<|media_end|>")[1]
        assert item.params[0].get("hflip", False) is bool(flip)
    # 84x56 fits the budget as 84x56 (multiples of 28): box x 10..50 -> 34..74 after a flip
    assert outs[0.0] == "the cat on the left at (10,8),(50,40)<|endoftext|>"
    assert outs[1.0] == "the cat on the right at (34,8),(74,40)<|endoftext|>"


def test_images_with_ocr_text_are_never_flipped(versions: dict[str, str]) -> None:
    """A caption photo in which the OCR stage found text (a sign, a label) is not mirrored."""
    from datalake.version import DatasetVersion
    from loader.render import SampleProcessor
    from loader.tokenizer import default_tokenizer

    sample = DatasetVersion.open(versions["shapes"]).get(0)
    tok = default_tokenizer()
    p = SampleProcessor(tok, seed=0, policy={"hflip_p": 1.0}, seq_len=512)
    assert p.process(sample, dataset="shapes@x", epoch=0).params[0].get("hflip") is True
    for ocr in ({"lines": 2, "text": "EXIT", "text_area_ratio": 0.12}, {"text": "STOP"}):
        texty = type(sample)(**{**sample.__dict__, "meta": {**sample.meta, "ocr": {sample.media[0].name: ocr}}})
        assert p.process(texty, dataset="shapes@x", epoch=0).params[0].get("hflip") is None
    blank = type(sample)(**{**sample.__dict__, "meta": {**sample.meta, "ocr": {
        sample.media[0].name: {"lines": 0, "text": "", "text_area_ratio": 0.0}}}})
    assert p.process(blank, dataset="shapes@x", epoch=0).params[0].get("hflip") is True  # OCR found nothing


def test_packing_fill_and_overlong_policy(versions: dict[str, str]) -> None:
    ld = build_loader(cfg([SourceSpec(versions["shapes"])], seq_len=2048, batch_size=2, pack_buffer=64))
    take(ld, 6)
    assert ld.metrics()["fill"] >= 0.99
    # chat samples are ~59 tokens: at seq_len 40 they are truncated (never inside an image) or skipped
    tiny = build_loader(cfg([SourceSpec(versions["chat"])], seq_len=40))
    rows = [row for x in take(tiny, 3) for row in x["sample_keys"]]
    assert tiny.metrics()["truncated"] > 0 and all(len(r) == 1 for r in rows)
    skip = build_loader(cfg([SourceSpec(versions["chat"]), SourceSpec(versions["small"])], seq_len=40,
                            overlong="skip"))
    keys = [k for x in take(skip, 3) for row in x["sample_keys"] for k in row]
    assert skip.metrics()["skipped"]["overlong"] > 0 and skip.metrics()["truncated"] == 0
    assert keys and all(k.startswith("small@") for k in keys)


def test_synthetic_cap_and_metrics(versions: dict[str, str], lake_dir: Any, tmp_path: Any) -> None:
    from datalake.version import Lake, write_version
    from synth.shapes import shape_samples
    from tests.loader.conftest import chat_samples

    lake = Lake.open(str(lake_dir))
    mixed = shape_samples(160, seed=9, size=(56, 56)) + chat_samples(40, with_image=False)
    v = write_version(lake, "mixed", mixed, shard_samples=50)
    assert v.manifest.stats["synthetic"] == 160
    ld = build_loader(cfg([SourceSpec(v.uri, max_synthetic=0.5)], step_log=str(tmp_path / "steps")))
    take(ld, 25)
    m = ld.metrics()
    share = m["synthetic_share"][v.ref]
    assert 0.35 <= share <= 0.65, share  # 80 % synthetic in the source, capped at half
    assert m["skipped"]["synthetic cap"] > 0
    ld.state_dict()  # flushes the step log
    import pyarrow.parquet as pq

    log = pq.read_table(tmp_path / "steps").to_pylist()
    assert [r["step"] for r in log] == list(range(25)) and all(r["rank"] == 0 for r in log)


def test_batches_and_step_log_record_the_augmentation_applied(versions: dict[str, str], tmp_path: Any) -> None:
    ld = build_loader(cfg([SourceSpec(versions["shapes"])], augment="geometric", step_log=str(tmp_path / "s")))
    batches = take(ld, 3)
    flips = 0
    for b in batches:
        params = b["augment_params"]
        assert [len(r) for r in params] == [len(r) for r in b["sample_keys"]]
        grids = iter(b["image_grid_hw"].tolist())
        for row in params:
            for sample in row:
                for img in sample:  # one entry per image, in the order of image_grid_hw
                    gh, gw = next(grids)
                    assert img["output_size"] == [gw * 14, gh * 14]
                    flips += bool(img.get("hflip"))
    assert flips > 0  # the geometric policy flips about half of them
    ld.state_dict()
    import pyarrow.parquet as pq

    log = pq.read_table(tmp_path / "s").to_pylist()
    assert [json.loads(r["augment_params"]) for r in log] == [b["augment_params"] for b in batches]


def test_synthetic_cap_does_not_distort_the_weights(lake_dir: Any, versions: dict[str, str]) -> None:
    """0.5 / 0.5 between a capped mostly-synthetic source and a real one is delivered as about
    0.5 / 0.5 (the capped source's skipped draws used to go to the other: ~0.29 / 0.71)."""
    from datalake.version import Lake, write_version
    from synth.shapes import shape_samples
    from tests.loader.conftest import chat_samples

    lake = Lake.open(str(lake_dir))
    both = shape_samples(160, seed=11, size=(56, 56)) + chat_samples(40, False)
    mixed = write_version(lake, "mixed2", [both[(i * 37) % 200] for i in range(200)],  # 80 % synthetic in each shard
                          shard_samples=50)
    real = write_version(lake, "real", chat_samples(200, False), shard_samples=50)
    ld = build_loader(cfg([SourceSpec(mixed.uri, 0.5, max_synthetic=0.5), SourceSpec(real.uri, 0.5)],
                          seq_len=512))
    take(ld, 40)
    m = ld.metrics()
    assert abs(m["mixture"][mixed.ref] - 0.5) <= 0.06, m["mixture"]
    assert 0.35 <= m["synthetic_share"][mixed.ref] <= 0.65


@pytest.mark.parametrize(("kw", "reason"), [({"seq_len": 16, "overlong": "skip"}, "overlong"),
                                             ({"max_synthetic": 0.0}, "synthetic cap")])
def test_a_source_that_only_skips_fails_instead_of_looping(versions: dict[str, str], kw: dict[str, Any],
                                                           reason: str) -> None:
    """Every sample overlong, or every sample capped away: a clear error naming the source and
    the reason, not an endless loop."""
    cap = kw.pop("max_synthetic", None)
    ld = build_loader(cfg([SourceSpec(versions["small"], max_synthetic=cap)], **kw))
    with pytest.raises(RuntimeError, match=rf"source small@\w+ skipped its last 256 samples in a row \({reason}"):
        next(iter(ld))
