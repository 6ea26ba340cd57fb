"""Fail fast when timm pretrained weights are not on this machine (no network wait).

`check_weights_cached(name)` resolves the model's timm `pretrained_cfg` (`arch.tag`, or the
architecture's default tag) the way `timm.create_model(pretrained=True)` does and looks for the
weights where timm would read them: a local `file` (also `pretrained_cfg_overlay=dict(file=...)`),
the Hugging Face hub cache (`hf_hub_id`, `model.safetensors` or `pytorch_model.bin`), or torch
hub's checkpoint folder (`url`). Missing → `WeightsNotCachedError` with the command that fetches
them on a machine with internet and where to copy them.
"""
from __future__ import annotations

import os
from pathlib import Path


class WeightsNotCachedError(FileNotFoundError):
    """Pretrained weights that are neither a local file nor in the hub caches."""


def full_name(model: str, pretrained) -> str:
    """`arch.tag` for a tag, `arch` (its default weights) for `True`."""
    if isinstance(pretrained, str) and pretrained.lower() not in ("", "true", "1", "yes"):
        return f"{model.split('.')[0]}.{pretrained}"
    return model


def cached_location(cfg: dict) -> str | None:
    """Where timm would load these weights from on this machine, or None if it would download."""
    if cfg.get("state_dict") is not None:
        return "state_dict"
    f = cfg.get("file")
    if f:
        return str(f) if Path(f).expanduser().is_file() else None
    repo = cfg.get("hf_hub_id")
    if repo:
        from huggingface_hub import try_to_load_from_cache

        names = [cfg["hf_hub_filename"]] if cfg.get("hf_hub_filename") else ["model.safetensors", "pytorch_model.bin"]
        for n in names:
            hit = try_to_load_from_cache(repo, n)
            if isinstance(hit, str) and os.path.isfile(hit):
                return hit
    url = cfg.get("url")
    if url:
        import torch

        p = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url.split("?")[0])
        if p.is_file():
            return str(p)
    return None


def check_weights_cached(name: str, overlay: dict | None = None) -> str:
    """The local path (or source) of the pretrained weights of `name` (`arch` or `arch.tag`).

    Raises ValueError for an unknown tag (listing the known ones) and `WeightsNotCachedError`
    when they would have to be downloaded.
    """
    import timm
    from timm.models import get_pretrained_cfg

    arch = name.split(".")[0]
    try:
        cfg = get_pretrained_cfg(name)
    except RuntimeError:
        cfg = None
    if cfg is None:
        tags = [t.split(".", 1)[1] for t in timm.list_pretrained(f"{arch}.*")]
        import difflib

        tag = name.split(".", 1)[1] if "." in name else ""
        if not tags:
            raise ValueError(f"timm has no pretrained weights for '{arch}': drop --pretrained, or pass --checkpoint FILE")
        close = difflib.get_close_matches(tag, tags, n=5, cutoff=0.5)
        raise ValueError(f"'{tag}' is not a pretrained tag of {arch}."
                         + (f" Did you mean: {', '.join(close)}?" if close else "")
                         + f" (`ncbench list models '{arch}.*' --pretrained` shows all {len(tags)})")
    d = {**cfg.to_dict(), **(overlay or {})}
    where = cached_location(d)
    if where is None:
        full = f"{arch}.{cfg.tag}" if cfg.tag else arch
        hub = os.environ.get("HF_HUB_CACHE") or os.path.join(
            os.environ.get("HF_HOME", os.path.expanduser("~/.cache/huggingface")), "hub")
        raise WeightsNotCachedError(
            f"the pretrained weights of {full} are not on this machine (looked in {hub} and "
            f"{Path(__import__('torch').hub.get_dir()) / 'checkpoints'}). On a machine with internet run: "
            f"python -c \"import timm; timm.create_model('{full}', pretrained=True)\" and copy its "
            f"{hub} folder here (or set HF_HOME); or pass --checkpoint FILE with a saved state_dict")
    return where
