"""Best-fit packing of processed samples into ``seq_len`` rows, and batch collation.

The packer keeps a bounded buffer of samples in arrival order. A row starts with the oldest
sample (so nothing waits forever), then repeatedly takes the longest buffered sample that
still fits (oldest first among equals) until none fits. Decisions depend only on the lengths
in arrival order, so the packer's state is the list of buffered sample ids: re-processing
those samples (deterministic) restores it exactly.

A batch is ``batch_size`` rows. Per token: ``input_ids``, ``labels`` (-100 where no loss),
``position_ids`` (restarting at 0 for every packed sample), ``segment_ids`` (index of the
packed sample within its row, -1 for padding); ``cu_seqlens`` are the cumulative sample
boundaries over the flattened ``[batch_size * seq_len]`` tokens (padding counted as one
trailing segment per row, so ``cu_seqlens[-1] == batch_size * seq_len``), ready for varlen
attention; ``pixel_values`` concatenates the patches of every image in the batch in token
order with ``image_grid_hw`` giving each image's patch grid (NaViT). ``sample_keys`` lists each
row's ``dataset@version/key`` in order, ``sample_draws`` the same samples as ``[source, draw]``
(draw ``k`` of a source of ``N`` samples is in its epoch ``k // N``), ``augment_params`` the
augmentation each image got (crop box, flip, rotation, colour, ...; per row, sample, image).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Generic, TypeVar

import numpy as np

__all__ = ["BestFitPacker", "collate_rows", "PAD_ID"]

#: padding id when the caller names none; the loader passes its tokenizer's ``<|pad|>``
PAD_ID = 0
T = TypeVar("T")


class BestFitPacker(Generic[T]):
    """Rows of items whose ``len()`` sum to at most ``seq_len``."""

    def __init__(self, seq_len: int, buffer_size: int = 64) -> None:
        if buffer_size < 1:
            raise ValueError("pack buffer_size must be >= 1")
        self.seq_len, self.buffer_size = int(seq_len), int(buffer_size)
        self.buffer: list[T] = []

    @property
    def full(self) -> bool:
        return len(self.buffer) >= self.buffer_size

    def add(self, item: T) -> None:
        n = len(item)  # type: ignore[arg-type]
        if not 0 < n <= self.seq_len:
            raise ValueError(f"an item of {n} tokens cannot be packed into rows of {self.seq_len}")
        self.buffer.append(item)

    def row(self) -> list[T]:
        """Take one row from the buffer (call when full, or to drain)."""
        if not self.buffer:
            return []
        first = self.buffer.pop(0)
        row, room = [first], self.seq_len - len(first)  # type: ignore[arg-type]
        while room > 0 and self.buffer:
            best, best_len = -1, 0
            for i, it in enumerate(self.buffer):
                n = len(it)  # type: ignore[arg-type]
                if best_len < n <= room:
                    best, best_len = i, n
                    if n == room:
                        break
            if best < 0:
                break
            row.append(self.buffer.pop(best))
            room -= best_len
        return row


def collate_rows(rows: Sequence[Sequence[Any]], seq_len: int, row_keys: Sequence[Sequence[str]],
                 row_draws: Sequence[Sequence[tuple[int, int]]] | None = None, pad_id: int = PAD_ID
                 ) -> dict[str, Any]:
    """Rows of ``Processed`` items -> a batch dict of torch tensors (see the module doc)."""
    import torch

    b = len(rows)
    input_ids = np.full((b, seq_len), pad_id, dtype=np.int64)
    labels = np.full((b, seq_len), -100, dtype=np.int64)
    position_ids = np.zeros((b, seq_len), dtype=np.int64)
    segment_ids = np.full((b, seq_len), -1, dtype=np.int64)
    cu = [0]
    patches: list[np.ndarray] = []
    grids: list[tuple[int, int]] = []
    for r, row in enumerate(rows):
        pos = 0
        for s, item in enumerate(row):
            n = len(item)
            input_ids[r, pos: pos + n] = item.ids
            labels[r, pos: pos + n] = item.labels
            position_ids[r, pos: pos + n] = np.arange(n)
            segment_ids[r, pos: pos + n] = s
            pos += n
            cu.append(r * seq_len + pos)
            patches.extend(item.patches)
            grids.extend(item.grids)
        if pos < seq_len:
            cu.append((r + 1) * seq_len)
    if patches:
        pixel_values = torch.from_numpy(np.concatenate(patches))
    else:
        pixel_values = torch.zeros((0, 14 * 14 * 3), dtype=torch.uint8)
    return {
        "input_ids": torch.from_numpy(input_ids),
        "labels": torch.from_numpy(labels),
        "position_ids": torch.from_numpy(position_ids),
        "segment_ids": torch.from_numpy(segment_ids),
        "cu_seqlens": torch.tensor(cu, dtype=torch.int32),
        "pixel_values": pixel_values,
        "image_grid_hw": torch.tensor(grids, dtype=torch.int64).reshape(-1, 2),
        "sample_keys": [list(k) for k in row_keys],
        "sample_draws": [[list(d) for d in row] for row in row_draws] if row_draws is not None else None,
        # per row, per sample, per image: the augmentation parameters applied (crop, flip, ...)
        "augment_params": [[list(getattr(it, "params", [])) for it in row] for row in rows],
    }
