"""Your own `nn.Module` as a backbone (`ncbench.run(task, model=net)`): named by its content.

A module has no timm name, so it enters a run as `module:<ClassName>-<16 hex>`, the SHA-256 of its
architecture (`repr(module)`) and of every state_dict entry (name, dtype, shape, bytes). That name is
the run's `model` column, goes into the config hash and the trajectory cache key, so other weights or
another architecture are another measurement, and the same weights find their cached run again.

The module is the feature extractor `h = body(x)` (SPEC §1: images `(B, C, H, W)` to `(B, d)`, e.g.
`timm.create_model(name, num_classes=0)`); ncbench adds its own head, as for a timm name. Each build
is a deep copy (training never changes the caller's module); `reinitialise=True` (the random-init
baseline) resets every submodule's `reset_parameters()`, or calls a timm model's `init_weights()`.
Registered modules live in this process only.
"""
from __future__ import annotations

import copy
import hashlib
from dataclasses import dataclass

import torch
from torch import nn

PREFIX = "module:"


@dataclass(frozen=True)
class InMemoryModel:
    module: nn.Module
    num_features: int


_MODELS: dict[str, InMemoryModel] = {}


def module_digest(module: nn.Module) -> str:
    """SHA-256 (hex) of `repr(module)` and each state_dict entry's name, dtype, shape and bytes."""
    h = hashlib.sha256(repr(module).encode())
    for name, value in module.state_dict().items():
        h.update(f"\0{name}\0".encode())
        if isinstance(value, torch.Tensor):
            t = value.detach().cpu().contiguous()
            h.update(f"{t.dtype}{tuple(t.shape)}".encode())
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
        else:   # an extra state object
            h.update(repr(value).encode())
    return h.hexdigest()


def register_module(module: nn.Module, num_features: int) -> str:
    """Register `module` (a feature extractor of width `num_features`); returns its run name."""
    if not isinstance(module, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, a timm name or a checkpoint path, not {type(module).__name__}")
    name = f"{PREFIX}{type(module).__name__}-{module_digest(module)[:16]}"
    _MODELS[name] = InMemoryModel(copy.deepcopy(module).cpu(), int(num_features))
    return name


def is_in_memory(name: str) -> bool:
    return isinstance(name, str) and name.startswith(PREFIX)


def lookup(name: str) -> InMemoryModel:
    if name not in _MODELS:
        raise ValueError(f"model '{name}' is an in-memory nn.Module that this process does not hold: such a run "
                         "can only be made (or resumed) by passing the module to ncbench.run(..., model=module)")
    return _MODELS[name]


def build_body(name: str, *, reinitialise: bool = False) -> tuple[nn.Module, int]:
    """A fresh copy of the registered module and its feature width (`reinitialise`: reset its weights)."""
    entry = lookup(name)
    body = copy.deepcopy(entry.module)
    if reinitialise:
        reset_weights(body)
    if not (getattr(body, "head_hidden_size", None) or getattr(body, "num_features", None)):
        body.num_features = entry.num_features    # what `Backbone.num_features` reads (timm's attribute)
    return body, entry.num_features


def reset_weights(body: nn.Module) -> None:
    """A new initialisation from the current RNG: timm's `init_weights()` when the model has one, else
    `reset_parameters()` of every submodule that defines it."""
    if callable(getattr(body, "init_weights", None)):
        body.init_weights()
        return
    for m in body.modules():
        if callable(getattr(m, "reset_parameters", None)):
            m.reset_parameters()
