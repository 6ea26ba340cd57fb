"""Pooled features of every block or stage of a timm backbone, in one forward pass (SPEC §5).

Layers (Galanti 2022; Ben-Shaul & Dekel 2022 measure NCC separability per layer):
- `blocks`: every residual/transformer block, found with timm's fine-grained `group_matcher` (the
  grouping layer-wise LR decay uses: `layer1.0` in a ResNet, `stages.0.blocks.0` in a ConvNeXt,
  `blocks.0.0` in a MobileNet, `blocks.0` in a ViT); groups with a fixed ordinal (downsample, final
  norm) are not blocks. Read with forward hooks. Falls back to `stages` when a model has no matcher.
- `stages`: timm's `feature_info` points (stem included where timm lists it), read with
  `forward_intermediates` where the model has it, forward hooks otherwise.
- a last layer `pre_logits`: the features `h = body(x)` the classifier reads (SPEC §1).

Pooling: global average over space for feature maps (`(B,C,H,W)`, or `(B,H,W,C)` for models whose
`output_fmt` is NHWC), the class token (`cls`) or the mean of the non-prefix tokens (`mean`) for
token sequences `(B,T,C)`; `auto` follows the model's own `global_pool` (`token` → cls, else mean).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import nn

if TYPE_CHECKING:
    from typing_extensions import Self

GRANULARITIES = ("blocks", "stages")
TOKEN_POOLS = ("auto", "cls", "mean")
PRE_LOGITS = "pre_logits"


@dataclass(frozen=True)
class Layer:
    """One measured layer: its position, the module name in the timm body, what it is."""

    index: int
    name: str
    kind: str          # block | stage | pre_logits


def block_names(body: nn.Module) -> list[str]:
    """Names of the body's blocks, in execution order, from `body.group_matcher(coarse=False)`."""
    if not hasattr(body, "group_matcher"):
        return []
    matcher = body.group_matcher(coarse=False).get("blocks")
    if matcher is None:
        return []
    rules = [(matcher, None)] if isinstance(matcher, str) else list(matcher)
    patterns = [re.compile(p.lstrip("^")) for p, ordinal in rules if ordinal is None]
    return [name for name, _ in body.named_modules() if name and any(p.fullmatch(name) for p in patterns)]


def stage_names(body: nn.Module) -> list[str]:
    """Module names of timm's `feature_info` points (empty when the model has none)."""
    info = getattr(body, "feature_info", None)
    return [f["module"] for f in info] if info else []


def resolve_token_pool(body: nn.Module, token_pool: str) -> str:
    if token_pool not in TOKEN_POOLS:
        raise ValueError(f"token_pool must be one of {TOKEN_POOLS}, got {token_pool!r}")
    if token_pool != "auto":
        return token_pool
    return "cls" if getattr(body, "global_pool", None) == "token" else "mean"


@dataclass(frozen=True)
class Pooling:
    """A layer output to a `(B, d)` vector: global average over space for feature maps (NCHW, or NHWC
    when `channels_last`), the class token (`cls`) or the mean of the non-prefix tokens (`mean`) for
    token sequences `(B, T, C)`; `(B, C)` passes through. Tuples/lists: their first element."""

    token_pool: str = "mean"
    prefix_tokens: int = 0
    channels_last: bool = False

    @classmethod
    def of(cls, body: nn.Module, token_pool: str = "auto") -> Pooling:
        """The pooling that suits `body` (a timm model, or any module: then NCHW maps, mean tokens)."""
        pool = resolve_token_pool(body, token_pool)
        prefix = int(getattr(body, "num_prefix_tokens", 0) or 0)
        if pool == "cls" and prefix == 0 and hasattr(body, "num_prefix_tokens"):
            raise ValueError(f"token_pool='cls' needs a class token, and this {type(body).__name__} has "
                             "none: use token_pool='mean'")
        return cls(pool, prefix, getattr(body, "output_fmt", "NCHW") == "NHWC")

    def __call__(self, out) -> torch.Tensor:
        if isinstance(out, (tuple, list)):
            out = out[0]
        if out.ndim == 2:
            return out
        if out.ndim == 3:
            if self.token_pool == "cls":
                if self.prefix_tokens == 0:
                    raise ValueError("token_pool='cls' on a model without a class token: use token_pool='mean'")
                return out[:, 0]
            return out[:, self.prefix_tokens:].mean(1)
        if out.ndim == 4:
            return out.mean((1, 2)) if self.channels_last else out.mean((2, 3))
        raise ValueError(f"cannot pool a layer output of shape {tuple(out.shape)}: expected (B,C), (B,T,C) "
                         "or a 4-D feature map")


