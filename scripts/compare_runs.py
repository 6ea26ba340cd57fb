"""Compare two runs value by value: `python scripts/compare_runs.py BEFORE_RUN AFTER_RUN [--legacy]`.

Every row of every `results.csv` (groups: the group's file, not its members') is keyed by (task,
split, epoch, layer, variant, metric); values are compared as written (`repr` of the float, so equal
means bit-identical). `--legacy` first maps names of the 0.1 schema, where the sweep point lived in the
metric name or the layer column, onto (metric, variant):

- `R10/etf/minority_accuracy` -> metric `minority_accuracy`, variant `ratio=10,classifier=etf`;
- `S5/ncc_acc_5shot` -> `ncc_acc_5shot`, `source_classes=5`; the unprefixed few-shot rows (the
  largest S) -> that S's variant; the summary curve `S2/ncc_acc_5shot` -> summary of `source_classes=2`;
- `threshold_ratio_E_H=5` -> `threshold_ratio`, `E_H=5`; layer `E_H=5 R=3.16` -> variant `E_H=5,R=3.16`.

Prints the number of equal values, then every difference and every key found on one side only; exit
status 1 when any value differs.
"""
from __future__ import annotations

import argparse
import glob
import re
import sys
from pathlib import Path

import pandas as pd

KEY = ["task", "split", "epoch", "layer", "variant", "metric"]


def _read(run: Path) -> pd.DataFrame:
    files = [Path(f) for f in sorted(glob.glob(str(run / "*" / "results.csv")))]
    if not files:
        sys.exit(f"no */results.csv under {run}")
    frames = [pd.read_csv(f, dtype=str, keep_default_na=False) for f in files]
    df = pd.concat(frames, ignore_index=True)
    if "variant" not in df:
        df["variant"] = ""
    return df


def legacy(df: pd.DataFrame) -> pd.DataFrame:
    """Old (0.1) names -> (metric, variant); see the module docstring."""
    df = df.copy()
    out = []
    largest = {}
    for task, g in df.groupby("task"):
        s = [int(m.group(1)) for m in g.metric.map(lambda x: re.match(r"^S(\d+)/", x)) if m]
        if s:
            largest[task] = max(s)
    for r in df.to_dict("records"):
        m, v = r["metric"], r["variant"]
        if (k := re.match(r"^R([^/]+)/([^/]+)/(.+)$", m)):
            m, v = k.group(3), f"ratio={float(k.group(1)):g},classifier={k.group(2)}"
        elif (k := re.match(r"^S(\d+)/(.+)$", m)):
            m, v = k.group(2), f"source_classes={k.group(1)}"
        elif (k := re.match(r"^(.+)_E_H=([^_]+)$", m)):
            m, v = k.group(1), f"E_H={k.group(2)}"
        elif r["task"] in largest and not m.startswith("sweep_"):
            v = f"source_classes={largest[r['task']]}"
        if (k := re.match(r"^E_H=(\S+) R=(\S+)$", r["layer"])):
            v, r["layer"] = f"E_H={k.group(1)},R={k.group(2)}", ""
        out.append({**r, "metric": m, "variant": v})
    return pd.DataFrame(out)


def _epoch(text: str) -> str:
    return "" if text == "" else repr(float(text))


def compare(before: pd.DataFrame, after: pd.DataFrame) -> tuple[int, list, list, list]:
    def index(df):
        keyed = {}
        clashes = []
        for r in df.to_dict("records"):
            key = tuple(_epoch(r[c]) if c == "epoch" else r[c] for c in KEY)
            if key in keyed and keyed[key] != r["value"]:
                clashes.append((key, keyed[key], r["value"]))
            keyed.setdefault(key, r["value"])
        return keyed, clashes

    b, clash_b = index(before)
    a, clash_a = index(after)
    if clash_b or clash_a:
        print(f"{len(clash_b) + len(clash_a)} keys hold two different values on one side, e.g. "
              f"{(clash_b or clash_a)[0]}")
    same = sum(1 for k in b.keys() & a.keys() if b[k] == a[k])
    diff = [(k, b[k], a[k]) for k in sorted(b.keys() & a.keys()) if b[k] != a[k]]
    return same, diff, sorted(b.keys() - a.keys()), sorted(a.keys() - b.keys())


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("before", type=Path)
    p.add_argument("after", type=Path)
    p.add_argument("--legacy", action="store_true", help="map 0.1 names (sweep point in the metric) first")
    args = p.parse_args(argv)
    before, after = _read(args.before), _read(args.after)
    if args.legacy:
        before = legacy(before)
    same, diff, only_b, only_a = compare(before, after)
    print(f"{same} values equal (bit for bit), {len(diff)} differ, {len(only_b)} only before, {len(only_a)} only after")
    for k, x, y in diff[:50]:
        print("  differs:", dict(zip(KEY, k)), x, "->", y)
    for name, keys in (("only before", only_b), ("only after", only_a)):
        by = pd.Series([f"{k[0]}: {k[5]}" for k in keys]).value_counts()
        for what, n in by.head(40).items():
            print(f"  {name}: {what} ({n} rows)")
    return 1 if diff else 0


if __name__ == "__main__":
    raise SystemExit(main())
