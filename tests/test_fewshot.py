"""Few-shot episodes and their evaluation (SPEC §6) against independent references."""
from __future__ import annotations

import io
import math
import pickle
import random

import numpy as np
import pytest
import torch

from ncbench.fewshot import (
    episode_cdnv,
    evaluate_episodes,
    logistic_probe_accuracy,
    mean_ci95,
    ncc_accuracy,
    sample_episodes,
    spearman_cdnv_error,
)
from ncbench.fewshot.episodes import Episodes

pytestmark = pytest.mark.usefixtures("one_thread")



def uneven_labels(counts=(25, 40, 31, 22, 60, 28, 35, 23), seed=0) -> torch.Tensor:
    """Classes with unequal counts, rows shuffled (so class rows are not contiguous)."""
    labels = torch.cat([torch.full((c,), k) for k, c in enumerate(counts)])
    return labels[torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))]


def blobs(classes=12, per_class=30, d=16, spread=1.0, sep=0.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(classes).repeat_interleave(per_class)
    centres = torch.randn(classes, d, generator=g) * sep
    return centres[labels] + spread * torch.randn(len(labels), d, generator=g), labels


def check_structure(ep: Episodes, labels: torch.Tensor, n, k, q, E) -> None:
    assert ep.support.shape == (E, n, k) and ep.query.shape == (E, n, q)
    assert ep.classes.shape == (E, n)
    allidx = ep.all_indices()
    # every index belongs to its row's class
    assert torch.equal(labels[allidx], ep.classes.unsqueeze(-1).expand(E, n, k + q))
    # classes distinct within an episode; support and query samples all distinct (so disjoint)
    s = ep.classes.sort(dim=1).values
    assert bool((s[:, 1:] != s[:, :-1]).all())
    flat = allidx.reshape(E, -1).sort(dim=1).values
    assert bool((flat[:, 1:] != flat[:, :-1]).all())


# ------------------------------------------------------------------ sampler
def test_sampler_invariants_and_determinism():
    labels = uneven_labels()
    ep = sample_episodes(labels, n_way=5, k_shot=3, n_query=19, episodes=300, seed=7)
    check_structure(ep, labels, 5, 3, 19, 300)
    again = sample_episodes(labels, n_way=5, k_shot=3, n_query=19, episodes=300, seed=7)
    assert torch.equal(ep.support, again.support) and torch.equal(ep.query, again.query)
    assert torch.equal(ep.classes, again.classes)
    other = sample_episodes(labels, n_way=5, k_shot=3, n_query=19, episodes=300, seed=8)
    assert not torch.equal(ep.all_indices(), other.all_indices())
    assert ep.seed == 7 and (ep.n_way, ep.k_shot, ep.n_query, ep.num_episodes) == (5, 3, 19, 300)


def test_sampler_is_uniform_over_classes_samples_and_roles():
    """Class draws ~ n/C per episode; every sample of the largest class used, as support k/(k+q)
    of the time; bounds are 5 binomial standard deviations."""
    labels = uneven_labels()
    C, E, n, k, q = 8, 3000, 4, 2, 20
    ep = sample_episodes(labels, n_way=n, k_shot=k, n_query=q, episodes=E, seed=1)
    freq = torch.bincount(ep.classes.flatten(), minlength=C).double() / E
    p = n / C
    assert (freq - p).abs().max() <= 5 * math.sqrt(p * (1 - p) / E)
    big = 4  # 60 samples: padded slots are the most common here
    rows = torch.nonzero(labels == big).squeeze(1)
    in_ep = (ep.classes == big).sum().item()
    used = torch.bincount(ep.all_indices().flatten(), minlength=len(labels)).double()[rows]
    p_used = (k + q) / 60
    assert (used - in_ep * p_used).abs().max() <= 5 * math.sqrt(in_ep * p_used * (1 - p_used))
    as_support = torch.bincount(ep.support.flatten(), minlength=len(labels)).double()[rows]
    assert abs(float(as_support.sum() / used.sum()) - k / (k + q)) < 0.01


def test_partial_shuffle_draws_uniform_ordered_subsets():
    from ncbench.fewshot.episodes import partial_shuffle

    R, r = 60000, 3
    counts = torch.tensor([6, 4]).repeat(R // 2)  # two row kinds, table wider than both
    u = torch.rand(R, r, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    got = partial_shuffle(u, counts, width=9)
    assert bool((got < counts.unsqueeze(1)).all())
    s = got.sort(dim=1).values
    assert bool((s[:, 1:] != s[:, :-1]).all())
    for c, rows in ((6, got[0::2]), (4, got[1::2])):
        code = (rows[:, 0] * c + rows[:, 1]) * c + rows[:, 2]
        freq = torch.bincount(code, minlength=c ** 3).double()
        n_ordered = c * (c - 1) * (c - 2)
        expected = (R // 2) / n_ordered
        seen = freq[freq > 0]
        assert len(seen) == n_ordered  # every ordered triple occurs
        assert (seen - expected).abs().max() <= 5 * math.sqrt(expected)
    edge = partial_shuffle(torch.full((2, 2), 1 - 2 ** -53, dtype=torch.float64),
                           torch.tensor([2, 5]), width=5)  # u next to 1 stays in range
    assert edge.tolist() == [[1, 0], [4, 0]]  # each step swaps with the last free slot


def test_sampler_errors():
    labels = uneven_labels()
    with pytest.raises(ValueError, match="k_shot \\+ n_query = 25 samples.*3 \\(22\\)"):
        sample_episodes(labels, 5, 5, 20)
    with pytest.raises(ValueError, match="at least 9 classes"):
        sample_episodes(labels, 9, 1, 1)
    with pytest.raises(ValueError, match="k_shot must be an integer >= 1"):
        sample_episodes(labels, 5, 0, 1)
    with pytest.raises(ValueError, match="1-D"):
        sample_episodes(labels.view(-1, 2), 2, 1, 1)
    with pytest.raises(ValueError, match="integers"):
        sample_episodes(labels.float(), 2, 1, 1)


# ------------------------------------------------------------------ NCC
#: Both NCC backends: the fused numba kernel (the CPU default) and the batched torch path (CUDA).
BACKENDS = pytest.mark.parametrize("backend", ["kernel", "torch"])


@BACKENDS
def test_ncc_is_perfect_on_exact_well_separated_centres(backend):
    labels = uneven_labels()
    centres = 10.0 * torch.eye(8, 32)
    ep = sample_episodes(labels, 5, 1, 15, episodes=200, seed=0)
    acc = ncc_accuracy(centres[labels], ep, backend=backend)
    assert acc.shape == (200,) and bool((acc == 1).all())


def test_ncc_is_chance_on_pure_noise():
    x, labels = blobs(classes=20, per_class=40, d=64, sep=0.0, seed=3)
    ep = sample_episodes(labels, 5, 5, 15, episodes=600, seed=0)
    mean, ci = mean_ci95(ncc_accuracy(x, ep))
    assert abs(mean - 0.2) <= 1.5 * ci  # about 3 standard errors


@BACKENDS
def test_ncc_matches_a_per_episode_numpy_reference(backend):
    x, labels = blobs(classes=10, per_class=25, d=8, sep=0.7, seed=4)
    ep = sample_episodes(labels, 4, 3, 5, episodes=40, seed=2)
    acc = ncc_accuracy(x.double(), ep, backend=backend)
    X = x.double().numpy()
    for e in range(40):  # the independent reference may loop
        protos = X[ep.support[e].numpy()].mean(axis=1)                   # (n, d)
        qry = X[ep.query[e].numpy()].reshape(-1, X.shape[1])
        d2 = ((qry[:, None, :] - protos[None]) ** 2).sum(-1)
        truth = np.repeat(np.arange(4), 5)
        assert acc[e].item() == pytest.approx((d2.argmin(1) == truth).mean(), abs=1e-12)


@BACKENDS
def test_ncc_float32_chunks_match_the_float64_reference_at_d512(monkeypatch, backend):
    """The float32 evaluators (margins `⟨h, S_c − S_0⟩ − (‖S_c‖² − ‖S_0‖²)/2k`: the fused kernel,
    and the batched path with one GEMM per chunk of episodes, the decision once over all of them)
    predict what a float64 per-episode distance loop predicts."""
    import ncbench.fewshot.evaluate as ev

    x, labels = blobs(classes=12, per_class=30, d=512, sep=0.2, seed=5)
    ep = sample_episodes(labels, 5, 5, 15, episodes=60, seed=1)
    monkeypatch.setattr(ev, "FEATURE_BUDGET", 7 * 5 * 15 * 512)   # 7 episodes a chunk, ragged end
    acc = ncc_accuracy(x.float(), ep, backend=backend)
    X = x.double().numpy()
    truth = np.repeat(np.arange(5), 15)
    ref = []
    for e in range(60):
        protos = X[ep.support[e].numpy()].mean(axis=1)
        qry = X[ep.query[e].numpy()].reshape(-1, X.shape[1])
        ref.append((((qry[:, None, :] - protos[None]) ** 2).sum(-1).argmin(1) == truth).mean())
    assert 0.3 < float(acc.mean()) < 0.95                      # neither trivial nor chance
    assert acc.tolist() == ref


@BACKENDS
def test_ncc_ties_go_to_the_lower_episode_class(backend):
    x = torch.zeros(6, 4)                   # classes 0 and 1 identical: every query is a tie
    labels = torch.tensor([0, 0, 0, 1, 1, 1])
    ep = sample_episodes(labels, 2, 1, 2, episodes=20, seed=0)
    acc = ncc_accuracy(x, ep, backend=backend)   # class 0's queries right, class 1's wrong: 1/2
    assert acc.tolist() == [0.5] * 20
    # three identical classes and a fourth far away: ties among classes 1 and 2 go to class 1 too
    x = torch.cat([torch.zeros(9, 3), torch.full((3, 3), 5.0)])
    labels = torch.arange(4).repeat_interleave(3)
    ep = Episodes(torch.tensor([[[0], [3], [6], [9]]]), torch.tensor([[[1, 2], [4, 5], [7, 8],
                                                                      [10, 11]]]),
                  torch.tensor([[0, 1, 2, 3]]))
    assert ncc_accuracy(x, ep, backend=backend).tolist() == [0.5]  # classes 0 and 3 right


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("n, k, q", [(2, 1, 1), (5, 1, 15), (5, 5, 15), (10, 3, 4)])
def test_ncc_kernel_and_batched_path_predict_alike(n, k, q, dtype):
    """The fused kernel against the batched torch path and a float64 distance loop, over shapes
    (2-way 1-query to 10-way) and both dtypes; unevenly sized, shuffled classes."""
    labels = uneven_labels(counts=(25, 40, 31, 22, 60, 28, 35, 23, 26, 30, 33), seed=3)
    g = torch.Generator().manual_seed(n * 100 + k)
    x = (0.6 * torch.randn(11, 24, generator=g)[labels]
         + torch.randn(len(labels), 24, generator=g)).to(dtype)
    ep = sample_episodes(labels, n, k, q, episodes=50, seed=k)
    kern = ncc_accuracy(x, ep, backend="kernel")
    assert torch.equal(kern, ncc_accuracy(x, ep, backend="torch"))
    assert torch.equal(kern, ncc_accuracy(x, ep))           # auto = the kernel on CPU
    X = x.double().numpy()
    truth = np.repeat(np.arange(n), q)
    for e in range(50):
        protos = X[ep.support[e].numpy()].mean(axis=1)
        qry = X[ep.query[e].numpy()].reshape(-1, X.shape[1])
        want = (((qry[:, None, :] - protos[None]) ** 2).sum(-1).argmin(1) == truth).mean()
        assert kern[e].item() == pytest.approx(want, abs=1e-12)


@BACKENDS
def test_ncc_non_finite_features_predict_class_zero_not_garbage(backend):
    """A NaN margin makes the prediction episode class 0 in both backends (never an index past
    the episode's classes); an inf feature likewise gives a defined answer."""
    x, labels = blobs(classes=6, per_class=10, d=8, sep=3.0, seed=2)
    ep = sample_episodes(labels, 3, 2, 4, episodes=30, seed=0)
    clean = ncc_accuracy(x, ep, backend=backend)
    bad = x.clone()
    row = int(ep.query[0, 1, 0])                 # a class-1 query of episode 0: now NaN
    bad[row] = math.nan
    acc = ncc_accuracy(bad, ep, backend=backend)
    assert acc.shape == clean.shape and bool(torch.isfinite(acc).all())
    others = torch.ones(30, dtype=torch.bool)
    held = (ep.all_indices() == row).flatten(1).any(1)
    others[held] = False
    assert torch.equal(acc[others], clean[others])  # only the episodes that hold the row change
    supports = (ep.support == row).flatten(1).any(1)
    assert 0 < int(supports.sum()) < 30
    assert bool((acc[supports] == 1 / 3).all())     # a NaN prototype: every query says class 0
    assert torch.equal(acc, ncc_accuracy(bad, ep, backend="torch" if backend == "kernel"
                                         else "kernel"))


def test_ncc_backend_is_checked():
    x, labels = blobs(classes=4, per_class=6, d=4)
    ep = sample_episodes(labels, 2, 1, 2, episodes=3)
    with pytest.raises(ValueError, match="backend must be one of auto, kernel, torch"):
        ncc_accuracy(x, ep, backend="numba")
    with pytest.raises(ValueError, match="CPU float32/float64 .* use backend='torch'"):
        ncc_accuracy(x, ep, dtype=torch.float16, backend="kernel")


def test_mean_ci95_against_numpy():
    v = torch.rand(600, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    a = v.numpy()
    mean, ci = mean_ci95(v)
    assert mean == pytest.approx(a.mean(), rel=1e-12)
    assert ci == pytest.approx(1.96 * np.std(a, ddof=1) / np.sqrt(600), rel=1e-12)
    assert mean_ci95(v, ddof=0)[1] == pytest.approx(1.96 * np.std(a) / np.sqrt(600), rel=1e-12)
    assert math.isnan(mean_ci95(torch.tensor([0.5]))[1])
    with pytest.raises(ValueError):
        mean_ci95(torch.tensor([]))


# ------------------------------------------------------------------ logistic probe
def test_probe_separable_is_perfect_and_noise_is_chance():
    x, labels = blobs(classes=12, per_class=30, d=32, spread=0.3, sep=3.0, seed=5)
    for k in (1, 5):
        ep = sample_episodes(labels, 5, k, 10, episodes=100, seed=k)
        assert bool((logistic_probe_accuracy(x, ep) == 1).all())
    # a pool large enough that the episodes are nearly independent draws
    x, labels = blobs(classes=40, per_class=40, d=32, sep=0.0, seed=6)
    ep = sample_episodes(labels, 5, 5, 15, episodes=300, seed=0)
    mean, ci = mean_ci95(logistic_probe_accuracy(x, ep))
    assert abs(mean - 0.2) <= 1.5 * ci


def test_probe_matches_sklearn_logistic_regression():
    """Same objective as sklearn's multinomial LogisticRegression with C = 1/(l2·n·k) (intercept
    unpenalised): the query predictions agree."""
    from sklearn.linear_model import LogisticRegression
    from threadpoolctl import threadpool_limits

    x, labels = blobs(classes=10, per_class=25, d=12, sep=0.5, seed=7)
    n, k, q, l2 = 5, 4, 6, 0.05
    ep = sample_episodes(labels, n, k, q, episodes=20, seed=3)
    acc = logistic_probe_accuracy(x.double(), ep, l2=l2)  # default 300 steps
    xn = torch.nn.functional.normalize(x.double(), dim=1).numpy()
    truth_s, truth_q = np.repeat(np.arange(n), k), np.repeat(np.arange(n), q)
    ref = []
    with threadpool_limits(1):  # 20 tiny fits: BLAS threads only contend
        for e in range(20):
            s = xn[ep.support[e].numpy()].reshape(n * k, -1)
            qr = xn[ep.query[e].numpy()].reshape(n * q, -1)
            clf = LogisticRegression(C=1.0 / (l2 * n * k), tol=1e-8, max_iter=1000).fit(s, truth_s)
            ref.append((clf.predict(qr) == truth_q).mean())
    agree = acc.numpy() - np.array(ref)
    assert np.abs(agree).max() < 1e-12


# ------------------------------------------------------------------ episode CDNV
def test_episode_cdnv_against_float64_numpy_loop():
    x, labels = blobs(classes=10, per_class=25, d=6, sep=1.0, seed=8)
    x = x.float()
    ep = sample_episodes(labels, 5, 2, 7, episodes=30, seed=4)
    got = episode_cdnv(x, ep)
    X = x.double().numpy()
    for e in range(30):
        rows = ep.all_indices()[e].numpy()                               # (n, k+q)
        mu = [X[r].mean(0) for r in rows]
        var = [((X[r] - m) ** 2).sum(1).mean() for r, m in zip(rows, mu)]
        pairs = [(var[i] + var[j]) / (2 * ((mu[i] - mu[j]) ** 2).sum())
                 for i in range(5) for j in range(i + 1, 5)]
        assert got[e].item() == pytest.approx(np.mean(pairs), rel=1e-10)


def test_episode_cdnv_identical_means_is_inf():
    labels = torch.arange(3).repeat_interleave(4)
    x = torch.tensor([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [0.0, -1.0]]).repeat(3, 1)  # same means
    x[labels == 2] += 5.0
    ep = sample_episodes(labels, 3, 1, 3, episodes=5, seed=0)
    assert bool(torch.isinf(episode_cdnv(x, ep)).all())


def test_spearman_cdnv_error_and_summary():
    """Classes of growing spread: episodes of noisier classes have higher CDNV and error."""
    g = torch.Generator().manual_seed(9)
    C, m, d = 16, 40, 16
    labels = torch.arange(C).repeat_interleave(m)
    spread = torch.linspace(0.2, 3.0, C)[labels].unsqueeze(1)
    x = 2.0 * torch.randn(C, d, generator=g)[labels] + spread * torch.randn(C * m, d, generator=g)
    ep = sample_episodes(labels, 5, 1, 15, episodes=400, seed=0)
    res = evaluate_episodes(x, ep, probe=True, probe_steps=100)
    rho, p = spearman_cdnv_error(res.cdnv, res.ncc_acc)
    from scipy.stats import spearmanr

    ref = spearmanr(res.cdnv.numpy(), 1 - res.ncc_acc.numpy())
    assert rho == pytest.approx(ref.statistic) and rho > 0.5 and p < 1e-6
    s = res.summary()
    assert s["fewshot_ncc_acc"] == pytest.approx(float(res.ncc_acc.mean()))
    assert s["fewshot_ncc_acc_ci95"] == pytest.approx(mean_ci95(res.ncc_acc)[1])
    assert s["spearman_cdnv_error"] == rho and s["episodes"] == 400.0
    assert s["target_cdnv"] == pytest.approx(float(res.cdnv.mean()))
    assert 0 <= s["fewshot_probe_acc"] <= 1 and all(isinstance(v, float) for v in s.values())
    assert math.isnan(spearman_cdnv_error(res.cdnv, torch.ones_like(res.ncc_acc))[0])


def test_chunking_does_not_change_results(monkeypatch):
    import ncbench.fewshot.evaluate as ev

    x, labels = blobs(classes=10, per_class=20, d=8, sep=0.8, seed=10)
    ep = sample_episodes(labels, 5, 2, 3, episodes=37, seed=0)
    full = (ncc_accuracy(x, ep), episode_cdnv(x, ep), logistic_probe_accuracy(x, ep, steps=50))
    monkeypatch.setattr(ev, "FEATURE_BUDGET", 5 * 5 * 8 * 3)  # 3 episodes a chunk, ragged end
    small = (ncc_accuracy(x, ep), episode_cdnv(x, ep), logistic_probe_accuracy(x, ep, steps=50))
    for a, b in zip(full, small):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-12)
    with pytest.raises(ValueError, match="features have 10 rows"):
        ncc_accuracy(x[:10], ep)
    bad = Episodes(ep.support.clone(), ep.query, ep.classes)
    bad.support[3, 1, 0] = -1                  # the kernel would read another row silently
    for backend in ("kernel", "torch"):
        with pytest.raises(ValueError, match="index sample -1: indices must be >= 0"):
            ncc_accuracy(x, bad, backend=backend)


@pytest.mark.gpu
def test_gpu_matches_cpu():
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    x, labels = blobs(classes=20, per_class=40, d=64, sep=0.5, seed=11)
    ep = sample_episodes(labels.cuda(), 5, 5, 15, episodes=600, seed=0)
    assert ep.support.is_cuda
    cpu_ep = ep.to("cpu")
    torch.testing.assert_close(ncc_accuracy(x.cuda(), ep).cpu(), ncc_accuracy(x, cpu_ep))
    torch.testing.assert_close(episode_cdnv(x.cuda(), ep).cpu(), episode_cdnv(x, cpu_ep))


# ------------------------------------------------------------------ learn2learn cross-check
@pytest.fixture(scope="module")
def l2l_sampler():
    pytest.importorskip("learn2learn", reason="no learn2learn: run scripts/install-learn2learn.sh")
    import ncbench.fewshot.learn2learn_sampler as mod

    return mod


def test_learn2learn_sampler_structure_and_seeding(l2l_sampler):
    labels = uneven_labels()
    state = random.getstate()
    ep = l2l_sampler.sample_episodes_learn2learn(labels, 5, 3, 19, episodes=60, seed=5)
    assert random.getstate() == state  # learn2learn's global random state is restored
    check_structure(ep, labels, 5, 3, 19, 60)
    again = l2l_sampler.sample_episodes_learn2learn(labels, 5, 3, 19, episodes=60, seed=5)
    assert torch.equal(ep.all_indices(), again.all_indices())
    with pytest.raises(ValueError, match="k_shot \\+ n_query"):
        l2l_sampler.sample_episodes_learn2learn(labels, 5, 5, 20, episodes=1)


def test_learn2learn_cross_check_accuracy(l2l_sampler):
    """Same features: (1) the vectorised evaluator on learn2learn's episodes equals learn2learn's
    own per-task NCC loop; (2) ncbench's sampler gives the same accuracy distribution as
    learn2learn's (means within 3 standard errors of each other, similar spread)."""
    x, labels = blobs(classes=20, per_class=40, d=32, sep=0.45, seed=12)
    n, k, q, E = 5, 5, 15, 600
    l2l_ep = l2l_sampler.sample_episodes_learn2learn(labels, n, k, q, episodes=E, seed=0)
    loop = l2l_sampler.ncc_accuracy_learn2learn(x, labels, n, k, q, episodes=E, seed=0)
    vec = ncc_accuracy(x, l2l_ep)
    assert (loop - vec).abs().max() <= 1.0 / (n * q) + 1e-12  # at most a near-tie query apart
    assert float((loop != vec).double().mean()) <= 0.01
    ours = ncc_accuracy(x, sample_episodes(labels, n, k, q, episodes=E, seed=0))
    (m1, c1), (m2, c2) = mean_ci95(ours), mean_ci95(loop)
    assert 0.3 < m1 < 0.95  # informative regime: neither chance nor perfect
    # given the features, episodes are iid under both samplers: the difference of the means has
    # standard error hypot(c1, c2)/1.96; allow 3 of them (a 95% bound fails 1 seed in 20)
    assert abs(m1 - m2) <= 3 * math.hypot(c1, c2) / 1.96
    assert 0.8 < float(ours.std() / loop.std()) < 1.25


# ------------------------------------------------------------------ learn2learn data sets
L2L_NAMES = ["l2l-cifar-fs", "l2l-fc100", "l2l-mini-imagenet", "l2l-omniglot",
             "l2l-tiered-imagenet"]


def test_learn2learn_sets_registered_and_missing_data_error(tmp_path):
    import ncbench.data.learn2learn_sets  # noqa: F401  (registers the names)
    from ncbench.data import DATASETS, DatasetNotFoundError, load_dataset

    assert set(L2L_NAMES) <= set(DATASETS.names())
    classes = {"l2l-cifar-fs": "CIFARFS", "l2l-fc100": "FC100", "l2l-mini-imagenet": "MiniImagenet",
               "l2l-omniglot": "FullOmniglot", "l2l-tiered-imagenet": "TieredImagenet"}
    for name, cls in classes.items():
        with pytest.raises(DatasetNotFoundError) as err:
            load_dataset(name, "test", data_dir=tmp_path)
        msg = str(err.value)
        assert f"l2l.vision.datasets.{cls}({str(tmp_path)!r}" in msg and "download=True" in msg
        assert "scripts/install-learn2learn.sh" in msg and "--download" in msg
        assert ("mode='test'" in msg) == (name != "l2l-omniglot")
    with pytest.raises(ValueError, match="splits"):
        load_dataset("l2l-fc100", "validation", data_dir=tmp_path)


def test_learn2learn_sets_read_their_layout(tmp_path):
    """FC100, tiered-ImageNet and mini-ImageNet files in learn2learn's format, written here."""
    from PIL import Image

    import ncbench.data.learn2learn_sets  # noqa: F401
    from ncbench.data import load_dataset

    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (12, 32, 32, 3), dtype=np.uint8)
    with open(tmp_path / "FC100_test.pickle", "wb") as f:
        pickle.dump({"data": x, "labels": [71, 5, 40] * 4}, f)
    ds = load_dataset("l2l-fc100", "test", data_dir=tmp_path)
    assert ds.images.shape == (12, 3, 32, 32) and ds.classes == ["40", "5", "71"]
    assert ds.targets.tolist() == [2, 1, 0] * 4
    assert torch.equal(ds.images[4], torch.from_numpy(x[4]).permute(2, 0, 1))

    (tmp_path / "tiered-imagenet").mkdir()
    pngs = []
    for i in range(6):
        buf = io.BytesIO()
        Image.fromarray(np.full((8, 8, 3), 40 * i, dtype=np.uint8)).save(buf, format="PNG")
        pngs.append(buf.getvalue())
    with open(tmp_path / "tiered-imagenet" / "val_images_png.pkl", "wb") as f:
        pickle.dump(pngs, f)
    with open(tmp_path / "tiered-imagenet" / "val_labels.pkl", "wb") as f:
        pickle.dump({"label_specific": np.array([3, 3, 1, 1, 3, 1]),
                     "label_specific_str": ["a", "zebra", "b", "ant"]}, f)
    ds = load_dataset("l2l-tiered-imagenet", "val", data_dir=tmp_path)
    assert ds.classes == ["ant", "zebra"] and ds.targets.tolist() == [0, 0, 1, 1, 0, 1]
    assert ds.images.shape == (6, 3, 8, 8) and int(ds.images[5, 0, 0, 0]) == 200

    img = rng.integers(0, 256, (6, 84, 84, 3), dtype=np.uint8)
    with open(tmp_path / "mini-imagenet-cache-validation.pkl", "wb") as f:
        pickle.dump({"image_data": img, "class_dict": {"n2": [0, 2, 4], "n1": [1, 3, 5]}}, f)
    ds = load_dataset("l2l-mini-imagenet", "val", data_dir=tmp_path)
    assert ds.name == "l2l-mini-imagenet" and ds.classes == ["n1", "n2"]
    assert ds.targets.tolist() == [1, 0, 1, 0, 1, 0] and ds.images.shape == (6, 3, 84, 84)
