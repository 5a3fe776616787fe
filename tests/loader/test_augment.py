"""The augmentation contract: pixels and annotations move together, for every geometric op.

Each annotation is drawn as a filled patch of its own colour; after augmenting, the patch is
found again in the output pixels and compared with where the annotation says it is."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw

from loader.augment import POLICIES, augment, augment_with_params, resolve_policy, swap_left_right
from loader.augment.geometry import compose, hflip, rotate, scale, transform_annotations, translate

COLOURS = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (255, 0, 255), (0, 255, 255)]


def scene(seed: int) -> tuple[np.ndarray, list[dict]]:
    """Three boxes, a triangle and a point, none overlapping (so each patch is whole)."""
    rng = np.random.default_rng(seed)
    w, h = int(rng.integers(300, 600)), int(rng.integers(220, 480))
    img = Image.new("RGB", (w, h), (40, 40, 40))
    d = ImageDraw.Draw(img)
    taken: list[tuple[int, int, int, int]] = []

    def place(bw: int, bh: int) -> tuple[int, int]:
        for _ in range(1000):
            x0, y0 = int(rng.integers(0, w - bw)), int(rng.integers(0, h - bh))
            if not any(x0 < c + 4 and a < x0 + bw + 4 and y0 < e + 4 and b < y0 + bh + 4 for a, b, c, e in taken):
                taken.append((x0, y0, x0 + bw, y0 + bh))
                return x0, y0
        raise AssertionError("no room")

    anns = []
    for k in range(3):
        bw, bh = int(rng.integers(50, 100)), int(rng.integers(50, 100))
        x0, y0 = place(bw, bh)
        d.rectangle([x0, y0, x0 + bw - 1, y0 + bh - 1], fill=COLOURS[k])
        anns.append({"media": 0, "type": "box", "xyxy": [x0, y0, x0 + bw, y0 + bh], "label": f"b{k}"})
    x0, y0 = place(70, 65)
    tri = [[x0, y0 + 65], [x0 + 70, y0 + 65], [x0 + 35, y0]]
    d.polygon([tuple(p) for p in tri], fill=COLOURS[3])
    anns.append({"media": 0, "type": "polygon", "points": tri})
    x0, y0 = place(20, 20)
    px, py = x0 + 10, y0 + 10
    d.ellipse([px - 9, py - 9, px + 9, py + 9], fill=COLOURS[4])
    anns.append({"media": 0, "type": "point", "xy": [px, py], "action": "click"})
    return np.asarray(img), anns


def mask_of(img: np.ndarray, colour: tuple[int, int, int]) -> np.ndarray:
    """Pixels closer to ``colour`` than to the background or the black padding (edges split evenly)."""
    d = lambda c: np.abs(img.astype(int) - np.array(c)).sum(axis=2)  # noqa: E731
    mine = d(colour)
    return (mine < d((40, 40, 40))) & (mine < d((0, 0, 0))) & (mine < 200)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max(1, (a | b).sum()))


def raster_polygon(points: list[list[float]], w: int, h: int) -> np.ndarray:
    im = Image.new("L", (w, h), 0)
    ImageDraw.Draw(im).polygon([tuple(p) for p in points], fill=1)
    return np.asarray(im).astype(bool)


GEOMETRIC_ONLY = {"geometric": "geometric", "none": "none",
                  # the default policy's geometry, with the photometric ops (which change colours) off
                  "default-geometry": {**POLICIES["default"], "color_p": 0.0, "blur_p": 0.0, "noise_p": 0.0,
                                       "jpeg_p": 0.0}}


@pytest.mark.parametrize("seed", range(24))
@pytest.mark.parametrize("policy", sorted(GEOMETRIC_ONLY))
def test_annotations_follow_the_pixels(seed: int, policy: str) -> None:
    img, anns = scene(seed)
    out, new, params = augment_with_params(img, anns, {**resolve_policy(GEOMETRIC_ONLY[policy]), "max_pixels": 200_000},
                                           seed)
    h, w = out.shape[:2]
    assert (w, h) == tuple(params["output_size"]) and w % 28 == 0 and h % 28 == 0 and w * h <= 200_000
    assert len(new) == len(anns)
    if not params.get("rotate"):
        assert not any(a is None for a in new)  # crops keep every annotation inside
    for k, a in enumerate(new):
        if a is None:  # rotated out of the picture: dropped, and (almost) nothing of it is visible
            assert mask_of(out, COLOURS[k]).sum() < 0.5 * (mask_of(img, COLOURS[k]).sum() * (w * h) / img.shape[0] / img.shape[1])
    # boxes: the patch's pixels, re-fitted, agree with the transformed box (IoU >= 0.95)
    for k in range(3):
        if new[k] is None:
            continue
        m = mask_of(out, COLOURS[k])
        x0, y0, x1, y1 = new[k]["xyxy"]
        ys, xs = np.nonzero(m)
        found = np.zeros_like(m)
        found[ys.min():ys.max() + 1, xs.min():xs.max() + 1] = True
        said = np.zeros_like(m)
        said[int(round(y0)):int(round(y1)), int(round(x0)):int(round(x1))] = True
        assert iou(found, said) >= 0.95 if not params.get("rotate") or abs(params["rotate"]) < 1 else iou(found, said) >= 0.9, (k, params)
    # polygon: the rasterised transformed polygon covers the patch
    if new[3] is not None:
        tri = raster_polygon(new[3]["points"], w, h)
        assert iou(tri, mask_of(out, COLOURS[3])) >= 0.9, params
    # point: the transformed point is at the centre of its disk (when the whole disk is visible)
    ys, xs = np.nonzero(mask_of(out, COLOURS[4]))
    if new[4] is not None and xs.size and 10 < new[4]["xy"][0] < w - 10 and 10 < new[4]["xy"][1] < h - 10:
        assert abs(xs.mean() + 0.5 - new[4]["xy"][0]) < 1.5 and abs(ys.mean() + 0.5 - new[4]["xy"][1]) < 1.5, params


def test_photometric_ops_leave_geometry_alone() -> None:
    img, anns = scene(7)
    out, new, params = augment_with_params(img, anns, {**POLICIES["default"], "crop_p": 0.0, "hflip_p": 0.0,
                                                        "rotate_p": 0.0, "color_p": 1.0, "jpeg_p": 1.0, "noise_p": 1.0},
                                           7)
    sx, sy = params["output_size"][0] / img.shape[1], params["output_size"][1] / img.shape[0]
    x0, y0, x1, y1 = anns[0]["xyxy"]
    assert np.allclose(new[0]["xyxy"], [x0 * sx, y0 * sy, x1 * sx, y1 * sy], atol=0.01)
    assert {"color", "jpeg_quality", "noise"} <= set(params)


def test_same_seed_same_result_other_seed_other_result() -> None:
    img, anns = scene(3)
    a = augment(img, anns, "default", (0, "ds", "key", 1))
    b = augment(img, anns, "default", (0, "ds", "key", 1))
    assert np.array_equal(a[0], b[0]) and a[1] == b[1]
    outs = {augment(img, anns, "geometric", s)[0].tobytes() for s in range(8)}
    assert len(outs) > 4


def test_flip_is_skipped_for_text_bearing_annotations() -> None:
    img, anns = scene(5)
    ocr = [{**anns[0], "role": "ocr_line", "text": "EXIT"}]
    flips = [augment_with_params(img, ocr, {"hflip_p": 1.0}, s)[2].get("hflip") for s in range(5)]
    assert flips == [None] * 5
    assert augment_with_params(img, anns[:1], {"hflip_p": 1.0}, 0)[2]["hflip"] is True
    assert swap_left_right("the cat on the Left, left of the right door") == "the cat on the Right, right of the left door"


@pytest.mark.parametrize(("text", "want"), [
    ("He left the room.", "He left the room."),  # a verb, not a side
    ("She left early and turned right at the gate.", "She left early and turned left at the gate."),
    ("the dog on the left, the cat on the RIGHT", "the dog on the right, the cat on the LEFT"),
    ("a mark in the top-left corner, the right-hand page", "a mark in the top-right corner, the left-hand page"),
    ("Left of the tree stands a bench.", "Right of the tree stands a bench."),
    ("猫在左边，狗在右侧的桌子上。", "猫在右边，狗在左侧的桌子上。"),
    ("他十岁左右，站在左上角。", "他十岁左右，站在右上角。"),  # 左右 = "about"
])
def test_left_right_swap_is_spatial_only(text: str, want: str) -> None:
    assert swap_left_right(text) == want
    assert swap_left_right(text, "off") == text


def test_left_right_swap_rules_are_configurable() -> None:
    assert swap_left_right("He left the room.", "all") == "He right the room."
    with pytest.raises(ValueError, match="spatial, all or off"):
        swap_left_right("x", "some")


def test_fully_out_annotations_are_dropped_not_moved() -> None:
    anns = [{"media": 0, "type": "box", "xyxy": [0, 0, 10, 10]}, {"media": 0, "type": "point", "xy": [5, 5]},
            {"media": 0, "type": "box", "xyxy": [50, 50, 90, 90]}, {"media": 1, "type": "point", "xy": [1, 1]}]
    m = compose(translate(-40, -40))  # a crop starting at (40, 40)
    out = transform_annotations(anns, m, 100, 100)
    assert out[0] is None and out[1] is None and out[2]["xyxy"] == [10, 10, 50, 50] and out[3] == anns[3]
    clipped = transform_annotations([{"media": 0, "type": "box", "xyxy": [30, 30, 60, 60]}], m, 100, 100)
    assert clipped[0]["xyxy"] == [0, 0, 20, 20]


def test_annotations_of_a_later_image_move_with_it() -> None:
    """The loader augments image i with the annotations of media i: those of the 2nd and later
    images must move too (they used to pass through in original pixels)."""
    img = np.zeros((200, 400, 3), dtype=np.uint8)
    img[50:100, 200:300] = 255
    box = {"type": "box", "xyxy": [200, 50, 300, 100]}
    policy = {"max_pixels": 100 * 200, "patch": 28}  # a pure downscale
    for media in (0, 1, 3):
        out, anns, _ = augment_with_params(img, [{**box, "media": media}], policy, 0)
        oh, ow = out.shape[:2]
        x0, y0, x1, y1 = anns[0]["xyxy"]
        assert anns[0]["media"] == media and x1 <= ow and y1 <= oh
        inside = out[int(y0) + 1: int(y1) - 1, int(x0) + 1: int(x1) - 1]
        assert inside.size and inside.mean() > 240  # the box still covers the white square


def test_matrices_compose_in_order() -> None:
    pts = np.array([[10.0, 20.0]])
    from loader.augment.geometry import apply_points

    assert np.allclose(apply_points(compose(scale(2, 2), translate(1, 0)), pts), [[21, 40]])
    assert np.allclose(apply_points(hflip(100), pts), [[90, 20]])
    assert np.allclose(apply_points(rotate(90, 0, 0), np.array([[1.0, 0.0]])), [[0, -1]], atol=1e-9)


def test_policy_errors() -> None:
    with pytest.raises(ValueError, match="unknown augmentation policy 'wild'"):
        resolve_policy("wild")
    with pytest.raises(ValueError, match=r"unknown augmentation parameter\(s\) \['spin'\]"):
        resolve_policy({"spin": 1})
    with pytest.raises(TypeError, match="uint8"):
        augment(np.zeros((4, 4, 3), np.float32), [], "none", 0)
    assert set(POLICIES) == {"none", "geometric", "default"}
