"""The training loader (issue 5, in progress).

Landed: ``loader.augment`` (coordinate-preserving augmentation, the public ``augment``),
``loader.order`` (epoch order as a pure function of seed, epoch and version) and
``loader.mixing`` (deterministic low-discrepancy mixing with schedules). Still to come:
``LoaderConfig``/``SourceSpec``/``build_loader`` with resumable state, tokenization and
packing, caching and rate control.
"""
