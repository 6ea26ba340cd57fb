"""The claims of the literature as data (issues 15 and 28): each names the task, metric and point it reads.

Task names are the embedded-tier instances of the `claims` suite (`tasks/claims.yaml`). The redesigned
experiments of issue 28 (docs/claims_experiments.md) sweep `model` over three architectures; a
`model=` key in `variant` is the model of the outcome (a verdict per architecture, and pooled), so a
`Measure`'s variant names only the other keys (`labels=random`, `ratio=10`, `loss=mse`, `epochs=12`).
Metrics are read by name, and the terminal phase by the train accuracy reaching 1, never by epoch
numbers: the claims hold for any recipe of those tasks. Claims whose statement is a theory's optimum
(layer-peeled and unconstrained-features models) are labelled `evidence="theory"`. Every threshold that
is not the paper's is `threshold_source="ncbench"`; every precondition level is ncbench's.
"""
from __future__ import annotations

import math

from ncbench.claims.claim import Claim
from ncbench.claims.measure import Measure
from ncbench.claims.preconditions import Precondition

TERMINAL = "terminal_phase_mnist5k"
TEST_TERMINAL = "test_collapse_terminal_mnist5k"
DEPTH_TERMINAL = "ncc_depth_terminal_mnist5k"
RANDOM_FIT = "random_labels_fit_mnist5k"
DEPTH_RANDOM = "ncc_depth_random_labels_mnist5k"
FIXED_TOTAL = "fewshot_fixed_total_mnist5k"
MINORITY_FITTED = "minority_fitted_mnist5k"
LOSSES = "transfer_losses_mnist5k"
REPRESENTATIONS = "cdnv_representations_mnist5k"
BOUND = "cdnv_bound_terminal_mnist5k"
MINORITY = "minority_arch_mnist5k"
MINORITY_EXP = "minority_arch_exp_mnist5k"
WEIGHT_DECAY = "weight_decay_fit_mnist5k"
LPM = "lpm_minority_curve"
UFM_CE = "ufm_ce_balanced"
UFM_MSE = "ufm_mse_snc"
K_MINORITY = 10
"""Classes of the minority-collapse task (MNIST-5k): the simplex-ETF cosine is −1/(K−1)."""
K_MNIST = 10
"""Classes of MNIST-5k: chance accuracy is 1/K."""
FITTED = 0.99
"""ncbench's level for "the network fits its train set": train accuracy ≥ 0.99."""
MATCHED = 0.01
"""ncbench's level for losses matched on source accuracy: max − min of source test accuracy ≤ 0.01."""
N_LOSSES = 5
"""Losses of transfer_losses_mnist5k (CE, label smoothing 0.1 and 0.3, MSE, squentropy)."""
N_BLOCKS = 5
"""Blocks the per-block probes of ncc_depth report for the test_* architectures (rule_feasibility)."""
REPRESENTATION_POINTS = ("epochs=1", "epochs=4", "epochs=12", "epochs=12,baseline=random_init",
                         "epochs=12,baseline=raw_pixels")
"""Five representations per architecture: trained 1, 4, 12 epochs, its random init, the raw pixels."""


DECAY_BUDGET = 0.1
"""ncbench's level for a terminal phase in which weight decay can still move the fitted weights:
`wd · Σ lr` over its steps ≥ 0.1 (`terminal_phase_decay_budget`; Papyan et al.'s CIFAR-10 runs: about 0.6)."""


def terminal_phase(task: str, variant: str = "") -> tuple[Precondition, ...]:
    """Papyan et al.'s statements are about a terminal phase that covers at least a third of training
    (ncbench's reading of their 350-epoch runs, terminal phase from about epoch 100), starts at a learning
    rate that still moves the weights (ncbench's level: ≥ 10% of the peak learning rate) and lasts long
    enough for weight decay to act (decay budget ≥ `DECAY_BUDGET`, ncbench's level)."""
    return (Precondition("long_terminal_phase", "the terminal phase covers at least a third of training",
                         Measure(task, "terminal_phase_fraction", variant), ">=", 1 / 3),
            Precondition("lr_moves_weights", "the learning rate at the terminal phase's start is ≥ 10% of its peak",
                         Measure(task, "lr", variant, split="fit"), ">=", 0.1,
                         statistic="relative_lr_at_terminal_phase"),
            Precondition("decay_budget", f"weight decay can still act in the terminal phase: wd · Σ lr over its "
                         f"steps ≥ {DECAY_BUDGET}", Measure(task, "terminal_phase_decay_budget", variant),
                         ">=", DECAY_BUDGET))


