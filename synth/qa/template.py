"""Template QA from exact ground truth: several phrasings per fact, every answer computed from
the data that made (or was measured on) the sample, never read back from a model.

Facts come from what a sample carries:

* ``meta.truth`` of the knowledge generators (``synth.knowledge``): charts (a label's value or
  share, the largest/smallest, differences, the number of categories, a line's trend), tables
  (a cell, a column total, the row with the largest total, the number of rows) and geometry
  (a triangle's perimeter, area and angle; a circle's area, circumference and diameter; a
  regular polygon's perimeter and interior angle);
* GUI screenshots' ``ui_element`` boxes (``synth.gui``): what an element says, where a named
  element is, how many elements of a role the screen has;
* exact text layers: PDF ``text_layer`` polygons, synthetic ``ocr_line`` polygons (generated
  text; OCR read by an engine is not ground truth and is never used), rendered ``table_cell``
  boxes.

``template_facts(sample)`` lists the facts; ``template_sample(sample, seed, max_questions)``
picks up to ``max_questions`` of them and one phrasing each, as a pure function of (seed, key).
"""

from __future__ import annotations

import dataclasses
import math
import zlib
from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np

from datalake.sample import Annotation, MediaPart, Message, Sample, TextPart

__all__ = ["Fact", "template_facts", "template_sample"]


@dataclass(frozen=True)
class Fact:
    id: str  # e.g. "chart.value:C"
    phrasings: tuple[str, ...]
    answer: str
    kind: str  # number | text | choice | place (a placeholder answer)
    choices: tuple[str, ...] = ()


def _num(x: float, digits: int = 2) -> str:
    if float(x).is_integer():
        return str(int(x))
    return f"{x:.{digits}f}"


def _chart(t: dict[str, Any]) -> list[Fact]:
    labels, values, kind = list(t["labels"]), list(t["values"]), t["chart"]
    out: list[Fact] = []
    what = {"bar": "bar chart", "line": "line chart", "pie": "pie chart", "scatter": "scatter plot"}[kind]
    imax, imin = int(np.argmax(values)), int(np.argmin(values))
    if kind == "pie":
        x = np.asarray(values, dtype=float)
        shares = [int(f"{pc:.0f}") for pc in 100.0 * x / x.sum()]  # what the figure prints
        for lab, sh in zip(labels, shares, strict=True):
            out.append(Fact(f"chart.share:{lab}", (f"What share of the whole is {lab}, as shown on the chart?",
                                                   f"What share of the whole is {lab}?",
                                                   f"According to the {what}, what percentage does {lab} take up?",
                                                   f"How large is the slice labelled {lab}, in percent?"), f"{sh}%",
                            "number"))
        out.append(Fact("chart.largest", ("Which label has the largest share?",
                                          f"Which slice of the {what} is the biggest?",
                                          "Name the category with the greatest percentage."), labels[imax], "text"))
        out.append(Fact("chart.smallest", ("Which label has the smallest share?",
                                           f"Which slice of the {what} is the smallest?"), labels[imin], "text"))
        out.append(Fact("chart.share_gap", (f"By how many percentage points does the share of {labels[imax]} exceed "
                                            f"that of {labels[imin]}?",
                                            f"How many points larger is {labels[imax]}'s slice than {labels[imin]}'s?"),
                        str(shares[imax] - shares[imin]), "number"))
    else:
        for lab, v in zip(labels, values, strict=True):
            point = "point" if kind == "scatter" else "year" if kind == "line" else "bar"
            out.append(Fact(f"chart.value:{lab}", (f"What is the value of {lab}?",
                                                   f"According to the {what}, what value does {lab} have?",
                                                   f"Read off the value of the {point} {lab}."), str(v), "number"))
        out.append(Fact("chart.largest", ("Which label has the largest value?",
                                          f"Which category reaches the highest value in the {what}?",
                                          "Name the label with the maximum value."), labels[imax], "text"))
        out.append(Fact("chart.smallest", ("Which label has the smallest value?",
                                           f"Which category has the lowest value in the {what}?"), labels[imin], "text"))
        out.append(Fact("chart.range", (f"What is the difference between the values of {labels[imax]} and "
                                        f"{labels[imin]}?",
                                        f"By how much does {labels[imax]} exceed {labels[imin]}?"),
                        str(values[imax] - values[imin]), "number"))
        out.append(Fact("chart.total", ("What is the sum of all values shown?",
                                        f"Add up every value in the {what}: what is the total?"), str(sum(values)),
                        "number"))
        if kind == "line":
            d = np.diff(values)
            trend = "increasing" if (d > 0).all() else "decreasing" if (d < 0).all() else "mixed"
            out.append(Fact("chart.trend", ("Is the series increasing, decreasing or mixed?",
                                            "Does the line go up, go down, or change direction? Answer increasing, "
                                            "decreasing or mixed."), trend, "text"))
    out.append(Fact("chart.count", (f"How many categories does the {what} show?",
                                    "How many labels are there in the chart?"), str(len(labels)), "number"))
    return out


