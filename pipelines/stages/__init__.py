"""Built-in stages; importing this package registers them (``pipelines.stage.STAGES``)."""

from pipelines import ocr  # noqa: F401  (registers ocr, ocr_filter)
from pipelines.stages import decode, dedupe, filters, interleaved, qa, video  # noqa: F401
