"""Synthetic videos: the ground truth is re-found in the decoded frames; cuts are detected."""

from __future__ import annotations

import numpy as np

from datalake.video import iter_frames, probe_video
from pipelines.video.shots import boundary_scores, detect_shots
from synth.shapes import COLOURS
from synth.video import render_video, video_qa, video_sample


def _present(frame: np.ndarray, o, f: int) -> bool:  # type: ignore[no-untyped-def]
    """Whether the object's colour fills its box in this frame (its shape covers >= half the box)."""
    cx, cy = o.centre(f)
    r = o.size / 2 - 2  # inside the edge: chroma subsampling blurs the outline
    x0, x1 = max(0, int(cx - r)), min(frame.shape[1], int(cx + r))
    y0, y1 = max(0, int(cy - r)), min(frame.shape[0], int(cy + r))
    box = frame[y0:y1, x0:x1].astype(np.int32)
    if box.size == 0:
        return False
    near = np.abs(box - np.array(COLOURS[o.colour_at(f)])).sum(-1) < 90
    return bool(near.mean() > 0.3)


def test_ground_truth_is_found_again_in_the_decoded_frames() -> None:
    checked = 0
    for i in range(4):
        v = render_video(11, i)
        assert render_video(11, i).data == v.data  # a pure function of (seed, index)
        frames = [np.asarray(im) for _, im in iter_frames(v.data)]
        info = probe_video(v.data)
        assert len(frames) == info.frames == v.frames and info.fps == v.fps
        for o in v.objects:
            if o.kind == "text":
                continue
            seen = [f for f in range(len(frames)) if _present(frames[f], o, f)]
            # first and last frame showing the object, within one frame of the truth
            assert abs(seen[0] - o.f0) <= 1 and abs(seen[-1] - (o.f1 - 1)) <= 1, (v.key, o, seen[:3], seen[-3:])
            # it moved along its trajectory: present where the truth says, at the middle frame too
            assert _present(frames[(o.f0 + o.f1) // 2], o, (o.f0 + o.f1) // 2)
            checked += 1
    assert checked >= 8


def test_shot_detection_finds_hard_cuts_and_fades_within_one_frame() -> None:
    found: dict[str, list[int]] = {"cut": [], "fade": []}
    truth: dict[str, list[int]] = {"cut": [], "fade": []}
    for i in range(8):
        v = render_video(7, i, n_scenes=4, fade_p=0.4)
        shots = detect_shots(v.data)
        assert shots[0].f0 == 0 and shots[-1].f1 == v.frames
        assert all(a.f1 == b.f0 for a, b in zip(shots, shots[1:], strict=False))  # every frame in one shot
        off = 10_000 * i  # one list over all videos
        for c in v.cuts:
            truth[c["kind"]].append(off + c["frame"])
        for s in shots[1:]:
            found["fade" if s.boundary == "fade" else "cut"].append(off + s.f0)
    cuts = boundary_scores(found["cut"], truth["cut"])
    allb = boundary_scores(found["cut"] + found["fade"], truth["cut"] + truth["fade"])
    assert truth["cut"] and truth["fade"]
    assert cuts["f1"] >= 0.95 and allb["f1"] >= 0.9, (cuts, allb)


def test_video_sample_qa_and_placeholders() -> None:
    v = render_video(2, 0)
    s = video_sample(v)
    assert s.kind == "video" and s.meta["synthetic"] and s.blobs["mp4"] == v.data
    qa = video_qa(v)
    grounding = [q for q in qa if q["type"] == "grounding"]
    assert len(grounding) == len(v.objects)
    # grounding answers point at the object's segment annotation, whose span is the truth
    for q in grounding:
        o = v.objects[q["object"]]
        a = next(a for a in s.annotations if a.label == o.label.removeprefix("the "))
        assert (a.t0, a.t1) == (o.f0 / v.fps, o.f1 / v.fps) == (q["t0"], q["t1"])
    assert "{segment:" in s.content[1].text
    counts = {q["q"]: q["a"] for q in qa if q["type"] == "count"}
    assert counts["How many scene cuts are there?"] == str(len(v.cuts))


def test_colour_conversion_is_exact_whatever_the_buffer_alignment() -> None:
    from synth.video import _yuv420p

    rng = np.random.default_rng(5)
    rgb = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
    ref = _yuv420p(rgb)
    for off in range(1, 16):  # the same picture at every byte offset of a buffer
        raw = bytearray(rgb.nbytes + 16)
        moved = np.frombuffer(raw, np.uint8, rgb.nbytes, off).reshape(rgb.shape)
        moved[...] = rgb
        assert np.array_equal(_yuv420p(moved), ref)
    # BT.601 limited range: black, white and the primaries land where the standard puts them
    flat = np.zeros((2, 2, 3), np.uint8)
    for colour, yuv in (((0, 0, 0), (16, 128, 128)), ((255, 255, 255), (235, 128, 128)),
                        ((255, 0, 0), (82, 90, 240)), ((0, 0, 255), (41, 240, 110))):
        flat[...] = colour
        out = _yuv420p(flat)
        assert abs(int(out[0, 0]) - yuv[0]) <= 1 and abs(int(out[2, 0]) - yuv[1]) <= 1 and abs(int(out[2, 1]) - yuv[2]) <= 1
