"""Rewrite the ratio table of docs/performance.md from the last `make benchmark` run.

    python scripts/performance_table.py [--table .benchmarks/ratio-table.md] [--doc docs/performance.md]

`make benchmark` writes its ratio table (header line with the date, CPUs, threads, load average
and run time, then the Markdown table) to `.benchmarks/ratio-table.md`; this replaces everything
between the page's `<!-- performance-table -->` and `<!-- /performance-table -->` markers with
it, verbatim. `make performance-table` runs both. Exit 2 with a one-line message when the table or
the markers are missing.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
START, END = "<!-- performance-table -->", "<!-- /performance-table -->"
DOC = ROOT / "docs" / "performance.md"   # where the table lives (the README links to it)


def splice(readme: str, table: str) -> str:
    """`readme` with the text between the markers replaced by `table` (ValueError if no markers)."""
    a, b = readme.find(START), readme.find(END)
    if a < 0 or b < a:
        raise ValueError(f"no '{START}' ... '{END}' block: put the markers around the "
                         "Performance table first")
    return readme[:a + len(START)] + "\n" + table.strip() + "\n" + readme[b:]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--table", type=Path, default=ROOT / ".benchmarks" / "ratio-table.md")
    p.add_argument("--doc", "--readme", dest="readme", type=Path, default=DOC)
    args = p.parse_args(argv)
    if not args.table.is_file():
        print(f"error: no ratio table at {args.table}: run `make benchmark` first", file=sys.stderr)
        return 2
    try:
        text = splice(args.readme.read_text(), args.table.read_text())
    except (OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    args.readme.write_text(text)
    print(f"{args.readme}: Performance table replaced by {args.table}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
