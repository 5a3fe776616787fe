"""Synthetic data with exact ground truth (shapes with boxes; OCR, charts, GUI and more to come)."""
