"""The claims scorecard (issues 15 and 28): literature claims as data, evaluated on a run's tidy results.

`CLAIMS` (`catalog`) declares them with their preconditions, `evaluate_claims` computes each statistic
per model over seeds with an interval that fits it (`intervals`) and a verdict of the vocabulary of
`verdicts` (reproduced, contradicted, weaker than claimed, inconclusive, not applicable),
`write_scorecard` writes `claims.csv` / `claims_detail.csv` for a run folder, `scorecard_markdown`
renders the table. Command line: `python -m ncbench.claims RUN_DIR`; `ncbench claims --model M` runs
the claims suite on one setup and scores it.
"""
from ncbench.claims.catalog import CLAIMS
from ncbench.claims.claim import Claim
from ncbench.claims.evaluate import Outcome, evaluate_claims
from ncbench.claims.measure import Measure
from ncbench.claims.preconditions import Precondition
from ncbench.claims.scorecard import (
    DETAIL_COLUMNS,
    SCORECARD_COLUMNS,
    catalog_markdown,
    catalog_table,
    scorecard_markdown,
    scorecard_tables,
    verdict_counts,
    write_scorecard,
)
from ncbench.claims.verdicts import VERDICTS, rule_feasibility

__all__ = ["CLAIMS", "DETAIL_COLUMNS", "SCORECARD_COLUMNS", "VERDICTS", "Claim", "Measure", "Outcome", "Precondition",
           "catalog_markdown", "catalog_table", "evaluate_claims", "rule_feasibility", "scorecard_markdown", "scorecard_tables",
           "verdict_counts", "write_scorecard"]
