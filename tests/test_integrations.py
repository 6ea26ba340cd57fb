"""ncbench.track / CollapseTracker / FeatureTaps (plain PyTorch, no optional extra needed).

References: features recomputed by calling the modules directly (no hooks), measured with the
independent float64 reference `reference_nc` and with `collapse_metrics`; per-layer numbers against
`ncbench.training.layer_statistics` (the `ncc_depth` task's).
"""
from __future__ import annotations

import math
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from reference_nc import collapse_reference
from torch import nn

import ncbench
from ncbench.data import load_dataset
from ncbench.integrations import CollapseTracker, FeatureTaps, TwoPassCollapse, track
from ncbench.metrics import SPEC_METRICS, collapse_metrics
from ncbench.models.backbone import build_backbone
from ncbench.registry import UnknownNameError
from ncbench.results import load_results

ROOT = Path(__file__).resolve().parent.parent
RTOL = 1e-9


def close(got: dict, want: dict, keys=SPEC_METRICS, rtol=RTOL):
    for k in keys:
        g, w = float(got[k]), float(want[k])
        if math.isnan(w):
            assert math.isnan(g), k
        else:
            assert g == pytest.approx(w, rel=rtol, abs=1e-12), f"{k}: {g!r} vs {w!r}"


@pytest.fixture(scope="module")
def digits():
    torch.manual_seed(0)
    train = load_dataset("digits", "train")
    return train, [train.batch(b) for b in torch.arange(len(train)).split(200)]


def small_cnn(K=10, seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, K))


def test_track_timm_backbone_equals_reference_and_engine(digits, one_thread):
    train, loader = digits
    model = build_backbone("test_resnet", 10, 1)
    got = track(model, loader)
    assert model.training, "track restores the training mode"
    model.eval()
    with torch.no_grad():
        H = torch.cat([model.features(x) for x, _ in loader])
        Y = torch.cat([y for _, y in loader])
        Z = model.logits(H)
    W, b = model.classifier()
    ref = collapse_reference(H.double().numpy(), Y.numpy(), 10, W.double().numpy(), b.double().numpy(),
                             Z.double().numpy())
    assert ref["ncc_ties"] == 0 and ref["pred_ties"] == 0
    close(got.metrics["pre_logits"], ref)
    close(got.metrics["pre_logits"], collapse_metrics(H, Y, W, b, logits=Z))
    assert got.metrics["pre_logits"]["accuracy"] == pytest.approx(float((Z.argmax(1) == Y).double().mean()))
    assert got.n_samples == len(train)


def test_track_timm_blocks_equal_ncc_depth_layer_statistics(digits, one_thread):
    from ncbench.training.layer_statistics import LAYER_METRICS, layer_statistics

    train, _ = digits
    model = build_backbone("test_resnet", 10, 1)
    loader = [train.batch(b) for b in torch.arange(len(train)).split(512)]   # layer_statistics' batches
    got = track(model, loader, layers="blocks")
    want = layer_statistics(model, train, None)
    assert list(got.metrics) == want.layers and len(want.layers) > 2
    for i, layer in enumerate(want.layers):
        close(got.metrics[layer], want.train.at(i), LAYER_METRICS)


def test_track_any_module_by_layer_name_and_by_feature_function(digits, one_thread):
    _, loader = digits
    model = small_cnn()
    got = track(model, loader, layers=["0", "4"])          # classifier: the last nn.Linear, found
    model.eval()
    with torch.no_grad():
        X = torch.cat([x for x, _ in loader])
        Y = torch.cat([y for _, y in loader]).numpy()
        conv = model[0](X).mean((2, 3))                     # pooled by hand
        H = model[:-1](X)
        Z = model(X)
    W, b = model[-1].weight.detach().double().numpy(), model[-1].bias.detach().double().numpy()
    close(got.metrics["pre_logits"], collapse_reference(H.double().numpy(), Y, 10, W, b, Z.double().numpy()))
    conv_ref = collapse_reference(conv.double().numpy(), Y, 10, logits=Z.double().numpy())
    close(got.metrics["0"], conv_ref)
    assert math.isnan(got.metrics["0"]["nc3"]), "W acts on the penultimate features only"
    by_fn = track(model, loader, features=lambda x: model[:-1](x), classifier=model[-1])
    close(by_fn.metrics["pre_logits"], got.metrics["pre_logits"])
    no_head = track(model, loader, features=lambda x: model[:-1](x), num_classes=10)
    close(no_head.metrics["pre_logits"], got.metrics["pre_logits"], ["nc1", "cdnv", "ncc_acc"])
    assert math.isnan(no_head.metrics["pre_logits"]["nc4"]), "no classifier, no network prediction"


def test_tracker_in_a_hand_written_loop_equals_track(digits, tmp_path, one_thread):
    _, loader = digits
    model = small_cnn()
    tracker = CollapseTracker(model, layers=["4"])
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for epoch in (1, 2):
        model.train()
        for x, y in loader[:3]:
            opt.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
        assert not model[-1]._forward_hooks, "no hook outside a split block"
        model.eval()
        with torch.no_grad(), tracker.split("val", epoch=epoch) as meter:
            for x, y in loader:
                model(x)
                meter.update(y)
        close(tracker.results[-1].metrics["pre_logits"], track(model, loader).metrics["pre_logits"])
    assert not model[-1]._forward_hooks and not model[4]._forward_hooks
    path = tracker.to_csv(tmp_path / "run", run_id="r1", model="small_cnn", dataset="digits", seed=0)
    df = load_results(tmp_path)
    assert path == tmp_path / "run" / "results.csv" and len(df) == len(tracker.rows())
    nc1 = df[(df.metric == "nc1") & (df.epoch == 2) & (df.layer == "")].value.item()
    assert nc1 == tracker.results[-1].metrics["pre_logits"]["nc1"]       # repr round trip
    assert set(df.layer) == {"", "4"} and set(df.split) == {"val"} and str(df.run_id[0]) == "r1"
    assert df.task_version.isna().all() and set(df.task) == {"track"}


