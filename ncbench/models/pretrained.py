"""Which pretrained weights a run uses, and where they come from, decided before any work.

The rule for network access (the same for data sets): ncbench reaches the network only with
`--download` (`download=True`). Without it, `--pretrained TAG` uses weights already in the local
caches timm reads (the Hugging Face hub cache, torch hub's `checkpoints/`), loaded from that file
(`pretrained_cfg_overlay=dict(file=...)`, so timm makes no request either), or fails at once with
the command that fetches them on a machine with internet. The tag always reaches timm as
`model.tag`; an unknown tag is an error that lists the model's published tags.
"""
from __future__ import annotations

import difflib
import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

HF_FILENAMES = ("model.safetensors", "pytorch_model.bin", "open_clip_model.safetensors",
                "open_clip_pytorch_model.bin")
"""Weight files timm looks for in a hub repository, in its order of preference."""


RANDOM_INIT = "random"
"""The `pretrained` value of a deliberate random initialisation (`--random-init`, frozen tier only): the
architecture measured at its seeded initial weights; rows and boards say `random`."""


class WeightsNotCachedError(ValueError):
    """Pretrained weights that are neither a local file nor in the hub caches (and no `--download`)."""


@dataclass(frozen=True)
class Weights:
    """The resolved weights: timm's full name `arch.tag`, the tag, and a cached local file (or None
    when `download=True` lets timm fetch them)."""

    name: str
    tag: str
    file: str | None
    overlay: tuple[tuple[str, object], ...] = ()   # the caller's own pretrained_cfg_overlay items

    def create_kwargs(self) -> dict:
        """Keyword arguments for `timm.create_model(self.name, ...)`."""
        overlay = dict(self.overlay)
        if self.file is not None:
            overlay.update(file=self.file, source="")
        return {"pretrained": True, **({"pretrained_cfg_overlay": overlay} if overlay else {})}


def fetch_command(full_name: str) -> str:
    return f"python -c \"import timm; timm.create_model('{full_name}', pretrained=True)\""


def requested_tag(model: str, pretrained: bool | str) -> str | None:
    """The tag asked for: `pretrained='a1_in1k'`, a `model.tag` name, or None for timm's default
    (`pretrained=True`); `''` when no pretrained weights are asked for."""
    _, _, name_tag = model.partition(".")
    if isinstance(pretrained, str) and pretrained.lower() not in ("", "true", "false"):
        if name_tag and name_tag != pretrained:
            raise ValueError(f"model '{model}' names the tag '{name_tag}' but pretrained='{pretrained}': "
                             "give the tag once")
        return pretrained
    if name_tag:
        return name_tag
    return None if pretrained is True or str(pretrained).lower() == "true" else ""


def cached_file(cfg, hub_cache: str | Path | None = None) -> str | None:
    """The local file holding the weights of timm pretrained config `cfg` (a `PretrainedCfg` or its
    dict, overlay applied), if a local `file` or a cache has it."""
    cfg = cfg if isinstance(cfg, dict) else cfg.to_dict()
    if cfg.get("file"):
        return str(cfg["file"]) if Path(cfg["file"]).expanduser().is_file() else None
    if cfg.get("hf_hub_id"):
        from huggingface_hub import constants, try_to_load_from_cache

        names = (cfg["hf_hub_filename"],) if cfg.get("hf_hub_filename") else HF_FILENAMES
        cache = hub_cache or os.environ.get("HF_HUB_CACHE") or constants.HF_HUB_CACHE
        for fname in names:
            hit = try_to_load_from_cache(cfg["hf_hub_id"], fname, cache_dir=cache)
            if isinstance(hit, str) and os.path.isfile(hit):
                return hit
    if cfg.get("url"):
        import torch

        p = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(cfg["url"]).path)
        if p.is_file():
            return str(p)
    return None


def resolve_weights(model: str, pretrained: bool | str, download: bool = False,
                    overlay: dict | None = None) -> Weights | None:
    """The pretrained weights of `model` that a run will load (None: no pretrained weights).
    `overlay` is a `pretrained_cfg_overlay` (e.g. `{"file": PATH}`: timm's pretrained path read from
    a local file).

    Raises ValueError for an architecture without published weights or an unknown tag (with the
    close ones), `WeightsNotCachedError` for weights not cached when `download` is False."""
    tag = requested_tag(model, pretrained)
    if tag == "":
        return None
    import timm
    from timm.models import get_pretrained_cfg

    arch = model.split(".")[0]
    published = timm.list_pretrained(f"{arch}.*")
    if not published:
        raise ValueError(f"timm publishes no pretrained weights for '{arch}': train from scratch "
                         "(no --pretrained) or pass --checkpoint FILE")
    tags = [p.split(".", 1)[1] for p in published]
    if tag is None:
        tag = get_pretrained_cfg(arch).tag
    if tag not in tags:
        close = difflib.get_close_matches(tag, tags, n=5, cutoff=0.4)
        raise ValueError(f"unknown pretrained tag '{tag}' for {arch}" +
                         (f"; did you mean {', '.join(close)}?" if close else "") +
                         f" ({arch} has {len(tags)}: `ncbench list models '{arch}.*' --pretrained`)")
    full = f"{arch}.{tag}"
    items = tuple(sorted((overlay or {}).items()))
    if download:
        return Weights(full, tag, None, items)
    hit = cached_file({**get_pretrained_cfg(full).to_dict(), **(overlay or {})})
    if hit is None:
        import torch
        from huggingface_hub import constants

        hub = os.environ.get("HF_HUB_CACHE") or constants.HF_HUB_CACHE
        raise WeightsNotCachedError(
            f"the weights '{full}' are not on this machine (looked in {hub} and "
            f"{Path(torch.hub.get_dir()) / 'checkpoints'}) and ncbench uses the network only with --download: "
            f"pass --download, or on a machine with internet run {fetch_command(full)} and copy its hub "
            "folder here (or set HF_HOME), or pass --checkpoint FILE")
    return Weights(full, tag, hit, items)
