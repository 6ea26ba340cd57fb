"""The claims of issue 15 (item 9) as data: each names the task, metric and sweep point it reads.

Task names are the embedded-tier instances of the `claims` suite (`tasks/claims.yaml`: the
`*_mnist5k` tasks (`minority_collapse_exp_mnist5k`: the exp profile), `lpm_minority_curve`, and
the controls `random_labels_*`, `weight_decay_mnist5k`, `fewshot_losses_mnist5k`); metric names are
the fixed per-kind vocabulary and sweep points live in `variant` (`ratio=100,classifier=learnable`,
`source_classes=5`, `labels=random`, `loss=mse`, `E_H=5`, `weight_decay=0.005`). A claims suite that names its tasks otherwise passes its own list to
`evaluate_claims`. Compound claims of the issue are split in parts (`…_learnable` / `…_etf`,
`…_train` / `…_test`); `weight_decay_deepens_collapse` is the weight-decay sweep of item 7.
"""
from __future__ import annotations

from ncbench.claims.claim import Claim
from ncbench.claims.measure import Measure
from ncbench.claims.preconditions import Precondition

TRAIN = "train_collapse_mnist5k"
TEST = "test_collapse_mnist5k"
DEPTH = "ncc_depth_mnist5k"
FEWSHOT = "fewshot_mnist5k"
BOUND = "cdnv_bound_mnist5k"
MINORITY = "minority_collapse_mnist5k"
MINORITY_EXP = "minority_collapse_exp_mnist5k"
LPM = "lpm_minority_curve"
RANDOM_TRAIN = "random_labels_train_mnist5k"
RANDOM_TEST = "random_labels_test_mnist5k"
WEIGHT_DECAY = "weight_decay_mnist5k"
LOSSES = "fewshot_losses_mnist5k"
K_MINORITY = 10
"""Classes of the minority-collapse task (MNIST-5k): the simplex-ETF cosine is −1/(K−1)."""
K_MNIST = 10
"""Classes of MNIST-5k: chance accuracy is 1/K."""
FITTED = 0.99
"""ncbench's level for "the network fits its train set": train accuracy ≥ 0.99."""


def terminal_phase(task: str, variant: str = "") -> tuple[Precondition, ...]:
    """Papyan et al.'s statements are about a terminal phase that covers at least a third of training
    (ncbench's reading of their 350-epoch runs, terminal phase from about epoch 100) and starts at a learning
    rate that still moves the weights (ncbench's level: ≥ 10% of the peak learning rate)."""
    return (Precondition("long_terminal_phase", "the terminal phase covers at least a third of training",
                         Measure(task, "terminal_phase_fraction", variant), ">=", 1 / 3),
            Precondition("lr_moves_weights", "the learning rate at the terminal phase's start is ≥ 10% of its peak",
                         Measure(task, "lr", variant, split="fit"), ">=", 0.1,
                         statistic="relative_lr_at_terminal_phase"))


def _minority_cosine_rise(claim_id: str, task: str, claim: str, source: str) -> Claim:
    """Learnable minority classifier cosine at R = 100 above R = 1, paired per seed (Fang et al.)."""
    at = lambda R: Measure(task, "minority_classifier_cosine", f"ratio={R},classifier=learnable")
    return Claim(claim_id, claim, source, "paired_difference", at(100), ">", 0.0, b=at(1))


