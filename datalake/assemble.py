"""Multi-image documents from caption data, without a crawl.

Caption samples that belong together -- the same source folder, or the same tag -- are put in
order (by key) and cut into documents of ``min_images``..``max_images`` image-caption pairs
(the length seeded per group, so the same seed writes the same version). Each document is an
``interleaved`` sample: image, its caption, next image, its caption ...; it is marked
``meta.synthetic = true`` (the loader's synthetic cap applies) and names its member keys and
group. Every input is accounted for: assembled into a document, or left out with its reason
(``not_a_caption_pair``, ``group_too_small``).
"""

from __future__ import annotations

import hashlib
import posixpath
from collections import Counter
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np

from datalake.sample import Media, MediaPart, Sample, Source, TextPart

__all__ = ["GROUP_BY", "group_of", "assemble", "assemble_documents"]

GROUP_BY = ("source", "tag")


def group_of(s: Sample, by: str) -> str | None:
    """The group of a caption sample: its source's folder, or its first tag (``meta.tags`` /
    ``meta.tag``)."""
    if by == "source":
        uri = s.source.uri or ""
        return posixpath.dirname(uri.split("#", 1)[0]) or None
    tags = s.meta.get("tags") or ([s.meta["tag"]] if s.meta.get("tag") else [])
    return str(tags[0]) if tags else None


def _pair(s: Sample) -> tuple[Media, bytes, str] | None:
    images = [m for m in s.media if m.mime.startswith("image/")]
    text = s.text().strip()
    if s.kind != "caption" or len(images) != 1 or not text:
        return None
    return images[0], bytes(s.blobs[images[0].name]), text


def assemble(samples: Iterable[Sample], *, by: str = "source", min_images: int = 2, max_images: int = 6,
             seed: int = 0, left_out: Counter[str] | None = None) -> Iterator[Sample]:
    """The documents (see the module docstring); ``left_out`` counts the inputs not used, by reason."""
    if by not in GROUP_BY:
        raise ValueError(f"group by one of {list(GROUP_BY)}, not {by!r}")
    if not 1 <= min_images <= max_images:
        raise ValueError("need 1 <= min_images <= max_images")
    left = left_out if left_out is not None else Counter()
    groups: dict[str, list[Sample]] = {}
    for s in samples:
        g = group_of(s, by)
        if g is None or _pair(s) is None:
            left["not_a_caption_pair" if _pair(s) is None else f"no_{by}"] += 1
            continue
        groups.setdefault(g, []).append(s)
    for g in sorted(groups):
        members = sorted(groups[g], key=lambda s: s.key)
        # seeded by the members' keys, not the group's name: a source group is a folder path,
        # and the same files ingested from another place must give the same documents
        gid = hashlib.sha256("\n".join(s.key for s in members).encode()).hexdigest()[:10]
        rng = np.random.default_rng([seed, int(gid, 16) % (1 << 32)])
        i = j = 0
        while i < len(members):
            n = int(rng.integers(min_images, max_images + 1))
            rest = len(members) - i - n
            if 0 < rest < min_images and n + rest <= max_images:  # a short tail joins this document
                n += rest
            chunk = members[i:i + n]
            i += n
            if len(chunk) < min_images:
                left["group_too_small"] += len(chunk)
                continue
            media, content, blobs = [], [], {}
            for k, s in enumerate(chunk):
                m, data, text = _pair(s)  # type: ignore[misc]
                name = f"{k}.{m.name.rsplit('.', 1)[1]}"
                media.append(Media(name, m.mime, m.width, m.height))
                blobs[name] = data
                content += [MediaPart(k), TextPart(text)]
            yield Sample(key=f"asm-{gid}-{j:04d}", kind="interleaved", source=Source(g, chunk[0].source.license),
                         media=tuple(media), content=tuple(content), blobs=blobs,
                         meta={"synthetic": True, "generator": "assemble-captions",
                               "assembled": {"by": by, "group": g, "members": [s.key for s in chunk]}})
            j += 1


def assemble_documents(client: Any, lake: Any, ref: str, dataset: str, *, by: str = "source", min_images: int = 2,
                       max_images: int = 6, seed: int = 0) -> dict[str, Any]:
    """Write the documents assembled from version ``ref`` as a new version of ``dataset``,
    recorded as a run with ``ref`` as its input; counts: inputs, documents, images used, left
    out by reason (inputs = used + left out)."""
    from datalake.version import DatasetVersion

    info = client.resolve(ref, for_read=True)
    version = DatasetVersion.open(info.manifest_uri)
    params = {"by": by, "min_images": min_images, "max_images": max_images, "seed": seed}
    run = client.start_run("job", f"documents from {info.ref}", inputs=[info.ref],
                           spec={"type": "assemble_documents", "input": info.ref, "dataset": dataset, **params})
    left: Counter[str] = Counter()
    docs = used = 0
    try:
        with lake.writer(dataset, created={"by": "mmlake documents assemble", "run_id": run.id, "input": info.ref}) as w:
            for d in assemble(version, by=by, min_images=min_images, max_images=max_images, seed=seed, left_out=left):
                w.add(d)
                docs += 1
                used += len(d.media)
            if not docs:
                raise ValueError(f"no documents from {info.ref}: left out {dict(left)} (group by {by}; "
                                 f"a group needs at least {min_images} caption pairs)")
            out = w.commit()
    except Exception as exc:
        client.finish_run(run.id, "failed", error=f"{type(exc).__name__}: {exc}")
        raise
    counts = {"inputs": len(version), "documents": docs, "images": used, "left_out": dict(sorted(left.items()))}
    assert used + sum(left.values()) == len(version), counts  # every input accounted for
    run = client.finish_run(run.id, "succeeded", counts=counts, outputs=[out])
    return {"input": info.ref, "output": run.outputs[0], "run": run.id, **counts}
