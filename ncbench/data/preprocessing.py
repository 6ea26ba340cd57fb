"""Evaluation preprocessing from timm's own data config (`resolve_data_config` / `create_transform`).

The input size, crop (`crop_pct`, `crop_mode`), mean/std and interpolation come from the model's
`pretrained_cfg` (the weights' own settings), each overridable by name; the transform is timm's
evaluation transform for that config, applied to PIL images (`L` for one input channel, `RGB`
for three: grayscale sets are replicated to RGB for RGB models, colour sets averaged for `L`).
"""
from __future__ import annotations

from collections.abc import Callable

OVERRIDES = ("input_size", "crop_pct", "crop_mode", "mean", "std", "interpolation")


def data_config(body, overrides: dict | None = None) -> dict:
    """timm's resolved evaluation config for the timm model `body`, with `overrides` applied."""
    from timm.data import resolve_data_config

    overrides = dict(overrides or {})
    unknown = sorted(set(overrides) - set(OVERRIDES))
    if unknown:
        raise ValueError(f"unknown preprocessing keys {unknown}: use {list(OVERRIDES)}")
    args = {k: tuple(v) if isinstance(v, list) else v for k, v in overrides.items()}
    cfg = resolve_data_config(args=args, model=body)
    cfg = {k: tuple(v) if isinstance(v, list) else v for k, v in cfg.items()}
    c = cfg["input_size"][0]
    for k in ("mean", "std"):
        if len(cfg[k]) != c:
            raise ValueError(f"preprocessing {k} has {len(cfg[k])} values but input_size has {c} channels: "
                             f"give one {k} per channel (override both)")
    return cfg


def eval_transform(cfg: dict) -> Callable:
    """timm's evaluation transform (`create_transform(**cfg, is_training=False)`), PIL → tensor."""
    from timm.data import create_transform

    return create_transform(**cfg, is_training=False)


def image_mode(cfg: dict) -> str:
    c = int(cfg["input_size"][0])
    if c not in (1, 3):
        raise ValueError(f"input_size must have 1 or 3 channels, got {c}")
    return "L" if c == 1 else "RGB"
