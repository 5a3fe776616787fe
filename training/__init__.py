"""A small VLM in the Kimi-VL shape and its training loop on the loader (to come)."""
