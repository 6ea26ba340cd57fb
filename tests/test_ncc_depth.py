"""`ncc_depth` (SPEC §5): per-layer pooled features of timm backbones and the minimal NCC-depth.

References are independent of the code under test: layer outputs recomputed by calling the timm
modules by hand, NCC accuracies from a numpy nearest-mean rule, a constructed network whose layers
become class-separable at a known depth, and the shared trajectory's own final-layer numbers.
"""
from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from ncbench.data import ImageDataset, load_dataset, register_dataset
from ncbench.data.registry import DATASETS
from ncbench.models.backbone import Backbone, build_backbone
from ncbench.models.layers import LayerFeatures, block_names
from ncbench.tasks.base import TaskSpec
from ncbench.training.layer_statistics import LayerStatistics, SplitLayers, layer_statistics
from ncbench.training.minimal_depth import depths, minimal_depth, relative_depth

pytestmark = pytest.mark.usefixtures("one_thread")


# -- a network whose layer k makes the data separable ------------------------------------------
class Mask(nn.Module):
    """Keeps the signal coordinates, zeroes the noise ones: from here on the classes separate."""

    def __init__(self, d: int, signal: int):
        super().__init__()
        self.register_buffer("mask", (torch.arange(d) < signal).float().view(1, d, 1, 1))

    def forward(self, x):
        return x * self.mask


class LayeredBody(nn.Module):
    """`n` blocks, identities except block `k` (a mask); timm-like `group_matcher` and `num_features`."""

    def __init__(self, d: int, signal: int, n: int, k: int | None):
        super().__init__()
        self.blocks = nn.Sequential(*[Mask(d, signal) if i == k else nn.Identity() for i in range(n)])
        self.num_features = d

    def group_matcher(self, coarse=False):
        return {"stem": r"^stem", "blocks": r"^blocks\.(\d+)"}

    def forward(self, x):
        return self.blocks(x).flatten(1)


def separable_at_depth(N=400, K=4, signal=4, noise=40, seed=0):
    """Class means `3 e_y` in the signal coordinates (noise 0.1), large noise (σ = 3) elsewhere."""
    g = torch.Generator().manual_seed(seed)
    d = signal + noise
    y = torch.arange(N) % K
    x = torch.zeros(N, d)
    x[torch.arange(N), y] = 3.0
    x[:, :signal] += 0.1 * torch.randn(N, signal, generator=g)
    x[:, signal:] = 3.0 * torch.randn(N, noise, generator=g)
    return ImageDataset(x.view(N, d, 1, 1), y, [str(k) for k in range(K)], (0.0,) * d, (1.0,) * d, "toy")


def numpy_ncc_acc(train_h, train_y, h, y, K):
    means = np.stack([train_h[train_y == k].mean(0) for k in range(K)])
    d2 = ((h[:, None, :] - means[None]) ** 2).sum(-1)
    return float((d2.argmin(1) == y).mean())


@pytest.mark.parametrize("k", [0, 2, 5, None])
def test_constructed_network_depth_is_exact(k):
    n_blocks, d, K = 6, 44, 4
    train, test = separable_at_depth(seed=0), separable_at_depth(seed=1)
    model = Backbone(LayeredBody(d, 4, n_blocks, k), nn.Linear(d, K)).eval()
    st = layer_statistics(model, train, test, batch_size=64)
    assert st.layers == [f"blocks.{i}" for i in range(n_blocks)] + ["pre_logits"]
    assert st.granularity == "blocks"
    # independent NCC per layer: the raw data before depth k, its signal coordinates from k on
    xtr, xte = train.images.flatten(1).numpy(), test.images.flatten(1).numpy()
    ytr, yte = train.targets.numpy(), test.targets.numpy()
    for i in range(n_blocks + 1):
        masked = k is not None and i >= k
        a, b = (xtr[:, :4], xte[:, :4]) if masked else (xtr, xte)
        assert st.train.metrics["ncc_acc"][i] == pytest.approx(numpy_ncc_acc(a, ytr, a, ytr, K), abs=1e-12)
        assert st.test.metrics["ncc_acc"][i] == pytest.approx(numpy_ncc_acc(a, ytr, b, yte, K), abs=1e-12)
        if not masked:   # the fixture is what it claims: noisy layers are far from separable
            assert 1 - st.train.metrics["ncc_acc"][i] > 0.1
    d_ = depths(st, 0.01)
    if k is None:
        assert math.isnan(d_["train"]) and math.isnan(d_["test"]) and math.isnan(d_["test_ncc_acc_at_depth"])
    else:
        assert d_["train"] == k and d_["test"] == k
        assert d_["test_ncc_acc_at_depth"] == st.test.metrics["ncc_acc"][k] == 1.0
    # nc4 against the network prediction argmax(W h + b) of the last layer (independent numpy)
    W, b = (t.detach().numpy() for t in model.head.parameters())
    last = xtr[:, :4] if k is not None else xtr
    full = np.where(np.arange(d) < 4, xtr, 0) if k is not None else xtr
    pred = (full @ W.T + b).argmax(1)
    means = np.stack([last[ytr == c].mean(0) for c in range(K)])
    ncc = ((last[:, None] - means[None]) ** 2).sum(-1).argmin(1)
    assert st.train.metrics["nc4"][-1] == pytest.approx(float((pred != ncc).mean()), abs=1e-12)


