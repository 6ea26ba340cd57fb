"""The shared tester of every `ncbench.metrics.statistic.Statistic`.

Each statistic is registered once (`CASES`, one `Case(...)` line): how to build it on the data, how
to feed it a batch `(features, labels, logits)`, the numbers it reports and an independent float64
reference computed from the stored features (tests/reference_nc.py or numpy two-pass code here,
sharing nothing with `ncbench.metrics`). Every case is then checked against its reference across
input dtypes, across batch splits (one batch, uneven batches, batches of one), merges of shards in
different orders, a `state_dict` round trip in mid-stream, `reset`, and in a 2-process gloo group
(each rank half the data, uneven; `all_reduce` must give the one-process numbers).
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from reference_nc import collapse_reference, heldout_reference

from ncbench.metrics import CollapseStats, HeldoutStats, NearestCentrePass
from ncbench.metrics.minority import ClassGroupStats
from ncbench.metrics.statistic import Statistic, Totals

K, D = 4, 6
SIZES = [19, 11, 23, 7]                 # N = 60, unequal classes
MINORITY, GROUPS = [2, 3], {"many": [0, 1], "few": [3]}
SPLIT_TOL = {"rtol": 1e-12, "atol": 1e-12}   # same data, other batching / merge order / ranks


def make_data(seed: int = 0, sizes=SIZES) -> dict[str, np.ndarray]:
    """Gaussian classes (float64) in shuffled order, a classifier W, b and its logits."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(K, D)) * 3.0 + 1.5
    y = np.repeat(np.arange(K), sizes)
    H = centres[y] + rng.normal(size=(len(y), D))
    order = rng.permutation(len(y))
    W = centres + 0.5 * rng.normal(size=(K, D))
    b = rng.normal(size=K)
    H, y = H[order], y[order]
    return {"H": H, "y": y, "W": W, "b": b, "Z": H @ W.T + b}


TRAIN = make_data(seed=1, sizes=[13, 17, 9, 12])     # the fixed train set of pass two / held-out


def _train_stats() -> CollapseStats:
    s = CollapseStats(K, D)
    s.update(torch.from_numpy(TRAIN["H"]), torch.from_numpy(TRAIN["y"]))
    return s


# -- the statistics -----------------------------------------------------------------------------------
def collapse_make(data):
    return CollapseStats(K, D)


def collapse_result(s: CollapseStats, data) -> dict:
    m = s.compute(None, torch.from_numpy(data["W"])).metrics
    return {k: m[k] for k in ("nc1", "nc1_quotient", "equinorm_h", "equiangular_h", "etf_error_h", "nc3", "cdnv")}


def collapse_ref(data) -> dict:
    r = collapse_reference(data["H"], data["y"], K, data["W"])
    return {k: r[k] for k in ("nc1", "nc1_quotient", "equinorm_h", "equiangular_h", "etf_error_h", "nc3", "cdnv")}


def ncc_make(data):
    """Pass two around the fixed train means (numpy class means of TRAIN)."""
    means = np.stack([TRAIN["H"][TRAIN["y"] == k].mean(0) for k in range(K)])
    counts = np.bincount(TRAIN["y"], minlength=K).astype(float)
    return NearestCentrePass(torch.from_numpy(means), torch.from_numpy(counts))


def ncc_result(s: NearestCentrePass, data) -> dict:
    return s.compute()


def ncc_ref(data) -> dict:
    means = np.stack([TRAIN["H"][TRAIN["y"] == k].mean(0) for k in range(K)])
    d2 = ((data["H"][:, None, :] - means[None]) ** 2).sum(-1)
    ncc = d2.argmin(1)
    return {"ncc_acc": float((ncc == data["y"]).mean()), "nc4": float((ncc != data["Z"].argmax(1)).mean())}


def heldout_make(assign):
    return lambda data: HeldoutStats(_train_stats(), assign, torch.from_numpy(data["W"]), torch.from_numpy(data["b"]))


def heldout_result(s: HeldoutStats, data) -> dict:
    return s.compute()