def _table(t: dict[str, Any]) -> list[Fact]:
    cols, rows = list(t["columns"]), [list(r) for r in t["rows"]]
    out: list[Fact] = []
    for r in rows:
        for j in range(1, len(cols)):
            out.append(Fact(f"table.cell:{r[0]}:{cols[j]}", (f"What is the {cols[j]} value for {r[0]}?",
                                                             f"In the row {r[0]}, what number is in the column {cols[j]}?",
                                                             f"Look up {r[0]} / {cols[j]} in the table."),
                            str(r[j]), "number"))
    for j in range(1, len(cols)):
        out.append(Fact(f"table.total:{cols[j]}", (f"What is the total of column {cols[j]}?",
                                                   f"Sum the {cols[j]} column: what do you get?"),
                        str(sum(r[j] for r in rows)), "number"))
    totals = [sum(r[1:]) for r in rows]
    if totals.count(max(totals)) == 1:
        best = rows[totals.index(max(totals))][0]
        out.append(Fact("table.best", (f"Which {cols[0].lower()} has the largest total over {cols[1]}-{cols[-1]}?",
                                       "Which row adds up to the most?"), str(best), "text"))
    out.append(Fact("table.rows", ("How many rows of data does the table have (not counting the header)?",
                                   f"How many {cols[0].lower()}s are listed?"), str(len(rows)), "number"))
    return out


def _geometry(t: dict[str, Any]) -> list[Fact]:
    shape = t["shape"]
    if shape == "triangle":
        s = t["sides"]
        out = [Fact("geometry.perimeter", ("What is the perimeter of triangle ABC?",
                                           "Add the three side lengths: what is the perimeter?"),
                    _num(s["BC"] + s["CA"] + s["AB"]), "number"),
               Fact("geometry.area", ("What is the area of triangle ABC (to two decimals)?",
                                      "Using the side lengths shown, compute the area of the triangle."),
                    f"{t['area']:.2f}", "number"),
               Fact("geometry.angle_A", ("What is the angle at A, in degrees (to one decimal)?",
                                         "How large is angle A in degrees?"), f"{t['angle_A']:.1f}°", "number")]
        if list(s.values()).count(max(s.values())) == 1:
            out.append(Fact("geometry.longest", ("Which side of the triangle is the longest: BC, CA or AB?",),
                            max(s, key=lambda k: s[k]), "text"))
        return out
    if shape == "circle":
        r = t["radius"]
        return [Fact("geometry.diameter", ("What is the diameter of the circle?", "How wide is the circle across?"),
                     _num(2 * r), "number"),
                Fact("geometry.area", ("What is the area of the circle (to two decimals)?",
                                       "Compute the area enclosed by the circle."), f"{math.pi * r * r:.2f}", "number"),
                Fact("geometry.circumference", ("What is the circumference of the circle (to two decimals)?",
                                                "How long is the circle's boundary?"), f"{2 * math.pi * r:.2f}",
                     "number")]
    n, side = t["sides"], t["side"]
    return [Fact("geometry.perimeter", ("What is the perimeter of the regular polygon?",
                                        "All sides are equal: what is the perimeter?"), _num(n * side), "number"),
            Fact("geometry.sides", ("How many sides does the polygon have?", "How many edges does this shape have?"),
                 str(n), "number"),
            Fact("geometry.interior", ("What is each interior angle of the regular polygon, in degrees (to one decimal)?",
                                       "What is each interior angle of the regular polygon, in degrees?",
                                       "How large is one interior angle of this polygon?"),
                 f"{_num(180 * (n - 2) / n, 1)}°", "number")]


def _gui(anns: tuple[Annotation, ...]) -> list[Fact]:
    out: list[Fact] = []
    els = [(i, a) for i, a in enumerate(anns) if a.role == "ui_element"]
    names = Counter((a.text or "").strip() for _, a in els)
    for i, a in els:
        name = (a.text or "").strip()
        if not name or len(name) > 60:
            continue
        role = a.label or "element"
        out.append(Fact(f"gui.read:{i}", (f"What does the {role} at {{box:{i}}} say?",
                                          f"Read the label of the element in {{box:{i}}}.",
                                          f"What is written on the {role} in {{box:{i}}}?"), name, "text"))
        if names[name] == 1:  # a unique name has one answer
            out.append(Fact(f"gui.find:{i}", (f"Where is the {role} \u201c{name}\u201d?",
                                              f"Give the bounding box of \u201c{name}\u201d."), f"{{box:{i}}}", "place"))
    by_role = Counter(a.label for _, a in els if a.label)
    for role, n in sorted(by_role.items()):
        out.append(Fact(f"gui.count:{role}", (f"How many elements with the role {role} are on this screen?",
                                              f"Count the {role} elements visible here."), str(n), "number"))
    return out


