"""Running a pipeline spec: plan tasks, run passes on a runner, resolve duplicates, commit.

1. Inputs are resolved through the registry (``name@latest`` ...); raw URIs are ingested first
   (recorded as their own run). Each input version is cut into tasks of ``partition_size``
   samples; a key that appears in two inputs is rejected (``duplicate_key``) up front.
2. Passes run on the runner (see ``pipelines.execute``). Tasks write their rows (rejects,
   scores, dedupe items) to the lake and return counts and paths. After a pass that computed
   dedupe signatures, each dedupe stage runs *inside the engine* over those items
   (``pipelines.dedupe_lake``: bands, verified pairs, connected components, clusters) and
   writes one decision file per task; the next pass's tasks read theirs and drop every
   non-keeper as ``duplicate`` (with the key it duplicates). ``against`` versions take part
   with their stored signatures table and always win.
3. The final pass's shards are committed as the output version (manifest last), with the
   rejects table (every filtered, duplicate and rejected input with stage and reason), the
   scores table (for re-applying thresholds) and the signatures table (for dedupe against this
   version later). The run, its counts and its lineage go to the registry.

The write location is derived from the spec and the inputs' content ids, and every task
leaves a completion marker, so re-running a killed job redoes only unfinished tasks and
yields the same version digest.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import pickle
import sys
import time
from collections import Counter
from typing import Any

from datalake import DatasetVersion, Lake
from datalake.shards import ShardInfo
from datalake.stats import VersionStats
from datalake.version import commit_shards
from pipelines.execute import OUTCOME_COLUMNS, TaskSpec, run_task
from pipelines.runners import make_runner
from pipelines.spec import PipelineSpec
from pipelines.stage import DedupeStage, SpecError

__all__ = ["run_pipeline", "plan_passes"]

log = logging.getLogger("mmlake.pipelines")


def plan_passes(stages: list[Any]) -> list[tuple[tuple[int, ...], tuple[int, ...]]]:
    """[(per-sample stage indices, dedupe stage indices)] per pass; the last pass has no block."""
    passes: list[tuple[tuple[int, ...], tuple[int, ...]]] = []
    seg: list[int] = []
    block: list[int] = []
    for i, st in enumerate(stages):
        if isinstance(st, DedupeStage):
            block.append(i)
        else:
            if block:
                passes.append((tuple(seg), tuple(block)))
                seg, block = [], []
            seg.append(i)
    if block:
        passes.append((tuple(seg), tuple(block)))
        seg = []
    passes.append((tuple(seg), ()))
    return passes


def _is_uri(s: str) -> bool:
    return "://" in s or s.startswith((".", "/")) or os.path.exists(s)


def _resolve_inputs(spec: PipelineSpec, lake: Lake, client: Any,
                    progress: bool | None) -> tuple[list[tuple[str, DatasetVersion]], Any]:
    from datalake.ingest import IngestConfig
    from registry.jobs import run_ingest

    refs = [r for r in spec.inputs if not _is_uri(r)]
    raws = [r for r in spec.inputs if _is_uri(r)]
    out = []
    for ref in refs:
        info = client.resolve(ref, for_read=True)
        out.append((info.ref, DatasetVersion.open(info.manifest_uri)))
    ingested = None
    if raws:  # raw sources are ingested first, as their own recorded run
        run, ingested = run_ingest(client, lake, raws, IngestConfig(dataset=f"{spec.name}-input", **spec.ingest),
                                    progress=progress)
        info = client.get_version(run.outputs[0])
        out.append((info.ref, DatasetVersion.open(info.manifest_uri)))
    return out, ingested


def _plan_tasks(inputs: list[tuple[str, DatasetVersion]], size: int) -> tuple[list[tuple[str, tuple[Any, ...]]],
                                                                             dict[int, dict[str, Any]]]:
    tasks: list[tuple[str, tuple[Any, ...]]] = []
    drops: dict[int, dict[str, Any]] = {}
    seen: dict[str, str] = {}
    for ref, v in inputs:
        for j, info in enumerate(v.manifest.shards):
            # keys are unique within a version: only several inputs need every key (the driver's one O(samples) step)
            keys = [e.key for e in v.shard(j).index.entries] if len(inputs) > 1 else []
            for start in range(0, info.samples, size):
                t = len(tasks)
                tasks.append((ref, ("input", v.uri, j, start, min(info.samples, start + size))))
                for k in keys[start:start + size]:
                    if k in seen:
                        drops.setdefault(t, {})[k] = ("rejected", "input", "duplicate_key",
                                                      f"key {k!r} is also in {seen[k]}", None)
                    else:
                        seen[k] = ref
    return tasks, drops


def _merge_parts(store: Any, path: str, uris: list[str], columns: dict[str, Any]) -> int:
    """The tasks' table parts as one Parquet file, streamed one part at a time through a local
    temporary file (the driver holds one part, never the whole table) and uploaded with the
    store's file upload (multipart on S3); rows counted."""
    import tempfile

    import pyarrow as pa
    import pyarrow.parquet as pq

    from pipelines.dedupe_lake import _table

    schema = pa.schema([(c, t) for c, t in columns.items()])
    n = 0
    with tempfile.TemporaryDirectory(prefix="mmlake-merge-") as tmp:
        local = os.path.join(tmp, "part.parquet")
        with pq.ParquetWriter(local, schema) as w:
            for uri in uris:
                table = _table(uri).select(list(columns)).cast(schema)
                n += table.num_rows
                w.write_table(table)
                del table
        if n:
            store.put_file(path, local)
    return n


