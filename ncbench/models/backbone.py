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

    from ncbench.models import in_memory

    if in_memory.is_in_memory(name):   # an nn.Module passed to ncbench.run
        in_memory.lookup(name)
        return
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
        return feature_dim(self.body)

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


def feature_dim(body: nn.Module) -> int:
    """Width of `body(x)`: timm's `head_hidden_size` where a pre-logits layer widens it (MobileNetV3)."""
    return int(getattr(body, "head_hidden_size", None) or body.num_features)


def load_checkpoint_strict(body: nn.Module, path: Path) -> None:
    """Load a local checkpoint with timm's reader (`state_dict`/`model` nesting, safetensors), minus the
    classifier, and insist that it fits the architecture exactly (timm's pretrained path only warns)."""
    from timm.models import load_state_dict

    if not path.is_file():
        raise FileNotFoundError(f"checkpoint '{path}' does not exist: pass the path of a saved state_dict "
                                "(.pth/.pt/.safetensors)")
    try:
        state = load_state_dict(str(path), weights_only=True)
    except Exception as e:
        raise ValueError(f"could not load the checkpoint '{path}': not a readable state_dict "
                         f"({type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''})") from e
    head = getattr(body, "pretrained_cfg", {}).get("classifier", "fc")
    heads = (head,) if isinstance(head, str) else tuple(head)
    state = {k: v for k, v in state.items() if not any(k == h or k.startswith(h + ".") for h in heads)}
    try:
        result = body.load_state_dict(state, strict=False)
    except RuntimeError as e:  # same names, other shapes
        raise ValueError(f"could not load the checkpoint '{path}': it does not match this architecture "
                         f"({str(e).splitlines()[-1].strip()[:200]})") from e
    if result.missing_keys or result.unexpected_keys:
        raise ValueError(f"could not load the checkpoint '{path}': it does not match this architecture "
                         f"({len(result.missing_keys)} missing keys, e.g. {result.missing_keys[:3]}; "
                         f"{len(result.unexpected_keys)} unexpected, e.g. {result.unexpected_keys[:3]})")


def adapt_small_input(body: nn.Module) -> nn.Module:
    """CIFAR-style stem for 28×28/32×32 inputs (He et al. 2016 §4.2): the ResNet family's 7×7/2
    `conv1` becomes 3×3/1 and its max-pool is dropped, so the last stage still sees 4×4 maps."""
    conv = getattr(body, "conv1", None)
    if not isinstance(conv, nn.Conv2d) or not hasattr(body, "maxpool"):
        raise ValueError("small_input=True is supported for timm ResNet-family models (with conv1 and maxpool); "
                         "use a model with a small stem or pass small_input=False")
    body.conv1 = nn.Conv2d(conv.in_channels, conv.out_channels, 3, 1, 1, bias=conv.bias is not None)
    body.maxpool = nn.Identity()
    return body


def build_backbone(name: str, num_classes: int, in_chans: int = 3, *, pretrained: bool | str = False,
                   checkpoint: str | Path | None = None, head: str = "linear", head_seed: int = 0,
                   small_input: bool = False, download: bool = False, reinitialise: bool = False,
                   **model_kwargs) -> Backbone:
    """Any timm model by name (`resnet18`, `resnet18.a1_in1k` for a pretrained tag).

    `pretrained=True` (timm's default tag), a tag (`'a1_in1k'`) or a name with a `.tag` loads timm's
    weights as `arch.tag`, from the local cache unless `download` (see `ncbench.models.pretrained`);
    `checkpoint` a local file read by timm's `load_state_dict` and loaded strictly (the classifier is
    ncbench's own head). `head`: `linear` (learnable, with bias) or `etf` (fixed simplex ETF, SPEC §7).
    `small_input` swaps in a CIFAR-style ResNet stem. A `module:` name is an `nn.Module` passed to
    `ncbench.run` (`ncbench.models.in_memory`; `reinitialise`: at a new initialisation instead of its
    weights, the random-init baseline).
    """
    import timm

    from ncbench.models import in_memory
    from ncbench.models.pretrained import resolve_weights

    check_model_name(name)
    if in_memory.is_in_memory(name):
        if pretrained or checkpoint is not None or small_input or model_kwargs:
            raise ValueError(f"model '{name}' is an nn.Module passed in memory: it takes no pretrained weights, "
                             "checkpoint, small_input or model_kwargs (build the module as you want it)")
        body, d = in_memory.build_body(name, reinitialise=reinitialise)
        return Backbone(body, _head(head, d, num_classes, head_seed), name, "")
    overlay = model_kwargs.pop("pretrained_cfg_overlay", None)
    kwargs = dict(num_classes=0, in_chans=in_chans, **model_kwargs)
    weights = None if checkpoint is not None else resolve_weights(name, pretrained, download, overlay)
    arch = name.split(".")[0]
    try:
        if weights is None:
            body = timm.create_model(arch, pretrained=False, **kwargs)
        else:
            body = timm.create_model(weights.name, **weights.create_kwargs(), **kwargs)
    except (RuntimeError, OSError, ValueError) as e:  # bad kwargs, a torn cached file, a failed download
        raise ValueError(f"could not build '{weights.name if weights else arch}'"
                         f"{' with pretrained weights' if weights else ''}: {str(e).splitlines()[0][:300]}") from e
    if checkpoint is not None:
        load_checkpoint_strict(body, Path(checkpoint))
    if small_input:
        body = adapt_small_input(body)
    head_module = _head(head, feature_dim(body), num_classes, head_seed)
    tag = str(checkpoint) if checkpoint else (weights.tag if weights else "")
    return Backbone(body, head_module, name, tag)


def _head(head: str, d: int, num_classes: int, head_seed: int) -> nn.Module:
    """ncbench's last layer on `d` features: `linear` (learnable, bias) or a fixed simplex ETF."""
    if head == "linear":
        return nn.Linear(d, num_classes)
    if head in ("etf", "etf_dr"):
        from ncbench.models.etf_head import FixedETFHead

        return FixedETFHead(d, num_classes, seed=head_seed)
    raise ValueError(f"unknown head '{head}': use 'linear', 'etf' or 'etf_dr'")


def models_matching(pattern: str) -> list[str]:
    return [m for m in list_models() if fnmatch.fnmatch(m, pattern)]