def _text_layer(sample: Sample) -> list[Fact]:
    exact = {"text_layer"} | ({"ocr_line"} if sample.meta.get("synthetic") else set())
    out: list[Fact] = []
    lines = [(i, a) for i, a in enumerate(sample.annotations) if a.role in exact and a.type == "polygon"
             and (a.text or "").strip()]
    seen = Counter((a.text or "").strip() for _, a in lines)
    for i, a in lines:
        text = (a.text or "").strip()
        if len(text) > 120:
            continue
        out.append(Fact(f"text.read:{i}", (f"What does the text at {{polygon:{i}}} say?",
                                           f"Transcribe the line in {{polygon:{i}}}.",
                                           f"Read the words inside {{polygon:{i}}}."), text, "text"))
        if seen[text] == 1 and len(text) >= 4:
            out.append(Fact(f"text.find:{i}", (f"Where does the text \u201c{text}\u201d appear?",),
                            f"{{polygon:{i}}}", "place"))
    for i, a in enumerate(sample.annotations):
        if a.role == "table_cell" and a.attrs and (a.text or "").strip():
            r, c = a.attrs.get("row"), a.attrs.get("col")
            out.append(Fact(f"table.cell_at:{i}", (f"What is in row {r}, column {c} of the table?",
                                                   f"Read the cell at {{box:{i}}}."), str(a.text).strip(),
                            "number" if str(a.text).strip().replace(".", "", 1).isdigit() else "text"))
    return out


def template_facts(sample: Sample) -> list[Fact]:
    """Every fact the sample's ground truth states, each with its phrasings and computed answer."""
    truth = sample.meta.get("truth")
    out: list[Fact] = []
    if isinstance(truth, dict):
        if "chart" in truth:
            out += _chart(truth)
        elif "columns" in truth and "rows" in truth:
            out += _table(truth)
        elif "shape" in truth:
            out += _geometry(truth)
    out += _gui(sample.annotations)
    if sample.meta.get("task") == "icon" and sample.meta.get("label"):  # an icon crop with its accessible name
        out.append(Fact("gui.icon", ("What does this icon mean in the interface?", "Which action does this icon stand "
                                     "for?", "Name the function of this icon."), str(sample.meta["label"]), "text"))
    out += _text_layer(sample)
    return out


def template_sample(sample: Sample, *, seed: int = 0, max_questions: int = 4) -> Sample | None:
    """The sample as a template-QA conversation: up to ``max_questions`` facts, one phrasing
    each, both drawn from (seed, key); None where it has no ground truth to ask about."""
    facts = template_facts(sample)
    if not facts or not sample.media:
        return None
    rng = np.random.default_rng([seed, zlib.crc32(sample.key.encode()), 0x9A])
    families: dict[str, list[Fact]] = {}
    for f in facts:  # questions spread over kinds of fact (a table has many cells but one total)
        families.setdefault(f.id.split(":")[0], []).append(f)
    order = [list(families)[int(i)] for i in rng.permutation(len(families))]
    pools = {k: [v[int(i)] for i in rng.permutation(len(v))] for k, v in families.items()}
    pick: list[Fact] = []
    while len(pick) < max_questions and any(pools.values()):
        for k in order:
            if pools[k] and len(pick) < max_questions:
                pick.append(pools[k].pop())
    turns: list[Message] = []
    record = []
    for n, f in enumerate(pick):
        j = int(rng.integers(len(f.phrasings)))
        head = tuple(MediaPart(m) for m in range(len(sample.media))) if n == 0 else ()
        turns += [Message("user", (*head, TextPart(f.phrasings[j]))), Message("assistant", (TextPart(f.answer),))]
        record.append({"fact": f.id, "phrasing": j, "answer": f.answer, "kind": f.kind,
                       **({"choices": list(f.choices)} if f.choices else {})})
    meta = {**sample.meta, "synthetic": True, "generator": "qa_template", "seed_generator": sample.meta.get("generator"),
            "qa": {"method": "template", "facts": record, "available": len(facts), "verifier": "computed"}}
    meta.pop("scores", None)
    return dataclasses.replace(sample, messages=tuple(turns), meta=meta)
