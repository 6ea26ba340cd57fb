"""Features of any PyTorch model read by forward hooks during its own forward pass (SPEC §1, §5).

- penultimate features `h` = the input of the classifier module, logits = its output, `(W, b)` its
  parameters (`effective_classifier()` for ncbench's fixed-ETF head). The classifier is an
  `nn.Linear` (or any module with `weight`/`bias`) given as a module or by name; by default
  ncbench's `Backbone.head`, a timm model's `get_classifier()`, else the last `nn.Linear`.
- named layers (`layers=["layer3", "layer4.1"]`, or `"blocks"` / `"stages"` of a timm model, the
  same layers as the `ncc_depth` task), each pooled to `(B, d)` by `ncbench.models.layers.Pooling`.
- any other `nn.Module`: a feature function `features(x) -> h` replaces the classifier hook.

Hooks cost nothing outside `capture()`: they are registered on entry and removed on exit.
"""
from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence

import torch
from torch import nn

from ncbench.models.layers import GRANULARITIES, PRE_LOGITS, Pooling, block_names, stage_names
from ncbench.registry import suggest

Captured = tuple[dict[str, torch.Tensor], torch.Tensor | None]
"""`({layer: (B, d) features, "pre_logits": h}, logits or None)` of one forward pass."""


def layer_root(model: nn.Module) -> nn.Module:
    """The module that layer names are relative to: the timm body of an ncbench `Backbone`."""
    from ncbench.models.backbone import Backbone

    return model.body if isinstance(model, Backbone) else model


def find_classifier(model: nn.Module, classifier: nn.Module | str | None) -> nn.Module:
    """The classifier module: as given, by name, or found (`Backbone.head`, timm's `get_classifier()`,
    else the last `nn.Linear` of `model.named_modules()`)."""
    if isinstance(classifier, nn.Module):
        return classifier
    modules = dict(model.named_modules())
    if isinstance(classifier, str):
        if classifier not in modules:
            raise suggest("classifier module", classifier, [n for n in modules if n],
                          "model.named_modules() lists them")
        return modules[classifier]
    if classifier is not None:
        raise ValueError(f"classifier must be an nn.Module, a module name or None, got {type(classifier).__name__}")
    from ncbench.models.backbone import Backbone

    if isinstance(model, Backbone):
        return model.head
    if hasattr(model, "get_classifier"):                  # timm
        head = model.get_classifier()
        if isinstance(head, nn.Module) and hasattr(head, "weight"):
            return head
        raise ValueError(f"this {type(model).__name__} has no classifier (built with num_classes=0?): pass "
                         "features= (a function x -> h) and num_classes=, or classifier=")
    linears = [m for m in modules.values() if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError(f"{type(model).__name__} has no nn.Linear to read the penultimate features from: pass "
                         "classifier= (the last layer, a module or its name) or features= (a function x -> h)")
    return linears[-1]


def classifier_weights(head: nn.Module) -> tuple[torch.Tensor, torch.Tensor | None]:
    """`(W, b)` of the classifier acting on its input features (detached)."""
    if hasattr(head, "effective_classifier"):
        return head.effective_classifier()
    weight = getattr(head, "weight", None)
    if not isinstance(weight, torch.Tensor) or weight.ndim != 2:
        raise ValueError(f"classifier {type(head).__name__} has no 2-D weight: pass an nn.Linear (or a module "
                         "with effective_classifier())")
    bias = getattr(head, "bias", None)
    return weight.detach(), None if bias is None else bias.detach()


def resolve_layers(model: nn.Module, layers: str | Sequence[str] | None) -> list[str]:
    """Module names to tap: `None` → none, `"blocks"` / `"stages"` → timm's (see `models.layers`),
    else the names given (checked; unknown names are answered with the close ones)."""
    if layers is None:
        return []
    root = layer_root(model)
    if isinstance(layers, str):
        if layers not in GRANULARITIES:
            raise ValueError(f"layers must be a list of module names or one of {GRANULARITIES}, got {layers!r}")
        names = block_names(root) if layers == "blocks" else []
        names = names or stage_names(root)
        if not names:
            raise ValueError(f"{type(root).__name__} has neither a timm group_matcher nor feature_info: "
                             "name its layers (layers=['layer3', ...])")
        return names
    modules = dict(root.named_modules())
    for name in layers:
        if name not in modules or not name:
            raise suggest("layer", name, [n for n in modules if n], "model.named_modules() lists them")
    return list(layers)


class FeatureTaps:
    """Reads `h`, the logits and pooled named layers of `model` during its forward passes.

    >>> taps = FeatureTaps(model, layers=["layer3"])
    >>> with taps.capture():
    ...     feats, logits = taps(x)          # or call model(x) yourself and read taps.last()
    """

    def __init__(self, model: nn.Module, classifier: nn.Module | str | None = None,
                 layers: str | Sequence[str] | None = None, features: Callable | None = None,
                 token_pool: str = "auto"):
        self.model = model
        self.feature_fn = features
        self.head = find_classifier(model, classifier) if features is None or classifier is not None else None
        self.layers = resolve_layers(model, layers)
        root = layer_root(model)
        self.pooling = Pooling.of(root, token_pool)
        self._modules = dict(root.named_modules())
        self._store: dict[str, torch.Tensor] = {}
        self._logits: torch.Tensor | None = None
        self._hooks: list = []

    @property
    def names(self) -> list[str]:
        """Tapped layers in order, the penultimate features last (`pre_logits`)."""
        return [*self.layers, PRE_LOGITS]

    def classifier(self) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """Current `(W, b)` (read at each call: they change while training); `(None, None)` without one."""
        return classifier_weights(self.head) if self.head is not None else (None, None)

    # -- hooks -----------------------------------------------------------------------------
    def _layer_hook(self, name: str):
        def hook(module, inputs, output):
            self._store[name] = self.pooling(output).detach()
        return hook

    def _head_hook(self, module, inputs, output):
        if self.feature_fn is None:
            self._store[PRE_LOGITS] = inputs[0].detach()
        self._logits = output.detach()

    @contextlib.contextmanager
    def capture(self) -> Iterator[FeatureTaps]:
        """Hooks registered inside the block only."""
        self._hooks = [self._modules[n].register_forward_hook(self._layer_hook(n)) for n in self.layers]
        if self.head is not None:
            self._hooks.append(self.head.register_forward_hook(self._head_hook))
        try:
            yield self
        finally:
            for hk in self._hooks:
                hk.remove()
            self._hooks = []
            self.clear()

    def clear(self) -> None:
        self._store, self._logits = {}, None

    def last(self) -> Captured:
        """What the last forward pass left, then forgets it; a missing layer is an error."""
        missing = [n for n in self.names if n not in self._store]
        if missing:
            raise ValueError(f"no features captured for {missing}: call the model inside capture() (and give "
                             "features= for a model whose classifier module does not run)")
        feats, logits = {n: self._store[n] for n in self.names}, self._logits
        self.clear()
        return feats, logits

    @torch.no_grad()
    def __call__(self, x: torch.Tensor) -> Captured:
        """One forward pass of `model` (or of the feature function, then the classifier) on `x`."""
        if self.feature_fn is None:
            self.model(x)
        else:
            h = self.feature_fn(x)
            self._store[PRE_LOGITS] = h.detach()
            if self.head is not None:
                self.head(h)                      # the hook records the logits
        return self.last()
