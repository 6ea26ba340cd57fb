"""Baselines: raw-pixel few-shot NCC against an independent numpy implementation; random-init
features deterministic per seed and equal to the trained run's epoch-0 model."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from ncbench.baselines import random_init_features, random_init_model, raw_pixel_features
from ncbench.data import load_dataset
from ncbench.data.dataset import ImageDataset
from ncbench.fewshot.episodes import sample_episodes
from ncbench.fewshot.evaluate import ncc_accuracy
from ncbench.metrics import collapse_metrics
from ncbench.training.recipe import Recipe
from ncbench.training.seeding import seed_everything
from ncbench.training.trajectory import Trajectory, TrajectoryConfig

MEAN, STD = 0.3, 0.37   # the embedded digits' normalisation


def digits_5_to_9():
    """scikit-learn's digits 5-9 as an ImageDataset (0..16 → 0..255 as `ncbench.data.embedded` does),
    and the same images as the numpy reference sees them: ((v·255/16 rounded)/255 − mean)/std."""
    from sklearn.datasets import load_digits

    d = load_digits()
    keep = d.target >= 5
    u8 = np.round(d.images[keep] * (255.0 / 16.0)).astype(np.uint8)
    ds = ImageDataset(torch.from_numpy(u8.reshape(-1, 1, 8, 8)), torch.from_numpy(d.target[keep] - 5),
                      [str(c) for c in range(5, 10)], (MEAN,), (STD,), "digits", "all")
    ref = (u8.reshape(len(u8), -1).astype(np.float64) / 255.0 - MEAN) / STD
    return ds, ref, d.target[keep] - 5


def numpy_ncc_episode_accuracy(x: np.ndarray, support: np.ndarray, query: np.ndarray) -> np.ndarray:
    """Per episode: prototypes = mean of the support rows, each query to the nearest prototype (L2)."""
    acc = []
    for s, q in zip(support, query):                       # s (n, k), q (n, q) row indices
        protos = x[s].mean(axis=1)                          # (n, d)
        queries = x[q.reshape(-1)]                          # (n·q, d)
        dist = ((queries[:, None, :] - protos[None, :, :]) ** 2).sum(-1)
        truth = np.repeat(np.arange(len(s)), q.shape[1])
        acc.append(float((dist.argmin(1) == truth).mean()))
    return np.array(acc)


def test_raw_pixel_fewshot_ncc_matches_numpy_on_digits_5_to_9():
    ds, ref, labels = digits_5_to_9()
    feats, y = raw_pixel_features(ds, batch_size=97, dtype=torch.float64)
    assert feats.shape == (len(ds), 64) and torch.equal(y, torch.from_numpy(labels))
    np.testing.assert_allclose(feats.numpy(), ref, rtol=0, atol=1e-6)   # float32 normalisation in batch()
    ep = sample_episodes(y, n_way=5, k_shot=5, n_query=15, episodes=200, seed=0)
    ours = ncc_accuracy(feats, ep).numpy()
    theirs = numpy_ncc_episode_accuracy(ref, ep.support.numpy(), ep.query.numpy())
    np.testing.assert_array_equal(ours, theirs)
    assert 0.8 < ours.mean() < 1.0          # raw 8×8 digits are easy for NCC (5-way 5-shot)


def test_raw_pixel_ncc_and_nc1_run_on_the_features():
    ds = load_dataset("digits", "train")
    feats, y = raw_pixel_features(ds)
    m = collapse_metrics(feats, y)
    assert 0.0 < m["ncc_acc"] <= 1.0 and m["nc1"] > 0


def test_raw_pixels_of_a_streamed_split_are_its_preprocessed_inputs():
    """The frozen tier's view: digits upsampled to 28×28 and normalised by the task's preprocessing."""
    from ncbench.data.preprocessing import eval_transform
    from ncbench.data.streaming import StreamedSplit, TensorImages

    ds = load_dataset("digits", "test")
    cfg = {"input_size": (1, 28, 28), "crop_pct": 1.0, "interpolation": "bilinear", "mean": (0.1307,),
           "std": (0.3081,), "crop_mode": "center"}
    split = StreamedSplit(TensorImages(ds), eval_transform(cfg), "L")
    feats, y = raw_pixel_features(split, batch_size=64)
    assert feats.shape == (len(ds), 784) and torch.equal(y, ds.targets)
    x0, _ = next(split.stream(1))
    torch.testing.assert_close(feats[0], x0.reshape(-1))


def test_random_init_features_deterministic_per_seed():
    ds = load_dataset("digits", "test")
    a, ya = random_init_features("test_resnet", ds, seed=3)
    b, _ = random_init_features("test_resnet", ds, seed=3)
    c, _ = random_init_features("test_resnet", ds, seed=4)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert torch.equal(ya, ds.targets) and a.shape[0] == len(ds) and torch.isfinite(a).all()


def test_random_init_model_is_the_trained_runs_epoch_0(tmp_path):
    cfg = TrajectoryConfig("digits", "test_vit", Recipe(epochs=1), seed=7,
                           model_kwargs=(("img_size", 8), ("patch_size", 2)))
    seed_everything(cfg.seed)
    start = Trajectory(cfg, tmp_path, progress=False).build_model(10, 1)
    base = random_init_model("test_vit", 10, 1, seed=7, img_size=8, patch_size=2)
    for (k, v), (k2, v2) in zip(start.state_dict().items(), base.state_dict().items()):
        assert k == k2 and torch.equal(v, v2)


def test_empty_split_and_bad_batch_size_are_errors():
    ds = load_dataset("digits", "test").subset(torch.arange(0))
    with pytest.raises(ValueError, match="no samples"):
        raw_pixel_features(ds)
    with pytest.raises(ValueError, match="batch_size"):
        raw_pixel_features(load_dataset("digits", "test"), batch_size=0)
    with pytest.raises(ValueError, match="no samples"):
        random_init_features("test_resnet", ds)


def test_nearest_train_mean_accuracy_against_a_loop():
    from ncbench.baselines.measure import nearest_mean_accuracy

    g = torch.Generator().manual_seed(0)
    tf, ty = torch.randn(60, 5, generator=g), torch.arange(60) % 4
    tf[ty == 2] += 3.0
    f, y = torch.randn(40, 5, generator=g), torch.arange(40) % 4
    means = [tf[ty == k].double().mean(0) for k in range(4)]
    want = sum(int(min(range(4), key=lambda k: float(((f[i].double() - means[k]) ** 2).sum())) == y[i])
               for i in range(40)) / 40
    assert nearest_mean_accuracy(tf, ty, f, y, 4) == want
    # a class absent from the train split never wins
    assert nearest_mean_accuracy(tf[ty != 3], ty[ty != 3], f[y == 3], y[y == 3], 4) == 0.0


def test_a_trained_run_reports_its_baselines_beside_its_numbers(tmp_path):
    """train_collapse on digits: the `baseline=raw_pixels` rows are SPEC §2 of the flattened inputs."""
    import pandas as pd

    from ncbench.metrics import collapse_metrics
    from ncbench.runner.suite import run_tasks
    from ncbench.tasks import TaskSpec

    spec = TaskSpec(name="t", kind="train_collapse", version=1, dataset="digits", model="test_resnet",
                    recipe={"epochs": 1, "batch_size": 256})
    _, runs = run_tasks("s", [spec], tmp_path, progress=False, log=lambda m: None)
    df = pd.read_csv(runs[0].csv)
    raw = df[df.variant == "baseline=raw_pixels"].set_index("metric").value
    train = load_dataset("digits", "train")
    x, y = train.batch(torch.arange(len(train)))
    m = collapse_metrics(x.flatten(1).double(), y, num_classes=10)
    assert raw["nc1"] == pytest.approx(m["nc1"], rel=1e-12) and raw["ncc_acc"] == pytest.approx(m["ncc_acc"])
    assert set(df.variant.dropna()) == {"baseline=raw_pixels", "baseline=random_init"}
    assert {"nc1", "cdnv", "ncc_acc", "test_ncc_acc", "test_nc1", "test_cdnv"} <= set(
        df[df.variant == "baseline=random_init"].metric)
    off = TaskSpec(name="u", kind="train_collapse", version=1, dataset="digits", model="test_resnet",
                   recipe={"epochs": 1, "batch_size": 256}, options={"baselines": False})
    _, runs = run_tasks("s", [off], tmp_path, progress=False, log=lambda m: None)
    assert pd.read_csv(runs[0].csv).variant.isna().all()
