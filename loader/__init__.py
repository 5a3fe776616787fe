"""The training loader: deterministic, resumable, mixing, augmenting, tokenizing and packing.

``from loader import LoaderConfig, SourceSpec, build_loader`` -- see ``loader.core`` and the
README. Pieces: ``loader.order`` (epoch order, a pure function, looked up draw by draw),
``loader.mixing`` (closed-form low-discrepancy mixing with schedules), ``loader.plan``
(canonical lanes, rank slices with locality, O(1) planning, exactly-once merging of states), ``loader.augment`` (coordinate-preserving augmentation),
``loader.render`` (images to patches, text to tokens and loss labels), ``loader.packing``
(best-fit packing, batch collation), ``loader.source`` (reads, caches, rate limits).
"""

from loader.core import Loader, LoaderConfig, SourceSpec, build_loader

__all__ = ["LoaderConfig", "SourceSpec", "Loader", "build_loader"]
