"""The Sample record: the one type that flows from ingest through pipelines to the loader.

A sample is stored as WebDataset members sharing a key: ``<key>.json`` (this record) and its
media in original bytes (``<key>.0.jpg``, ``<key>.mp4``, ...). The record holds what the media
are (``media``), the ordered content (``content`` parts, or ``messages`` for conversations),
geometry tied to a media item in **pixel coordinates of the original media** (``annotations``),
where it came from (``source``) and quality signals (``meta``).

Text never holds coordinates: it refers to geometry by placeholder (``{box:3}``, ``{point:0}``,
``{polygon:1}``, the index into ``annotations``; ``{action:2}`` for a GUI action at a point, see
:mod:`datalake.actions`; ``{segment:4}`` for a video span, rendered as its timestamps), rendered
to numbers at tokenization time, after augmentation has moved the geometry. Validation rejects a placeholder pointing nowhere.

Every ``Sample`` is validated when constructed, so an invalid one cannot exist; the errors
name the sample key and the field path, e.g.
``sample 'abc': annotations[2].xyxy: x1=1200 is outside media 0 (width 1024)``.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

__all__ = [
    "SCHEMA_VERSION",
    "KINDS",
    "ROLES",
    "GEOMETRY_TYPES",
    "GEOMETRY_FIELD",
    "Kind",
    "Source",
    "Media",
    "TextPart",
    "drop_media",
    "MediaPart",
    "Part",
    "Message",
    "Annotation",
    "Sample",
    "SampleError",
    "PLACEHOLDER_RE",
    "validate_key",
]

SCHEMA_VERSION = 1

Kind = Literal["caption", "interleaved", "ocr", "knowledge", "agent", "video", "text", "sft"]
Role = Literal["system", "user", "assistant", "tool"]
GeometryType = Literal["box", "point", "polygon", "segment"]

KINDS: tuple[str, ...] = get_args(Kind)
ROLES: tuple[str, ...] = get_args(Role)
GEOMETRY_TYPES: tuple[str, ...] = get_args(GeometryType)
#: which geometry field each annotation type carries (``segment``: none, only t0/t1)
GEOMETRY_FIELD: dict[str, str | None] = {"box": "xyxy", "point": "xy", "polygon": "points", "segment": None}

KEY_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_\-]{0,199}$")
MEDIA_NAME_RE = re.compile(r"^[a-z0-9]+(\.[a-z0-9]+)*$")
PLACEHOLDER_RE = re.compile(r"\{(box|point|polygon|action|segment):(\d+)\}")


class SampleError(ValueError):
    """A record that breaks the contract; the message names the sample key and the field."""

    def __init__(self, key: str, path: str, message: str) -> None:
        self.key, self.path, self.reason = key, path, message
        super().__init__(f"sample {key!r}: {path}: {message}")


def validate_key(key: object) -> str:
    """Return ``key`` if it is a valid sample key (no dots or slashes: WebDataset splits on them)."""
    if not isinstance(key, str) or not KEY_RE.match(key):
        raise SampleError(
            str(key),
            "key",
            "must be 1-200 characters of letters, digits, '_' or '-', starting with a letter or "
            "digit (no dots or slashes: WebDataset splits member names on them)",
        )
    return key


@dataclass(frozen=True)
class Source:
    """Where a sample came from: an origin URI and, when known, its licence."""

    uri: str
    license: str | None = None


@dataclass(frozen=True)
class Media:
    """One media item. ``name`` is the member suffix in the shard (``0.jpg`` -> ``<key>.0.jpg``)."""

    name: str
    mime: str
    width: int
    height: int
    duration_s: float | None = None
    fps: float | None = None


@dataclass(frozen=True)
class TextPart:
    text: str


@dataclass(frozen=True)
class MediaPart:
    media: int


Part = TextPart | MediaPart


@dataclass(frozen=True)
class Message:
    role: Role
    content: tuple[Part, ...]


@dataclass(frozen=True)
class Annotation:
    """Geometry on media item ``media``, in pixel coordinates of the original media.

    ``type`` decides which geometry field is set: ``box`` -> ``xyxy``, ``point`` -> ``xy``,
    ``polygon`` -> ``points``; ``segment`` has no geometry, only ``t0``/``t1`` (a video span).
    """

    media: int
    type: GeometryType
    xyxy: tuple[float, float, float, float] | None = None
    xy: tuple[float, float] | None = None
    points: tuple[tuple[float, float], ...] | None = None
    label: str | None = None
    text: str | None = None
    score: float | None = None
    role: str | None = None
    action: str | None = None
    t0: float | None = None
    t1: float | None = None
    attrs: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class Sample:
    """One training example. ``blobs`` maps media names to original bytes and is not part of
    the JSON record (it travels as the other tar members)."""

    key: str
    kind: Kind
    source: Source
    media: tuple[Media, ...] = ()
    content: tuple[Part, ...] = ()
    messages: tuple[Message, ...] = ()
    annotations: tuple[Annotation, ...] = ()
    meta: Mapping[str, Any] = field(default_factory=dict)
    blobs: Mapping[str, bytes] = field(default_factory=dict, repr=False, metadata={"json": False})

    def __post_init__(self) -> None:
        _check_sample(self)

    # -- JSON -----------------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        """The record as a JSON-ready dict, in the exact shape of the published schema."""
        out: dict[str, Any] = {
            "schema": SCHEMA_VERSION,
            "key": self.key,
            "kind": self.kind,
            "source": _drop_none({"uri": self.source.uri, "license": self.source.license}),
            "media": [_drop_none(m.__dict__) for m in self.media],
            "content": [_part_json(p) for p in self.content],
        }
        if self.messages:
            out["messages"] = [
                {"role": m.role, "content": [_part_json(p) for p in m.content]} for m in self.messages
            ]
        out["annotations"] = [_annotation_json(a) for a in self.annotations]
        out["meta"] = dict(self.meta)
        return out

    def to_json_bytes(self) -> bytes:
        return json.dumps(self.to_json(), ensure_ascii=False, separators=(",", ":")).encode("utf-8")

    @classmethod
    def from_json(cls, record: Mapping[str, Any] | str | bytes, blobs: Mapping[str, bytes] | None = None,
                  key_hint: str | None = None) -> Sample:
        """Parse and validate a record. Raises :class:`SampleError` naming key and field."""
        if isinstance(record, (str, bytes)):
            try:
                record = json.loads(record)
            except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                raise SampleError(key_hint or "?", "json", f"not valid JSON ({exc})") from None
        return _Parser(record, key_hint).sample(blobs or {})

    # -- helpers ----------------------------------------------------------------------------
    def text(self) -> str:
        """All text of the sample (content and messages), joined by newlines."""
        parts = [p.text for p in self.content if isinstance(p, TextPart)]
        for m in self.messages:
            parts.extend(p.text for p in m.content if isinstance(p, TextPart))
        return "\n".join(parts)


# ---------------------------------------------------------------------------------------------
# serialisation helpers


def _drop_none(d: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if v is not None}


def _part_json(p: Part) -> dict[str, Any]:
    return {"text": p.text} if isinstance(p, TextPart) else {"media": p.media}


def _annotation_json(a: Annotation) -> dict[str, Any]:
    d: dict[str, Any] = {"media": a.media, "type": a.type}
    if a.xyxy is not None:
        d["xyxy"] = list(a.xyxy)
    if a.xy is not None:
        d["xy"] = list(a.xy)
    if a.points is not None:
        d["points"] = [list(p) for p in a.points]
    for name in ("label", "text", "score", "role", "action", "t0", "t1"):
        v = getattr(a, name)
        if v is not None:
            d[name] = v
    if a.attrs:
        d["attrs"] = dict(a.attrs)
    return d


# ---------------------------------------------------------------------------------------------
# parsing (structure and types) -- semantic checks live in _check_sample


class _Parser:
    def __init__(self, record: Any, key_hint: str | None) -> None:
        self.record = record
        self.key = key_hint or "?"

    def fail(self, path: str, message: str) -> SampleError:
        return SampleError(self.key, path, message)

    def obj(self, v: Any, path: str) -> Mapping[str, Any]:
        if not isinstance(v, Mapping):
            raise self.fail(path, f"expected an object, got {type(v).__name__}")
        return v

    def lst(self, v: Any, path: str) -> list[Any]:
        if not isinstance(v, list):
            raise self.fail(path, f"expected a list, got {type(v).__name__}")
        return v

    def string(self, v: Any, path: str, optional: bool = False) -> str | None:
        if v is None and optional:
            return None
        if not isinstance(v, str):
            raise self.fail(path, f"expected a string, got {type(v).__name__}")
        return v

    def integer(self, v: Any, path: str) -> int:
        if isinstance(v, bool) or not isinstance(v, int):
            raise self.fail(path, f"expected an integer, got {type(v).__name__}")
        return v

    def number(self, v: Any, path: str, optional: bool = False) -> float | None:
        if v is None and optional:
            return None
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise self.fail(path, f"expected a finite number, got {v!r}")
        return v

    def unknown(self, d: Mapping[str, Any], allowed: set[str], path: str) -> None:
        extra = sorted(set(d) - allowed)
        if extra:
            raise self.fail(path, f"unknown field(s) {extra}; allowed: {sorted(allowed)}")

    def sample(self, blobs: Mapping[str, bytes]) -> Sample:
        r = self.obj(self.record, "record")
        if isinstance(r.get("key"), str):
            self.key = r["key"]
        self.unknown(r, {"schema", "key", "kind", "source", "media", "content", "messages",
                         "annotations", "meta"}, "record")
        schema = r.get("schema", SCHEMA_VERSION)
        if schema != SCHEMA_VERSION:
            raise self.fail("schema", f"schema version {schema!r} is not supported (this is {SCHEMA_VERSION})")
        for req in ("key", "kind", "source"):
            if req not in r:
                raise self.fail(req, "is required")
        src = self.obj(r["source"], "source")
        self.unknown(src, {"uri", "license"}, "source")
        source = Source(uri=self.string(src.get("uri"), "source.uri"),  # type: ignore[arg-type]
                        license=self.string(src.get("license"), "source.license", optional=True))
        media = tuple(self.media(m, f"media[{i}]") for i, m in enumerate(self.lst(r.get("media", []), "media")))
        content = self.parts(r.get("content", []), "content")
        messages = tuple(self.message(m, f"messages[{i}]")
                         for i, m in enumerate(self.lst(r.get("messages", []), "messages")))
        annotations = tuple(self.annotation(a, f"annotations[{i}]")
                            for i, a in enumerate(self.lst(r.get("annotations", []), "annotations")))
        meta = self.obj(r.get("meta", {}), "meta")
        return Sample(key=r["key"], kind=r["kind"], source=source, media=media, content=content,
                      messages=messages, annotations=annotations, meta=dict(meta), blobs=dict(blobs))

    def media(self, v: Any, path: str) -> Media:
        d = self.obj(v, path)
        self.unknown(d, {"name", "mime", "width", "height", "duration_s", "fps"}, path)
        for req in ("name", "mime", "width", "height"):
            if req not in d:
                raise self.fail(f"{path}.{req}", "is required")
        return Media(name=self.string(d["name"], f"{path}.name"),  # type: ignore[arg-type]
                     mime=self.string(d["mime"], f"{path}.mime"),  # type: ignore[arg-type]
                     width=self.integer(d["width"], f"{path}.width"),
                     height=self.integer(d["height"], f"{path}.height"),
                     duration_s=self.number(d.get("duration_s"), f"{path}.duration_s", optional=True),
                     fps=self.number(d.get("fps"), f"{path}.fps", optional=True))

    def parts(self, v: Any, path: str) -> tuple[Part, ...]:
        out: list[Part] = []
        for i, p in enumerate(self.lst(v, path)):
            d = self.obj(p, f"{path}[{i}]")
            if set(d) == {"text"}:
                out.append(TextPart(self.string(d["text"], f"{path}[{i}].text")))  # type: ignore[arg-type]
            elif set(d) == {"media"}:
                out.append(MediaPart(self.integer(d["media"], f"{path}[{i}].media")))
            else:
                raise self.fail(f"{path}[{i}]", f'a part is {{"text": str}} or {{"media": int}}, got keys {sorted(d)}')
        return tuple(out)

    def message(self, v: Any, path: str) -> Message:
        d = self.obj(v, path)
        self.unknown(d, {"role", "content"}, path)
        role = self.string(d.get("role"), f"{path}.role")
        return Message(role=role, content=self.parts(d.get("content", []), f"{path}.content"))  # type: ignore[arg-type]

    def annotation(self, v: Any, path: str) -> Annotation:
        d = self.obj(v, path)
        self.unknown(d, {f.name for f in Annotation.__dataclass_fields__.values()}, path)  # type: ignore[attr-defined]
        if "media" not in d or "type" not in d:
            raise self.fail(path, 'needs "media" (index) and "type" (box|point|polygon|segment)')

        def coords(value: Any, p: str, n: int) -> tuple[float, ...]:
            items = self.lst(value, p)
            if len(items) != n:
                raise self.fail(p, f"expected {n} numbers, got {len(items)}")
            return tuple(self.number(x, f"{p}[{j}]") for j, x in enumerate(items))  # type: ignore[misc]

        xyxy = coords(d["xyxy"], f"{path}.xyxy", 4) if "xyxy" in d else None
        xy = coords(d["xy"], f"{path}.xy", 2) if "xy" in d else None
        points = (tuple(coords(p, f"{path}.points[{j}]", 2) for j, p in enumerate(self.lst(d["points"], f"{path}.points")))
                  if "points" in d else None)
        attrs = self.obj(d["attrs"], f"{path}.attrs") if "attrs" in d else None
        return Annotation(
            media=self.integer(d["media"], f"{path}.media"),
            type=self.string(d["type"], f"{path}.type"),  # type: ignore[arg-type]
            xyxy=xyxy, xy=xy, points=points,  # type: ignore[arg-type]
            label=self.string(d.get("label"), f"{path}.label", optional=True),
            text=self.string(d.get("text"), f"{path}.text", optional=True),
            score=self.number(d.get("score"), f"{path}.score", optional=True),
            role=self.string(d.get("role"), f"{path}.role", optional=True),
            action=self.string(d.get("action"), f"{path}.action", optional=True),
            t0=self.number(d.get("t0"), f"{path}.t0", optional=True),
            t1=self.number(d.get("t1"), f"{path}.t1", optional=True),
            attrs=dict(attrs) if attrs is not None else None,
        )


# ---------------------------------------------------------------------------------------------
# semantic checks: run on every constructed Sample


def _check_sample(s: Sample) -> None:
    key = validate_key(s.key)

    def fail(path: str, msg: str) -> SampleError:
        return SampleError(key, path, msg)

    if s.kind not in KINDS:
        raise fail("kind", f"{s.kind!r} is not one of {list(KINDS)}")
    if not isinstance(s.source, Source) or not isinstance(s.source.uri, str) or not s.source.uri:
        raise fail("source.uri", "must be a non-empty string (the origin URI)")
    names: set[str] = set()
    for i, m in enumerate(s.media):
        p = f"media[{i}]"
        if not isinstance(m.name, str) or not MEDIA_NAME_RE.match(m.name) or m.name == "json":
            raise fail(f"{p}.name", f"{m.name!r} must look like '0.jpg' or 'mp4' (lowercase, dot-separated, not 'json')")
        if m.name in names:
            raise fail(f"{p}.name", f"{m.name!r} is used twice")
        names.add(m.name)
        if not isinstance(m.mime, str) or "/" not in m.mime:
            raise fail(f"{p}.mime", f"{m.mime!r} is not a MIME type like 'image/jpeg'")
        for dim in ("width", "height"):
            v = getattr(m, dim)
            if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
                raise fail(f"{p}.{dim}", f"must be a positive integer, got {v!r}")
        for opt in ("duration_s", "fps"):
            v = getattr(m, opt)
            if v is not None and (not isinstance(v, (int, float)) or v < 0 or not math.isfinite(v)):
                raise fail(f"{p}.{opt}", f"must be a non-negative number, got {v!r}")
    n_media = len(s.media)

    def check_parts(parts: tuple[Part, ...], path: str) -> None:
        for j, part in enumerate(parts):
            if isinstance(part, MediaPart):
                if isinstance(part.media, bool) or not isinstance(part.media, int) or not 0 <= part.media < n_media:
                    raise fail(f"{path}[{j}].media", f"media index {part.media!r} does not exist ({n_media} media)")
            elif isinstance(part, TextPart):
                if not isinstance(part.text, str):
                    raise fail(f"{path}[{j}].text", "must be a string")
                check_placeholders(part.text, f"{path}[{j}].text")
            else:
                raise fail(f"{path}[{j}]", f"not a part: {part!r}")

    def check_placeholders(text: str, path: str) -> None:
        for m in PLACEHOLDER_RE.finditer(text):
            kind, idx = m.group(1), int(m.group(2))
            if idx >= len(s.annotations):
                raise fail(path, f"placeholder {m.group(0)} points nowhere ({len(s.annotations)} annotations)")
            a = s.annotations[idx]
            if kind == "action":
                if a.action is None or a.type != "point":
                    raise fail(path, f"placeholder {m.group(0)} points to a {a.type} without an action")
            elif a.type != kind:
                raise fail(path, f"placeholder {m.group(0)} points to a {a.type}, not a {kind}")

    platform = s.meta.get("platform") if s.kind == "agent" and isinstance(s.meta, Mapping) else None
    for i, a in enumerate(s.annotations):
        _check_annotation(a, s.media, f"annotations[{i}]", fail)
        if a.action is not None:
            _check_action(a, s.annotations, platform, f"annotations[{i}]", fail)
    check_parts(s.content, "content")
    for i, msg in enumerate(s.messages):
        if msg.role not in ROLES:
            raise fail(f"messages[{i}].role", f"{msg.role!r} is not one of {list(ROLES)}")
        check_parts(msg.content, f"messages[{i}].content")
    if not s.content and not s.messages:
        raise fail("content", "a sample needs content parts or messages")
    if not isinstance(s.meta, Mapping) or not all(isinstance(k, str) for k in s.meta):
        raise fail("meta", "must be an object with string keys")
    bad = _not_json(s.meta, "meta")
    if bad is not None:
        raise fail(*bad)
    try:
        object.__setattr__(s, "meta", freeze(s.meta))
    except RecursionError:
        raise fail("meta", "is nested too deeply") from None
    for name, data in s.blobs.items():
        if name not in names:
            raise fail("blobs", f"bytes for {name!r} but no media item has that name")
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise fail("blobs", f"bytes for {name!r} must be bytes, got {type(data).__name__}")


def _check_annotation(a: Annotation, media: tuple[Media, ...], path: str, fail: Any) -> None:
    if a.type not in GEOMETRY_TYPES:
        raise fail(f"{path}.type", f"{a.type!r} is not one of {list(GEOMETRY_TYPES)}")
    if isinstance(a.media, bool) or not isinstance(a.media, int) or not 0 <= a.media < len(media):
        raise fail(f"{path}.media", f"media index {a.media!r} does not exist ({len(media)} media)")
    m = media[a.media]
    wanted = GEOMETRY_FIELD[a.type]
    for geo in ("xyxy", "xy", "points"):
        if geo != wanted and getattr(a, geo) is not None:
            raise fail(f"{path}.{geo}", f"a {a.type} annotation must not carry {geo!r}")
    if wanted and getattr(a, wanted) is None:
        raise fail(f"{path}.{wanted}", f"a {a.type} annotation needs {wanted!r}")

    def inside(x: float, y: float, p: str) -> None:
        for name, v, hi, dim in (("x", x, m.width, "width"), ("y", y, m.height, "height")):
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise fail(p, f"{name}={v!r} is not a finite number")
            if not 0 <= v <= hi:
                raise fail(p, f"{name}={v} is outside media {a.media} ({dim} {hi})")

    if a.xyxy is not None:
        if len(a.xyxy) != 4:
            raise fail(f"{path}.xyxy", "needs [x0, y0, x1, y1]")
        x0, y0, x1, y1 = a.xyxy
        inside(x0, y0, f"{path}.xyxy")
        inside(x1, y1, f"{path}.xyxy")
        if x1 < x0 or y1 < y0:
            raise fail(f"{path}.xyxy", f"[{x0}, {y0}, {x1}, {y1}] has x1 < x0 or y1 < y0")
    if a.xy is not None:
        if len(a.xy) != 2:
            raise fail(f"{path}.xy", "needs [x, y]")
        inside(a.xy[0], a.xy[1], f"{path}.xy")
    if a.points is not None:
        if len(a.points) < 3:
            raise fail(f"{path}.points", f"a polygon needs at least 3 points, got {len(a.points)}")
        for j, pt in enumerate(a.points):
            if len(pt) != 2:
                raise fail(f"{path}.points[{j}]", "needs [x, y]")
            inside(pt[0], pt[1], f"{path}.points[{j}]")
    if a.score is not None and (isinstance(a.score, bool) or not isinstance(a.score, (int, float))):
        raise fail(f"{path}.score", f"must be a number, got {a.score!r}")
    for t in ("t0", "t1"):
        v = getattr(a, t)
        if v is not None and (not isinstance(v, (int, float)) or v < 0):
            raise fail(f"{path}.{t}", f"must be a non-negative number of seconds, got {v!r}")
        if v is not None and m.duration_s is not None and v > m.duration_s:
            raise fail(f"{path}.{t}", f"{v}s is past the end of media {a.media} ({m.duration_s}s)")
    if a.t0 is not None and a.t1 is not None and a.t1 < a.t0:
        raise fail(f"{path}.t1", f"t1={a.t1} is before t0={a.t0}")
    if a.type == "segment" and (a.t0 is None or a.t1 is None):
        raise fail(path, "a segment annotation needs t0 and t1")


def _check_action(a: Annotation, anns: tuple[Annotation, ...], platform: Any, path: str, fail: Any) -> None:
    from datalake.actions import PLATFORMS, POINTED, TWO_POINT, check_action

    if not isinstance(a.action, str):
        raise fail(f"{path}.action", f"must be a string, got {a.action!r}")
    attrs = a.attrs or {}
    args = attrs.get("args")
    if args is not None and not isinstance(args, Mapping):
        raise fail(f"{path}.attrs.args", f"must be an object, got {type(args).__name__}")
    why = check_action(a.action, args, platform if platform in PLATFORMS else None)
    if why:
        raise fail(f"{path}.action", why)
    if a.action not in POINTED or a.type != "point":
        raise fail(f"{path}.action", f"{a.action!r} is not an action at a point: a point annotation carries "
                                     f"one of {sorted(POINTED)}; write the others in text")
    to = attrs.get("to")
    if (to is not None) != (a.action in TWO_POINT):
        raise fail(f"{path}.attrs.to", f"{a.action} {'needs' if a.action in TWO_POINT else 'takes no'} an end point "
                                       "(attrs.to: the index of a point annotation)")
    if to is not None and (isinstance(to, bool) or not isinstance(to, int) or not 0 <= to < len(anns)
                           or anns[to].type != "point" or anns[to].media != a.media):
        raise fail(f"{path}.attrs.to", f"{to!r} is not a point annotation on media {a.media}")


class _Frozen:
    """What a read-only container shares: pickling and copying as itself."""

    __slots__ = ()
    _MSG = "a sample's meta is read-only: build a new sample with dataclasses.replace(sample, meta={**sample.meta, ...})"

    def _refuse(self, *_a: Any, **_k: Any) -> None:
        raise TypeError(self._MSG)

    def __reduce__(self) -> Any:
        base = dict if isinstance(self, dict) else list
        return type(self), (base(self),)

    def __copy__(self) -> Any:
        return self

    def __deepcopy__(self, _memo: Any) -> Any:
        return self


class FrozenDict(_Frozen, dict):  # type: ignore[type-arg]
    """A dict that refuses changes: a sample's ``meta`` (and everything in it) after construction.
    Still a ``dict`` for ``isinstance``, ``==`` and ``json.dumps``; copy it (``dict(meta)``,
    ``{**meta, k: v}``) to build a changed sample."""

    __slots__ = ()
    __setitem__ = __delitem__ = clear = pop = popitem = setdefault = update = __ior__ = _Frozen._refuse  # type: ignore[assignment]


class FrozenList(_Frozen, list):  # type: ignore[type-arg]
    """A list that refuses changes (see :class:`FrozenDict`)."""

    __slots__ = ()
    __setitem__ = __delitem__ = append = extend = insert = pop = remove = clear = sort = reverse = _Frozen._refuse  # type: ignore[assignment]
    __iadd__ = __imul__ = _Frozen._refuse  # type: ignore[assignment]


def freeze(value: Any) -> Any:
    """``value`` with every dict and list in it made read-only (tuples become frozen lists)."""
    if isinstance(value, (FrozenDict, FrozenList)):
        return value
    if isinstance(value, Mapping):
        return FrozenDict((k, freeze(v)) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return FrozenList(freeze(v) for v in value)
    return value


def _not_json(value: Any, path: str) -> tuple[str, str] | None:
    """(path, problem) of the first value in ``value`` that JSON cannot hold as it is (a set, NaN,
    a non-string key, bytes, an object), or None. Iterative: deep OCR metadata costs no recursion."""
    stack = [(value, path)]
    while stack:
        v, p = stack.pop()
        if v is None or isinstance(v, (str, bool, int)):
            continue
        if isinstance(v, float):
            if not math.isfinite(v):
                return p, f"{v!r} is not a JSON number (NaN and infinities are not allowed)"
        elif isinstance(v, Mapping):
            for k, x in v.items():
                if not isinstance(k, str):
                    return p, f"key {k!r} must be a string"
                stack.append((x, f"{p}.{k}"))
        elif isinstance(v, (list, tuple)):
            stack.extend((x, f"{p}[{i}]") for i, x in enumerate(v))
        else:
            return p, f"a {type(v).__name__} is not JSON (use a list, an object, a string or a number)"
    return None


def drop_media(sample: Sample, drop: set[int]) -> Sample:
    """``sample`` without the media items at indices ``drop``: their parts (in content and in
    messages), annotations and blobs go; the remaining media are renumbered in order."""
    import dataclasses

    if not drop:
        return sample
    keep = [i for i in range(len(sample.media)) if i not in drop]
    new = {old: k for k, old in enumerate(keep)}

    def parts(ps: tuple[Part, ...]) -> tuple[Part, ...]:
        return tuple(MediaPart(new[p.media]) if isinstance(p, MediaPart) else p
                     for p in ps if not (isinstance(p, MediaPart) and p.media in drop))

    gone = {sample.media[i].name for i in drop}
    return dataclasses.replace(
        sample, media=tuple(sample.media[i] for i in keep), content=parts(sample.content),
        messages=tuple(dataclasses.replace(m, content=parts(m.content)) for m in sample.messages),
        annotations=tuple(dataclasses.replace(a, media=new[a.media]) for a in sample.annotations if a.media not in drop),
        blobs={k: v for k, v in sample.blobs.items() if k not in gone})