def fitted(name: str, task: str, variant: str, what: str, metric: str = "train_accuracy",
           split: str | None = None) -> Precondition:
    """`what` is fitted: its train accuracy (last epoch) ≥ ncbench's 0.99."""
    return Precondition(name, f"the network fits {what} (train accuracy ≥ {FITTED})",
                        Measure(task, metric, variant, split=split), ">=", FITTED)


def _terminal_fall(claim_id: str, metric: str, name: str, threshold: float = 0.0, **kw) -> Claim:
    """`metric` (train, per epoch) falls from the terminal phase's first epoch to the last (Papyan et al.)."""
    ten = threshold > 0
    return Claim(claim_id,
                 f"Train {name} falls during the terminal phase of training"
                 + (" (at least 10×: ncbench's threshold; the paper shows a fall over orders of magnitude)" if ten
                    else ""),
                 "Papyan, Han, Donoho 2020 (Figs. 5-7)",
                 "terminal_phase_fall", Measure(TERMINAL, metric, split="train"), ">", threshold, transform="log10",
                 phase=Measure(TERMINAL, "accuracy", split="train"), preconditions=terminal_phase(TERMINAL),
                 **({"null": 0.0, "threshold_source": "ncbench"} if ten else {}), **kw)


def _falls_over_layers(claim_id: str, metric: str, claim: str, source: str) -> Claim:
    """Train `metric` per block at the last epoch falls with the block index (He & Su), network fitted."""
    return Claim(claim_id, claim, source, "layer_spearman", Measure(DEPTH_TERMINAL, metric, split="train"), "<", 0.0,
                 points_expected=N_BLOCKS, preconditions=(fitted("train_fitted", TERMINAL, "", "its train set"),))


def _minority_cosine_rise(claim_id: str, task: str, claim: str, source: str) -> Claim:
    """Learnable minority classifier cosine at R = 100 above R = 1, paired per seed (Fang et al.)."""
    at = lambda R: Measure(task, "minority_classifier_cosine", f"ratio={R},classifier=learnable")
    return Claim(claim_id, claim, source, "paired_difference", at(100), ">", 0.0, b=at(1))


def _etf_gain(claim_id: str, arm: str, metric: str, what: str) -> Claim:
    """Test minority accuracy of a fixed-ETF arm minus the learnable arm at R = 10, minorities fitted."""
    return Claim(claim_id,
                 f"A fixed simplex-ETF classifier {what} improves minority test accuracy over a learnable one "
                 "where the minority classes are fitted (R = 10)",
                 "Yang et al. 2022 (Inducing neural collapse in imbalanced learning)",
                 "mean", Measure(MINORITY_FITTED, metric, "ratio=10"), ">", 0.0, bounds=(-1.0, 1.0),
                 preconditions=(fitted("learnable_minority_fitted", MINORITY_FITTED, "ratio=10,classifier=learnable",
                                       "the learnable arm's minority classes", "minority_accuracy", "train"),
                                fitted(f"{arm}_minority_fitted", MINORITY_FITTED, f"ratio=10,classifier={arm}",
                                       f"the {arm} arm's minority classes", "minority_accuracy", "train")))


BOUND_INFORMATIVE = 0.5
"""ncbench's level for a CDNV bound that says something: at most half of the class pairs vacuous."""


def _cdnv_bound_holds(claim_id: str, variant: str, what: str) -> Claim:
    """ncbench's population-CDNV bound from one held-out half of each test class, checked on the other
    half: its sample is independent of the training and of the check, as the bound assumes."""
    return Claim(claim_id,
                 f"ncbench's plug-in population-CDNV bound (its own constants, not Galanti et al.'s), computed on "
                 f"{what} from one held-out half of each test class, is at or above the CDNV of the other half "
                 "for at least 95% (1 − δ) of the class pairs where it is not vacuous",
                 "ncbench, after Galanti, György, Hutter 2022 (review eq. 16)",
                 "mean", Measure(BOUND, "bound_holds_fraction_nonvacuous", variant), ">", 0.95, bounds=(0.0, 1.0),
                 threshold_source="ncbench",
                 preconditions=(Precondition(
                     "bound_informative", f"the bound is finite for most class pairs (vacuous fraction ≤ "
                     f"{BOUND_INFORMATIVE}, ncbench's level)", Measure(BOUND, "bound_vacuous_fraction", variant),
                     "<=", BOUND_INFORMATIVE),))


