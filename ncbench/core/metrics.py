"""The metric registry: one declaration per metric, carrying every fact about it (in the spirit of
torchmetrics' `higher_is_better` on the metric class).

A `Metric` names its SPEC section, its formula in one line, its valid range and rerun tolerance (a
`Scale`: `submit` refuses a value outside the range; `verify` agrees within `atol + rtol·|value|`, so
that a metric near zero, a UFM nc1 of 1e-17, is not "agreeing" with anything below a global atol),
whether higher is better, and its default board role (`target`: what a task exists to predict;
`descriptor`: shown, never ranked). NaN (not measured) is in every range.

Composed names are parsed by their structure, never matched against globs:

- a declared **split prefix**: `test_nc1` is `nc1` on the test split (`Metric.splits`);
- a declared **placeholder**: `ncc_acc_{shots}` (`5shot`), `kendall_tau_{estimator}` (`ESTIMATORS`);
- a **derived statistic** of any registered metric: `{of}_ci95` (half-width of its 95% interval),
  `{of}_pvalue`;
- a legacy **sweep-point path** (`R10/learnable/minority_accuracy`): the last `/` part.

A declared name beats a composed one; two composed readings of one name are an error (tested), so
the order of the declarations never matters. Adding a metric: one `Metric(...)` below plus its
computation (docs/ARCHITECTURE.md).
"""
from __future__ import annotations

import difflib
import math
import re
from dataclasses import dataclass, replace

INF = math.inf
ROLES = ("target", "descriptor")


@dataclass(frozen=True)
class Scale:
    """Valid range [low, high] and rerun tolerance `atol + rtol·|value|` of a kind of quantity."""

    low: float = -INF
    high: float = INF
    atol: float = 0.0
    rtol: float = 0.05
    note: str = ""

    def contains(self, value: float) -> bool:
        return math.isnan(value) or self.low <= value <= self.high

    def describe_range(self) -> str:
        return f"[{self.low:g}, {self.high:g}]"


FRACTION = Scale(0.0, 1.0, atol=0.01, rtol=0.0,
                 note="a fraction of samples or episodes: a rerun may flip about 1% of them")
SCALE_FREE = Scale(0.0, INF, atol=1e-12, rtol=0.05,
                   note="a non-negative ratio of variances or distances: 5% relative, 1e-12 absolute "
                        "(float64 round-off of a collapsed value)")
COSINE = Scale(-1.0, 1.0, atol=0.02, rtol=0.0, note="a cosine or a correlation")
GAIN = Scale(-1.0, 1.0, atol=0.02, rtol=0.0, note="a difference of two accuracies")
EXACT_COUNT = Scale(0.0, INF, atol=0.0, rtol=0.0, note="a count, an index or a setting: exact")
NON_NEGATIVE = Scale(0.0, INF, atol=1e-12, rtol=0.05, note="a non-negative quantity")
FLAG = Scale(0.0, 1.0, atol=0.0, rtol=0.0, note="a 0/1 flag")
EXACT_FRACTION = Scale(0.0, 1.0, atol=0.0, rtol=0.0, note="a share of class pairs, compared exactly (the "
                                                           "tolerance the old `*vacuous*` pattern gave it)")
RANK_CORRELATION = Scale(-1.0, 1.0, atol=0.1, rtol=0.0,
                         note="Kendall tau over a few models: one swapped pair moves it by ~0.1")
SCORE = Scale(-INF, INF, atol=1e-6, rtol=0.01,
              note="a transferability score (LogME evidence, NCTI terms): any real value")
HALF_WIDTH = Scale(0.0, 1.0, atol=0.005, rtol=0.25, note="half-width of a 95% interval")
P_VALUE = Scale(0.0, 1.0, atol=0.05, rtol=0.0, note="a p-value")
UNIT_DISTANCE = Scale(0.0, 2.0, atol=1e-12, rtol=0.05, note="distance of two unit matrices")
SQUARED_UNIT_DISTANCE = Scale(0.0, 4.0, atol=1e-12, rtol=0.05, note="squared distance of two unit vectors")
SECONDS = Scale(0.0, INF, atol=INF, rtol=0.0, note="wall-clock time: never compared")
REAL = Scale(note="a real value without a declared range: 5% relative")


