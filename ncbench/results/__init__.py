"""Results: the tidy long-format schema (SPEC §9), atomic writers and typed loading.
Leaderboards built from them live in `ncbench.leaderboard` (`load_leaderboard`)."""
from ncbench.results.load import load_results

__all__ = ["load_results"]
