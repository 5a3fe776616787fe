"""Verifiers for synthesized QA: each returns a ``Verdict`` (ok, verifier, reason) that is
recorded with the candidate, so every rejected candidate says why.

* ``parse_candidate`` reads a model's answer: a JSON object (``{"reasoning": ..., "answer": ...}``
  or ``{"question": ..., "answer": ...}``), else a final ``Answer: ...`` line; neither is
  ``malformed``.
* ``rule_check`` compares an answer with ground truth: multiple choice (a letter, or the
  option's text), numbers with a tolerance, numbers with units (``12 cm`` = ``0.12 m``,
  ``90°`` = ``1.5708 rad``, ``25%`` = ``0.25``), else normalised strings (case, punctuation,
  articles, spacing).
* ``majority`` is self-consistency: the most common normalised answer of the candidates and
  its share; candidates that disagree with it are rejected as ``not_majority``.
* The judge (an optional second endpoint with a rubric) is in ``synth.qa.generate``.
"""

from __future__ import annotations

import json
import math
import re
import unicodedata
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["Verdict", "parse_candidate", "normalise", "parse_quantity", "rule_check", "majority", "answer_kind"]


@dataclass(frozen=True)
class Verdict:
    ok: bool
    verifier: str
    reason: str

    def to_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "verifier": self.verifier, "reason": self.reason}


_JSON_OBJ = re.compile(r"\{.*\}", re.S)
_ANSWER_LINE = re.compile(r"(?:^|\n)\s*(?:final\s+)?answer\s*[:：]\s*(.+?)\s*$", re.I | re.S)


def parse_candidate(text: str, fields: Sequence[str] = ("answer",)) -> dict[str, str] | None:
    """The fields of a model's answer, or None where it has none of them in a readable form."""
    text = text.strip()
    fence = re.match(r"^```(?:json)?\s*(.*?)\s*```$", text, re.S)
    if fence:
        text = fence.group(1)
    hit = _JSON_OBJ.search(text)
    if hit:
        try:
            obj = json.loads(hit.group(0))
        except ValueError:
            obj = None
        if isinstance(obj, dict) and all(isinstance(obj.get(f), (str, int, float)) and str(obj.get(f)).strip()
                                         for f in fields):
            out = {f: str(obj[f]).strip() for f in fields}
            for extra in ("reasoning", "question", "reason"):
                if isinstance(obj.get(extra), str) and extra not in out:
                    out[extra] = obj[extra].strip()
            return out
    if tuple(fields) == ("answer",):
        line = _ANSWER_LINE.search(text)
        if line and line.group(1).strip():
            reasoning = text[: line.start()].strip()
            return {"answer": line.group(1).strip().splitlines()[0].strip(), **({"reasoning": reasoning} if reasoning
                                                                                 else {})}
    return None


_ARTICLES = re.compile(r"\b(a|an|the)\b")


def normalise(s: str) -> str:
    """Case, width, punctuation, articles and spacing folded (``"The  Apples."`` -> ``"apples"``)."""
    s = unicodedata.normalize("NFKC", s).casefold().strip()
    s = re.sub(r"[\s]+", " ", s)
    s = "".join(" " if unicodedata.category(c).startswith("P") and c not in "%.-" else c for c in s)
    s = s.rstrip(".").strip()
    s = _ARTICLES.sub(" ", s)
    return re.sub(r"\s+", " ", s).strip()


#: unit -> (dimension, factor to the base unit)
_UNITS: dict[str, tuple[str, float]] = {
    "mm": ("length", 1e-3), "cm": ("length", 1e-2), "m": ("length", 1.0), "km": ("length", 1e3),
    "in": ("length", 0.0254), "inch": ("length", 0.0254), "inches": ("length", 0.0254), "ft": ("length", 0.3048),
    "feet": ("length", 0.3048), "foot": ("length", 0.3048),
    "mm2": ("area", 1e-6), "cm2": ("area", 1e-4), "m2": ("area", 1.0), "km2": ("area", 1e6),
    "mg": ("mass", 1e-6), "g": ("mass", 1e-3), "kg": ("mass", 1.0), "t": ("mass", 1e3),
    "ms": ("time", 1e-3), "s": ("time", 1.0), "sec": ("time", 1.0), "seconds": ("time", 1.0),
    "min": ("time", 60.0), "minutes": ("time", 60.0), "h": ("time", 3600.0), "hours": ("time", 3600.0),
    "deg": ("angle", math.pi / 180), "degree": ("angle", math.pi / 180), "degrees": ("angle", math.pi / 180),
    "°": ("angle", math.pi / 180), "rad": ("angle", 1.0), "radians": ("angle", 1.0),
    "%": ("ratio", 0.01), "percent": ("ratio", 0.01), "pp": ("ratio", 0.01),
    "ml": ("volume", 1e-6), "l": ("volume", 1e-3),
}
_NUM = r"[-+−]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:[eE][-+]?\d+)?|[-+−]?\.\d+"
_QUANTITY = re.compile(rf"({_NUM})\s*(°|%|[a-zA-Z]+[²³23]?)?")


@dataclass(frozen=True)
class Quantity:
    value: float  # in the base unit of its dimension
    dimension: str | None  # None: a bare number
    raw: float = 0.0  # as written