@dataclass(frozen=True)
class Metric:
    """Everything about one metric (or one family of metrics, when `name` holds a `{placeholder}`)."""

    name: str
    section: str
    formula: str
    scale: Scale
    higher_is_better: bool | None = None
    role: str = "descriptor"
    splits: tuple[str, ...] = ()
    """Split prefixes it is also written under: `("test",)` declares `test_<name>`."""


SHOTS = r"[1-9][0-9]*shot"
"""`{shots}`: the k of a k-shot episode (`1shot`, `5shot`)."""

ESTIMATORS = ("cdnv", "knn_loo_acc", "logme", "nc1", "ncc_acc", "ncti")
"""`{estimator}`: the transferability estimators `transfer_ranking` correlates with the ground truth."""

NCTI_TERMS = ("ncc", "seli", "vc")
"""`{term}`: the three terms of NCTI (Wang et al. 2023)."""

PLACEHOLDERS: dict[str, str | tuple[str, ...]] = {"shots": SHOTS, "estimator": ESTIMATORS, "term": NCTI_TERMS}

COLLAPSE_SPLITS = ("train", "test", "source", "target")
UP, DOWN = True, False


def _m(name, section, formula, scale, higher=None, role="descriptor", splits=()):
    return Metric(name, section, formula, scale, higher, role, tuple(splits))


