"""The rejects of a version, for the API and the web registry's rejects browser.

A pipeline's rejects table has a row per input it did not keep (``key``, ``input``, ``outcome``
= filtered / duplicate / rejected, ``stage``, ``reason``, ``detail``, ``duplicate_of``, ``scores``);
an ingest's has ``source``, ``reason``, ``detail``. Both are read the same way here: filtered by
stage and reason, a page at a time, with the counts by stage and reason (the facets).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

__all__ = ["reject_rows"]


def reject_rows(version: Any, *, stage: str | None = None, reason: str | None = None, offset: int = 0,
                limit: int = 100) -> tuple[int, list[dict[str, Any]], dict[str, dict[str, int]]]:
    """(rows matching, the page of them, {"stage": counts, "reason": counts} over all rows)."""
    rows = version.read_rejects().to_pylist()
    facets = {"stage": dict(Counter(r.get("stage") or "ingest" for r in rows).most_common()),
              "reason": dict(Counter(r.get("reason") or "-" for r in rows).most_common())}
    match = [r for r in rows if (stage is None or (r.get("stage") or "ingest") == stage)
             and (reason is None or r.get("reason") == reason)]
    return len(match), match[offset: offset + limit], facets
