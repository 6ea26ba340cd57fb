"""k-nearest-neighbour accuracy of frozen features (a transferability baseline, Sorkhei et al. 2025).

Each test feature gets the majority label of its `k` nearest training features (cosine similarity
on L2-normalised features by default, or Euclidean distance); a vote tie goes to the lowest label.
Distances are computed in chunks of test rows, so memory is O(chunk · n_train).
"""
from __future__ import annotations

import math

import torch

METRICS = ("cosine", "euclidean")


def knn_predict(train: torch.Tensor, train_labels: torch.Tensor, test: torch.Tensor, k: int = 10,
                metric: str = "cosine", num_classes: int | None = None, chunk: int = 1024) -> torch.Tensor:
    """Predicted labels `(n_test,)` of the k-NN majority vote."""
    if metric not in METRICS:
        raise ValueError(f"k-NN metric must be one of {METRICS}, got {metric!r}")
    if not 1 <= k <= len(train):
        raise ValueError(f"k must lie in [1, {len(train)}] (the number of training features), got {k}")
    a, b = train.double(), test.double()
    if metric == "cosine":
        a, b = torch.nn.functional.normalize(a, dim=1), torch.nn.functional.normalize(b, dim=1)
    K = int(num_classes or int(train_labels.max()) + 1)
    out = []
    for s in range(0, len(b), chunk):
        q = b[s:s + chunk]
        score = q @ a.T if metric == "cosine" else -torch.cdist(q, a)
        nn_idx = score.topk(k, dim=1).indices
        votes = torch.nn.functional.one_hot(train_labels[nn_idx], K).sum(1)
        out.append(votes.argmax(1))          # first maximum: the lowest label among ties
    return torch.cat(out) if out else torch.empty(0, dtype=torch.long)


def knn_accuracy(train, train_labels, test, test_labels, **kw) -> float:
    pred = knn_predict(train, train_labels, test, **kw)
    return float((pred == test_labels).double().mean())


def knn_loo_accuracy(features, labels, **kw) -> float:
    """Leave-one-out k-NN accuracy on one split: each sample voted by its k nearest *other* samples."""
    kw = {"chunk": 1024, **kw}
    k, metric = kw.get("k", 10), kw.get("metric", "cosine")
    if metric not in METRICS:
        raise ValueError(f"k-NN metric must be one of {METRICS}, got {metric!r}")
    if not 1 <= k < len(features):
        raise ValueError(f"k must lie in [1, {len(features) - 1}] for leave-one-out, got {k}")
    a = features.double()
    if metric == "cosine":
        a = torch.nn.functional.normalize(a, dim=1)
    K = int(kw.get("num_classes") or int(labels.max()) + 1)
    correct = 0
    for s in range(0, len(a), kw["chunk"]):
        q = a[s:s + kw["chunk"]]
        score = q @ a.T if metric == "cosine" else -torch.cdist(q, a)
        rows = torch.arange(len(q))
        score[rows, rows + s] = -math.inf                  # never its own neighbour
        votes = torch.nn.functional.one_hot(labels[score.topk(k, dim=1).indices], K).sum(1)
        correct += int((votes.argmax(1) == labels[s:s + kw["chunk"]]).sum())
    return correct / len(a)