def heldout_ref(assign):
    def ref(data):
        r = heldout_reference(TRAIN["H"], TRAIN["y"], K, data["H"], data["y"], assign, data["W"], data["b"],
                              data["Z"])
        return {k: r[k] for k in ("nc1", "trace_sw", "cdnv")}
    return ref


def groups_make(data):
    return ClassGroupStats(K, D)


def groups_result(s: ClassGroupStats, data) -> dict:
    return s.compute(MINORITY, GROUPS)


def _cosine(rows: np.ndarray) -> float:
    U = rows / np.linalg.norm(rows, axis=1, keepdims=True)
    return float(np.mean([U[i] @ U[j] for i in range(len(U)) for j in range(i + 1, len(U))]))


def groups_ref(data) -> dict:
    H, y, pred = data["H"], data["y"], data["Z"].argmax(1)
    means = np.stack([H[y == k].mean(0) for k in range(K)])
    out = {"accuracy": float((pred == y).mean())}
    for name, classes in {"majority": [0, 1], "minority": MINORITY, **GROUPS}.items():
        rows = np.isin(y, classes)
        out[f"{name}_accuracy"] = float((pred[rows] == y[rows]).mean())
    out["minority_feature_cosine"] = _cosine((means - means.mean(0))[MINORITY])
    out["minority_feature_cosine_sample_mean"] = _cosine((means - H.mean(0))[MINORITY])
    return out


def totals_make(data):
    return Totals(loss=0.0, correct=0, seen=0)


def totals_update(s: Totals, h, y, z):
    s.update(loss=float(F.cross_entropy(z.double(), y, reduction="sum")), correct=int((z.argmax(1) == y).sum()),
             seen=len(y))


def totals_result(s: Totals, data) -> dict:
    return {k: float(v) for k, v in s.compute().items()}


def totals_ref(data) -> dict:
    Z = data["Z"]
    lse = np.log(np.exp(Z - Z.max(1, keepdims=True)).sum(1)) + Z.max(1)
    return {"loss": float((lse - Z[np.arange(len(Z)), data["y"]]).sum()),
            "correct": float((Z.argmax(1) == data["y"]).sum()), "seen": float(len(Z))}


def default_update(s: Statistic, h, y, z):
    s.update(h, y, z)


@dataclass(frozen=True)
class Case:
    name: str
    make: Callable                     # data -> a fresh statistic
    result: Callable                   # (statistic, data) -> {name: float}
    reference: Callable                # data (float64 numpy, stored) -> {name: float}
    update: Callable = default_update  # (statistic, features, labels, logits)
    dtypes: tuple = (torch.float32, torch.float64, torch.bfloat16)
    rtol: float = 1e-9                 # against the reference (float64 input; else the input's rounding)


CASES = [
    Case("collapse", collapse_make, collapse_result, collapse_ref),
    Case("nearest_centre", ncc_make, ncc_result, ncc_ref),
    Case("heldout_label", heldout_make("label"), heldout_result, heldout_ref("label")),
    Case("heldout_prediction", heldout_make("prediction"), heldout_result, heldout_ref("prediction")),
    Case("heldout_ncc", heldout_make("ncc"), heldout_result, heldout_ref("ncc")),
    Case("class_groups", groups_make, groups_result, groups_ref),
    Case("totals", totals_make, totals_result, totals_ref, totals_update, (torch.float32, torch.float64)),
]
BY_NAME = {c.name: c for c in CASES}


# -- driving a case -------------------------------------------------------------------------------------
def cast(data: dict, dtype) -> dict:
    """The data as `dtype` input; the reference sees exactly those (rounded) values in float64."""
    out = dict(data)
    for k in ("H", "Z"):
        out[k] = torch.from_numpy(data[k]).to(dtype).to(torch.float64).numpy()
    return out


def feed(case: Case, s: Statistic, data: dict, rows, dtype=torch.float64) -> Statistic:
    for idx in rows:
        idx = np.asarray(idx, dtype=np.int64)
        case.update(s, torch.from_numpy(data["H"][idx]).to(dtype), torch.from_numpy(data["y"][idx]),
                    torch.from_numpy(data["Z"][idx]).to(dtype))
    return s


def run(case: Case, data: dict, rows, dtype=torch.float64) -> dict:
    return case.result(feed(case, case.make(data), data, rows, dtype), data)


