"""Baselines beside every number (issue #15 item 6): the same measurement on features that no training
produced. `raw_pixel_features`: a split's flattened pixels as the model sees them (after the
split's normalisation / preprocessing); `random_init_features`: the penultimate features of the same
timm architecture at its seeded initialisation. Both return `(features (N, d), labels (N,))` for any
measurement that takes features (NCC accuracy, NC1, CDNV, few-shot NCC episodes)."""
from ncbench.baselines.random_init import random_init_features, random_init_model
from ncbench.baselines.raw_pixels import raw_pixel_features, split_batches

__all__ = ["random_init_features", "random_init_model", "raw_pixel_features", "split_batches"]
