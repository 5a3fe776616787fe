"""The model's wiring: pixel shuffle, media scatter checks, packing isolation, MoE balancing, eval helpers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from loader import LoaderConfig, SourceSpec, build_loader
from training.config import ModelConfig
from training.evaluate import shuffle_images, word_spans
from training.model import VLM, MediaMismatch, merge_index
from training.moe import MoE

from .conftest import TINY


def _batch(uri: str, n: int = 1) -> tuple[dict, object]:
    ld = build_loader(LoaderConfig([SourceSpec(uri)], seq_len=256, batch_size=2, num_workers=0, augment=None,
                                   max_pixels=112 * 112, pack_buffer=8))
    it = iter(ld)
    for _ in range(n):
        b = next(it)
    b["cu_seqlens_host"] = b["cu_seqlens"]
    return b, ld.tokenizer


def _model(tok: object) -> VLM:
    m = VLM(ModelConfig(**TINY["model"]), tok.media_pad)  # type: ignore[attr-defined]
    m.init_weights(0)
    return m


def test_merge_index_is_the_2x2_pixel_shuffle() -> None:
    gh, gw = 4, 6
    feats = np.arange(gh * gw)  # patch numbers in row-major order
    merged = feats[merge_index([(gh, gw), (2, 2)])[: gh * gw]].reshape(-1, 4)
    for r in range(gh // 2):
        for c in range(gw // 2):
            want = [feats[(2 * r + dr) * gw + 2 * c + dc] for dr in (0, 1) for dc in (0, 1)]
            assert merged[r * (gw // 2) + c].tolist() == want
    assert merge_index([(gh, gw), (2, 2)])[gh * gw:].tolist() == list(range(gh * gw, gh * gw + 4))


def test_pad_count_mismatch_names_the_sample(train_lake: dict[str, str]) -> None:
    batch, tok = _batch(train_lake["shapes"])
    model = _model(tok)
    ids = batch["input_ids"].clone()
    pads = (ids[0] == tok.media_pad).nonzero()  # type: ignore[attr-defined]
    ids[0, pads[0, 0]] = 100  # one pad of the first sample of row 0 removed
    with pytest.raises(MediaMismatch, match=batch["sample_keys"][0][0]):
        model({**batch, "input_ids": ids})


def test_packed_samples_do_not_see_each_other(train_lake: dict[str, str]) -> None:
    """Changing one packed sample's tokens and image leaves every other sample's loss unchanged."""
    batch, tok = _batch(train_lake["shapes"])
    model = _model(tok).eval()
    assert len(batch["sample_keys"][0]) >= 2
    seg = batch["segment_ids"][0]
    with torch.no_grad():
        base = model(batch).token_loss.view(2, -1)
        ids = batch["input_ids"].clone()
        text = (seg == 1) & (ids[0] != tok.media_pad) & (ids[0] > 10)  # type: ignore[attr-defined]
        ids[0, text] = (ids[0, text] + 7) % 5000 + 10
        pv = batch["pixel_values"].clone()
        grids = batch["image_grid_hw"].tolist()
        first = grids[0][0] * grids[0][1]
        second = grids[1][0] * grids[1][1]
        pv[first: first + second] = 255 - pv[first: first + second]  # the second image = sample 1 of row 0
        out = model({**batch, "input_ids": ids, "pixel_values": pv}).token_loss.view(2, -1)
    other = torch.ones_like(seg, dtype=torch.bool) & (seg != 1)
    assert torch.equal(out[0][other], base[0][other])
    assert torch.equal(out[1], base[1])
    assert not torch.equal(out[0][seg == 1], base[0][seg == 1])


def test_moe_bias_moves_towards_balance() -> None:
    moe = MoE(8, experts=4, top_k=1, expert_dim=8, shared=1, bias_update=0.1)
    moe.update_bias(torch.tensor([10.0, 0.0, 5.0, 5.0]))
    assert moe.bias.tolist() == pytest.approx([-0.1, 0.1, 0.0, 0.0])
    x = torch.randn(64, 8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        moe.router.weight.zero_()
        moe.router.weight[0] = 5.0  # every token prefers expert 0 by its logit ...
        moe.bias.copy_(torch.tensor([-10.0, 0.0, 0.0, 0.0]))  # ... until its bias says it is overloaded
        moe(x)
    assert int(moe.last_load[0]) < 64


def test_shuffled_images_are_a_derangement_within_grids(train_lake: dict[str, str]) -> None:
    batch, _ = _batch(train_lake["shapes"])
    sh = shuffle_images(batch)
    assert sh is not None and sh["pixel_values"].shape == batch["pixel_values"].shape
    n = int(np.prod(batch["image_grid_hw"][0].tolist()))
    blocks = batch["pixel_values"].view(-1, n, batch["pixel_values"].shape[1])
    moved = sh["pixel_values"].view_as(blocks)
    assert all(not torch.equal(moved[i], blocks[i]) for i in range(len(blocks)))
    assert sorted(map(lambda t: t.sum().item(), moved)) == sorted(map(lambda t: t.sum().item(), blocks))


def test_word_spans_find_colours_shapes_and_numbers() -> None:
    from loader.tokenizer import default_tokenizer
    from training.evaluate import _Pieces

    tok = default_tokenizer()
    ids = tok.encode("An image of a red circle at (123,456),(200,300) and a purple triangle.")
    spans = word_spans(ids, _Pieces(tok))
    found = [(c, tok.decode(ids[a: b + 1]).strip()) for c, a, b in spans]
    assert ("colour", "red") in found and ("shape", "circle") in found and ("colour", "purple") in found
    assert [w for c, w in found if c == "digit"] == ["123", "456", "200", "300"]
