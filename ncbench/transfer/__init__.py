"""Transfer tier: frozen pretrained models measured on target data, and transferability estimators.

- `logme`: LogME, the maximum log evidence of a Bayesian linear model (You et al., ICML 2021).
- `ncti`: the NC-based transferability index NCTI (Wang et al., ICCV 2023).
- `knn`: k-nearest-neighbour accuracy of frozen features.
- `linear_probe`: multinomial logistic regression on frozen features.
- `rank_correlation`: Kendall τ-b and Vigna's weighted τ_w between scores and accuracies.
- `frozen_pass`: one streamed forward per split measuring every layer and keeping the features
  the estimators need.

`transfer_ranking`'s jobs (one per model) run through the runner's launcher, `ncbench.runner.launcher`.
"""