def run_pipeline(spec: PipelineSpec, lake: Lake, client: Any, *, progress: bool | None = None,
                 runner: Any = None, on_pass: Any = None, run_id: str | None = None) -> dict[str, Any]:
    """Run ``spec``; returns the summary (``run_id``, ``output``, ``inputs``, ``kept``,
    ``filtered``, ``duplicates``, ``rejected`` ...)."""
    import pyarrow as pa

    stages = spec.build()
    passes = plan_passes(stages)
    collected = None  # a collected source (pipelines.sources): the tasks make the samples
    if spec.source:
        from pipelines.sources import plan_source, resolve_source

        collected = resolve_source(spec.source, spec.inputs)
        inputs, ingested = [], None
        write_id = spec.fingerprint([collected["digest"]])
        label = spec.inputs[0] if len(spec.inputs) == 1 else f"{len(spec.inputs)} URLs"
        tasks, drops = [(label, src) for src in plan_source(collected, spec.partition_size, spec.seed)], {}
    else:
        inputs, ingested = _resolve_inputs(spec, lake, client, progress)
        write_id = spec.fingerprint([v.manifest.digest for _, v in inputs])
        tasks, drops = _plan_tasks(inputs, spec.partition_size)
    reuse_uri = None
    if spec.reuse_scores:
        prev = client.open_version(spec.reuse_scores, for_read=False)
        if "scores" not in prev.manifest.extras:
            raise SpecError(f"reuse_scores: {spec.reuse_scores} has no stored scores (it was not made by a pipeline)")
        reuse_uri = prev.store.url(prev.manifest.extras["scores"])
    against: list[tuple[str, str]] = []  # (ref, signatures table URI) of reference versions
    for ref in spec.against:
        v = client.open_version(ref, for_read=False)
        info = client.resolve(ref, for_read=False)
        if "signatures" not in v.manifest.extras:
            raise SpecError(f"against: {ref} has no stored signatures (only pipeline outputs with dedupe stages do)")
        against.append((info.ref, v.store.url(v.manifest.extras["signatures"])))
    env = {k: v for k, v in os.environ.items() if k.startswith(("MMLAKE_", "AWS_"))}
    if run_id is not None:  # submitted as a job: the queued run now starts
        run = client.mark_running(run_id)
    else:
        run = client.start_run("pipeline", spec.name, inputs=[ref for ref, _ in inputs], spec=spec.to_json(),
                               parameters={"runner": spec.runner, **spec.runner_options, "write_id": write_id,
                                           # what each stage ran with: resolved servers, models, tool versions
                                           "stages": [st.describe() for st in spec.build()],
                                           **({"source": {**spec.source, "input": list(spec.inputs),
                                                          "digest": collected["digest"]}} if collected else {})})
    own_runner = runner is None
    try:
        runner = runner or make_runner(spec.runner, spec.runner_options, progress)
    except BaseException as exc:  # a runner that cannot start: the run is failed, not left running
        client.finish_run(run.id, "failed", error=f"{type(exc).__name__}: {exc}")
        raise
    try:
        store = lake.dataset_store(spec.output)
        parts: dict[str, list[str]] = {"outcomes": [], "scores": [], "signatures": []}  # URIs, in task order
        tally: Counter[str] = Counter()  # outcome:reason -> samples
        stage_tally: Counter[str] = Counter()  # stage|outcome:reason -> samples
        stage_in: Counter[str] = Counter()
        stage_s: dict[str, float] = {}
        cluster_stats: dict[str, Any] = {}
        warned: dict[str, int] = {}
        sources: list[tuple[Any, ...]] = [src for _, src in tasks]
        computed = resumed = scored = 0
        results: list[dict[str, Any]] = []
        first: list[dict[str, Any]] = []  # pass 1's results: what a collected source made
        tables: dict[int, tuple[str, ...]] = {}  # task -> the previous block's decision files
        prev_items: list[str | None] = [None] * len(tasks)
        for k, (seg, block) in enumerate(passes):
            final = k == len(passes) - 1
            specs = [TaskSpec(task=i, pass_no=k, lake_uri=lake.uri, output=spec.output, write_id=write_id,
                              stages=spec.stages, segment=seg, block=block, source=sources[i], final=final,
                              input_ref=tasks[i][0], drop=drops.get(i, {}), reuse_scores=reuse_uri, env=env,
                              drop_tables=tables.get(i, ()), prev_items=prev_items[i])
                     for i in range(len(tasks))]
            results = runner.map_tasks(run_task, specs, desc=f"{spec.name} pass {k + 1}/{len(passes)}")
            first = first or results
            computed += sum(not r["resumed"] for r in results)
            resumed += sum(bool(r["resumed"]) for r in results)
            scored += sum(r["scored"] for r in results if not r["resumed"])
            for r in results:
                tally.update(r["tally"])
                stage_tally.update(r.get("stage_tally") or {})
                stage_in.update(r.get("stage_in") or {})
                for name, sec in (r.get("stage_seconds") or {}).items():
                    stage_s[name] = stage_s.get(name, 0.0) + sec
                for what, uri in r["parts"].items():
                    parts[what].append(uri)
                for msg, n in (r.get("warnings") or {}).items():
                    warned[msg] = warned.get(msg, 0) + n
            if on_pass:
                on_pass(k, results)
            drops, tables = {}, {}
            sources = [("staged", r["shard"]) if r["shard"] else ("staged", None) for r in results]
            prev_items = [r.get("items_at") for r in results]
            if block:
                drops, tables, cstats = _resolve_duplicates(runner, stages, block, spec, results, tasks, against,
                                                            store, write_id, k, stage_s)
                cluster_stats.update(cstats)
        kept_shards = [ShardInfo.from_json(r["shard"]) for r in results if r["shard"]]
        stats = VersionStats()
        for r in results:
            stats.merge(VersionStats.from_json(r["stats"]))
        n_in = sum(r["inputs"] for r in first) if collected else sum(len(v) for _, v in inputs)
        counts = _summarise(tally, sum(r["kept"] for r in results), n_in)
        if collected:  # the collector's statistics: screens per platform, targets, rejects by reason
            source_stats: Counter[str] = Counter()
            for r in first:
                source_stats.update(r.get("source_stats") or {})
            counts["stats"] = dict(sorted(source_stats.items()))
        if warned:  # counted in the tasks, said once here
            counts["warnings"] = dict(sorted(warned.items(), key=lambda kv: -kv[1]))
            for msg, n in list(counts["warnings"].items())[:5]:
                log.warning("%s: %d x %s", spec.name, n, msg)
        if cluster_stats:  # per dedupe stage: clusters, duplicates, largest cluster, farthest member
            counts["clusters"] = cluster_stats
        counts["stages"] = _stage_counts(stages, stage_in, stage_s, stage_tally)
        if counts["kept"] == 0 and counts["samples_in"] > 0 and not spec.allow_empty:
            raise ValueError(f"pipeline {spec.name} kept 0 of {counts['samples_in']} samples (filtered "
                             f"{counts['filtered']}, duplicates {counts['duplicates']}, rejected {counts['rejected']}); "
                             "nothing was registered. Loosen the thresholds, or set allow_empty: true in the spec")
        if ingested is not None:  # raw inputs: the ingest's rejects are this job's rejects too
            counts["samples_in"] += sum(ingested.rejected.values())
            counts["rejected"] = dict(sorted((Counter(counts["rejected"]) + Counter(ingested.rejected)).items()))
            counts["ingest"] = {"inputs": ingested.inputs, "ingested": ingested.ingested, "rejected": ingested.rejected}
        prefix = f"shards/{write_id}"
        rejects = None
        extras: dict[str, str] = {}
        n_out = _merge_parts(store, f"{prefix}/rejects.parquet", parts["outcomes"], {c: pa.string() for c in OUTCOME_COLUMNS})
        if n_out:
            rejects = {"path": f"{prefix}/rejects.parquet", "count": n_out, "reasons": dict(sorted(tally.items()))}
        if _merge_parts(store, f"{prefix}/scores.parquet", parts["scores"],
                        {"key": pa.string(), "stage": pa.string(), "scores": pa.string()}):
            extras["scores"] = f"{prefix}/scores.parquet"
        if _merge_parts(store, f"{prefix}/signatures.parquet", parts["signatures"],
                        {"key": pa.string(), "sigs": pa.binary()}):
            extras["signatures"] = f"{prefix}/signatures.parquet"
        version, _existed = commit_shards(store, spec.output, kept_shards, stats, rejects=rejects, extras=extras,
                                          created={"by": f"mmlake run {spec.name}", "run_id": run.id,
                                                   "write_id": write_id})
        for k in range(len(passes)):  # staged passes and parts are no longer needed once the version exists
            for path in list(store.list(f"{prefix}/pass{k}")):
                store.delete(path)
        for path in list(store.list(f"{prefix}/parts")):
            store.delete(path)
    except BaseException as exc:
        try:
            if isinstance(exc, (KeyboardInterrupt, Cancelled)):  # SIGINT / SIGTERM: workers are stopped below
                client.finish_run(run.id, "cancelled", error=f"cancelled by {exc or 'SIGINT'}")
            else:
                client.finish_run(run.id, "failed", error=f"{type(exc).__name__}: {exc}")
        finally:
            if own_runner and isinstance(exc, (KeyboardInterrupt, Cancelled)):
                getattr(runner, "terminate", runner.close)()
                own_runner = False
            raise
    finally:
        if own_runner:
            runner.close()
        if "synth.gui.browser" in sys.modules:  # tasks run in this process (local, one worker) left a browser
            sys.modules["synth.gui.browser"].close_shared()
    done = client.finish_run(run.id, "succeeded", counts=counts, outputs=[version.uri])
    return {"run_id": run.id, "output": done.outputs[0], "version": version.manifest.version,
            "manifest": version.uri, "inputs": list(spec.inputs) if collected else [ref for ref, _ in inputs],
            **counts, "runner": spec.runner,
            "tasks": {"computed": computed, "resumed": resumed}, "scored": scored}


