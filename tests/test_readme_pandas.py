"""The "Analysing results with pandas" block of docs/results.md runs as printed on results in the real schema
(written by the real writer: the sweep point in `variant`, the run's `seed` and `status`)."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from ncbench.results.writer import write_long_csv

DOC = Path(__file__).resolve().parent.parent / "docs" / "results.md"
SECTION = "## Analysing results with pandas"


def block() -> str:
    text = DOC.read_text(encoding="utf-8")
    start = text.index(SECTION)
    end = text.find("\n## ", start + len(SECTION))
    (code,) = re.findall(r"```python[^\n]*\n(.*?)```", text[start:end], flags=re.DOTALL)
    return code


def _write_results(root: Path) -> None:
    rng = np.random.default_rng(0)
    for model in ("test_resnet", "test_byobnet", "test_vit"):
        for seed in (0, 1):
            ctx = {"run_id": f"r-{model}-{seed}", "model": model, "pretrained": "", "dataset": "mnist5k",
                   "seed": seed, "status": "ok", "task_version": 1, "precision": "fp32"}
            nc1 = float(rng.uniform(0.001, 0.1))
            train = [{"split": "train", "epoch": e, "metric": "nc1", "value": nc1 * (10 - e)} for e in range(1, 4)]
            summary = [{"split": "summary", "epoch": 3, "metric": "nc1", "value": nc1},
                       {"split": "summary", "metric": "nc1", "variant": "baseline=raw_pixels", "value": 4.0}]
            write_long_csv(root / ctx["run_id"] / "train_collapse_mnist5k" / "results.csv", train + summary,
                           {**ctx, "task": "train_collapse_mnist5k"})
            fs = [{"split": "summary", "epoch": 12, "metric": "ncc_acc_5shot", "variant": f"source_classes={s}",
                   "value": 0.5 + 0.04 * s - nc1} for s in (2, 5)]
            write_long_csv(root / ctx["run_id"] / "fewshot_mnist5k" / "results.csv", fs,
                           {**ctx, "task": "fewshot_mnist5k"})
            mc = [{"split": "summary", "epoch": 20, "metric": "minority_accuracy",
                   "variant": f"ratio={r},classifier={c}", "value": float(rng.uniform(0.3, 0.9))}
                  for r in (1, 10) for c in ("learnable", "etf")]
            write_long_csv(root / ctx["run_id"] / "minority_collapse_mnist5k" / "results.csv", mc,
                           {**ctx, "task": "minority_collapse_mnist5k"})


def test_the_pandas_block_runs_as_printed(tmp_path, monkeypatch, capsys):
    import matplotlib

    matplotlib.use("Agg")
    _write_results(tmp_path / "results")
    monkeypatch.chdir(tmp_path)
    scope: dict = {"__name__": "readme_pandas"}
    exec(compile(block(), "docs/results.md pandas block", "exec"), scope)  # noqa: S102
    printed = capsys.readouterr().out
    assert re.fullmatch(r"Spearman\(train NC1, accuracy\) = -1\.00 over 6 runs\n", printed)  # acc = … − nc1
    mc = scope["mc"]
    assert set(mc.ratio) == {"1", "10"} and set(mc.classifier) == {"learnable", "etf"}
    assert scope["nc1"].notna().all() and len(scope["wide"]) == 6
    assert {"mean", "ci_low", "ci_high", "n_seeds"} <= set(scope["e"].columns)
