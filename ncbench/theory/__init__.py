"""Theory tier (SPEC §8): the unconstrained-features and layer-peeled models, simulated as ground
truth for the collapse metrics (review §3; Mixon et al. 2020, Zhu et al. 2021, Fang et al. 2021)."""
from ncbench.theory.layer_peeled import (
    LPMConfig,
    LPMSolution,
    minority_collapse_curve,
    solve_lpm,
    threshold_ratio,
)
from ncbench.theory.ufm import UFMConfig, UFMRun, run_ufm, simulate_ufm, snc_residuals

__all__ = ["LPMConfig", "LPMSolution", "UFMConfig", "UFMRun", "minority_collapse_curve",
           "run_ufm", "simulate_ufm", "snc_residuals", "solve_lpm",
           "threshold_ratio"]