class Cancelled(BaseException):
    """Raised in the driver by SIGTERM (``cancel_on_signals``): the run is recorded ``cancelled``."""


def cancel_on_signals() -> None:
    """SIGTERM (and SIGINT) stop a run cleanly: workers are terminated, the run is recorded
    ``cancelled`` in the registry, the process exits non-zero."""
    import signal

    def handler(signum: int, _frame: Any) -> None:
        raise Cancelled(signal.Signals(signum).name)

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


def _summarise(tally: Counter[str], kept: int, n_inputs: int) -> dict[str, Any]:
    filtered: Counter[str] = Counter()
    rejected: Counter[str] = Counter()
    duplicates = 0
    for k, n in tally.items():
        outcome, _, reason = k.partition(":")
        if outcome == "filtered":
            filtered[reason] += n
        elif outcome == "rejected":
            rejected[reason] += n
        elif outcome == "duplicate":
            duplicates += n
    total = kept + sum(filtered.values()) + sum(rejected.values()) + duplicates
    if total != n_inputs:  # an internal invariant: every input is accounted for exactly once
        raise AssertionError(f"accounting does not close: {total} outcomes for {n_inputs} inputs")
    return {"samples_in": n_inputs, "kept": kept, "filtered": dict(sorted(filtered.items())),
            "duplicates": duplicates, "rejected": dict(sorted(rejected.items()))}


