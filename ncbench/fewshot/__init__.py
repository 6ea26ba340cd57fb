"""Few-shot transfer from (collapsed) frozen features (SPEC §6): episodes and their evaluation.

`sample_episodes` draws n-way k-shot q-query episodes (vectorised, seeded); `evaluate_episodes`
scores all of them at once (NCC, optional logistic probe, episode CDNV). The learn2learn
cross-check sampler lives in `ncbench.fewshot.learn2learn_sampler` (needs learn2learn).
"""
from ncbench.fewshot.episodes import Episodes, sample_episodes
from ncbench.fewshot.evaluate import (
                                      FewShotResult,
                                      episode_cdnv,
                                      evaluate_episodes,
                                      logistic_probe_accuracy,
                                      mean_ci95,
                                      ncc_accuracy,
                                      spearman_cdnv_error,
)

__all__ = ["Episodes", "FewShotResult", "episode_cdnv", "evaluate_episodes",
           "logistic_probe_accuracy", "mean_ci95", "ncc_accuracy", "sample_episodes",
           "spearman_cdnv_error"]
