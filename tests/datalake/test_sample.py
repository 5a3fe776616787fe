"""The Sample contract: JSON shape, validation messages, the generated schema."""

from __future__ import annotations

import copy
import json
from typing import Any

import jsonschema
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from datalake.sample import Annotation, Media, MediaPart, Message, Sample, SampleError, Source, TextPart
from datalake.schema import generate_schema, load_schema, schema_path


def record(**over: Any) -> dict[str, Any]:
    r: dict[str, Any] = {
        "key": "k1", "kind": "agent", "source": {"uri": "synth://x", "license": "CC0-1.0"},
        "media": [{"name": "0.png", "mime": "image/png", "width": 100, "height": 50}],
        "content": [{"media": 0}, {"text": "click {point:1} inside {box:0} near {polygon:2}"}],
        "annotations": [
            {"media": 0, "type": "box", "xyxy": [10, 5, 40, 25], "role": "ui_element", "label": "button"},
            {"media": 0, "type": "point", "xy": [20.5, 10], "role": "action", "action": "click"},
            {"media": 0, "type": "polygon", "points": [[0, 0], [100, 0], [50, 50]], "text": "roof", "score": 0.9},
        ],
        "meta": {"synthetic": True},
    }
    r.update(over)
    return r


def test_round_trip_keeps_exact_json_shape() -> None:
    r = record()
    s = Sample.from_json(r)
    out = s.to_json()
    assert out["annotations"][0] == {"media": 0, "type": "box", "xyxy": [10, 5, 40, 25], "label": "button",
                                     "role": "ui_element"}
    assert out["annotations"][1] == {"media": 0, "type": "point", "xy": [20.5, 10], "role": "action", "action": "click"}
    assert out["annotations"][2]["points"] == [[0, 0], [100, 0], [50, 50]]
    assert Sample.from_json(json.dumps(out)) == s
    assert Sample.from_json(s.to_json_bytes()) == s
    assert s.text() == "click {point:1} inside {box:0} near {polygon:2}"


def test_messages_and_video_segments() -> None:
    s = Sample(key="conv-1", kind="video", source=Source("file:///v.mp4"),
               media=(Media("mp4", "video/mp4", 640, 360, duration_s=12.5, fps=25.0),),
               messages=(Message("user", (MediaPart(0), TextPart("what happens?"))),
                         Message("assistant", (TextPart("a dog runs"),))),
               annotations=(Annotation(0, "segment", t0=1.0, t1=4.5, text="dog runs"),))
    assert Sample.from_json(s.to_json()) == s
    assert s.to_json()["messages"][0]["content"] == [{"media": 0}, {"text": "what happens?"}]


@pytest.mark.parametrize("mutate, field, words", [
    (lambda r: r["annotations"][0].update(xyxy=[10, 5, 140, 25]), "annotations[0].xyxy", "x=140 is outside media 0 (width 100)"),
    (lambda r: r["annotations"][1].update(xy=[20, -1]), "annotations[1].xy", "y=-1 is outside"),
    (lambda r: r["annotations"][2]["points"].append([0, 51]), "annotations[2].points[3]", "y=51"),
    (lambda r: r["annotations"][0].update(xyxy=[40, 5, 10, 25]), "annotations[0].xyxy", "x1 < x0"),
    (lambda r: r["annotations"][0].update(media=3), "annotations[0].media", "media index 3 does not exist"),
    (lambda r: r["content"].append({"media": 1}), "content[2].media", "media index 1 does not exist"),
    (lambda r: r["content"].append({"text": "see {box:7}"}), "content[2].text", "{box:7} points nowhere"),
    (lambda r: r["content"].append({"text": "see {point:0}"}), "content[2].text", "points to a box, not a point"),
    (lambda r: r["media"][0].update(width="100"), "media[0].width", "expected an integer"),
    (lambda r: r["media"][0].update(width=0), "media[0].width", "positive integer"),
    (lambda r: r["annotations"][0].update(xyxy=[1, 2, 3]), "annotations[0].xyxy", "expected 4 numbers"),
    (lambda r: r["annotations"][0].update(type="circle"), "annotations[0].type", "'circle' is not one of"),
    (lambda r: r["annotations"][0].update(xy=[1, 1]), "annotations[0].xy", "must not carry 'xy'"),
    (lambda r: r.update(kind="podcast"), "kind", "'podcast' is not one of"),
    (lambda r: r.update(key="a/b.c"), "key", "no dots or slashes"),
    (lambda r: r.update(colour="red"), "record", "unknown field(s) ['colour']"),
    (lambda r: r.update(content=[], messages=[]), "content", "needs content parts or messages"),
    (lambda r: r.update(content=[{"text": "x", "media": 0}]), "content[0]", "a part is"),
    (lambda r: r.update(source={}), "source.uri", "expected a string"),
    (lambda r: r.update(messages=[{"role": "robot", "content": []}]), "messages[0].role", "'robot' is not one of"),
    (lambda r: r["annotations"][0].update(score="high"), "annotations[0].score", "finite number"),
    (lambda r: r["media"].append(dict(r["media"][0])), "media[1].name", "used twice"),
])
def test_validation_names_key_and_field(mutate: Any, field: str, words: str) -> None:
    r = copy.deepcopy(record())
    mutate(r)
    with pytest.raises(SampleError) as info:
        Sample.from_json(r)
    msg = str(info.value)
    assert msg.startswith(f"sample '{r['key'] if isinstance(r['key'], str) else '?'}': {field}: "), msg
    assert words in msg, msg


