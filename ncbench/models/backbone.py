"""A timm model split into a feature extractor (penultimate layer, pooled) and a linear head.

The timm body is built with `num_classes=0`, so `body(x)` returns the pre-logits features `h`
(SPEC §1); the head `W h + b` is ncbench's own module, so every task reads `W`, `b` the same way
and a fixed simplex-ETF head (SPEC §7) can replace it.
"""
from __future__ import annotations

import fnmatch
from pathlib import Path

import torch
from torch import nn

from ncbench.registry import suggest


def list_models(pattern: str | None = None, pretrained: bool = False) -> list[str]:
    """timm's own model listing (`timm.list_models`), filtered by a wildcard pattern."""
    import timm

    return timm.list_models(pattern or "*", pretrained=pretrained)


def check_model_name(name: str) -> None:
    import timm

    arch = name.split(".")[0]
    if not timm.is_model(arch):
        raise suggest("model", name, timm.list_models())


class Backbone(nn.Module):
    """`features(x) -> h (B, d)`, `forward(x) -> logits`, `classifier() -> (W, b)` in feature space."""

    def __init__(self, body: nn.Module, head: nn.Module, name: str = "", pretrained: str = ""):
        super().__init__()
        self.body, self.head = body, head
        self.name, self.pretrained = name, pretrained

    @property
    def num_features(self) -> int:
        return int(self.body.num_features)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def logits(self, h: torch.Tensor) -> torch.Tensor:
        return self.head(h)

    def forward(self, x: torch.Tensor, with_features: bool = False):
        """Logits, or `(features, logits)` with `with_features=True` (one call, so DDP syncs it)."""
        h = self.body(x)
        return (h, self.head(h)) if with_features else self.head(h)

    def classifier(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(W, b) of the last layer acting on `features(x)`."""
        if hasattr(self.head, "effective_classifier"):
            return self.head.effective_classifier()
        return self.head.weight.detach(), None if self.head.bias is None else self.head.bias.detach()


def build_backbone(name: str, num_classes: int, in_chans: int = 3, *, pretrained: bool | str = False,
                   checkpoint: str | Path | None = None, head: str = "linear", head_seed: int = 0,
                   **model_kwargs) -> Backbone:
    """Any timm model by name (`resnet18`, `resnet18.a1_in1k` for a pretrained tag).

    `pretrained=True` (or a name with a `.tag`) loads timm's weights; `checkpoint` a local file through
    timm's `pretrained_cfg_overlay=dict(file=...)` mechanism. `head`: `linear` (learnable, with bias)
    or `etf` (fixed simplex ETF, SPEC §7).
    """
    import timm

    check_model_name(name)
    kwargs = dict(num_classes=0, in_chans=in_chans, **model_kwargs)
    use_pretrained = bool(pretrained) or checkpoint is not None or "." in name
    if checkpoint is not None:
        path = Path(checkpoint)
        if not path.is_file():
            raise FileNotFoundError(f"checkpoint '{path}' does not exist: pass the path of a saved state_dict "
                                    "(.pth/.pt/.safetensors)")
        kwargs["pretrained_cfg_overlay"] = dict(file=str(path.resolve()))
    try:
        body = timm.create_model(name, pretrained=use_pretrained, **kwargs)
    except RuntimeError as e:  # corrupt / mismatched checkpoint, missing weights offline
        what = f"checkpoint '{checkpoint}'" if checkpoint else f"pretrained weights of '{name}'"
        raise ValueError(f"could not load the {what}: {str(e).splitlines()[0][:300]}. "
                         "Check that the file is a state_dict of this architecture, or run without "
                         "pretrained weights.") from e
    except (OSError, ValueError) as e:
        raise ValueError(f"could not build '{name}' (pretrained={use_pretrained}): {str(e).splitlines()[0][:300]}. "
                         "Pretrained weights need internet or a local --checkpoint.") from e
    d = int(body.num_features)
    if head == "linear":
        head_module: nn.Module = nn.Linear(d, num_classes)
    elif head in ("etf", "etf_dr"):
        from ncbench.models.etf_head import FixedETFHead

        head_module = FixedETFHead(d, num_classes, seed=head_seed)
    else:
        raise ValueError(f"unknown head '{head}': use 'linear' or 'etf'")
    tag = str(checkpoint) if checkpoint else (pretrained if isinstance(pretrained, str) else
                                              (name.split(".", 1)[1] if "." in name else
                                               ("default" if pretrained else "")))
    return Backbone(body, head_module, name, tag)


def models_matching(pattern: str) -> list[str]:
    return [m for m in list_models() if fnmatch.fnmatch(m, pattern)]
