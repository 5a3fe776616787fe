"""The rejects of a version, for the API and the web registry's rejects browser.

A pipeline's rejects table has a row per input it did not keep (``key``, ``input``, ``outcome``
= filtered / duplicate / rejected, ``stage``, ``reason``, ``detail``, ``duplicate_of``, ``scores``);
an ingest's has ``source``, ``reason``, ``detail``. Both are read the same way here: filtered by
stage and reason, a page at a time, with the counts by stage and reason (the facets).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

__all__ = ["reject_rows", "key_positions", "readmit"]


def reject_rows(version: Any, *, stage: str | None = None, reason: str | None = None, offset: int = 0,
                limit: int = 100) -> tuple[int, list[dict[str, Any]], dict[str, dict[str, int]]]:
    """(rows matching, the page of them, {"stage": counts, "reason": counts} over all rows)."""
    rows = version.read_rejects().to_pylist()
    facets = {"stage": dict(Counter(r.get("stage") or "ingest" for r in rows).most_common()),
              "reason": dict(Counter(r.get("reason") or "-" for r in rows).most_common())}
    match = [r for r in rows if (stage is None or (r.get("stage") or "ingest") == stage)
             and (reason is None or r.get("reason") == reason)]
    return len(match), match[offset: offset + limit], facets


def key_positions(version: Any, keys: set[str]) -> dict[str, int]:
    """Sample index of each of ``keys`` in ``version`` (those present), from the shard indexes."""
    out: dict[str, int] = {}
    base = 0
    for j in range(len(version.manifest.shards)):
        idx = version.shard(j).index
        for k, e in enumerate(idx.entries):
            if e.key in keys:
                out[e.key] = base + k
        base += len(idx.entries)
        if len(out) == len(keys):
            break
    return out


def readmit(reg: Any, ref: str, keys: list[str], *, actor: str | None = None) -> Any:
    """A new version of ``ref``'s dataset: its samples plus the rejected samples ``keys`` (read
    from the input versions the rejects name), with those rows gone from its rejects table.
    Recorded as a run (inputs: ``ref`` and those inputs) and in the audit. Returns the RunInfo."""
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq

    from datalake import Lake
    from registry.types import RegistryError

    if not keys or len(keys) > 10_000:
        raise RegistryError("re-admit 1 to 10000 rejected keys at a time")
    info = reg.resolve(ref, for_read=True)
    v = reg.open_version(info.ref)
    table = v.read_rejects()
    rows = table.to_pylist()
    wanted = set(keys)
    chosen = [r for r in rows if r.get("key") in wanted and r.get("input") and r.get("outcome") in ("filtered", "duplicate")]
    missing = sorted(wanted - {r["key"] for r in chosen})
    if missing:
        raise RegistryError(f"{info.ref}: not re-admittable (no filtered or duplicate reject with an input version): "
                            f"{missing[:10]}")
    by_input: dict[str, set[str]] = {}
    for r in chosen:
        by_input.setdefault(r["input"], set()).add(r["key"])
    inputs = {ref_in: reg.open_version(ref_in, for_read=False) for ref_in in by_input}
    root = info.manifest_uri.rsplit("/datasets/", 1)[0]  # the lake the version lives in
    lake = Lake.open(root)
    run = reg.start_run("job", f"re-admit {len(chosen)} into {info.dataset}", inputs=[info.ref, *inputs],
                        parameters={"readmit": sorted(wanted)[:1000], "from": info.ref}, submitted_by=actor)
    try:
        writer = lake.writer(info.dataset)
        have = set()
        for s in v:
            writer.add(s)
            have.add(s.key)
        added = 0
        for ref_in, ks in sorted(by_input.items()):
            src = inputs[ref_in]
            for k, i in sorted(key_positions(src, ks).items()):
                if k not in have:
                    writer.add(src.get(i))
                    added += 1
        rest = [r for r in rows if r not in chosen]
        if rest:
            buf = io.BytesIO()
            pq.write_table(pa.Table.from_pylist(rest, schema=table.schema), buf)
            reasons: dict[str, int] = {}
            for r in rest:
                tag = f"{r.get('outcome')}:{r.get('reason')}" if r.get("outcome") else str(r.get("reason"))
                reasons[tag] = reasons.get(tag, 0) + 1
            writer.set_rejects(buf.getvalue(), reasons)
        new = writer.commit()
    except Exception as exc:
        reg.finish_run(run.id, "failed", error=f"{type(exc).__name__}: {exc}")
        raise
    done = reg.finish_run(run.id, "succeeded", counts={"samples_in": len(v), "readmitted": added, "kept": len(v) + added},
                          outputs=[new])
    with reg.session() as s:
        reg._audit(s, actor, "version.readmit", done.outputs[0] if done.outputs else info.dataset,
                   source=info.ref, keys=len(chosen))
    return done