def _stage_counts(stages: list[Any], stage_in: Counter[str], stage_s: dict[str, float],
                  stage_tally: Counter[str]) -> dict[str, Any]:
    """Per stage, in pipeline order: samples in, samples out, seconds (summed over the tasks,
    plus the driver's and the engine's time deciding a dedupe stage) and what it removed by
    outcome and reason. ``out`` is ``in`` less what the stage removed, so each stage's ``in``
    is the previous one's ``out``; a duplicate is counted at its dedupe stage even though the
    next pass drops it."""
    from pipelines.stage import DedupeStage

    out: dict[str, Any] = {}
    prev: int | None = None
    for st in stages:
        removed = {k.partition("|")[2]: n for k, n in stage_tally.items() if k.partition("|")[0] == st.name}
        # a block of dedupe stages signs the same samples, then decides stage after stage over
        # what the one before it kept: that is what such a stage sees
        n_in = prev if isinstance(st, DedupeStage) and prev is not None else stage_in.get(st.name, 0)
        prev = n_in - sum(removed.values())
        out[st.name] = {"in": n_in, "out": prev, "seconds": round(stage_s.get(st.name, 0.0), 3),
                        "removed": dict(sorted(removed.items()))}
    return out


def _resolve_duplicates(runner: Any, stages: list[Any], block: tuple[int, ...], spec: PipelineSpec,
                        results: list[dict[str, Any]], tasks: list[tuple[str, tuple[Any, ...]]],
                        against: list[tuple[str, str]], store: Any, write_id: str, pass_no: int,
                        stage_s: dict[str, float]
                        ) -> tuple[dict[int, dict[str, Any]], dict[int, tuple[str, ...]], dict[str, Any]]:
    """Run the block's dedupe stages in order on the runner, over the items the tasks wrote to
    the lake. Returns the part removals decided here (per task), each task's decision files for
    the next pass and the stages' statistics -- the decisions themselves stay in the lake."""
    from pipelines.dedupe_lake import DedupeJob, ItemPart, count_rows

    own: list[ItemPart] = []
    base = 0
    for r in results:
        if r["items"]:
            own.append(ItemPart(r["items_at"], r["task"], base, tasks[r["task"]][0]))
        base += r["items"]
    refs: list[ItemPart] = []
    for ref, uri in against:
        refs.append(ItemPart(uri, -1, base, ref))
        base += count_rows(uri)
    decisions: dict[int, dict[str, Any]] = {}
    tables: dict[int, list[str]] = {}
    cluster_stats: dict[str, Any] = {}
    for pos, i in enumerate(block):
        st = stages[i]
        t0 = time.perf_counter()
        if getattr(st, "prunes_parts", False):  # counted here, applied as part removals by the next pass
            decisions_i, cluster_stats[st.name] = _repeated_parts(st, own, tables)
            for task, d in decisions_i.items():
                decisions.setdefault(task, {}).update(d)
        else:
            parts = [dataclasses.replace(p, removed=tuple(tables.get(p.task, ()))) for p in own] + refs
            job = DedupeJob(stage=spec.stages[i], parts=tuple(parts),
                            out=store.url(f"shards/{write_id}/pass{pass_no}/dups-{pos:02d}"))
            files, cluster_stats[st.name] = runner.dedupe(job)
            for task, uri in files.items():
                tables.setdefault(task, []).append(uri)
        stage_s[st.name] = stage_s.get(st.name, 0.0) + time.perf_counter() - t0
    return decisions, {t: tuple(u) for t, u in tables.items()}, cluster_stats


def _repeated_parts(st: Any, own: list[Any], tables: dict[int, list[str]]
                    ) -> tuple[dict[int, dict[str, Any]], dict[str, Any]]:
    """Images repeated across more than ``max_documents`` documents (counted in the driver over
    the image hashes: one set of hashes per document)."""
    from pipelines.dedupe_lake import read_nodes

    docs: list[tuple[int, str, Any]] = []
    for p in own:
        df = read_nodes(dataclasses.replace(p, removed=tuple(tables.get(p.task, ()))), st.name)
        docs.extend((task, key, pickle.loads(sig)) for task, key, sig in zip(df["task"], df["key"], df["sig"], strict=True))
    over, seen = st.over_limit(sig for _, _, sig in docs)
    decisions: dict[int, dict[str, Any]] = {}
    pruned = 0
    for task, key, sig in docs:
        hit = sorted(set(sig or ()) & over)
        if hit:
            pruned += 1
            decisions.setdefault(task, {})[key] = (
                "prune", st.name, "repeated_image", f"{len(hit)} image(s) in more than "
                f"{st.config.max_documents} documents", tuple(hit))
    return decisions, {"repeated_images": len(over), "documents_pruned": pruned,
                       "most_repeated": max(seen.values(), default=0)}
