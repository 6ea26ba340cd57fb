"""NC1–NC4 against the epoch of one training (Papyan, Han & Donoho 2020, Fig. 2–7): within-class
variability, convergence to a simplex ETF, self-duality, NCC vs network error."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from ncbench.plots.figures import log_axis_plot, save_figure, subplots


def plot(out, spec, out_dir: Path) -> list[Path]:
    rows = pd.DataFrame(out.rows)
    tr = rows[rows.split == "train"].pivot_table(index="epoch", columns="metric", values="value", dropna=False)
    te = rows[rows.split == "test"].pivot_table(index="epoch", columns="metric", values="value", dropna=False)
    fig, axes = subplots(2, 2, figsize=(10, 7))
    x = tr.index
    log_axis_plot(axes[0, 0], x, {"nc1": tr["nc1"], "nc1_quotient": tr["nc1_quotient"], "cdnv": tr["cdnv"]},
                  "NC1: within-class variability", "value")
    log_axis_plot(axes[0, 1], x, {"equinorm_h": tr["equinorm_h"], "equinorm_w": tr["equinorm_w"],
                                  "equiangular_h": tr["equiangular_h"], "equiangular_w": tr["equiangular_w"]},
                  "NC2: convergence to a simplex ETF", "value")
    log_axis_plot(axes[1, 0], x, {"nc3": tr["nc3"], "etf_error_h": tr["etf_error_h"], "etf_error_w": tr["etf_error_w"]},
                  "NC3: self-duality; NC2: ETF errors", "value")
    log_axis_plot(axes[1, 1], x, {"nc4 (train)": tr["nc4"], "nc4 (test)": te["nc4"],
                                  "train error": 1 - tr["accuracy"], "test error": 1 - te["accuracy"]},
                  "NC4: nearest class centre vs network", "fraction")
    return [save_figure(fig, out_dir / "collapse.png", f"{spec.name}: {spec.model} on {spec.dataset}")]
