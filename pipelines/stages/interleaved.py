"""Quality of interleaved documents (HTML pages, EPUB books): node-level text filtering and
document-level limits, OBELICS-style.

A text node is one line of a document's text parts (a paragraph, heading, list item, caption,
table row or code line, as ``datalake.html`` wrote them). Nodes that fail are removed from the
document (``meta.dropped_nodes`` counts them by reason); the document itself is filtered only
when what is left misses the document limits. Defaults follow the thresholds OBELICS published
where the issue names them (text node 4-1,000 words; 1-30 images and at least 10 words per
document); every threshold is a spec parameter, and ``None`` turns a check off. Image nodes
(size, aspect) are ``image_filter``'s job: it drops failing images of a document and keeps the
document (``image_filter: {min_side: 150, max_aspect: 2}`` for OBELICS' image thresholds).
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, ClassVar

from datalake.sample import Sample, TextPart, drop_media
from pipelines.stage import DedupeStage, FilterStage, Record, register
from pipelines.text import words as split_words

__all__ = ["InterleavedFilter", "RepeatedImages", "NODE_REASONS", "image_digest", "prune_images"]

NODE_REASONS = ("node_too_few_words", "node_too_many_words", "node_repetitive", "node_special_characters")


def _node_reason(line: str, c: Any) -> str | None:
    ws = split_words(line)
    if c.node_min_words is not None and len(ws) < c.node_min_words:
        return "node_too_few_words"
    if c.node_max_words is not None and len(ws) > c.node_max_words:
        return "node_too_many_words"
    if c.node_max_special_frac is not None and line:
        special = sum(1 for ch in line if not (ch.isalnum() or ch.isspace()))
        if special / len(line) > c.node_max_special_frac:
            return "node_special_characters"
    if c.node_max_dup_ngram_frac is not None and len(ws) >= 6:
        grams = [" ".join(ws[i:i + 3]) for i in range(len(ws) - 2)]
        counts = Counter(grams)
        if sum(n for n in counts.values() if n > 1) / len(grams) > c.node_max_dup_ngram_frac:
            return "node_repetitive"
    return None


@register
class InterleavedFilter(FilterStage):
    name = "interleaved_filter"

    @dataclass(frozen=True)
    class Config:
        node_min_words: int | None = 4
        node_max_words: int | None = 1000
        #: fraction of characters that are neither letters, digits nor spaces
        node_max_special_frac: float | None = 0.3
        #: fraction of a node's word 3-grams that occur more than once in it
        node_max_dup_ngram_frac: float | None = 0.5
        min_images: int | None = 1
        max_images: int | None = 30
        min_words: int | None = 10
        #: OBELICS keeps documents up to 2,000 words; a manual's chapter is longer, so off by default
        max_words: int | None = None

        def __post_init__(self) -> None:
            for k in ("node_max_special_frac", "node_max_dup_ngram_frac"):
                v = getattr(self, k)
                if v is not None and not 0 <= v <= 1:
                    raise ValueError(f"{k} must be between 0 and 1 (or null)")

    def score(self, sample: Sample) -> dict[str, Any]:
        if sample.kind != "interleaved":
            return {"applies": False}
        c = self.config
        drop: list[list[int]] = []  # [part, line] of each failing node
        reasons: Counter[str] = Counter()
        words = nodes = 0
        for i, p in enumerate(sample.content):
            if not isinstance(p, TextPart):
                continue
            for j, line in enumerate(p.text.split("\n")):
                if not line.strip():
                    continue
                nodes += 1
                why = _node_reason(line, c)
                if why:
                    reasons[why] += 1
                    drop.append([i, j])
                else:
                    words += len(split_words(line))
        return {"applies": True, "nodes": nodes, "words_kept": words, "images": len(sample.media),
                "dropped_nodes": dict(sorted(reasons.items())), "drop": drop}

    def decide(self, s: dict[str, Any]) -> str | None:
        if not s.get("applies"):
            return None
        c = self.config
        if c.min_images is not None and s["images"] < c.min_images:
            return "too_few_images"
        if c.max_images is not None and s["images"] > c.max_images:
            return "too_many_images"
        if c.min_words is not None and s["words_kept"] < c.min_words:
            return "too_few_words"
        if c.max_words is not None and s["words_kept"] > c.max_words:
            return "too_many_words"
        return None

    def prune(self, sample: Sample, scores: dict[str, Any]) -> Sample:
        if not scores.get("drop"):
            return sample
        gone: dict[int, set[int]] = {}
        for i, j in scores["drop"]:
            gone.setdefault(i, set()).add(j)
        content = []
        for i, p in enumerate(sample.content):
            if isinstance(p, TextPart) and i in gone:
                text = "\n".join(line for j, line in enumerate(p.text.split("\n")) if j not in gone[i])
                if not text.strip():
                    continue
                p = TextPart(text)
            if content and isinstance(p, TextPart) and isinstance(content[-1], TextPart):
                p = TextPart(content.pop().text + "\n" + p.text)  # two texts met where a node went
            content.append(p)
        meta = dict(sample.meta)
        meta["dropped_nodes"] = scores["dropped_nodes"]
        return dataclasses.replace(sample, content=tuple(content), meta=meta)


def image_digest(data: bytes) -> str:
    return hashlib.sha1(data, usedforsecurity=False).hexdigest()[:16]


@register
class RepeatedImages(DedupeStage):
    """Images repeated across documents -- logos, banners, navigation icons, a site's badges --
    removed from every document once they appear in more than ``max_documents`` documents
    (OBELICS: 10); the documents keep their text and their other images.

    A global stage like the dedupe stages (it cuts the pipeline into passes): each document's
    signature is the set of its images' content digests; the driver counts the documents per
    digest over the whole input and sends each affected document's digests to the next pass,
    which removes those images (``meta.dropped_parts``, reason ``repeated_image``). Its counts
    (images over the limit, documents pruned, the most repeated image's count) are the run's
    ``counts.clusters.repeated_images``. A document left with neither text nor images is
    filtered as ``only_repeated_images``."""

    name = "repeated_images"
    #: counted by the driver and applied as part removals, not clustered into duplicates
    prunes_parts: ClassVar[bool] = True

    @dataclass(frozen=True)
    class Config:
        max_documents: int = 10

        def __post_init__(self) -> None:
            if self.max_documents < 1:
                raise ValueError(f"max_documents must be >= 1, got {self.max_documents}")

    def signature(self, sample: Sample) -> Any:
        if sample.kind != "interleaved" or not sample.media:
            return None
        return sorted({image_digest(sample.blobs[m.name]) for m in sample.media if m.name in sample.blobs})

    def band_records(self, item: int, sig: Any) -> Iterable[Record]:
        return ()  # never paired: the driver counts digests

    def verify(self, a: Any, b: Any) -> bool:
        return False

    def over_limit(self, sigs: Iterable[Any]) -> tuple[set[str], Counter[str]]:
        """The digests in more than ``max_documents`` of these signatures, and every count."""
        seen: Counter[str] = Counter(h for sig in sigs if sig for h in set(sig))
        return {h for h, n in seen.items() if n > self.config.max_documents}, seen


def prune_images(sample: Sample, digests: set[str], stage: str) -> Sample | None:
    """``sample`` without its images whose digest is in ``digests`` (recorded in
    ``meta.dropped_parts``); None where nothing would be left of it."""
    drop = {i for i, m in enumerate(sample.media) if m.name in sample.blobs
            and image_digest(sample.blobs[m.name]) in digests}
    if not drop:
        return sample
    if len(drop) == len(sample.media) and not sample.text().strip():
        return None
    meta = dict(sample.meta)
    meta["dropped_parts"] = [*meta.get("dropped_parts", ()),
                             *({"stage": stage, "media": sample.media[i].name, "reason": "repeated_image"}
                               for i in sorted(drop))]
    return dataclasses.replace(drop_media(sample, drop), meta=meta)