def test_minimal_depth_rule():
    errs = [0.5, 0.02, 0.005, 0.0, 0.2]
    assert minimal_depth(errs, 0.01) == 2          # the first qualifying layer, not the best one
    assert minimal_depth(errs, 0.02) == 1
    assert minimal_depth(errs, 0.0) == 3
    assert math.isnan(minimal_depth([0.5, math.nan, 0.3], 0.01))   # none: missing, not the last layer
    assert minimal_depth([math.nan, 0.0], 0.01) == 1


def test_test_depth_against_the_last_layer_and_relative_depths():
    """A network at 98% test NCC accuracy never reaches a test error <= 1%: the absolute test depth is
    NaN, the matched one is the first layer within (1 − ε) of the last layer's accuracy."""
    def stats(train_acc, test_acc):
        split = [SplitLayers({"ncc_acc": acc}, {}, 10) for acc in (train_acc, test_acc)]
        return LayerStatistics([str(i) for i in range(len(train_acc))], [], [], "blocks", "avg", *split)

    d = depths(stats([0.6, 0.995, 1.0, 1.0], [0.5, 0.9, 0.975, 0.98]), 0.01)
    assert d["train"] == 1 and math.isnan(d["test"])
    assert d["test_matched"] == 2                    # 0.975 >= 0.99 * 0.98 = 0.9702 > 0.9
    assert depths(stats([0.6, 0.995, 1.0], [0.99, 0.5, 0.98]), 0.01)["test_matched"] == 0
    assert set(depths(LayerStatistics(["0"], [], [], "blocks", "avg", SplitLayers({"ncc_acc": [1.0]}, {}, 4)),
                      0.01)) == {"train"}       # no test split: no test depths
    assert relative_depth(2.0, 5) == 0.5 and relative_depth(0.0, 1) == 0.0 and math.isnan(relative_depth(math.nan, 4))