DECLARATIONS: tuple[Metric, ...] = (
    # §2 collapse metrics (formulas as in docs/SPEC.md's table, checked by tests/test_core.py)
    _m("nc1", "§2", "`(1/K) Tr(Σ_W Σ_B⁺)`, `Σ_B⁺` from `eigh(Σ_B)` keeping λ > tol·λ_max, at most "
                    "`min(K−1, d)` eigenpairs", SCALE_FREE, DOWN, splits=COLLAPSE_SPLITS),
    _m("nc1_quotient", "§2", "`Tr Σ_W / Tr Σ_B`", SCALE_FREE, DOWN),
    *(_m(f"equinorm_{s}", "§2", "`std_k ‖μ_k−μ_G‖ / mean_k ‖μ_k−μ_G‖` (ddof 1); on the rows of `W`",
         SCALE_FREE, DOWN) for s in "hw"),
    *(_m(f"equiangular_{s}", "§2", "mean over `k≠k'` of `|cos(μ̃_k, μ̃_k') + 1/(K−1)|`", SCALE_FREE, DOWN)
      for s in "hw"),
    *(_m(f"etf_error_{s}", "§2", "`‖G/‖G‖_F − (I − 11ᵀ/K)/√(K−1)‖_F`, `G = M̃ᵀM̃` or `WWᵀ`", UNIT_DISTANCE, DOWN)
      for s in "hw"),
    _m("nc3", "§2", "`‖Wᵀ/‖W‖_F − M̃/‖M̃‖_F‖_F²` (self-duality)", SQUARED_UNIT_DISTANCE, DOWN),
    _m("nc4", "§2", "fraction of samples with `argmax(Wh+b) ≠ argmin_k ‖h−μ_k‖`", FRACTION, DOWN),
    _m("ncc_acc", "§2", "accuracy of `argmin_k ‖h−μ_k‖` against the labels", FRACTION, UP, "target",
       splits=("train", "test", "last_layer_train", "last_layer_test")),
    _m("cdnv", "§2", "mean over pairs `i<j` of `V(i,j) = (σ_i²+σ_j²) / (2‖μ_i−μ_j‖²)`", SCALE_FREE, DOWN,
       splits=COLLAPSE_SPLITS),
    # per-epoch training record (SPEC §9)
    _m("accuracy", "§9", "fraction of samples whose `argmax(Wh+b)` is the label", FRACTION, UP, "target",
       splits=("train", "test", "source_train", "source_test")),
    _m("error", "§4", "`1 − accuracy`", FRACTION, DOWN, "target", splits=("test",)),
    _m("loss", "§9", "mean training loss of the epoch", NON_NEGATIVE, DOWN),
    _m("lr", "§9", "learning rate of the epoch", REAL),
    _m("grad_norm", "§9", "global L2 norm of the last step's gradient", REAL),
    _m("chance", "§6", "`1/n_way`: the accuracy of a random guess", FRACTION),
    _m("first_perfect_train_epoch", "§9", "first epoch whose train accuracy is 1", EXACT_COUNT),
    _m("terminal_phase_epoch", "§9", "first epoch of the terminal phase (train error 0 from then on)", EXACT_COUNT),
    _m("terminal_phase_fraction", "§9", "`(last epoch − terminal_phase_epoch + 1) / last epoch`", FRACTION),
    _m("terminal_phase_decay_budget", "§9", "`wd · Σ lr_s` over the optimizer steps after `terminal_phase_epoch` "
       "(how far weight decay can still move the fitted weights; Papyan et al.'s CIFAR-10 runs: about 0.6)",
       NON_NEGATIVE),
    _m("terminal_phase_reached", "§9", "1 if the run reached the terminal phase, else 0", FLAG),
    _m("nc1_drop_in_terminal_phase", "§9", "`nc1` at the terminal phase's start / `nc1` at the end",
       SCALE_FREE, UP),
    _m("trace_sigma_w", "§1", "`Tr Σ_W`", REAL, DOWN),
    _m("trace_sigma_b", "§1", "`Tr Σ_B`", REAL),
    # §3 test collapse
    _m("strong_nc1", "§3", "`nc1` of test features around the train mean of their true class", SCALE_FREE, DOWN),
    _m("weak_nc1", "§3", "`nc1` of test features around the train mean of the predicted class", SCALE_FREE, DOWN),
    _m("weak_ncc_nc1", "§3", "`nc1` of test features around the nearest train mean", SCALE_FREE, DOWN),
    _m("strong_nc1_ratio", "§3", "`strong_nc1 / train nc1`", SCALE_FREE, DOWN),
    _m("weak_nc1_ratio", "§3", "`weak_nc1 / train nc1`", SCALE_FREE, DOWN),
    _m("nc1_ratio", "§3", "held-out `nc1` (strong, weak or weak_ncc split) / train `nc1`", SCALE_FREE, DOWN),
    _m("strong_nc1_fall", "§3", "first-epoch `strong_nc1` / last-epoch `strong_nc1`", SCALE_FREE, UP),
    _m("train_nc1_fall", "§3", "first-epoch train `nc1` / last-epoch train `nc1`", SCALE_FREE, UP),
    _m("trace_sw", "§3", "`Tr Σ_W` of test features around the train means", REAL),
    _m("trace_sw_ratio", "§3", "test `Tr Σ_W` / train `Tr Σ_W`", REAL),
    *(_m(f"{weak}_le_strong_{what}_fraction", "§3", f"share of epochs where the {weak} `{what}` ≤ the strong one",
         FRACTION) for weak in ("weak", "weak_ncc") for what in ("nc1", "trace_sw")),
    _m("generalization_gap", "§3", "train accuracy − test accuracy", REAL),
    # §4 CDNV and generalisation
    _m("cdnv_ratio", "§4", "`test_cdnv / train_cdnv`", SCALE_FREE, DOWN),
    _m("min_sq_mean_distance", "§4", "`min_{i≠j} ‖μ_i−μ_j‖²`", REAL),
    _m("mean_sq_mean_distance", "§4", "mean over `i<j` of `‖μ_i−μ_j‖²`", REAL),
    _m("spearman_test_cdnv_test_error", "§4", "Spearman ρ over epochs between test CDNV and test error", COSINE),
    _m("bound_delta", "§4", "the bound's failure probability δ: a setting",
       replace(FLAG, note="the bound's failure probability: a setting")),
    _m("bound_cdnv_median", "§4", "median over pairs of the bound `(V_D + B)(1 + A)²` on the population CDNV",
       SCALE_FREE),
    _m("bound_holds_fraction", "§4", "share of pairs with a measured test CDNV ≤ their bound (an infinite bound "
                                     "holds)", FRACTION),
    _m("bound_holds_fraction_nonvacuous", "§4", "`bound_holds_fraction` over the pairs whose bound is finite",
       EXACT_FRACTION),
    _m("bound_tightness_median", "§4", "median over pairs of bound / test CDNV", NON_NEGATIVE),
    _m("bound_vacuous_fraction", "§4", "share of pairs whose bound is infinite", EXACT_FRACTION),
    # §5 minimal NCC-depth
    *(_m(n, "§5", f, EXACT_COUNT, DOWN) for n, f in (
        ("ncc_depth", "smallest block ℓ whose train NCC error is ≤ ε"),
        ("ncc_depth_test", "smallest block ℓ whose test NCC error is ≤ ε"),
        ("ncc_depth_test_matched", "smallest ℓ whose test NCC accuracy is ≥ (1 − ε)·(the last layer's)"),
        ("ncc_depth_relative", "`ncc_depth / (L − 1)`"),
        ("ncc_depth_test_matched_relative", "`ncc_depth_test_matched / (L − 1)`"))),
    _m("test_ncc_acc_at_depth", "§5", "test NCC accuracy at block `ncc_depth`", FRACTION, UP, "target"),
    _m("n_layers", "§5", "number of blocks L", EXACT_COUNT),
    _m("epsilon", "§5", "the NCC-error threshold ε: a setting", EXACT_COUNT),
    # §6 few-shot transfer ({shots}: 1shot, 5shot)
    _m("ncc_acc_{shots}", "§6", "mean over episodes of the nearest-centre query accuracy", FRACTION, UP, "target",
       splits=("fewshot",)),
    _m("probe_acc_{shots}", "§6", "mean over episodes of the logistic-probe query accuracy", FRACTION, UP, "target",
       splits=("fewshot",)),
    _m("ncc_error_{shots}", "§6", "`1 − ncc_acc`", FRACTION, DOWN),
    _m("ncc_error_bound_{shots}", "§6", "`(k−1)·Avg_{i≠j} p_ij` (a bound on an error: above 1 it is vacuous)",
       NON_NEGATIVE),
    _m("ncc_error_bound_capped_{shots}", "§6", "`min(1, ncc_error_bound)`: an error is at most 1, so 1 is the "
       "vacuous bound", replace(NON_NEGATIVE, high=1.0, note="a bound on an error, capped at 1"), DOWN),
    _m("ncc_error_bound_ratio_{shots}", "§6", "`ncc_error_bound / ncc_error`", NON_NEGATIVE),
    _m("ncc_error_bound_vacuous_{shots}", "§6", "1 if `ncc_error_bound ≥ 1`, else 0",
       replace(FLAG, note="a 0/1 flag (the bound is >= 1)")),
    _m("episode_cdnv_{shots}", "§6", "mean over episodes of the target CDNV of the episode's classes", SCALE_FREE),
    _m("spearman_cdnv_error_{shots}", "§6", "Spearman ρ over episodes between episode CDNV and NCC error", COSINE),
    _m("sweep_gain_{shots}", "§6", "paired difference of `ncc_acc` between the most and fewest source classes",
       GAIN, UP, "target"),
    _m("sweep_spearman_{shots}", "§6", "Spearman ρ between the number of source classes and `ncc_acc`", COSINE, UP),
    _m("target_cdnv_median", "§6", "median over episodes of the target CDNV", SCALE_FREE),
    _m("target_cdnv_inf_episodes", "§6", "number of episodes whose target CDNV is infinite (tolerance kept "
                                         "from the old `*cdnv*` pattern)", SCALE_FREE),
    _m("source_classes", "§6", "number of source classes: a setting", EXACT_COUNT),
    # §7 imbalance and minority collapse
    _m("minority_accuracy", "§7", "accuracy on the minority classes", FRACTION, UP, "target",
       splits=("train", "test")),
    _m("majority_accuracy", "§7", "accuracy on the majority classes", FRACTION, UP, "target",
       splits=("train", "test")),
    *(_m(f"{group}_accuracy", "§7", f"accuracy on the {group}-shot classes of a long-tailed set (`ncbench.data."
                                    "imbalance.GROUPS`)", FRACTION, UP, "target", splits=("train", "test"))
      for group in ("many", "medium", "few")),
    _m("minority_classifier_cosine", "§7", "mean pairwise cosine of the minority classifier rows", COSINE, DOWN),
    _m("minority_feature_cosine", "§7", "mean pairwise cosine of the minority centred class means", COSINE, DOWN,
       splits=("train", "test")),
    _m("minority_feature_cosine_sample_mean", "§7", "`minority_feature_cosine` around the sample global mean",
       REAL, splits=("train",)),
    _m("etf_minority_gain", "§7", "paired difference of `minority_accuracy`, fixed ETF − learnable", GAIN, UP),
    _m("random_labels_depth_gain", "§5", "paired difference of `ncc_depth_relative`, random − true labels",
       GAIN, None),
    _m("fixed_total_gain_{shots}", "§6", "paired difference of `ncc_acc`, S = 5 − S = 2 source classes at a "
       "fixed number of source images", GAIN, UP),
    _m("etf_dr_minority_gain", "§7", "paired difference of `minority_accuracy`, ETF + DR loss − learnable", GAIN, UP),
    # §8 unconstrained features and the layer-peeled model
    *(_m(f"snc{i}", "§8", f, SCALE_FREE, DOWN) for i, f in (
        (1, "strong NC1 residual of MSE from near-zero init (Mixon et al.)"),
        (2, "strong NC2 residual (Mixon et al.)"), (3, "strong NC3 residual (Mixon et al.)"))),
    _m("objective", "§8", "the regularised UFM objective at the end of gradient descent", REAL),
    _m("kkt_residual", "§8", "KKT residual of the layer-peeled solution", REAL),
    _m("max_kkt_residual", "§8", "largest KKT residual over the sweep", REAL),
    _m("minority_cosine", "§8", "cosine of two minority classifier rows of the layer-peeled optimum", COSINE),
    _m("minority_norm", "§8", "norm of a minority classifier row of the layer-peeled optimum", REAL),
    _m("threshold_ratio", "§8", "smallest ratio R at which the minority rows collapse", NON_NEGATIVE, UP, "target"),
    _m("collapse_ratio", "§8", "`threshold_ratio` in units of the balanced one", NON_NEGATIVE, UP, "target"),
    _m("threshold_spearman_E_H", "§8", "Spearman ρ between `E_H` and `threshold_ratio`", COSINE),
    _m("collapse_spearman_E_H", "§8", "Spearman ρ between `E_H` and `collapse_ratio`", COSINE),
    _m("depth_trend_with_ratio", "§5", "Spearman ρ between the imbalance ratio and `ncc_depth`", COSINE),
    _m("test_depth_trend_with_ratio", "§5", "Spearman ρ between the imbalance ratio and `ncc_depth_test_matched`",
       COSINE),
    # frozen transfer and transferability ranking (SPEC §6, docs/transfer.md)
    _m("probe_acc", "§6", "linear-probe test accuracy on frozen features", FRACTION, UP, "target"),
    _m("linear_probe_acc", "§6", "accuracy of a linear probe fitted on the first target split, tested on the "
       "others (Kornblith et al. 2021)", FRACTION, UP, "target", splits=("target",)),
    _m("knn_acc", "§6", "k-NN test accuracy on frozen features", FRACTION, UP, "target"),
    _m("knn_loo_acc", "§6", "leave-one-out k-NN accuracy on the target train features", FRACTION, UP, "target"),
    _m("logme", "§6", "LogME evidence per sample (You et al. 2021)", SCORE, UP, "target"),
    _m("ncti_{term}", "§6", "one NCTI term (Wang et al. 2023)", SCORE),
    _m("kendall_tau_{estimator}", "§6", "Kendall τ between an estimator's ranking and the fine-tuned ranking",
       RANK_CORRELATION, UP, "target"),
    _m("weighted_tau_{estimator}", "§6", "weighted Kendall τ (top models weigh more)", RANK_CORRELATION, UP, "target"),
    _m("best_ground_truth", "§6", "the best fine-tuned accuracy of the zoo", FRACTION),
    _m("feature_dim", "§6", "feature dimension d", EXACT_COUNT),
    *(_m(n, "§6", f, EXACT_COUNT) for n, f in (
        ("n_train", "number of train samples"), ("n_test", "number of test samples"),
        ("n_train_kept", "train samples with finite features"), ("n_test_kept", "test samples with finite features"),
        ("models", "number of models ranked"), ("failed_models", "number of models that failed"))),
    _m("train_seconds", "§9", "wall-clock seconds of the training", SECONDS),
)
"""Every metric ncbench writes; `{of}_ci95` and `{of}_pvalue` of any of them are derived (`DERIVED`)."""

