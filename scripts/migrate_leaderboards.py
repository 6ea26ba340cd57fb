"""Rewrite the wide boards of before variants/status (leaderboards/*.csv) in the current format,
check that every old value is in the new board at its (metric, variant), and re-render README.md.

    python scripts/migrate_leaderboards.py [DIR]      (default: the checkout's leaderboards/)

See `ncbench.leaderboard.legacy` for the mapping and the status rule.
"""
from __future__ import annotations

import io
import sys

import pandas as pd

from ncbench.leaderboard import leaderboards_dir, legacy, write_readme
from ncbench.leaderboard.store import table_text
from ncbench.results.writer import atomic_write_text

CLASSES = {"mnist5k": 10, "digits": 10, "cifar10": 10, "cifar100": 100}
"""Classes of the training set of each data set the old boards name (for the near-chance rule)."""


def main(argv: list[str]) -> int:
    lb_dir = leaderboards_dir(argv[0] if argv else None)
    for path in sorted(lb_dir.glob("*.csv")):
        old = pd.read_csv(io.StringIO(path.read_text(encoding="utf-8")), dtype=str, keep_default_na=False)
        if not legacy.is_legacy(old):
            print(f"{path.name}: already current")
            continue
        datasets = set(old["dataset"])
        k = CLASSES.get(next(iter(datasets))) if len(datasets) == 1 else None
        new = legacy.migrate_table(old, k)
        problems = legacy.check_same_values(old, new)
        if problems:
            print(f"{path.name}: not migrated, values would change: {problems[:5]}", file=sys.stderr)
            return 1
        atomic_write_text(path, table_text(new))
        bad = new[new["status"] != "ok"]
        print(f"{path.name}: {len(old)} rows -> {len(new)} rows ({len(bad)} not ok)")
    print(f"wrote {write_readme(lb_dir)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
