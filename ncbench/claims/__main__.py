"""`python -m ncbench.claims RUN_DIR [--out DIR] [--markdown FILE] [--suite S] [--list [--markdown]]`: write the
claims scorecard (with the `scorecard_tasks` of the run's suite, `suite.json`, or of `--suite`), or list the
declared claims (CSV, or with --markdown the table of docs/claims.md)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

from ncbench.claims.scorecard import (
    catalog_markdown,
    catalog_table,
    run_task_map,
    scorecard_markdown,
    verdict_counts,
    write_scorecard,
)
from ncbench.results.writer import atomic_write_text
from ncbench.run_files import open_text


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m ncbench.claims", description=__doc__)
    p.add_argument("run_dir", nargs="?", help="a run folder results/<run_id> (its results.csv files are read)")
    p.add_argument("--out", help="folder for claims.csv and claims_detail.csv (default: RUN_DIR)")
    p.add_argument("--markdown", nargs="?", const="-", help="also write the scorecard as a Markdown table to this "
                   "file; with --list, print the catalog as Markdown")
    p.add_argument("--suite", help="read the results through this suite's scorecard_tasks (default: the run's "
                   "suite, RUN_DIR/suite.json)")
    p.add_argument("--list", action="store_true", help="print the declared claims and their rules, and exit")
    a = p.parse_args(argv)
    if a.list:
        print(catalog_markdown() if a.markdown else catalog_table().to_csv(index=False), end="")
        return 0
    if not a.run_dir:
        print("error: give a run folder (results/<run_id>), or --list", file=sys.stderr)
        return 2
    try:
        card_path, detail_path = write_scorecard(a.run_dir, a.out, task_map=run_task_map(a.run_dir, a.suite))
    except (FileNotFoundError, ValueError, KeyError) as e:   # KeyError: an unknown name (did-you-mean)
        print(f"error: {e}", file=sys.stderr)
        return 2
    with open_text(card_path) as f:   # just written by write_scorecard
        card = pd.read_csv(f, keep_default_na=False)
    if a.markdown and a.markdown != "-":
        atomic_write_text(Path(a.markdown), scorecard_markdown(card))
    elif a.markdown:
        print(scorecard_markdown(card), end="")
    print(f"{card_path} ({detail_path.name} beside it): {verdict_counts(card)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