def assert_numbers(got: dict, want: dict, rtol: float, atol: float = 1e-12):
    assert set(got) == set(want), (sorted(got), sorted(want))
    for k, w in want.items():
        g = got[k]
        if math.isnan(w) or math.isinf(w):
            assert g == w or (math.isnan(g) and math.isnan(w)), f"{k}: {g} != {w}"
        else:
            assert abs(g - w) <= rtol * abs(w) + atol, f"{k}: statistic {g!r}, want {w!r}, diff {abs(g - w):.3e}"


N = sum(SIZES)
ALL = [np.arange(N)]
UNEVEN = np.split(np.arange(N), [1, 8, 21, 22, 45])
SINGLES = [[i] for i in range(N)]
ids = [c.name for c in CASES]


@pytest.mark.parametrize("case", CASES, ids=ids)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16], ids=str)
def test_against_reference(case, dtype):
    if dtype not in case.dtypes:
        pytest.skip(f"{case.name} takes no {dtype} input")
    data = cast(make_data(), dtype)
    assert_numbers(run(case, data, UNEVEN, dtype), case.reference(data), case.rtol)


@pytest.mark.parametrize("case", CASES, ids=ids)
def test_batch_splits_agree(case):
    data = make_data()
    one = run(case, data, ALL)
    for rows in (UNEVEN, SINGLES, [np.arange(0), *UNEVEN]):
        assert_numbers(run(case, data, rows), one, **SPLIT_TOL)


@pytest.mark.parametrize("case", CASES, ids=ids)
def test_merge_of_shards_in_any_order(case):
    data = make_data()
    one = run(case, data, ALL)
    parts = np.split(np.arange(N), [5, 31])
    for order in ((0, 1, 2), (2, 1, 0), (1, 0, 2)):
        shards = [feed(case, case.make(data), data, [parts[i]]) for i in order]
        total = shards[0]
        for s in shards[1:]:
            total.merge(s)
        assert_numbers(case.result(total, data), one, **SPLIT_TOL)
    nested = feed(case, case.make(data), data, [parts[0]]).merge(
        feed(case, case.make(data), data, [parts[1]]).merge(feed(case, case.make(data), data, [parts[2]])))
    assert_numbers(case.result(nested, data), one, **SPLIT_TOL)


@pytest.mark.parametrize("case", CASES, ids=ids)
def test_state_dict_round_trip_mid_stream(case, tmp_path):
    data = make_data()
    one = run(case, data, UNEVEN)
    s = feed(case, case.make(data), data, UNEVEN[:3])
    torch.save(s.state_dict(), tmp_path / "state.pt")
    resumed = case.make(data).load_state_dict(torch.load(tmp_path / "state.pt", weights_only=False))
    feed(case, resumed, data, UNEVEN[3:])
    assert_numbers(case.result(resumed, data), one, **SPLIT_TOL)


@pytest.mark.parametrize("case", CASES, ids=ids)
def test_reset_forgets_the_stream(case):
    data = make_data()
    s = feed(case, case.make(data), data, [np.arange(0, N, 2)])
    s.reset()
    assert_numbers(case.result(feed(case, s, data, UNEVEN), data), run(case, data, UNEVEN), **SPLIT_TOL)


def test_load_state_dict_names_what_is_missing_or_different():
    data = make_data()
    s = feed(BY_NAME["class_groups"], groups_make(data), data, ALL)
    state = s.state_dict()
    with pytest.raises(ValueError, match="lacks.*confusion"):
        groups_make(data).load_state_dict({k: v for k, v in state.items() if k != "confusion"})
    with pytest.raises(ValueError, match="num_classes=4 .this statistic: 5"):
        ClassGroupStats(5, D).load_state_dict(state)
    with pytest.raises(ValueError, match="cannot merge"):
        ClassGroupStats(K, D).merge(ClassGroupStats(K, D + 1))