def test_pass_two_replays_past_the_cache_budget(digits, one_thread):
    _, loader = digits
    g = torch.Generator().manual_seed(1)
    batches = [({"pre_logits": x.flatten(1)}, y, torch.randn(len(y), 10, generator=g)) for x, y in loader]
    cached, nocache, lost = (TwoPassCollapse(10, cache_bytes=c) for c in (1 << 30, 0, 0))
    for acc in (cached, nocache, lost):
        for feats, y, z in batches:
            acc.update(feats, y, z)
    assert nocache.cache is None
    want = cached.compute()
    close(nocache.compute(replay=lambda: batches).metrics["pre_logits"], want.metrics["pre_logits"])
    res = lost.compute()
    assert math.isnan(res.metrics["pre_logits"]["nc4"]) and "cache" in res.reasons[0]
    assert res.metrics["pre_logits"]["nc1"] == want.metrics["pre_logits"]["nc1"]
    only = TwoPassCollapse(10, metrics=["nc1", "cdnv"])
    assert only.cache is None, "no pass-two metric requested: nothing kept"


def test_clear_errors(digits):
    _, loader = digits
    model = small_cnn()
    with pytest.raises(UnknownNameError, match=r"unknown layer '5x'.*model.named_modules"):
        FeatureTaps(model, layers=["5x"])
    resnet = build_backbone("test_resnet", 10, 1)
    with pytest.raises(UnknownNameError, match="Did you mean: layer3"):
        FeatureTaps(resnet, layers=["layr3"])
    with pytest.raises(ValueError, match="'blocks', 'stages'"):
        FeatureTaps(resnet, layers="block")
    with pytest.raises(UnknownNameError, match="Did you mean: nc1"):
        track(model, loader, metrics=["nc1x"])
    with pytest.raises(UnknownNameError, match="classifier module 'fcc'"):
        FeatureTaps(model, classifier="fcc")
    with pytest.raises(ValueError, match="classifier=.*features="):
        FeatureTaps(nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten()))
    import timm

    with pytest.raises(ValueError, match="no classifier"):
        FeatureTaps(timm.create_model("test_vit", num_classes=0))    # its blocks hold nn.Linear layers
    with pytest.raises(ValueError, match="no sample"):
        track(model, [])
    tracker = CollapseTracker(model)
    with pytest.raises(ValueError, match=r"meter.update\(labels\)"), tracker.split("val"):
        model(loader[0][0])
    with pytest.raises(ValueError, match="call the model inside capture"), tracker.split("val") as meter:
        meter.update(loader[0][1])


def test_top_level_names():
    assert ncbench.track is track and ncbench.CollapseTracker is CollapseTracker
    with pytest.raises(AttributeError):
        ncbench.trak  # noqa: B018


def test_core_works_without_the_lightning_extra():
    """torchmetrics and lightning made unimportable: the core and the plain-PyTorch tracker still work,
    the optional names say which extra to install."""
    code = textwrap.dedent("""
        import importlib.abc, sys
        class Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in ("torchmetrics", "lightning", "pytorch_lightning"):
                    raise ModuleNotFoundError(f"No module named '{name}'", name=name)
        sys.meta_path.insert(0, Block())
        import torch, ncbench, ncbench.cli, ncbench.tasks, ncbench.integrations as integ
        model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3))
        x, y = torch.randn(30, 4, generator=torch.Generator().manual_seed(0)), torch.arange(30) % 3
        print(round(ncbench.track(model, [(x, y)]).metrics["pre_logits"]["ncc_acc"], 6))
        for name in ("NeuralCollapse", "NeuralCollapseCallback"):
            try:
                getattr(integ, name)
            except ImportError as e:
                print("ImportError:", e)
        assert not any(m.split(".")[0] in ("torchmetrics", "lightning") for m in sys.modules)
    """)
    out = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, cwd=ROOT,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    lines = out.stdout.strip().splitlines()
    assert 0.0 <= float(lines[0]) <= 1.0
    assert lines[1].startswith("ImportError: ncbench.integrations.NeuralCollapse needs torchmetrics")
    assert "ncbench[lightning]" in lines[1] and "needs lightning" in lines[2]


def _track_worker(rank: int, world: int, init: str, path: str):
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    torch.set_num_threads(1)
    train = load_dataset("digits", "train")
    batches = [train.batch(b) for b in torch.arange(len(train)).split(200)]
    got = track(small_cnn(), batches[rank::world], layers=["0"])     # uneven shards: 800 and 638 samples
    if rank == 0:
        torch.save(got, path)
    dist.destroy_process_group()


def test_track_in_a_two_process_gloo_group_equals_one_process(digits, tmp_path):
    import torch.multiprocessing as mp

    _, loader = digits
    want = track(small_cnn(), loader, layers=["0"])
    path = str(tmp_path / "rank0.pt")
    mp.spawn(_track_worker, args=(2, f"file://{tmp_path / 'store'}", path), nprocs=2, join=True)
    got = torch.load(path, weights_only=False)
    assert got.n_samples == want.n_samples
    for layer in ("0", "pre_logits"):
        close(got.metrics[layer], want.metrics[layer])
    assert got.metrics["pre_logits"]["accuracy"] == want.metrics["pre_logits"]["accuracy"]
