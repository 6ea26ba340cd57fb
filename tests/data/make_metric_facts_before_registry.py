"""How tests/data/metric_facts_before_registry.json was made (kept as a record; the tests never run it).

Run once from a checkout before `ncbench.core.metrics` (main at 6935f83, where the glob vocabulary
`ncbench.metrics.vocabulary` still existed), with the default suite's results in /work/baseline:

    cd /work/main && python /work/h1/tests/data/make_metric_facts_before_registry.py OUT.json

It records the old (low, high, atol, rtol) of every metric name the default suite, the committed
leaderboards and tasks/*.yaml write (None: the vocabulary lacked it), and each task's parsed board block
(metric, higher_is_better, role, variants, in order). JSON has no infinity: inf is written 1e999.
"""
import glob
import json
import sys
from pathlib import Path

import pandas as pd

from ncbench.leaderboard.schema import metric_columns
from ncbench.specs import load_task, task_names

EXTRA = {"knn_loo_acc", "fewshot_probe_acc_1shot", "fewshot_probe_acc_5shot", "fewshot_probe_acc_1shot_ci95",
         "train_seconds", "test_majority_accuracy", "test_minority_accuracy", "train_minority_feature_cosine",
         "train_minority_feature_cosine_sample_mean", "target_cdnv_median", "target_cdnv_inf_episodes",
         "R10/learnable/minority_accuracy", "R100/etf/nc1", "S5/ncc_acc_5shot", "kendall_tau_knn_loo_acc"}


def facts(name: str):
    from ncbench.metrics.vocabulary import declaration  # the glob vocabulary the registry replaced

    d = declaration(name)
    return None if d is None else [d.low, d.high, d.atol, d.rtol]


def main(out: Path) -> None:
    names = set(EXTRA)
    for f in glob.glob("/work/baseline/**/*.csv", recursive=True):
        if Path(f).name in ("results.csv", "aggregate.csv"):
            names |= set(pd.read_csv(f, usecols=["metric"]).metric.astype(str))
    for f in glob.glob("leaderboards/*.csv"):
        if "claims" not in f:
            names |= set(metric_columns(pd.read_csv(f, nrows=1).columns))
    boards = {}
    for t in task_names():
        spec = load_task(t)
        lb = spec.leaderboard or {}
        boards[t] = {"primary": lb["primary"], "metrics": [[m, d["higher_is_better"], d["role"], d.get("variants")]
                                                          for m, d in lb["metrics"].items()]} if lb else None
        names |= set(lb.get("metrics") or {}) | {a["name"] for a in spec.aggregate or []}
    data = {"_how": "tests/data/make_metric_facts_before_registry.py", "vocabulary": {n: facts(n) for n in sorted(names)},
            "boards": boards}
    out.write_text(dump(data))


def dump(data: dict) -> str:
    """JSON with one line per metric name and per board (inf as 1e999)."""
    lines = ["{", f' "_how": {json.dumps(data["_how"])},']
    for key in ("vocabulary", "boards"):
        rows = [f"  {json.dumps(k)}: {json.dumps(v)}" for k, v in data[key].items()]
        lines += [f' "{key}": {{', ",\n".join(rows), " }," if key == "vocabulary" else " }"]
    return "\n".join([*lines, "}"]).replace("Infinity", "1e999") + "\n"


if __name__ == "__main__":
    main(Path(sys.argv[1]))
