"""Image filters on real files: transparent icons are not 'near uniform', and a document loses
a bad image, not itself."""

from __future__ import annotations

from datalake.sample import Media, MediaPart, Sample, Source, TextPart
from pipelines.stage import build_stage
from tests.realdata import icon_paths, image_sample, photo_paths


def test_transparent_symbolic_icons_are_scored_with_their_alpha() -> None:
    icons = icon_paths(n=40)
    st = build_stage("image_filter", {"min_std": 5.0})
    reasons = [st.decide(st.score(image_sample(f"icon{i}", p.read_bytes()))) for i, p in enumerate(icons)]
    # every Adwaita symbolic icon is one flat colour in RGB with its shape in alpha: on white
    # (or black) each is a clear shape, never a blank square
    assert reasons.count("near_uniform") == 0, [p.name for p, r in zip(icons, reasons, strict=True) if r]
    assert len(icons) == 40


def test_a_document_loses_its_failing_image_and_keeps_the_rest() -> None:
    photo = photo_paths()[0].read_bytes()
    icon = icon_paths("16x16/*/*.png", n=1)[0].read_bytes()
    doc = Sample(key="chapter", kind="interleaved", source=Source("test://real"),
                 media=(Media("0.png", "image/png", 16, 16), Media("1.png", "image/png", 512, 512)),
                 content=(TextPart("Intro"), MediaPart(0), TextPart("Body text"), MediaPart(1), TextPart("End")),
                 blobs={"0.png": icon, "1.png": photo})
    st = build_stage("image_filter", {"min_side": 64})
    sc = st.score(doc)
    assert st.decide(sc) is None  # the document survives its 16 px navigation icon
    kept = st.prune(doc, sc)
    assert [m.name for m in kept.media] == ["1.png"] and set(kept.blobs) == {"1.png"}
    assert kept.content == (TextPart("Intro"), TextPart("Body text"), MediaPart(0), TextPart("End"))
    assert kept.meta["dropped_parts"] == [{"stage": "image_filter", "media": "0.png", "reason": "too_small"}]
    # judged as a whole on request, it is dropped for its worst image as before
    assert build_stage("image_filter", {"min_side": 64, "per_image": "sample"}).decide(sc) == "too_small"
    # a single-image sample is still judged by its image
    one = image_sample("icon", icon)
    assert st.decide(st.score(one)) == "too_small"
