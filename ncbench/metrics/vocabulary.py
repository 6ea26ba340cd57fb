"""The metric vocabulary: for each metric name, the range of values it can take and the tolerance
within which a rerun agrees with it (`ncbench verify`).

A name is matched by its last `/`-separated part (`R10/learnable/minority_accuracy` ->
`minority_accuracy`) against the glob patterns of `DECLARATIONS`, first match wins. `submit`
refuses a value outside its range (nc1 = -5, an accuracy of 1.2); `verify` compares a rerun within
`atol + rtol·|submitted|` of the metric's own tolerances, so that a metric near zero (a UFM nc1 of
1e-17) is not "agreeing" with anything below a global atol. NaN (missing) is in every range.
"""
from __future__ import annotations

import fnmatch
import math
from dataclasses import dataclass

INF = math.inf


@dataclass(frozen=True)
class MetricDeclaration:
    """Valid range [low, high] and rerun tolerance atol + rtol·|value| of one kind of metric."""

    low: float = -INF
    high: float = INF
    atol: float = 0.0
    rtol: float = 0.05
    note: str = ""

    def contains(self, value: float) -> bool:
        return math.isnan(value) or self.low <= value <= self.high

    def describe_range(self) -> str:
        return f"[{self.low:g}, {self.high:g}]"


FRACTION = MetricDeclaration(0.0, 1.0, atol=0.01, rtol=0.0,
                             note="a fraction of samples or episodes: a rerun may flip about 1% of them")
SCALE_FREE = MetricDeclaration(0.0, INF, atol=1e-12, rtol=0.05,
                               note="a non-negative ratio of variances or distances: 5% relative, 1e-12 "
                                    "absolute (float64 round-off of a collapsed value)")
COSINE = MetricDeclaration(-1.0, 1.0, atol=0.02, rtol=0.0, note="a cosine or a correlation")
GAIN = MetricDeclaration(-1.0, 1.0, atol=0.02, rtol=0.0, note="a difference of two accuracies")
EXACT_COUNT = MetricDeclaration(0.0, INF, atol=0.0, rtol=0.0, note="a count, an index or a setting: exact")
NON_NEGATIVE = MetricDeclaration(0.0, INF, atol=1e-12, rtol=0.05, note="a non-negative quantity")

RANK_CORRELATION = MetricDeclaration(-1.0, 1.0, atol=0.1, rtol=0.0,
                                    note="Kendall tau over a few models: one swapped pair moves it by ~0.1")
SCORE = MetricDeclaration(-INF, INF, atol=1e-6, rtol=0.01,
                          note="a transferability score (LogME evidence, NCTI terms): any real value")

DECLARATIONS: tuple[tuple[str, MetricDeclaration], ...] = (
    ("kendall_tau_*", RANK_CORRELATION),     # before "*acc": kendall_tau_knn_loo_acc is a correlation
    ("weighted_tau_*", RANK_CORRELATION),
    ("logme", SCORE),
    ("ncti_*", SCORE),
    ("best_ground_truth", FRACTION),
    ("feature_dim", EXACT_COUNT),
    ("n_train*", EXACT_COUNT),
    ("n_test*", EXACT_COUNT),
    ("models", EXACT_COUNT),
    ("failed_models", EXACT_COUNT),
    ("*_ci95", MetricDeclaration(0.0, 1.0, atol=0.005, rtol=0.25, note="half-width of a 95% interval")),
    ("*pvalue", MetricDeclaration(0.0, 1.0, atol=0.05, rtol=0.0, note="a p-value")),
    ("*spearman*", COSINE),
    ("*cosine", COSINE),
    ("*_trend_*", COSINE),                 # Spearman rho of a declared comparison along a sweep
    ("sweep_gain*", GAIN),
    ("*_minority_gain", GAIN),             # paired difference of two minority accuracies
    ("*vacuous*", MetricDeclaration(0.0, 1.0, atol=0.0, rtol=0.0, note="a 0/1 flag (the bound is >= 1)")),
    ("terminal_phase_reached", MetricDeclaration(0.0, 1.0, atol=0.0, rtol=0.0, note="a 0/1 flag")),
    ("ncc_error_bound_ratio_*", NON_NEGATIVE),
    ("ncc_error_bound_*", NON_NEGATIVE),   # a bound on an error: above 1 it is vacuous
    ("ncc_error_*", FRACTION),
    ("bound_holds_fraction*", FRACTION),
    ("bound_tightness*", NON_NEGATIVE),
    ("bound_delta", MetricDeclaration(0.0, 1.0, atol=0.0, rtol=0.0, note="the bound's failure probability: a setting")),
    ("first_perfect_train_epoch", EXACT_COUNT),
    ("*accuracy", FRACTION),
    ("chance", FRACTION),
    ("*acc", FRACTION),
    ("*acc_*", FRACTION),
    ("etf_error_*", MetricDeclaration(0.0, 2.0, atol=1e-12, rtol=0.05, note="distance of two unit matrices")),
    ("*error", FRACTION),
    ("nc4", FRACTION),
    ("*_fraction", FRACTION),
    ("ncc_depth*", EXACT_COUNT),
    ("terminal_phase_epoch", EXACT_COUNT),
    ("n_layers", EXACT_COUNT),
    ("source_classes", EXACT_COUNT),
    ("epsilon", EXACT_COUNT),
    ("nc3", MetricDeclaration(0.0, 4.0, atol=1e-12, rtol=0.05, note="squared distance of two unit vectors")),
    ("equinorm_*", SCALE_FREE),
    ("equiangular_*", SCALE_FREE),
    ("*nc1*", SCALE_FREE),
    ("*cdnv*", SCALE_FREE),
    ("snc*", SCALE_FREE),
    ("threshold_ratio*", NON_NEGATIVE),
    ("collapse_ratio*", NON_NEGATIVE),
    ("loss", NON_NEGATIVE),
    ("*_seconds", MetricDeclaration(0.0, INF, atol=INF, rtol=0.0, note="wall-clock time: never compared")),
)


def declaration(metric: str) -> MetricDeclaration | None:
    """The declaration of `metric` (by its last `/` part), None if the vocabulary lacks it."""
    base = metric.rsplit("/", 1)[-1]
    for pattern, decl in DECLARATIONS:
        if fnmatch.fnmatchcase(base, pattern):
            return decl
    return None