def test_heldout_merge_counts_unattached_points():
    """Regression: `HeldoutStats.merge` used to drop the other shard's `unattached` count."""
    keep = TRAIN["y"] != 3                               # no train mean for class 3
    train = CollapseStats(K, D).update(torch.from_numpy(TRAIN["H"][keep]), torch.from_numpy(TRAIN["y"][keep]))
    data = make_data()
    parts = np.split(np.arange(N), [30])
    shards = [HeldoutStats(train, "label") for _ in parts]
    for s, idx in zip(shards, parts):
        s.update(torch.from_numpy(data["H"][idx]), torch.from_numpy(data["y"][idx]))
    assert shards[0].merge(shards[1]).unattached == int((data["y"] == 3).sum()) > 0


def test_add_state_rejects_unknown_reductions():
    s = Statistic()
    with pytest.raises(ValueError, match="reduce must be"):
        s.add_state("x", 0, reduce="mean")


class _Extremes(Statistic):
    """A test-only statistic with a `max`, a `min` and a `cat` state (no shipped one has them)."""

    def __init__(self):
        super().__init__()
        self.add_state("top", torch.full((D,), -math.inf, dtype=torch.float64), "max")
        self.add_state("low", math.inf, "min")
        self.add_state("rows", torch.zeros(0, dtype=torch.long), "cat")

    def update(self, h, y, z):
        self.top = torch.maximum(self.top, h.double().amax(0)) if len(h) else self.top
        self.low = min(self.low, float(h.double().min())) if len(h) else self.low
        self.rows = torch.cat([self.rows, y])
        return self

    def compute(self):
        return {**{f"top{i}": float(v) for i, v in enumerate(self.top)}, "low": self.low,
                "rows": float((self.rows.double() * torch.arange(1, len(self.rows) + 1)).sum())}


def _extremes_ref(data) -> dict:
    top = data["H"].max(0)
    return {**{f"top{i}": float(v) for i, v in enumerate(top)}, "low": float(data["H"].min()),
            "rows": float((data["y"] * np.arange(1, N + 1)).sum())}


EXTREMES = Case("extremes", lambda data: _Extremes(), lambda s, data: s.compute(), _extremes_ref)


def test_max_min_cat_reductions():
    data = make_data()
    assert_numbers(run(EXTREMES, data, UNEVEN), _extremes_ref(data), 0.0, 0.0)
    parts = np.split(np.arange(N), [5, 31])
    merged = [feed(EXTREMES, _Extremes(), data, [p]) for p in parts]
    merged[0].merge(merged[1]).merge(merged[2])
    assert_numbers(merged[0].compute(), _extremes_ref(data), 0.0, 0.0)


# -- two processes -------------------------------------------------------------------------------------
def _rank_rows(rank: int, data: dict) -> list[np.ndarray]:
    """Rank 0: every third row except class 3 (so class 3 lives on rank 1 only), in two uneven batches."""
    first = (np.arange(N) % 3 == 0) & (data["y"] != 3)
    mine = np.flatnonzero(first if rank == 0 else ~first)
    return [mine[:4], mine[4:]]


def _dist_worker(rank: int, world: int, init: str, path: str):
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    data = make_data()
    out = {}
    for case in [*CASES, EXTREMES]:
        s = feed(case, case.make(data), data, _rank_rows(rank, data))
        out[case.name] = case.result(s.all_reduce(), data)
    if rank == 0:
        torch.save(out, path)
    dist.destroy_process_group()


@pytest.fixture(scope="module")
def two_process_results(tmp_path_factory):
    import torch.multiprocessing as mp

    tmp = tmp_path_factory.mktemp("gloo")
    path = str(tmp / "rank0.pt")
    mp.spawn(_dist_worker, args=(2, f"file://{tmp / 'store'}", path), nprocs=2, join=True)
    return torch.load(path, weights_only=False)


@pytest.mark.parametrize("case", [*CASES, EXTREMES], ids=[*ids, "extremes"])
def test_two_process_gloo_all_reduce_matches_one_process(case, two_process_results):
    data = make_data()       # rank order: `cat` states hold rank 0's rows first
    assert_numbers(two_process_results[case.name], run(case, data, _rank_rows(0, data) + _rank_rows(1, data)),
                   **SPLIT_TOL)
    if case is not EXTREMES:
        assert_numbers(two_process_results[case.name], run(case, data, ALL), **SPLIT_TOL)
