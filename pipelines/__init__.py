"""Pipelines (issue 4): the stage framework, job specs, local/Ray/Spark runners, filters, dedupe, OCR."""
