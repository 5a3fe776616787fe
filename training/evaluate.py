"""Does the model use its images? Held-out caption loss with the true images and with shuffled ones.

On held-out samples of a grounded-caption dataset (``synth.shapes``: coloured shapes with
their boxes in the caption, rendered as 0-1000 coordinates), the same batches are scored
twice: with each sample's own image, and with the images permuted across samples (a
derangement among images of the same patch grid, so every token count stays the same). A
model that reads its images has a clearly lower loss with the true ones. Next-token accuracy
is reported on the words that only the image can tell -- colour words, shape words and the
numbers of the rendered coordinates: a word counts as right when the model predicts every one
of its tokens (teacher-forced).
"""

from __future__ import annotations

import bisect
import re
from collections import defaultdict
from dataclasses import replace
from typing import Any

import torch

from training.model import VLM

__all__ = ["shuffle_images", "evaluate_vision", "word_spans"]

COLOUR_WORDS = ("red", "green", "blue", "yellow", "purple", "orange", "white", "black")
SHAPE_WORDS = ("circle", "square", "triangle")


def shuffle_images(batch: dict[str, Any]) -> dict[str, Any] | None:
    """The batch with every image's patches replaced by another image's of the same grid (a
    cyclic shift within each grid group); None when no group has two images."""
    grids = [tuple(g) for g in batch["image_grid_hw"].tolist()]
    sizes = [gh * gw for gh, gw in grids]
    starts = [0]
    for n in sizes:
        starts.append(starts[-1] + n)
    groups: dict[tuple[int, int], list[int]] = defaultdict(list)
    for i, g in enumerate(grids):
        groups[g].append(i)
    src = list(range(len(grids)))
    moved = False
    for members in groups.values():
        if len(members) > 1:
            moved = True
            for j, i in enumerate(members):
                src[i] = members[(j + 1) % len(members)]
    if not moved:
        return None
    pv = batch["pixel_values"]
    blocks = [pv[starts[s]: starts[s + 1]] for s in src]
    return {**batch, "pixel_values": torch.cat(blocks) if blocks else pv}


_WORD_RE = re.compile(r"\b(" + "|".join(COLOUR_WORDS) + r")\b|\b(" + "|".join(SHAPE_WORDS) + r")\b|(\d+)")


class _Pieces:
    """Token id -> its text, cached (byte-level BPE: ASCII tokens decode on their own)."""

    def __init__(self, tokenizer: Any) -> None:
        self.tok, self.cache = tokenizer, {}

    def __call__(self, tid: int) -> str:
        s = self.cache.get(tid)
        if s is None:
            s = self.cache[tid] = self.tok.decode([tid])
        return s


def word_spans(ids: list[int], pieces: _Pieces) -> list[tuple[str, int, int]]:
    """``(class, first_token, last_token)`` of every colour word, shape word and number in a
    token sequence (tokens that straddle a word's edge count as part of it)."""
    text, starts = [], []
    pos = 0
    for t in ids:
        p = pieces(t)
        starts.append(pos)
        text.append(p)
        pos += len(p)
    joined = "".join(text)
    out = []
    for m in _WORD_RE.finditer(joined):
        cls = "colour" if m.group(1) else "shape" if m.group(2) else "digit"
        a = bisect.bisect_right(starts, m.start()) - 1
        b = bisect.bisect_right(starts, m.end() - 1) - 1
        out.append((cls, a, b))
    return out


CLASS_NAMES = ("colour", "shape", "digit")


@torch.no_grad()
def _score(model: VLM, batch: dict[str, Any], pieces: _Pieces, special: set[int]) -> dict[str, tuple[float, float]]:
    """Loss sum and count; per class: words whose every token the model predicts (teacher-forced)."""
    o = model(batch, return_logits=True)
    pred = o.logits.argmax(-1).cpu()
    target = o.target.cpu()
    out = {"loss": (float(o.loss_sum), float(o.tokens))}
    counts = {c: [0.0, 0.0] for c in CLASS_NAMES}
    ids = batch["input_ids"].cpu()
    seq_len = ids.shape[1]
    cu = batch["cu_seqlens_host"].tolist()
    flat = ids.reshape(-1).tolist()
    for a, b in zip(cu[:-1], cu[1:], strict=True):
        seg = flat[a:b]
        text_ids = [t if t not in special else 0 for t in seg]
        for cls, i, j in word_spans(text_ids, pieces):
            if i == 0 or (a + i) % seq_len == 0:
                continue
            rng = slice(a + i - 1, a + j)  # predictions of tokens i..j come from positions i-1..j-1
            if bool((target[rng] < 0).any()):
                continue  # not a loss span (e.g. a user turn)
            counts[cls][1] += 1
            counts[cls][0] += float(bool((pred[rng] == target[rng]).all()))
    out.update({c: (v[0], v[1]) for c, v in counts.items()})
    return out


def evaluate_vision(model: VLM, loader: Any, batches: int, device: torch.device, amp: Any) -> dict[str, Any]:
    """Mean held-out loss and accuracies with true and with shuffled images."""
    from training.loop import _to_device

    tok = loader.tokenizer
    pieces = _Pieces(tok)
    special = {tok.eot, tok.im_start, tok.im_end, tok.media_start, tok.media_pad, tok.media_end}
    acc: dict[str, dict[str, list[float]]] = {"true": defaultdict(lambda: [0.0, 0.0]),
                                              "shuffled": defaultdict(lambda: [0.0, 0.0])}
    was = model.training
    model.eval()
    n = 0
    try:
        for batch in loader:
            shuffled = shuffle_images(batch)
            if shuffled is None:
                continue
            for name, b in (("true", batch), ("shuffled", shuffled)):
                with amp:
                    scores = _score(model, _to_device(b, device), pieces, special)
                for k, (num, den) in scores.items():
                    acc[name][k][0] += num
                    acc[name][k][1] += den
            n += 1
            if n >= batches:
                break
    finally:
        model.train(was)
    res: dict[str, Any] = {"batches": n}
    for name, d in acc.items():
        res[name] = {("loss" if k == "loss" else f"{k}_acc"): (num / den if den else None) for k, (num, den) in d.items()}
        res[name]["tokens"] = {k: int(den) for k, (_num, den) in d.items()}
    if n:
        res["loss_gap"] = res["shuffled"]["loss"] - res["true"]["loss"]
    return res


def eval_loader(cfg: Any, dataset: str) -> Any:
    """A deterministic loader over the held-out ``dataset`` (no augmentation, one process)."""
    from loader import SourceSpec, build_loader
    from training.loop import loader_config

    if cfg.data.lake and "://" not in dataset and not dataset.endswith(".json"):
        import os

        from datalake.version import Lake

        dataset = Lake.open(os.path.expandvars(cfg.data.lake)).manifest_uri(dataset)
    lc = loader_config(cfg)
    lc = replace(lc, sources=[SourceSpec(dataset)], augment=None, num_workers=0, schedule=None, seed=12345)
    return build_loader(lc)