def parse_quantity(s: str) -> Quantity | None:
    """The one number in ``s`` with its unit (``"about 12.5 cm"``), or None where ``s`` holds no
    number or several different ones."""
    s = unicodedata.normalize("NFKC", s).replace("−", "-").replace("²", "2").replace("³", "3")
    s = re.sub(r"square\s+(\w+)", r"\g<1>2", s)
    found = []
    for m in _QUANTITY.finditer(s):
        raw = m.group(1).replace(",", "").replace("−", "-")
        try:
            v = float(raw)
        except ValueError:
            continue
        unit = (m.group(2) or "").lower()
        dim, f = _UNITS.get(unit, (None, 1.0))
        found.append(Quantity(v * f, dim, v))
    distinct = {(round(q.value, 9), q.dimension) for q in found}
    if len(distinct) != 1:
        return None
    return found[0]


_CHOICE = re.compile(r"^\(?([A-Ea-e])[).:]?(?:\s|$)")


def answer_kind(reference: str, choices: Sequence[str] | None = None) -> str:
    if choices:
        return "choice"
    if parse_quantity(reference) is not None and re.fullmatch(r"[\s\d.,%°+\-−a-zA-Z²³]*", reference) \
            and re.search(r"\d", reference):
        return "number"
    return "text"


def _places(reference: str) -> int:
    m = re.search(r"\d\.(\d+)", reference)
    return len(m.group(1)) if m else 0


def rule_check(answer: str, reference: str, *, kind: str | None = None, choices: Sequence[str] | None = None,
               rel_tol: float = 1e-3, abs_tol: float | None = None) -> Verdict:
    """Does ``answer`` state ``reference``? ``kind``: ``choice``, ``number`` or ``text`` (inferred).
    Numbers agree within ``rel_tol`` of the reference or within ``abs_tol``, by default one unit
    of the reference's last decimal place (``153.94`` accepts 153.93-153.95; an integer accepts
    +-0.5), so a wrong answer close to a large reference is still wrong."""
    kind = kind or answer_kind(reference, choices)
    if kind == "choice":
        letters = "ABCDE"[: len(choices or ())] or "ABCDE"
        ref = _choice_letter(reference, choices, letters)
        got = _choice_letter(answer, choices, letters)
        if got is None:
            return Verdict(False, "rule", f"no option of {letters} in {answer[:60]!r}")
        return Verdict(got == ref, "rule", f"option {got}" + ("" if got == ref else f", expected {ref}"))
    if kind == "number":
        ref_q, got_q = parse_quantity(reference), parse_quantity(answer)
        places = _places(reference)
        tol = abs_tol if abs_tol is not None else (10.0 ** -places if places else 0.5)
        if got_q is None:
            return Verdict(False, "rule", f"no single number in {answer[:60]!r}")
        assert ref_q is not None
        if ref_q.dimension and got_q.dimension and ref_q.dimension != got_q.dimension:
            return Verdict(False, "rule", f"unit of {got_q.dimension}, expected {ref_q.dimension}")
        if ref_q.dimension and got_q.dimension:
            a, b = got_q.value, ref_q.value
        else:  # one side bare: the question named the unit ("in degrees"), compare as written
            a, b = got_q.raw, ref_q.raw
        ok = math.isclose(a, b, rel_tol=rel_tol, abs_tol=tol)
        if not ok and not (ref_q.dimension and got_q.dimension):  # 0.25 for 25%
            ok = math.isclose(got_q.value, ref_q.value, rel_tol=rel_tol, abs_tol=tol * (ref_q.value / ref_q.raw
                                                                                       if ref_q.raw else 1.0))
        return Verdict(ok, "rule", f"{a:g} vs {b:g} (tolerance {max(tol, rel_tol * abs(b)):g})")
    ok = normalise(answer) == normalise(reference)
    return Verdict(ok, "rule", "same text" if ok else f"{normalise(answer)[:40]!r} is not {normalise(reference)[:40]!r}")


def _choice_letter(s: str, choices: Sequence[str] | None, letters: str) -> str | None:
    m = _CHOICE.match(s.strip())
    if m and m.group(1).upper() in letters:
        return m.group(1).upper()
    if choices:
        n = normalise(s)
        for letter, text in zip(letters, choices, strict=False):
            if normalise(text) == n:
                return letter
    return None


def majority(answers: Sequence[str | None], kind: str = "text") -> tuple[str | None, float, list[int]]:
    """Self-consistency: (the most common answer, its share of all candidates, the indices that
    gave it). Numbers count as equal when they are the same value; ties go to the earliest."""
    keys: list[str | None] = []
    for a in answers:
        if a is None:
            keys.append(None)
            continue
        q = parse_quantity(a) if kind == "number" else None
        keys.append(f"{q.value:.6g}|{q.dimension}" if q is not None else normalise(a))
    counts = Counter(k for k in keys if k is not None)
    if not counts:
        return None, 0.0, []
    best = max(counts, key=lambda k: (counts[k], -keys.index(k)))
    idx = [i for i, k in enumerate(keys) if k == best]
    return answers[idx[0]], counts[best] / len(answers), idx
