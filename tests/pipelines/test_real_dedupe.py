"""Near-duplicate images on real photos with planted copies, against look-alike images that are
different (flags of one layout, icons of one theme, pages of one manual): clusters stay tight."""

from __future__ import annotations

import io

import pytest

from pipelines.dedupe_core import clusters, find_pairs
from pipelines.quality import image_families_quality, tricolour_flags
from pipelines.stage import build_stage
from tests.realdata import icon_paths, image_sample, photo_paths


@pytest.fixture(scope="module")
def lookalikes() -> dict[str, list[bytes]]:
    import pypdfium2 as pdfium

    pdf = pdfium.PdfDocument("/usr/share/doc/bash/bash.pdf")
    pages = []
    for i in range(0, len(pdf), 3):
        buf = io.BytesIO()
        pdf[i].render(scale=40 / 72).to_pil().convert("RGB").save(buf, "PNG")
        pages.append(buf.getvalue())
    return {"flags": tricolour_flags(60), "icons": [p.read_bytes() for p in icon_paths("64x64/legacy/*.png")][:60],
            "manual pages": pages}


def test_planted_copies_cluster_with_their_original_and_lookalikes_do_not(lookalikes: dict[str, list[bytes]]) -> None:
    photos = [p.read_bytes() for p in photo_paths()]
    q = image_families_quality(photos, lookalikes, {"max_hamming": 6})
    assert q["pair_precision"] >= 0.98, q
    for t in ("re-encoded q40", "re-encoded q70", "resized 0.75x", "resized 0.5x", "recoloured"):
        assert q["recall_by_transform"][t] >= 0.95, (t, q)
    # grey structure alone, joined transitively (the clustering before): flags chain into one cluster
    before = image_families_quality(photos, lookalikes, {"max_hamming": 6, "max_colour_distance": None},
                                    transitive=True)
    assert before["pair_precision"] < 0.5 and before["largest_cluster"] >= 30


def test_a_red_and_a_green_flag_of_one_layout_are_not_duplicates() -> None:
    from PIL import Image

    st = build_stage("dedupe_image", {"max_hamming": 6})

    def flag(colours: list[tuple[int, int, int]]) -> bytes:
        im = Image.new("RGB", (300, 200))
        for j, c in enumerate(colours):
            im.paste(c, (j * 100, 0, (j + 1) * 100, 200))
        buf = io.BytesIO()
        im.save(buf, "PNG")
        return buf.getvalue()

    red = st.signature(image_sample("red", flag([(255, 255, 255), (206, 17, 38), (255, 255, 255)])))
    green = st.signature(image_sample("green", flag([(255, 255, 255), (0, 122, 61), (255, 255, 255)])))
    assert bin(red[0] ^ green[0]).count("1") <= 6  # grey pHash alone cannot tell them apart
    assert not st.verify(red, green)


def test_star_clusters_never_chain_beyond_the_threshold() -> None:
    st = build_stage("dedupe_image", {"max_hamming": 6, "max_colour_distance": None})
    a = 0
    b = a ^ 0b111111  # 6 bits from a
    c = b ^ (0b111111 << 10)  # 6 bits from b, 12 from a
    pairs = find_pairs(st, [r for i, s in enumerate([a, b, c]) for r in st.band_records(i, s)])
    assert pairs == {(0, 1), (1, 2)}
    assert clusters(pairs, {0: 0, 1: 1, 2: 2}, transitive=False) == {1: 0}  # c stays: it is far from a
    assert clusters(pairs, {0: 0, 1: 1, 2: 2}) == {1: 0, 2: 0}  # components would chain it


def test_crowded_band_buckets_are_verified_vectorised_with_the_same_pairs() -> None:
    from pipelines.dedupe_core import verify_group

    st = build_stage("dedupe_image", {"max_hamming": 6, "max_colour_distance": None})
    import numpy as np

    rng = np.random.default_rng(0)
    sigs = [int(x) << 16 for x in rng.integers(0, 2**40, 300)]  # all share the low 16-bit part
    sigs += [s ^ 0b101 for s in sigs[:50]]
    recs = [r for i, s in enumerate(sigs) for r in st.band_records(i, s)]
    crowded = [r for r in recs if r.group == "0:0"]
    assert len(crowded) >= 300  # one bucket holds every hash: the vectorised path
    assert set(verify_group(st, crowded)) == {(i, j) for i in range(300) for j in range(i + 1, 300)
                                              if bin(sigs[i] ^ sigs[j]).count("1") <= 6}
    got = find_pairs(st, recs)
    brute = {(i, j) for i in range(len(sigs)) for j in range(i + 1, len(sigs)) if bin(sigs[i] ^ sigs[j]).count("1") <= 6}
    assert got == brute and len(brute) >= 50