DERIVED: dict[str, tuple[Scale, str]] = {
    "ci95": (HALF_WIDTH, "half-width of the 95% interval of `{of}` (`1.96·std/√episodes`, SPEC §6)"),
    "pvalue": (P_VALUE, "two-sided p-value of `{of}`"),
}
"""Suffixes that turn any registered metric `{of}` into a statistic of it: `ncc_acc_5shot_ci95`."""


class UnknownMetricError(ValueError):
    """A metric name the registry cannot read."""


def _placeholder_pattern(values: str | tuple[str, ...]) -> str:
    return values if isinstance(values, str) else "|".join(re.escape(v) for v in values)


def _template(metric: Metric) -> re.Pattern:
    parts = re.split(r"\{(\w+)\}", metric.name)
    body = "".join(re.escape(p) if i % 2 == 0 else f"(?:{_placeholder_pattern(PLACEHOLDERS[p])})"
                   for i, p in enumerate(parts))
    prefix = f"(?:(?:{'|'.join(re.escape(s) for s in metric.splits)})_)?" if metric.splits else ""
    return re.compile(prefix + body)


def _index() -> tuple[dict[str, Metric], list[tuple[re.Pattern, Metric]]]:
    exact: dict[str, Metric] = {}
    templates = []
    for m in DECLARATIONS:
        if "{" in m.name:
            templates.append((_template(m), m))
            continue
        for name in (m.name, *(f"{s}_{m.name}" for s in m.splits)):
            if name in exact:
                raise ValueError(f"metric {name!r} is declared twice in ncbench.core.metrics")
            exact[name] = m
    return exact, templates