def test_invalid_json_text_is_a_sample_error() -> None:
    with pytest.raises(SampleError, match="sample 'x1': json: not valid JSON"):
        Sample.from_json(b"{oops", key_hint="x1")


def test_segment_after_video_end_is_rejected() -> None:
    r = record(kind="video", media=[{"name": "mp4", "mime": "video/mp4", "width": 64, "height": 64, "duration_s": 3.0}],
               content=[{"media": 0}], annotations=[{"media": 0, "type": "segment", "t0": 1, "t1": 4}])
    with pytest.raises(SampleError, match=r"annotations\[0\].t1: 4s is past the end of media 0 \(3.0s\)"):
        Sample.from_json(r)


def test_blobs_must_name_media() -> None:
    with pytest.raises(SampleError, match="bytes for '1.jpg' but no media item has that name"):
        Sample.from_json(record(), blobs={"1.jpg": b"x"})


def test_committed_schema_is_the_generated_one() -> None:
    """A change to the dataclasses must come with `mmlake datalake schema --write`."""
    assert load_schema() == generate_schema(), f"regenerate {schema_path()} with: mmlake datalake schema --write"


def test_schema_accepts_records_and_rejects_structural_errors() -> None:
    schema = load_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    good = Sample.from_json(record()).to_json()
    assert list(validator.iter_errors(good)) == []
    for bad in (record(kind="podcast"), record(extra=1),
                record(annotations=[{"media": 0, "type": "box"}]),
                record(annotations=[{"media": 0, "type": "point", "xy": [1, 2, 3]}]),
                record(content=[{"text": 3}])):
        assert list(validator.iter_errors(bad)), bad


coord = st.floats(min_value=0, max_value=1, allow_nan=False)


@st.composite
def samples(draw: st.DrawFn) -> Sample:
    w, h = draw(st.integers(1, 4000)), draw(st.integers(1, 4000))
    anns = []
    for _ in range(draw(st.integers(0, 4))):
        t = draw(st.sampled_from(["box", "point", "polygon"]))
        xs = sorted(draw(st.lists(coord, min_size=2, max_size=2)))
        ys = sorted(draw(st.lists(coord, min_size=2, max_size=2)))
        if t == "box":
            anns.append(Annotation(0, "box", xyxy=(xs[0] * w, ys[0] * h, xs[1] * w, ys[1] * h)))
        elif t == "point":
            anns.append(Annotation(0, "point", xy=(xs[0] * w, ys[0] * h), action="click"))
        else:
            anns.append(Annotation(0, "polygon", points=tuple((x * w, y * h) for x, y in
                                                               draw(st.lists(st.tuples(coord, coord), min_size=3, max_size=6)))))
    text = draw(st.text(max_size=40).filter(lambda t: "{" not in t)) + "".join(f" {{{a.type}:{i}}}" for i, a in enumerate(anns))
    return Sample(key=draw(st.from_regex(r"[a-z0-9][a-z0-9_-]{0,20}", fullmatch=True)), kind="caption",
                  source=Source("synth://h"), media=(Media("0.jpg", "image/jpeg", w, h),),
                  content=(MediaPart(0), TextPart(text)), annotations=tuple(anns),
                  meta={"n": draw(st.integers())})


@settings(max_examples=150, deadline=None)
@given(samples())
def test_property_json_round_trip(s: Sample) -> None:
    assert Sample.from_json(json.loads(s.to_json_bytes())) == s