class LayerFeatures:
    """`(pooled, h, logits) = taps(x)`: pooled `(B, d_l)` features of every layer, the pre-logits
    features and the logits of `model` (a `Backbone`: `.body` a timm model, `.head`), one forward.

    Use as a context manager (or call `close()`) to remove the forward hooks it registers.
    """

    def __init__(self, model: nn.Module, granularity: str = "blocks", token_pool: str = "auto"):
        if granularity not in GRANULARITIES:
            raise ValueError(f"granularity must be one of {GRANULARITIES}, got {granularity!r}")
        self.model, self.body = model, model.body
        self.pooling = Pooling.of(self.body, token_pool)
        self.token_pool, self.prefix_tokens = self.pooling.token_pool, self.pooling.prefix_tokens
        names = block_names(self.body) if granularity == "blocks" else []
        self.granularity = "blocks" if names else "stages"
        if not names:
            names = stage_names(self.body)
        if not names:
            raise ValueError(f"{type(self.body).__name__} has neither a timm group_matcher nor feature_info: "
                             "per-layer features need a timm model (or one defining group_matcher)")
        kind = self.granularity[:-1]
        self.layers = [Layer(i, n, kind) for i, n in enumerate(names)]
        self.layers.append(Layer(len(names), PRE_LOGITS, PRE_LOGITS))
        self.use_intermediates = (self.granularity == "stages" and hasattr(self.body, "forward_intermediates")
                                  and len(names) == len(stage_names(self.body)))
        self._store: dict[int, torch.Tensor] = {}
        self._hooks = []
        if not self.use_intermediates:
            modules = dict(self.body.named_modules())
            for i, n in enumerate(names):
                self._hooks.append(modules[n].register_forward_hook(self._hook(i)))

    # -- pooling -------------------------------------------------------------------------
    def pool(self, out) -> torch.Tensor:
        """A layer output to a `(B, d)` vector (see the module docstring)."""
        return self.pooling(out)

    def _hook(self, i: int):
        def hook(module, inputs, output):
            self._store[i] = self.pool(output)
        return hook

    # -- forward -------------------------------------------------------------------------
    def __call__(self, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor]:
        n = len(self.layers) - 1
        if self.use_intermediates:
            kw = {"return_prefix_tokens": True} if self.token_pool == "cls" and self.prefix_tokens else {}
            final, inter = self.body.forward_intermediates(x, indices=None, **kw)
            pooled = [t[1][:, 0] if isinstance(t, tuple) else t.mean((2, 3)) for t in inter]
            h = self.body.forward_head(final)
        else:
            self._store = {}
            h = self.model.features(x)
            missing = [self.layers[i].name for i in range(n) if i not in self._store]
            if missing:
                raise ValueError(f"layers {missing} did not run in the forward pass")
            pooled = [self._store[i] for i in range(n)]
            self._store = {}
        if len(pooled) != n:
            raise ValueError(f"expected {n} intermediate layers, got {len(pooled)}")
        return pooled + [h], h, self.model.logits(h)

    def close(self) -> None:
        for hk in self._hooks:
            hk.remove()
        self._hooks = []

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def names(self) -> list[str]:
        return [layer.name for layer in self.layers]
