"""ncbench inside your own training: `track` / `CollapseTracker` (plain PyTorch), the torchmetrics metric
`NeuralCollapse` and the Lightning callback `NeuralCollapseCallback`.

The last two need the optional extra (`pip install 'ncbench[lightning]'`); they are imported on first
use, so the rest works without torchmetrics or lightning.
"""
from __future__ import annotations

from ncbench.integrations.taps import FeatureTaps
from ncbench.integrations.tracking import CollapseTracker, track
from ncbench.integrations.two_pass import Measurement, TwoPassCollapse

OPTIONAL = {"NeuralCollapse": "ncbench.integrations.torchmetrics_metric",
            "NeuralCollapseCallback": "ncbench.integrations.lightning_callback"}
"""Names that need the `lightning` extra -> the module defining them."""

EXTRA_HINT = "pip install 'ncbench[lightning]' (or `make setup` in a checkout)"


def __getattr__(name: str):
    if name in OPTIONAL:
        import importlib

        try:
            module = importlib.import_module(OPTIONAL[name])
        except ModuleNotFoundError as e:
            if e.name and e.name.split(".")[0] in ("torchmetrics", "lightning"):
                raise ImportError(f"ncbench.integrations.{name} needs {e.name.split('.')[0]}: {EXTRA_HINT}") from e
            raise
        return getattr(module, name)
    raise AttributeError(f"module 'ncbench.integrations' has no attribute '{name}'")


__all__ = ["CollapseTracker", "FeatureTaps", "Measurement", "NeuralCollapse", "NeuralCollapseCallback",
           "TwoPassCollapse", "track"]