RANDOM_FITTED = fitted("random_labels_fitted", RANDOM_FIT, "labels=random", "the random labels")

CLAIMS: tuple[Claim, ...] = (
    # -- Papyan et al.: NC1-NC4 in a long terminal phase (step schedule, three architectures) ---------------
    _terminal_fall("nc1_falls_terminal_phase", "nc1", "NC1 (within-class variability)", 1.0),
    _terminal_fall("nc2_falls_terminal_phase", "etf_error_h", "NC2 (distance of the class means from a simplex ETF)"),
    _terminal_fall("nc3_falls_terminal_phase", "nc3", "NC3 (classifier-mean duality)"),
    Claim("nc4_vanishes",
          "NC4: at the end of the terminal phase the network's decisions agree with the nearest class mean's "
          "(disagreement below 1%: ncbench's threshold; 10% or more contradicts, ncbench's null)",
          "Papyan, Han, Donoho 2020 (Fig. 8)",
          "mean", Measure(TERMINAL, "nc4"), "<", 0.01, null=0.1, threshold_source="ncbench", bounds=(0.0, 1.0),
          preconditions=(Precondition("terminal_phase_reached", "the training reaches the terminal phase",
                                      Measure(TERMINAL, "terminal_phase_reached"), ">=", 1.0),)),
    Claim("test_collapse_stalls",
          "Test collapse stalls while train collapse goes on: over the later half of the terminal phase log "
          "strong test NC1 (around the train means) falls more slowly per epoch than log train NC1",
          "Hui, Belkin, Nakkiran 2022 (Limitations of neural collapse for understanding generalization)",
          "late_slope_difference", Measure(TEST_TERMINAL, "nc1", split="test_strong"), ">", 0.0,
          b=Measure(TEST_TERMINAL, "nc1", split="train"), transform="log10",
          phase=Measure(TEST_TERMINAL, "accuracy", split="train"),
          preconditions=terminal_phase(TERMINAL) + (
              Precondition("generalization_gap", "test accuracy is below 1 (a gap for the test NC1 to show)",
                           Measure(TEST_TERMINAL, "test_accuracy"), "<", 1.0),)),
    # -- He & Su: progressive collapse over the layers ---------------------------------------------------------
    _falls_over_layers("nc1_falls_over_layers", "nc1",
                       "Collapse progresses with depth: train NC1 at the end of training falls with the block "
                       "index (Spearman ρ < 0)", "He & Su 2022 (A law of data separation in deep learning)"),
    _falls_over_layers("cdnv_falls_over_layers", "cdnv",
                       "The class-distance normalised variance (CDNV) of the train features at the end of "
                       "training falls with the block index (Spearman ρ < 0)",
                       "He & Su 2022; Galanti, Galanti, Ben-Shaul 2022 (NCC depth)"),
    # -- random labels (50 images per class, fitted) ------------------------------------------------------------
    Claim("random_labels_collapse_train",
          "Networks fitted to random labels still collapse their train features: final train NC1 below 0.1 "
          "(ncbench's level; NC1 = 1, within-class spread as large as between, is no collapse)",
          "Zhu et al. 2021 (A geometric analysis of neural collapse with unconstrained features, §5)",
          "mean", Measure(RANDOM_FIT, "nc1", "labels=random"), "<", -1.0, transform="log10", null=0.0,
          threshold_source="ncbench", preconditions=(RANDOM_FITTED,)),
    Claim("random_labels_no_test_generalization",
          "With random labels the train collapse does not carry to test images: test NCC accuracy around the "
          f"random-label train means stays within 0.05 of chance (1/{K_MNIST}; ncbench's margin)",
          "Zhang et al. 2017; Zhu et al. 2021",
          "mean", Measure(DEPTH_RANDOM, "last_layer_test_ncc_acc", "labels=random"), "<", 1 / K_MNIST + 0.05,
          bounds=(0.0, 1.0), threshold_source="ncbench", preconditions=(RANDOM_FITTED,)),
    Claim("ncc_depth_larger_random_labels",
          "Fitting random labels pushes the minimal NCC depth deeper: the relative train NCC depth with random "
          "labels exceeds that with the true labels",
          "Ben-Shaul & Dekel 2022 (Nearest class-center simplification through intermediate layers)",
          "mean", Measure(DEPTH_RANDOM, "random_labels_depth_gain"), ">", 0.0, bounds=(-1.0, 1.0),
          preconditions=(RANDOM_FITTED,
                         fitted("true_labels_fitted", RANDOM_FIT, "labels=true", "the true labels"))),
    # -- transfer ------------------------------------------------------------------------------------------------
    Claim("more_source_classes_transfer_better",
          "More source classes transfer better with the number of train images held fixed: 5-shot NCC accuracy "
          "on the unseen digits from S = 5 source classes exceeds that from S = 2 (800 images each)",
          "Galanti, György, Hutter 2022; review §4.1.2",
          "mean", Measure(FIXED_TOTAL, "fixed_total_gain_5shot"), ">", 0.0, bounds=(-1.0, 1.0),
          preconditions=(Precondition(
              "same_source_images", "both arms train on the same number of source images",
              Measure(FIXED_TOTAL, "accuracy", "source_classes=5", split="source_train", column="n_samples"),
              "<=", 0.0, statistic="abs_difference",
              other=Measure(FIXED_TOTAL, "accuracy", "source_classes=2", split="source_train", column="n_samples")),)),
    Claim("more_collapse_worse_transfer",
          "Losses that collapse the source features more transfer worse: across five losses, source NC1 and "
          "linear-probe accuracy on the unseen digits are positively rank-correlated",
          "Kornblith et al. 2021 (Why do better loss functions lead to less transferable features?)",
          "spearman", Measure(LOSSES, "target_linear_probe_acc"), ">", 0.0, sweep_key="loss", x_metric="source_nc1",
          interval="permutation", points_expected=N_LOSSES,
          preconditions=(Precondition(
              "losses_matched", f"the losses are matched on source accuracy (range of source test accuracy ≤ "
              f"{MATCHED})", Measure(LOSSES, "source_test_accuracy"), "<=", MATCHED, statistic="sweep_range",
              sweep_key="loss"),)),
    Claim("fewshot_error_grows_with_cdnv",
          "Few-shot error grows with the target classes' CDNV across representations (trained 1, 4, 12 epochs, "
          "random init, raw pixels): Spearman ρ between target CDNV and 5-shot NCC accuracy is negative",
          "Galanti, György, Hutter 2022 (On the role of neural collapse in transfer learning)",
          "spearman", Measure(REPRESENTATIONS, "ncc_acc_5shot"), "<", 0.0, points=REPRESENTATION_POINTS,
          x_metric="target_cdnv", interval="permutation", points_expected=len(REPRESENTATION_POINTS)),
    Claim("ncbench_fewshot_bound_holds",
          "ncbench's plug-in few-shot NCC error bound, capped at 1, is at or above the measured 5-shot episode "
          "error where it is not vacuous",
          "ncbench, after Galanti, György, Hutter 2022 (few-shot NCC error bound)",
          "paired_difference", Measure(REPRESENTATIONS, "ncc_error_bound_capped_5shot", "epochs=12"), ">", 0.0,
          b=Measure(REPRESENTATIONS, "ncc_error_5shot", "epochs=12"), bounds=(-1.0, 1.0), threshold_source="ncbench",
          preconditions=(Precondition("bound_not_vacuous", "the raw bound is below 1 (else it says nothing)",
                                      Measure(REPRESENTATIONS, "ncc_error_bound_vacuous_5shot", "epochs=12"),
                                      "<", 0.5),)),
    _cdnv_bound_holds("ncbench_cdnv_bound_holds", "", "trained features"),
    _cdnv_bound_holds("ncbench_cdnv_bound_holds_random_init", "baseline=random_init",
                      "features of the random initialisation"),
    # -- losses and interventions --------------------------------------------------------------------------------
    Claim("mse_collapses_as_ce",
          "Features collapse under MSE as under cross-entropy: source NC1 with MSE is at most 2× that with CE "
          "(ncbench's threshold; 10× or more contradicts, ncbench's null)",
          "Han, Papyan, Donoho 2022 (Neural collapse under MSE loss)",
          "paired_difference", Measure(LOSSES, "source_nc1", "loss=mse"), "<", math.log10(2), transform="log10",
          b=Measure(LOSSES, "source_nc1", "loss=ce"), null=1.0, threshold_source="ncbench",
          preconditions=(fitted("mse_fitted", LOSSES, "loss=mse", "the source classes under MSE",
                                "source_train_accuracy"),)),
    Claim("train_collapse_tracks_test_accuracy",
          "Across an intervention (five losses), more train collapse goes with higher test accuracy: Spearman ρ "
          "between source train NC1 and source test accuracy is negative (Hui et al. report it need not be)",
          "Papyan et al. 2020 (the hypothesis); Hui, Belkin, Nakkiran 2022 (its test across interventions)",
          "spearman", Measure(LOSSES, "source_test_accuracy"), "<", 0.0, sweep_key="loss", x_metric="source_nc1",
          interval="permutation", points_expected=N_LOSSES),
    Claim("weight_decay_deepens_collapse",
          "Weight decay deepens collapse: final train NC1 with the papers' weight decay 5e-4 is below that "
          "without weight decay",
          "Rangamani & Banburski-Fahey 2022; review §3.1",
          "paired_difference", Measure(WEIGHT_DECAY, "nc1", "weight_decay=0.0005"), "<", 0.0,
          b=Measure(WEIGHT_DECAY, "nc1", "weight_decay=0"), transform="log10",
          preconditions=(fitted("decayed_fitted", WEIGHT_DECAY, "weight_decay=0.0005", "its train set with weight decay"),
                         fitted("undecayed_fitted", WEIGHT_DECAY, "weight_decay=0", "its train set without"))),
    # -- imbalance -----------------------------------------------------------------------------------------------
    _etf_gain("etf_dr_improves_minority_accuracy", "etf_dr", "etf_dr_minority_gain", "trained with the dot-regression loss"),
    _etf_gain("etf_improves_minority_accuracy", "etf", "etf_minority_gain", "trained with cross-entropy"),
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
    Claim("ncc_depth_falls_in_training",
          "The minimal NCC-depth (train) falls during training (a count: judged by the sign test over seeds)",
          "Galanti, Galanti, Ben-Shaul 2022; Ben-Shaul & Dekel 2022 (review §5)",
          "epoch_change", Measure(DEPTH_TERMINAL, "ncc_depth", split="train"), "<", 0.0, interval="sign",
          preconditions=(fitted("train_fitted", TERMINAL, "", "its train set"),)),
    # -- theory checks: the optima of the layer-peeled and unconstrained-features models -------------------------
    Claim("lpm_threshold_grows_with_eh",
          "In the layer-peeled model the minority-collapse threshold ratio grows with the feature budget E_H "
          "(ρ = 1: strictly monotone on the E_H grid)",
          "Fang, He, Long, Su 2021 (eq. 14)",
          "spearman", Measure(LPM, "threshold_ratio"), ">", 0.9, sweep_key="E_H", min_seeds=1,
          threshold_source="ncbench", null=0.0, evidence="theory"),
    Claim("ufm_ce_reaches_etf",
          "In the unconstrained-features model with weight-decayed cross-entropy, gradient descent reaches the "
          "simplex ETF: NC2 (ETF error of the class means) below 1e-3 (ncbench's tolerance)",
          "Zhu et al. 2021 (every global minimiser is a simplex ETF)",
          "mean", Measure(UFM_CE, "etf_error_h"), "<", -3.0, transform="log10", null=0.0, threshold_source="ncbench",
          min_seeds=1, evidence="theory"),
    Claim("ufm_mse_strong_collapse",
          "In the unregularised MSE unconstrained-features model from a small initialisation, gradient descent "
          "lands on the strong-neural-collapse solution: residual snc2 below 1e-2 (ncbench's tolerance)",
          "Mixon, Parshall, Pi 2020 (Neural collapse with unconstrained features)",
          "mean", Measure(UFM_MSE, "snc2"), "<", -2.0, transform="log10", null=0.0, threshold_source="ncbench",
          min_seeds=1, evidence="theory"),
)
"""The catalog of issue 28: each claim an experiment that can fail, with the preconditions under which the
paper's statement applies. Superseded and dropped: `test_collapse_lags_train` (follows from any
generalisation gap; `test_collapse_stalls` is Hui et al.'s sharper claim), the random-label claims on the
cosine recipe (terminal phase at epoch 50 of 60), `fewshot_error_grows_with_cdnv` within one model's
episodes (now across representations), `more_source_classes_transfer_better` with twice the images (now
with the images held fixed), the ETF gain at R = 100 where no arm fits its minorities, Kornblith's claim
on NCC few-shot over four unmatched losses, and `weak_le_strong_test_collapse` (holds by construction when
NC4 ≈ 0). A new claim is one more `Claim(...)` here (its tasks in `tasks/claims.yaml`)."""