CLAIMS: tuple[Claim, ...] = (
    Claim("nc1_falls_10x_terminal_phase",
          "Train NC1 falls during the terminal phase of training (at least 10×: ncbench's threshold)",
          "Papyan, Han, Donoho 2020 (review §2, Fig. 6)",
          "mean", Measure(TRAIN, "nc1_drop_in_terminal_phase"), ">", 1.0, transform="log10",
          null=0.0, threshold_source="ncbench", preconditions=terminal_phase(TRAIN)),
    Claim("test_collapse_lags_train",
          "Test collapse lags train collapse: over the terminal phase train NC1 falls by a larger factor "
          "than the strong test NC1 (around the train means)",
          "Hui, Belkin, Nakkiran 2022 (review §4.1.1)",
          "paired_difference", Measure(TEST, "train_nc1_fall"), ">", 0.0,
          b=Measure(TEST, "strong_nc1_fall"), transform="log10", preconditions=terminal_phase(TRAIN)),
    Claim("ncc_depth_falls_in_training",
          "The minimal NCC-depth (train) falls during training (a count: judged by the sign test over seeds)",
          "Galanti, Galanti, Ben-Shaul 2022; Ben-Shaul & Dekel 2022 (review §5)",
          "epoch_change", Measure(DEPTH, "ncc_depth", split="train"), "<", 0.0, interval="sign"),
    Claim("more_source_classes_transfer_better",
          "More source classes transfer better: 5-shot NCC accuracy on the target classes with S = 5 "
          "source classes exceeds that with S = 2",
          "Galanti, György, Hutter 2022; review §4.1.2",
          "paired_difference", Measure(FEWSHOT, "ncc_acc_5shot", "source_classes=5"), ">", 0.0,
          b=Measure(FEWSHOT, "ncc_acc_5shot", "source_classes=2"), bounds=(-1.0, 1.0)),
    Claim("fewshot_error_grows_with_cdnv",
          "Few-shot error grows with the CDNV of the target classes: Spearman ρ across 5-shot episodes "
          "between episode CDNV and episode error is positive",
          "Galanti, György, Hutter 2022 (few-shot NCC error and target CDNV)",
          "mean", Measure(FEWSHOT, "spearman_cdnv_error_5shot", "source_classes=5"), ">", 0.0, interval="fisher_z"),
    Claim("ncbench_cdnv_bound_holds",
          "ncbench's plug-in population-CDNV bound (its own constants, not Galanti et al.'s) is at or above the "
          "measured test CDNV for at least 95% (1 − δ) of the class pairs where it is not vacuous",
          "ncbench, after Galanti, György, Hutter 2022 (review eq. 16)",
          "mean", Measure(BOUND, "bound_holds_fraction_nonvacuous"), ">", 0.95, bounds=(0.0, 1.0),
          threshold_source="ncbench",
          preconditions=(Precondition(
              "train_sample_like_fresh", "the bound estimated on train features assumes they behave like a fresh "
              "sample: the train-test accuracy gap is at most 0.02", Measure(BOUND, "generalization_gap",
                                                                             split="test_vs_train"), "<=", 0.02),)),
    Claim("ncbench_fewshot_bound_holds",
          "ncbench's plug-in few-shot NCC error bound, capped at 1, is at or above the measured 5-shot episode "
          "error where it is not vacuous",
          "ncbench, after Galanti, György, Hutter 2022 (few-shot NCC error bound)",
          "paired_difference", Measure(FEWSHOT, "ncc_error_bound_capped_5shot", "source_classes=5"), ">", 0.0,
          b=Measure(FEWSHOT, "ncc_error_5shot", "source_classes=5"), bounds=(-1.0, 1.0), threshold_source="ncbench",
          preconditions=(Precondition("bound_not_vacuous", "the raw bound is below 1 (else it says nothing)",
                                      Measure(FEWSHOT, "ncc_error_bound_vacuous_5shot", "source_classes=5"),
                                      "<", 0.5),)),
    _minority_cosine_rise("minority_cosine_rises_learnable", MINORITY,
                          "With a learnable classifier the minority classifier rows' mean cosine rises with the "
                          "imbalance ratio (R = 100 vs R = 1)",
                          "Fang, He, Long, Su 2021 (review §3.1.5)"),
    _minority_cosine_rise("minority_cosine_rises_learnable_exp", MINORITY_EXP,
                          "Under a long-tail (exp) imbalance too, the learnable minority classifier rows' mean "
                          "cosine rises with the imbalance ratio (R = 100 vs R = 1)",
                          "Fang, He, Long, Su 2021; the exp profile of Cao et al. 2019"),
    Claim("minority_cosine_fixed_etf",
          "With a fixed simplex-ETF classifier the minority class means stay at cosine −1/(K−1) at R = 100 "
          "(within 0.1: ncbench's band)",
          "Yang et al. 2022; Fang et al. 2021",
          "mean", Measure(MINORITY, "minority_feature_cosine", "ratio=100,classifier=etf"), "within",
          -1.0 / (K_MINORITY - 1), tolerance=0.1, threshold_source="ncbench", bounds=(-1.0, 1.0),
          seed_sd=0.031),   # the three seeds of the 2026-12-01 claims run: s.d. 0.031 (t half-width 0.077)
    Claim("etf_improves_minority_accuracy",
          "A fixed simplex-ETF classifier improves minority test accuracy over a learnable one at R = 100",
          "Yang et al. 2022",
          "paired_difference", Measure(MINORITY, "minority_accuracy", "ratio=100,classifier=etf"), ">", 0.0,
          b=Measure(MINORITY, "minority_accuracy", "ratio=100,classifier=learnable"), bounds=(-1.0, 1.0),
          preconditions=(Precondition("minority_fitted", "the learnable arm fits its minority classes: minority "
                                      "train accuracy ≥ 0.9 (else both arms sit at a floor)",
                                      Measure(MINORITY, "minority_accuracy", "ratio=100,classifier=learnable",
                                              split="train"), ">=", 0.9),)),
    Claim("random_labels_collapse_train",
          "With random labels train features still collapse: final train NC1 below 0.1 (ncbench's level; "
          "NC1 = 1 is no collapse)",
          "Zhu et al. 2021; review §4.1.1",
          "mean", Measure(RANDOM_TRAIN, "nc1", "labels=random"), "<", -1.0, transform="log10", null=0.0,
          threshold_source="ncbench",
          preconditions=(Precondition("random_labels_fitted", "the network fits the random labels (train accuracy "
                                      f"≥ {FITTED})", Measure(RANDOM_TRAIN, "train_accuracy", "labels=random"),
                                      ">=", FITTED),) + terminal_phase(RANDOM_TRAIN, "labels=random")),
    Claim("random_labels_no_test_collapse",
          "With random labels the test features do not collapse onto the train class means: test NCC accuracy "
          f"around them stays within 0.05 of chance (1/{K_MNIST}; ncbench's margin)",
          "Zhu et al. 2021; Galanti 2022; review §4.1.1",
          "mean", Measure(RANDOM_TRAIN, "ncc_acc", "labels=random", split="test"), "<", 1 / K_MNIST + 0.05,
          bounds=(0.0, 1.0), threshold_source="ncbench",
          preconditions=(Precondition("random_labels_fitted", "the network fits the random labels (train accuracy "
                                      f"≥ {FITTED})", Measure(RANDOM_TRAIN, "train_accuracy", "labels=random"),
                                      ">=", FITTED),)),
    Claim("more_collapse_worse_transfer",
          "Losses that collapse more transfer worse: across losses, source NC1 and target 5-shot accuracy "
          "are positively rank-correlated",
          "Kornblith et al. 2021 (review §4.1.2)",
          "spearman", Measure(LOSSES, "ncc_acc_5shot"), ">", 0.0, sweep_key="loss", x_metric="source_nc1"),
    Claim("lpm_threshold_grows_with_eh",
          "In the layer-peeled model the minority-collapse threshold ratio grows with the feature budget E_H "
          "(ρ = 1: strictly monotone on the E_H grid)",
          "Fang, He, Long, Su 2021 (eq. 14)",
          "spearman", Measure(LPM, "threshold_ratio"), ">", 0.9, sweep_key="E_H", min_seeds=1,
          threshold_source="ncbench", null=0.0, evidence="theory"),
    Claim("weight_decay_deepens_collapse",
          "Weight decay deepens collapse: final train NC1 with weight decay 5e-3 is below that without",
          "Rangamani & Banburski-Fahey 2022; review §3.1",
          "paired_difference", Measure(WEIGHT_DECAY, "nc1", "weight_decay=0.005"), "<", 0.0,
          b=Measure(WEIGHT_DECAY, "nc1", "weight_decay=0"), transform="log10"),
)
"""The claims of issue 15 item 9 redesigned along issue 28 (no new experiment needed): preconditions, the
paper's null beside ncbench's thresholds, intervals that fit the statistic. `weak_le_strong_test_collapse`
is dropped: weak ≤ strong test NC1 holds by construction when NC4 ≈ 0. A new claim is one more `Claim(...)`
here (its tasks in `tasks/claims.yaml`)."""
