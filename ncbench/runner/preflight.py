"""Checks made before any work (data loading, model building, training), each failing with the fix.

`check_spec` validates what a task spec asks for: its kind, data set and model names, the device,
the seed range, a `--checkpoint` file (exists, readable, a state_dict loadable without executing
code) and `--pretrained` weights (a known tag, cached unless `--download`). `run_identity` names a
run after what actually runs: a spec run on another data set or by several processes is another
measurement, named and hashed as such; `weights_identity` names the weights by content.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

from ncbench.core import identity

SEED_RANGE = (0, 2**32)
"""Seeds accepted: numpy's `seed` takes 32-bit values, and `seed * 1_000_003 + epoch` stays in int64."""

"""Task kinds that simulate (no data set, no backbone)."""


def resolve_device(name: str) -> str:
    """`auto` → `cuda` when a GPU is available, else `cpu`; any other name as given (checked later)."""
    if name != "auto":
        return name
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def parse_pretrained(flag: str) -> bool | str:
    """The `--pretrained` flag: true/1/yes → timm's default weights, false/0/no → none, else a tag."""
    low = flag.lower()
    return True if low in ("true", "1", "yes") else False if low in ("false", "0", "no") else flag


def check_device(device: str) -> None:
    """`cpu`, `cuda`, `cuda:N` (with such a GPU present) or `mps` (when available)."""
    import torch

    m = re.fullmatch(r"(cpu|cuda|mps)(?::(\d+))?", str(device))
    if m is None:
        raise ValueError(f"unknown device '{device}': use cpu, cuda, cuda:N, mps or auto")
    kind, index = m.group(1), m.group(2)
    if kind == "cpu" and index is not None:
        raise ValueError(f"device '{device}': the CPU has no index, use cpu")
    if kind == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device '{device}' requested but no CUDA device is available here: "
                             "use --device cpu (or --device auto)")
        if index is not None and int(index) >= torch.cuda.device_count():
            raise ValueError(f"device '{device}': this machine has {torch.cuda.device_count()} CUDA "
                             f"device(s), cuda:0 to cuda:{torch.cuda.device_count() - 1}")
    if kind == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ValueError(f"device '{device}' requested but MPS is not available here: use --device cpu")


def check_seed(seed) -> None:
    lo, hi = SEED_RANGE
    if isinstance(seed, bool) or not isinstance(seed, int) or not lo <= seed < hi:
        raise ValueError(f"seed must be an integer in [{lo}, {hi - 1}] (2**32 - 1), got {seed!r}")


def parse_seeds(text: str) -> list[int]:
    """`--seeds 0,1,2` -> `[0, 1, 2]` (distinct, non-negative); an argparse type."""
    import argparse

    try:
        seeds = [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--seeds takes integers joined by commas (e.g. 0,1,2), not {text!r}") from None
    if not seeds or len(set(seeds)) != len(seeds) or min(seeds) < 0:
        raise argparse.ArgumentTypeError(f"--seeds needs distinct non-negative integers, got {text!r}")
    return seeds


def check_checkpoint(path: str | Path) -> None:
    """The file exists, is readable and holds a state_dict timm can read with `weights_only=True`."""
    from timm.models import load_state_dict

    p = Path(path).expanduser()
    if not p.exists():
        raise ValueError(f"checkpoint '{path}' does not exist: pass the path of a saved state_dict "
                         "(.pth/.pt/.safetensors)")
    if not p.is_file():
        raise ValueError(f"checkpoint '{path}' is not a file: pass the path of a saved state_dict")
    if not os.access(p, os.R_OK):
        raise ValueError(f"checkpoint '{path}' is not readable (permissions): fix them or copy the file")
    try:
        state = load_state_dict(str(p), weights_only=True)
    except Exception as e:  # noqa: BLE001 - a pickle with code, a torn file, not a state_dict
        first = str(e).splitlines()[0][:200] if str(e) else ""
        raise ValueError(f"could not load the checkpoint '{path}' safely: not a state_dict of tensors "
                         f"readable with weights_only=True ({type(e).__name__}: {first})") from None
    if not isinstance(state, dict) or not state:
        raise ValueError(f"checkpoint '{path}' holds no state_dict (an empty or non-mapping object)")


def check_spec(spec) -> None:
    """Every check of this module for one task spec (raises ValueError / UnknownNameError)."""
    from ncbench.tasks import TASK_KINDS

    kind = TASK_KINDS.get(spec.kind)
    for seed in [spec.seed, *(spec.seeds or [])]:
        check_seed(seed)
    if spec.recipe:   # every recipe key's type and range, before any work, naming the spec's file
        from ncbench.training.recipe import Recipe

        try:
            Recipe.from_dict(spec.recipe)
        except (ValueError, KeyError) as e:
            raise ValueError(f"task spec {spec.source or spec.name}: {e}") from None
    from ncbench.models.pretrained import RANDOM_INIT

    random_init = spec.pretrained == RANDOM_INIT
    if random_init and not getattr(kind, "MEASURES_RANDOM_INIT", False):
        raise ValueError(f"--random-init (pretrained: {RANDOM_INIT}) is for the frozen tier (frozen_transfer "
                         f"tasks); task '{spec.name}' is a {spec.kind}, which trains from a seeded random "
                         f"initialisation anyway: drop --random-init")
    if kind.MODEL_FREE is not None:   # no data, no backbone, CPU whatever the command line says
        return
    check_device(spec.device)
    from ncbench.data.registry import check_dataset_name
    from ncbench.models.backbone import check_model_name

    check_dataset_name(spec.dataset, spec.download)     # registered, imagefolder:PATH, or hf: that opens
    check_model_name(spec.model)
    if spec.checkpoint:
        check_checkpoint(spec.checkpoint)
    elif (spec.pretrained and not random_init) or "." in spec.model:
        from ncbench.models.pretrained import resolve_weights

        overlay = dict((spec.options or {}).get("model_kwargs") or {}).get("pretrained_cfg_overlay")
        resolve_weights(spec.model, spec.pretrained, spec.download, overlay)   # e.g. {"file": PATH}


def run_identity(spec, base: dict, changed: list[str] | tuple = ()) -> str:
    """The name a run is stored under: the spec's name, plus `@key=value,...` for each way it differs
    from its YAML (`base`) in what the task measures: another data set, several DDP processes
    (BatchNorm statistics change). The frozen tier measures any data set by design (`dataset` is an
    identity column of its board), so there another data set keeps the name. Model and weights (`--model`, `--pretrained`, `--checkpoint`) keep
    the name: they are what a board compares, and they are its identity columns (`model`,
    `pretrained`, with a checkpoint named by its SHA-256) and part of the config hash. `changed`: the
    tokens of `--recipe` / `--set` (`recipe=vit-adamw`, `recipe.lr=0.001`; `ncbench.specs.overrides`),
    replaced by one hash when the name would pass 128 characters."""
    other = spec.dataset != base.get("dataset", spec.dataset) and spec.tier != "frozen"
    return identity.run_name(spec.name, dataset_token=_name_token(spec.dataset) if other else None,
                             world_size=spec.world_size, changed=changed)


def _name_token(dataset: str) -> str:
    """A data set as a folder-name token (`ncbench.specs.dataset_names.name_token`)."""
    from ncbench.specs.dataset_names import name_token

    return name_token(dataset)
