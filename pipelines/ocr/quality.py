"""OCR quality: character error rate against exact ground truth."""

from __future__ import annotations

import re

__all__ = ["cer", "edit_distance", "normalise"]


def normalise(text: str) -> str:
    """Whitespace-insensitive comparison: runs of spaces/newlines become one space."""
    return re.sub(r"\s+", " ", text).strip()


def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance (insertions, deletions, substitutions): rapidfuzz's bit-parallel
    implementation (pages of several thousand characters in milliseconds), or the plain
    O(len(a) * len(b)) dynamic programme without it."""
    try:
        from rapidfuzz.distance import Levenshtein
    except ImportError:  # pragma: no cover - rapidfuzz is a dependency
        return _edit_distance_dp(a, b)
    return int(Levenshtein.distance(a, b))


def _edit_distance_dp(a: str, b: str) -> int:
    if len(a) < len(b):
        a, b = b, a
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def cer(hypothesis: str, reference: str) -> float:
    """Character error rate: edit distance / reference length, after whitespace normalisation."""
    h, r = normalise(hypothesis), normalise(reference)
    return edit_distance(h, r) / max(1, len(r))
