"""The training loader (issue 5): deterministic mixing, augmentation, tokenization, packing, resume."""
