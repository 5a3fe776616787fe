"""The training loader (issue 5, in progress): augmentation that keeps coordinates correct (loader.augment),
deterministic order and mixing (loader.order, loader.mixing)."""