EXACT, TEMPLATES = _index()


def find(name: str) -> Metric | None:
    """The declaration of `name` (with its facts), None if no declaration reads it."""
    base = name.rsplit("/", 1)[-1]           # a legacy sweep-point path: R10/learnable/minority_accuracy
    if base in EXACT:
        return EXACT[base]
    hits = [m for pattern, m in TEMPLATES if pattern.fullmatch(base)]
    for suffix, (scale, formula) in DERIVED.items():
        of = base.removesuffix(f"_{suffix}")
        if of != base and (parent := find(of)) is not None:
            hits.append(Metric(base, parent.section, formula.format(of=of), scale))
    if len(hits) > 1:
        raise UnknownMetricError(f"metric {name!r} reads as {len(hits)} declarations "
                                 f"({', '.join(h.name for h in hits)}): make one of them explicit in "
                                 "ncbench.core.metrics")
    return hits[0] if hits else None


def metric(name: str) -> Metric:
    """The declaration of `name`; `UnknownMetricError` (one line, with did-you-mean) if none reads it."""
    found = find(name)
    if found is None:
        close = difflib.get_close_matches(name.rsplit("/", 1)[-1], names(), n=3)
        hint = f"did you mean {', '.join(repr(c) for c in close)}? " if close else ""
        raise UnknownMetricError(f"unknown metric {name!r}: {hint}Declare it in ncbench/core/metrics.py "
                                 "(docs/ARCHITECTURE.md, 'Adding a metric')")
    return found


def in_section(section: str) -> tuple[str, ...]:
    """The names declared under a SPEC section, in declaration order (`in_section("§2")`: the collapse
    metrics `ncbench.metrics.collapse` computes, in the order it writes them)."""
    return tuple(m.name for m in DECLARATIONS if m.section == section)


def names() -> list[str]:
    """Every declared name, families with their `{placeholder}` (for listings and did-you-mean)."""
    return [*EXACT, *(m.name for _, m in TEMPLATES)]
