"""Near-duplicate quality, measured against brute force on data with planted duplicates."""

from __future__ import annotations

from pipelines.quality import image_quality, text_quality


def test_text_dedupe_precision_and_recall() -> None:
    q = text_quality(n_docs=600, n_dups=150, threshold=0.8, seed=1)
    assert q["true_pairs"] > 50
    assert q["recall"] >= 0.95 and q["precision"] >= 0.99, q


def test_image_dedupe_recall_on_reencoded_and_resized_copies() -> None:
    q = image_quality(n=60, max_hamming=6, seed=2)
    assert q["clusters_equal_brute_force"], "multi-index search must give exactly the brute-force clusters"
    r = q["recall_by_transform"]
    for t in ("re-encoded q40", "re-encoded q70", "resized 0.75x", "resized 0.5x"):
        assert r[t] >= 0.95, (t, r)
