"""Built-in stages; importing this package registers them (``pipelines.stage.STAGES``)."""

from pipelines.stages import decode, dedupe, filters  # noqa: F401
