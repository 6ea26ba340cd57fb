"""The claims scorecard (issue 15 item 9): literature claims as data, evaluated on a run's tidy results.

`CLAIMS` (`catalog`) declares them, `evaluate_claims` computes each statistic over seeds with its
Student-t CI and verdict, `write_scorecard` writes `claims.csv` / `claims_detail.csv` for a run folder,
`scorecard_markdown` renders the table. Command line: `python -m ncbench.claims RUN_DIR`.
"""
from ncbench.claims.catalog import CLAIMS
from ncbench.claims.claim import Claim, Measure
from ncbench.claims.evaluate import Outcome, evaluate_claims
from ncbench.claims.scorecard import (
    DETAIL_COLUMNS,
    SCORECARD_COLUMNS,
    catalog_table,
    scorecard_markdown,
    scorecard_tables,
    write_scorecard,
)

__all__ = ["CLAIMS", "DETAIL_COLUMNS", "SCORECARD_COLUMNS", "Claim", "Measure", "Outcome", "catalog_table",
           "evaluate_claims", "scorecard_markdown", "scorecard_tables", "write_scorecard"]