def test_granularity_falls_back_to_stages_without_matcher():
    class Staged(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Conv2d(3, 5, 1), nn.Conv2d(5, 7, 1)
            self.feature_info = [{"module": "a", "num_chs": 5}, {"module": "b", "num_chs": 7}]

        def forward(self, x):
            return self.b(self.a(x)).mean((2, 3))

    model = Backbone(Staged(), nn.Linear(7, 2)).eval()
    x = torch.randn(3, 3, 4, 4)
    with LayerFeatures(model, "blocks") as taps, torch.no_grad():
        pooled, _, _ = taps(x)
        assert taps.granularity == "stages" and taps.names == ["a", "b", "pre_logits"]
        a = model.body.a(x)
        torch.testing.assert_close(pooled[0], a.mean((2, 3)))
        torch.testing.assert_close(pooled[1], model.body.b(a).mean((2, 3)))
    assert not model.body.a._forward_hooks           # hooks removed on exit
    with pytest.raises(ValueError, match="granularity"):
        LayerFeatures(model, "layers")


# -- timm models ---------------------------------------------------------------------------------
def _resnet_manual(body, x):
    """Every block output of a timm ResNet, calling its modules by hand."""
    stem = body.act1(body.bn1(body.conv1(x)))
    out, h = {"act1": stem}, body.maxpool(stem)
    for s in ("layer1", "layer2", "layer3", "layer4"):
        for j, blk in enumerate(getattr(body, s)):
            h = blk(h)
            out[f"{s}.{j}"] = h
        out[s] = h
    return out


@pytest.mark.parametrize("name,blocks", [("test_resnet", [1, 1, 1, 1]), ("resnet18", [2, 2, 2, 2])])
def test_timm_resnet_layers_shapes_pooling(name, blocks):
    model = build_backbone(name, 10, 3).eval()
    x = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    manual = _resnet_manual(model.body, x)
    expected = [f"layer{s + 1}.{j}" for s, n in enumerate(blocks) for j in range(n)]
    with torch.no_grad():
        for granularity, names in (("blocks", expected), ("stages", ["act1", "layer1", "layer2", "layer3", "layer4"])):
            with LayerFeatures(model, granularity) as taps:
                pooled, h, logits = taps(x)
            assert taps.names == names + ["pre_logits"]
            assert taps.use_intermediates == (granularity == "stages")   # forward_intermediates for stages
            for n, p in zip(names, pooled):
                assert p.shape == (4, manual[n].shape[1])
                torch.testing.assert_close(p, manual[n].mean((2, 3)))      # global average pooling
            torch.testing.assert_close(h, model.body(x))
            torch.testing.assert_close(pooled[-1], h)
            torch.testing.assert_close(logits, model(x))
    chans = [f["num_chs"] for f in model.body.feature_info][1:]
    assert [manual[f"layer{i + 1}"].shape[1] for i in range(4)] == chans


def test_timm_vit_class_token_and_mean_token():
    model = build_backbone("test_vit", 5, 3, img_size=32, patch_size=8).eval()
    body = model.body
    x = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        t = body.norm_pre(body._pos_embed(body.patch_embed(x)))
        manual = []
        for blk in body.blocks:
            t = blk(t)
            manual.append(t)
        assert body.num_prefix_tokens == 1 and manual[0].shape == (3, 1 + 16, 64)
        for pool, ref in (("cls", [m[:, 0] for m in manual]), ("mean", [m[:, 1:].mean(1) for m in manual]),
                          ("auto", [m[:, 0] for m in manual])):       # test_vit pools its class token
            for granularity in ("blocks", "stages"):                 # hooks and forward_intermediates
                with LayerFeatures(model, granularity, pool) as taps:
                    pooled, h, _ = taps(x)
                assert taps.names == [f"blocks.{i}" for i in range(6)] + ["pre_logits"]
                assert taps.token_pool == ("cls" if pool == "auto" else pool)
                for p, r in zip(pooled, ref):
                    assert p.shape == (3, 64)
                    torch.testing.assert_close(p, r)
                torch.testing.assert_close(h, body(x))
    avg = build_backbone("test_vit", 5, 3, img_size=32, patch_size=8, class_token=False, global_pool="avg")
    assert LayerFeatures(avg).token_pool == "mean"
    with pytest.raises(ValueError, match="class token"):
        LayerFeatures(avg, token_pool="cls")


@pytest.mark.parametrize("name", ["test_convnext", "mobilenetv2_050"])
def test_timm_cnn_families_every_block(name):
    model = build_backbone(name, 10, 3).eval()
    body = model.body
    if name == "test_convnext":
        want = [f"stages.{i}.blocks.{j}" for i, s in enumerate(body.stages) for j in range(len(s.blocks))]
    else:   # every block of every stage, also the stages feature_info skips
        want = [f"blocks.{i}.{j}" for i, s in enumerate(body.blocks) for j in range(len(s))]
        assert len(want) > len(body.feature_info)
    assert block_names(body) == want
    x = torch.randn(2, 3, 32, 32)
    shapes = {}
    hooks = [dict(body.named_modules())[n].register_forward_hook(
        lambda m, i, o, n=n: shapes.__setitem__(n, o.mean((2, 3)))) for n in want]
    with torch.no_grad():
        body(x)
        for hk in hooks:
            hk.remove()
        with LayerFeatures(model) as taps:
            pooled, h, _ = taps(x)
    for n, p in zip(want, pooled):
        torch.testing.assert_close(p, shapes[n])
    torch.testing.assert_close(pooled[-1], h)


# -- the task: recorded options, long CSV, shared trajectory ---------------------------------------
TINY = "ncc_depth_tiny"
if TINY not in DATASETS.names():
    @register_dataset(TINY)
    def _tiny(split, data_dir=None, download=False):
        full = load_dataset("mnist5k", split)
        n = 300 if split == "train" else 100            # mnist5k is sorted by class: draw at random
        return full.subset(torch.randperm(len(full), generator=torch.Generator().manual_seed(0))[:n])


def _spec(**kw) -> TaskSpec:
    base = {"name": "ncc_depth_tiny", "kind": "ncc_depth", "version": 1, "dataset": TINY,
            "model": "test_resnet", "seed": 0,
            "recipe": {"epochs": 2, "batch_size": 100, "lr": 0.05, "eval_every": 1}}
    return TaskSpec.from_dict({**base, **kw})


def test_task_records_epsilon_and_granularity(tmp_path):
    from ncbench.runner.suite import run_tasks

    spec = _spec(options={"source": "pretrained", "epsilon": 0.5, "granularity": "stages"})
    _, runs = run_tasks("t", [spec], tmp_path, progress=False, log=lambda *a: None)
    assert runs[0].outcome == "done", runs[0].error
    df = pd.read_csv(runs[0].csv)
    assert df.value.dtype == float
    assert set(df.variant.dropna()) == {"baseline=raw_pixels", "baseline=random_init"}
    df = df[df.variant.isna()]                     # the network's own rows
    summ = df[df.split == "summary"].set_index("metric").value
    assert summ["epsilon"] == 0.5 and summ["n_layers"] == 6
    assert summ["ncc_depth_relative"] == pytest.approx(summ["ncc_depth"] / 5, nan_ok=True)
    per_layer = df[df.metric == "ncc_acc"]
    assert sorted(per_layer.layer.unique()) == list(range(6)) and set(per_layer.split) == {"train", "test"}
    assert df[df.metric == "nc4"].value.isna().all()      # untrained head: no network prediction
    layers = pd.read_csv(runs[0].dir / "layers.csv")
    assert layers.name.tolist() == ["act1", "layer1", "layer2", "layer3", "layer4", "pre_logits"]
    assert set(layers.granularity) == {"stages"} and set(layers.epsilon) == {0.5}
    meta = json.loads((runs[0].dir / "config.json").read_text())["meta"]
    assert meta["granularity"] == "stages" and meta["epsilon"] == 0.5
    train_err = 1 - per_layer[per_layer.split == "train"].sort_values("layer").value.to_numpy()
    assert summ["ncc_depth"] == minimal_depth(list(train_err), 0.5) or (
        math.isnan(summ["ncc_depth"]) and (train_err > 0.5).all())
    assert (runs[0].dir / "ncc_depth.png").exists()
    with pytest.raises(ValueError, match="granularity"):
        from ncbench.tasks import TASK_KINDS
        TASK_KINDS.get("ncc_depth")(_spec(options={"granularity": "layers"}))


def test_task_shares_the_trajectory_and_matches_its_final_layer(tmp_path):
    """train_collapse and ncc_depth train once; the probe's last layer reproduces the run's numbers."""
    from ncbench.runner.suite import run_tasks

    specs = [_spec(name="tc", kind="train_collapse"), _spec()]
    run_dir, runs = run_tasks("t", specs, tmp_path, progress=False, log=lambda *a: None)
    assert [r.outcome for r in runs] == ["done", "done"], [r.error for r in runs]
    assert len(list((run_dir / "_trajectories").iterdir())) == 1
    tc, nd = (pd.read_csv(r.csv) for r in runs)
    final = nd[nd.split == "summary"].epoch.iloc[0]
    assert final == 2 and set(nd[nd.metric == "ncc_depth"].epoch) == {1, 2}   # per-epoch depth curve
    last = int(nd.layer.max())
    for split, metric, tc_metric in (("train", "ncc_acc", "ncc_acc"), ("train", "nc4", "nc4"),
                                     ("test", "ncc_acc", "ncc_acc"), ("test", "nc4", "nc4"),
                                     ("train", "cdnv", "cdnv"), ("train", "nc1", "nc1")):
        for epoch in (1, 2):
            a = nd[(nd.split == split) & (nd.metric == metric) & (nd.layer == last) & (nd.epoch == epoch)].value
            b = tc[(tc.split == split) & (tc.metric == tc_metric) & (tc.epoch == epoch)].value
            assert float(a.iloc[0]) == pytest.approx(float(b.iloc[0]), rel=1e-9, abs=1e-12), (split, metric, epoch)


def test_task_vit_model_kwargs_and_mean_token(tmp_path):
    from ncbench.runner.suite import run_tasks

    spec = _spec(model="test_vit", options={"source": "pretrained", "token_pool": "mean",
                                            "model_kwargs": {"img_size": 28, "patch_size": 7}})
    _, runs = run_tasks("t", [spec], tmp_path, progress=False, log=lambda *a: None)
    assert runs[0].outcome == "done", runs[0].error
    layers = pd.read_csv(runs[0].dir / "layers.csv")
    assert layers.name.tolist() == [f"blocks.{i}" for i in range(6)] + ["pre_logits"]
    assert set(layers.token_pool) == {"mean"} and set(layers.granularity) == {"blocks"}
    assert set(layers.dim) == {64}


def test_the_imbalance_sweep_reads_the_minority_tasks_learnable_runs():
    """ncc_depth_imbalance_mnist5k trains nothing of its own: each R is the learnable-classifier run
    of minority_collapse_mnist5k (same trajectory key), probed per layer."""
    from ncbench.specs import load_task, members
    from ncbench.tasks import TASK_KINDS

    depth = [TASK_KINDS.get("ncc_depth")(m).trajectories()[0] for m in members(load_task("ncc_depth_imbalance_mnist5k"))]
    mc = {m.variant: TASK_KINDS.get("minority_collapse")(m).trajectories()[0]
          for m in members(load_task("minority_collapse_mnist5k"))}
    assert [c.key() for c in depth] == [mc[f"ratio={r},classifier=learnable"].key() for r in (1, 10, 100)]
    assert depth[0].imbalance is not None and dict(depth[2].imbalance)["ratio"] == 100.0
    with pytest.raises(ValueError, match="imbalance_ratio must be a finite number >= 1"):
        TASK_KINDS.get("ncc_depth")(_spec(options={"imbalance_ratio": 0.5}))


def test_the_figure_of_a_seed_group_averages_its_seeds(tmp_path, monkeypatch):
    """A seed group's rows (every member's, plus baseline rows) plot as one figure: the final depth is
    the mean over seeds (the first group run failed: `float()` of a Series of three depths)."""
    from matplotlib.figure import Figure

    import ncbench.plots.ncc_depth as fig_module
    from ncbench.tasks.base import TaskOutput

    rows = []
    for seed, depth in ((0, 1.0), (1, 2.0), (2, 2.0)):
        def add(split, metric, value, epoch=3, layer=None, variant="", seed=seed):
            rows.append({"split": split, "metric": metric, "value": value, "epoch": epoch, "layer": layer,
                         "variant": variant, "seed": seed})
        for layer in range(3):
            for split in ("train", "test"):
                add(split, "ncc_acc", 0.8 + 0.1 * layer, layer=layer)
                add(split, "cdnv", 1.0 / (layer + 1), layer=layer)
        for epoch, d in ((1, 2.0), (3, depth)):
            add("train", "ncc_depth", d, epoch=epoch)
            add("test", "ncc_depth", math.nan, epoch=epoch)
        add("summary", "ncc_depth", depth)
        add("summary", "epsilon", 0.01)
        add("summary", "ncc_depth", 0.0, variant="baseline=raw_pixels")   # never the plotted depth
    layers = pd.DataFrame([{"seed": s, "name": n} for s in (0, 1, 2) for n in ("stem", "block", "head")])
    labels = []
    original = fig_module.save_figure

    def capture(fig: Figure, path, title=None):
        labels.extend(t.get_text() for ax in fig.axes if ax.get_legend() for t in ax.get_legend().get_texts())
        return original(fig, path, title)

    spec = TaskSpec.from_dict({"name": "depth_group", "kind": "ncc_depth", "version": 1, "dataset": "mnist5k",
                               "model": "test_resnet"})
    monkeypatch.setattr(fig_module, "save_figure", capture)
    (path,) = fig_module.plot(TaskOutput(rows, {"layers": layers}), spec, tmp_path)
    assert path.is_file()
    assert "minimal NCC-depth = 1.67, mean of 3 seeds (head)" in labels   # layer names of one seed
