"""The frozen-transfer tier: timm preprocessing, weights from a local file, image folders, the
streamed path against the in-memory one, bounded memory, fail-fast on missing weights, and the
task's numbers against an independent forward pass + the float64 reference."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import reference_nc
import torch
from PIL import Image

from ncbench.data.preprocessing import data_config, eval_transform

ROOT = Path(__file__).resolve().parent.parent


def write_pngs(root: Path, per_class: int = 6, classes=("cat", "dog", "emu"), size=(12, 10), seed=0,
               mode="RGB") -> np.ndarray:
    """PNG files root/<class>/<i>.png with class-dependent brightness; returns their arrays."""
    rng = np.random.default_rng(seed)
    arrays = []
    for k, c in enumerate(classes):
        (root / c).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            shape = (size[1], size[0], 3) if mode == "RGB" else (size[1], size[0])
            a = np.clip(rng.normal(60 + 70 * k, 30, shape), 0, 255).astype(np.uint8)
            Image.fromarray(a, mode).save(root / c / f"{i:03d}.png")
            arrays.append(a)
    return np.stack(arrays)


# -- preprocessing --------------------------------------------------------------------------
def test_preprocessing_is_timms_transform_for_a_non_default_pretrained_cfg():
    import timm
    from timm.data import create_transform, resolve_data_config

    cfg_overlay = {"input_size": (3, 40, 40), "crop_pct": 0.8, "interpolation": "bicubic",
                       "mean": (0.1, 0.2, 0.3), "std": (0.5, 0.4, 0.3), "crop_mode": "center"}
    body = timm.create_model("test_resnet", num_classes=0, pretrained_cfg_overlay=cfg_overlay)
    cfg = data_config(body)
    assert cfg["input_size"] == (3, 40, 40) and cfg["crop_pct"] == 0.8 and cfg["interpolation"] == "bicubic"
    assert cfg["mean"] == (0.1, 0.2, 0.3) and cfg["std"] == (0.5, 0.4, 0.3)
    ours = eval_transform(cfg)
    timms = create_transform(**resolve_data_config(model=body), is_training=False)
    rng = np.random.default_rng(0)
    im = Image.fromarray(rng.integers(0, 256, (70, 90, 3), dtype=np.uint8))
    x = ours(im)
    assert torch.equal(x, timms(im))
    # by hand: shorter side to floor(40 / 0.8) = 50 (bicubic, antialiased), centre 40x40, normalise
    r = im.resize((64, 50), Image.BICUBIC)
    left, top = (64 - 40) // 2, (50 - 40) // 2
    a = np.asarray(r.crop((left, top, left + 40, top + 40)), dtype=np.float64) / 255.0
    ref = (a - np.array(cfg["mean"])) / np.array(cfg["std"])
    assert x.shape == (3, 40, 40)
    assert np.abs(x.numpy().transpose(1, 2, 0) - ref).max() < 0.05   # PIL vs torchvision resampling


def test_preprocessing_overrides_and_channel_checks():
    import timm

    body = timm.create_model("test_resnet", num_classes=0)
    assert data_config(body)["input_size"] == (3, 160, 160)            # the weights' own r160 config
    cfg = data_config(body, {"input_size": [1, 28, 28], "mean": [0.5], "std": [0.2], "crop_pct": 1.0})
    assert cfg["input_size"] == (1, 28, 28) and cfg["mean"] == (0.5,)
    with pytest.raises(ValueError, match="one mean per channel"):
        data_config(body, {"input_size": [1, 28, 28]})
    with pytest.raises(ValueError, match="unknown preprocessing keys"):
        data_config(body, {"size": 3})


# -- weights -----------------------------------------------------------------------------------
def test_pretrained_path_from_a_local_file_equals_checkpoint(tmp_path):
    import timm

    from ncbench.models.backbone import build_backbone
    from ncbench.models.pretrained import resolve_weights

    src = timm.create_model("test_resnet", num_classes=1000)
    torch.manual_seed(3)
    with torch.no_grad():
        for p in src.parameters():
            p.add_(0.01 * torch.randn_like(p))
    path = tmp_path / "weights.pth"
    torch.save(src.state_dict(), path)
    overlay = {"file": str(path)}
    assert resolve_weights("test_resnet", True, overlay=overlay).file == str(path)
    a = build_backbone("test_resnet", 3, pretrained=True, pretrained_cfg_overlay=overlay).eval()
    b = build_backbone("test_resnet", 3, checkpoint=path).eval()
    fresh = build_backbone("test_resnet", 3).eval()
    x = torch.randn(4, 3, 48, 48)
    with torch.no_grad():
        ha, hb = a.features(x), b.features(x)
        assert torch.allclose(ha, hb, atol=1e-6, rtol=1e-6)
        assert not torch.allclose(ha, fresh.features(x), atol=1e-3)


def test_missing_pretrained_weights_fail_fast_with_the_fetch_command(tmp_path, monkeypatch, capsys):
    import socket

    from ncbench.cli import main

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))

    def no_network(*a, **k):
        raise AssertionError("the check must not touch the network")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    rc = main(["run", "frozen_transfer", "--model", "resnet18", "--pretrained", "a1_in1k", "--device", "cpu",
               "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert rc == 2
    assert "not on this machine" in err
    assert "timm.create_model('resnet18.a1_in1k', pretrained=True)" in err
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").rglob("results.csv"))
    rc = main(["run", "frozen_transfer", "--model", "resnet18", "--pretrained", "a1_in1kk", "--device", "cpu",
               "--out", str(tmp_path / "out")])
    assert rc == 2 and "did you mean a1_in1k" in capsys.readouterr().err


# -- image folders and streaming ---------------------------------------------------------------
def test_imagefolder_split_layouts(tmp_path):
    from ncbench.data import load_dataset
    from ncbench.data.imagefolder import folder_source

    arrays = write_pngs(tmp_path / "flat", per_class=10)
    tr, te = folder_source(tmp_path / "flat", "train"), folder_source(tmp_path / "flat", "test")
    assert tr.classes == ["cat", "dog", "emu"]
    assert len(tr) == 24 and len(te) == 6                                       # 80/20 per class
    assert torch.bincount(tr.targets).tolist() == [8, 8, 8]
    assert not set(tr.idx.tolist()) & set(te.idx.tolist())
    ds = load_dataset(f"imagefolder:{tmp_path / 'flat'}", "test")
    assert ds.images.shape == (6, 3, 10, 12) and ds.images.dtype == torch.uint8
    assert torch.equal(ds.images[0], torch.from_numpy(arrays[int(te.idx[0])]).permute(2, 0, 1))
    write_pngs(tmp_path / "split" / "train", per_class=4)
    write_pngs(tmp_path / "split" / "test", per_class=2, seed=1)
    assert len(folder_source(tmp_path / "split", "train")) == 12
    assert len(folder_source(tmp_path / "split", "test")) == 6
    write_pngs(tmp_path / "bad" / "train", per_class=2)
    write_pngs(tmp_path / "bad" / "test", per_class=2, classes=("cat", "dog", "fox"))
    with pytest.raises(ValueError, match="different class folders"):
        folder_source(tmp_path / "bad", "train")
    from ncbench.data import DatasetNotFoundError
    with pytest.raises(DatasetNotFoundError, match="no such folder"):
        folder_source(tmp_path / "nowhere", "train")


def test_streamed_path_equals_in_memory_path(tmp_path, one_thread):
    from ncbench.data import load_dataset
    from ncbench.data.imagefolder import folder_source
    from ncbench.data.streaming import StreamedSplit
    from ncbench.models.backbone import build_backbone
    from ncbench.training.layer_statistics import layer_statistics

    write_pngs(tmp_path / "imgs", per_class=10, size=(16, 16))
    name = f"imagefolder:{tmp_path / 'imgs'}"
    mem_tr, mem_te = load_dataset(name, "train"), load_dataset(name, "test")
    cfg = {"input_size": (3, 16, 16), "crop_pct": 1.0, "crop_mode": "center", "interpolation": "bilinear",
           "mean": mem_tr.mean, "std": mem_tr.std}
    t = eval_transform(cfg)
    st_tr = StreamedSplit(folder_source(tmp_path / "imgs", "train"), t, "RGB", workers=1)
    st_te = StreamedSplit(folder_source(tmp_path / "imgs", "test"), t, "RGB")
    torch.manual_seed(0)
    model = build_backbone("test_resnet", 3).eval()
    a = layer_statistics(model, mem_tr, mem_te, batch_size=7, with_prediction=False)
    b = layer_statistics(model, st_tr, st_te, batch_size=7, with_prediction=False)
    for sa, sb in ((a.train, b.train), (a.test, b.test)):
        for m in ("ncc_acc", "cdnv", "nc1"):
            assert np.allclose(sa.metrics[m], sb.metrics[m], rtol=1e-4, atol=1e-6), m
        for m, v in sa.collapse.items():
            assert v == pytest.approx(sb.collapse[m], rel=1e-4, abs=1e-6, nan_ok=True), m


MEMORY_SCRIPT = textwrap.dedent("""
    import json, resource, sys
    import numpy as np, torch
    from PIL import Image
    torch.set_num_threads(1)
    from ncbench.data.preprocessing import eval_transform
    from ncbench.data.streaming import StreamedSplit
    from ncbench.models.backbone import build_backbone
    from ncbench.transfer.frozen_pass import measure_frozen

    class Synthetic:            # images made on demand: the set itself is never in memory
        classes = [str(k) for k in range(4)]
        def __init__(self, n): self.n, self.targets, self.name = n, torch.arange(n) % 4, "synthetic"
        def __len__(self): return self.n
        def image(self, i):
            rng = np.random.default_rng(i)
            return Image.fromarray(rng.integers(0, 256, (96, 96, 3), dtype=np.uint8))

    B = 32
    t = eval_transform({"input_size": (3, 96, 96), "crop_pct": 1.0, "crop_mode": "center",
                        "interpolation": "bilinear", "mean": (0.5,) * 3, "std": (0.25,) * 3})
    model = build_backbone("test_resnet", 4).eval()
    def run(n):
        split = StreamedSplit(Synthetic(n), t, "RGB")
        return measure_frozen(model, split, StreamedSplit(Synthetic(B), t, "RGB"), batch_size=B,
                              keep_per_class=2, keep_test_per_class=2)
    run(2 * B); run(2 * B)
    warm = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    m = run(20 * B)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"growth_kib": peak - warm, "n": m.layers.train.n, "kept": len(m.train_labels)}))
""")


def test_streamed_pass_memory_is_bounded_by_the_batch(tmp_path):
    """A pass over 20 batches (640 images of 3x96x96) grows the peak RSS by < 24 MiB over a
    2-batch pass, whereas the decoded float images alone would take 70 MiB: the pass holds one
    batch, the statistics and the kept features (2 per class), not the data set."""
    script = tmp_path / "mem.py"
    script.write_text(MEMORY_SCRIPT)
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, cwd=ROOT, check=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"})
    r = json.loads(out.stdout.strip().splitlines()[-1])
    assert r["n"] == 640 and r["kept"] == 8
    held = 640 * 3 * 96 * 96 * 4 / 1024
    assert r["growth_kib"] < 24 * 1024 < held, r


# -- the task ----------------------------------------------------------------------------------
SMALL = {"classes": [5, 6, 7], "preprocess": {"input_size": [1, 16, 16], "crop_pct": 1.0, "mean": [0.3],
                                              "std": [0.37], "interpolation": "bilinear"},
         "batch_size": 64, "max_train_per_class": 30, "max_test_per_class": 30,
         "fewshot": {"n_way": 3, "shots": [1, 5], "queries": 5, "episodes": 40, "seed": 0}}


def small_spec(**changes):
    from ncbench.tasks.base import TaskSpec

    base = {"name": "frozen_small", "kind": "frozen_transfer", "version": 1, "dataset": "digits",
            "model": "test_resnet", "device": "cpu", "options": SMALL}
    if not changes.get("checkpoint") and not changes.get("pretrained"):
        base["pretrained"] = "random"                 # a deliberate random init (--random-init)
    return TaskSpec.from_dict({**base, **changes})


def test_frozen_task_numbers_match_an_independent_forward(tmp_path, one_thread):
    import pandas as pd

    from ncbench.data import load_dataset
    from ncbench.runner.suite import run_tasks
    from ncbench.tasks.frozen_transfer import FrozenTransfer

    torch.manual_seed(0)
    task = FrozenTransfer(small_spec())
    model, _ = task.build_model(3)
    ckpt = tmp_path / "body.pth"
    torch.save(model.body.state_dict(), ckpt)
    spec = small_spec(checkpoint=str(ckpt))
    _, runs = run_tasks("t", [spec], tmp_path / "out", progress=False)
    assert runs[0].outcome == "done", runs[0].error
    df = pd.read_csv(runs[0].csv)
    summ = df[df.split == "summary"].set_index("metric").value
    # independent path: load the images, apply timm's transform image by image, body(x)
    from timm.data import create_transform

    t = create_transform(input_size=(1, 16, 16), crop_pct=1.0, interpolation="bilinear", mean=(0.3,), std=(0.37,))
    feats = {}
    for split in ("train", "test"):
        ds = load_dataset("digits", split)
        keep = torch.isin(ds.targets, torch.tensor([5, 6, 7]))
        x = torch.stack([t(Image.fromarray(a[0].numpy())) for a in ds.images[keep]])
        with torch.no_grad():
            feats[split] = (model.body(x).double().numpy(), ds.targets[keep].numpy() - 5)
    h, y = feats["train"]
    ref = reference_nc.collapse_reference(h, y, 3)
    train_rows = df[(df.split == "train") & df.layer.isna()].set_index("metric").value
    for m in ("nc1", "nc1_quotient", "cdnv", "equinorm_h", "etf_error_h", "ncc_acc"):
        assert train_rows[m] == pytest.approx(ref[m], rel=1e-5), m
    assert summ["nc1"] == pytest.approx(ref["nc1"], rel=1e-5)
    ht, yt = feats["test"]
    assert summ["n_test"] == len(yt) and summ["n_train"] == len(y)
    assert summ["test_ncc_acc"] == pytest.approx(_ncc(ht, yt, h, y), abs=1e-12)
    last = df[(df.split == "train") & (df.metric == "ncc_acc") & df.layer.notna()]
    assert list(last.layer) == ["layer1.0", "layer2.0", "layer3.0", "layer4.0", "pre_logits"]   # names, network order
    assert last.value.iloc[-1] == pytest.approx(summ["ncc_acc"])
    for m in ("probe_acc", "knn_acc", "knn_loo_acc", "logme", "ncti_seli", "ncti_ncc", "ncti_vc",
              "fewshot_ncc_acc_1shot", "fewshot_ncc_acc_5shot"):
        assert math.isfinite(summ[m]), m
    assert 0 <= summ["probe_acc"] <= 1 and summ["n_train_kept"] == 90
    cfg = json.loads((runs[0].dir / "config.json").read_text())
    assert cfg["meta"]["data_config"]["input_size"] == [1, 16, 16]


def test_the_seed_of_a_frozen_run_is_the_measurement_seed(tmp_path, one_thread):
    """Seeds of one checkpoint differ in the kept images and the episodes (so a seed group has a
    spread), and `seed: s` is exactly `subset_seed` and `fewshot.seed` shifted by s."""
    import pandas as pd

    from ncbench.runner.suite import run_tasks
    from ncbench.tasks.frozen_transfer import FrozenTransfer

    torch.manual_seed(0)
    model, _ = FrozenTransfer(small_spec()).build_model(3)
    ckpt = tmp_path / "body.pth"
    torch.save(model.body.state_dict(), ckpt)
    few = {**SMALL, "max_train_per_class": 20}          # 20 of the ~36 train images per class
    shifted = {**few, "subset_seed": 1, "fewshot": {**SMALL["fewshot"], "seed": 1}}
    specs = [small_spec(checkpoint=str(ckpt), options=few, seed=0, name="s0"),
             small_spec(checkpoint=str(ckpt), options=few, seed=1, name="s1"),
             small_spec(checkpoint=str(ckpt), options=shifted, seed=0, name="shifted")]
    _, runs = run_tasks("t", specs, tmp_path / "out", progress=False)
    assert all(r.outcome == "done" for r in runs), [r.error for r in runs]
    summ = [pd.read_csv(r.csv).query("split == 'summary'").set_index("metric").value for r in runs]
    for m in ("probe_acc", "knn_loo_acc", "fewshot_ncc_acc_1shot", "fewshot_ncc_acc_5shot"):
        assert summ[1][m] == summ[2][m], m                # seed 1 = both option seeds + 1
    assert summ[0]["fewshot_ncc_acc_1shot"] != summ[1]["fewshot_ncc_acc_1shot"]
    assert summ[0]["knn_loo_acc"] != summ[1]["knn_loo_acc"]   # other kept train images


def _ncc(ht, yt, h, y):
    means = np.stack([h[y == k].mean(0) for k in range(3)])
    pred = ((ht[:, None, :] - means[None]) ** 2).sum(-1).argmin(1)
    return float((pred == yt).mean())


def test_frozen_task_on_an_image_folder_through_the_cli(tmp_path, one_thread):
    from ncbench.cli import main

    write_pngs(tmp_path / "imgs", per_class=10, size=(20, 20))
    rc = main(["run", "frozen_transfer", "--model", "test_resnet", "--dataset", f"imagefolder:{tmp_path / 'imgs'}",
               "--device", "cpu", "--out", str(tmp_path / "out"), "--no-progress", "--random-init"])
    assert rc == 0
    csv = next((tmp_path / "out").rglob("results.csv"))
    import pandas as pd
    df = pd.read_csv(csv)
    summ = df[df.split == "summary"].set_index("metric").value
    assert summ["n_train"] == 24 and summ["n_test"] == 6
    cfg = json.loads((csv.parent / "config.json").read_text())
    assert cfg["meta"]["data_config"]["input_size"] == [3, 160, 160]       # test_resnet's own r160 config
    assert cfg["meta"]["classes"] == ["cat", "dog", "emu"]


def test_a_frozen_run_is_a_leaderboard_row_keyed_by_the_checkpoint_hash(tmp_path, one_thread):
    import hashlib

    import pandas as pd

    from ncbench.leaderboard import submit
    from ncbench.runner.suite import run_tasks
    from ncbench.specs import load_task
    from ncbench.tasks.frozen_transfer import FrozenTransfer

    spec = load_task("frozen_digits_unseen", device="cpu", pretrained="random")
    torch.manual_seed(1)
    model, _ = FrozenTransfer(spec).build_model()
    ckpt = tmp_path / "body.pth"
    torch.save(model.body.state_dict(), ckpt)
    run_dir, runs = run_tasks("frozen", [load_task("frozen_digits_unseen", device="cpu", checkpoint=str(ckpt))],
                              tmp_path / "out", progress=False, log=lambda m: None)
    assert runs[0].outcome == "done", runs[0].error
    res = submit(run_dir, tmp_path / "boards")
    assert len(res.added) == 1
    board = pd.read_csv(tmp_path / "boards" / "frozen_digits_unseen.csv", dtype=str)
    assert len(board) == 1
    assert board.pretrained.item() == "sha256:" + hashlib.sha256(ckpt.read_bytes()).hexdigest()[:16]
    assert board.model.item() == "test_resnet" and board.dataset.item() == "digits"
    assert 0 < float(board.probe_acc.item()) <= 1


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_frozen_task_on_cuda_with_workers_and_pinned_memory_equals_cpu():
    from ncbench.tasks.frozen_transfer import FrozenTransfer

    out = {}
    for device, workers in (("cpu", 0), ("cuda", 2)):
        spec = small_spec(device=device, options={**SMALL, "workers": workers, "pin_memory": device == "cuda"})
        rows, _ = FrozenTransfer(spec).measure()
        out[device] = {r["metric"]: r["value"] for r in rows if r["split"] == "summary"}
    for m in ("nc1", "cdnv", "ncc_acc", "test_ncc_acc", "logme", "ncti_seli"):
        assert out["cuda"][m] == pytest.approx(out["cpu"][m], rel=1e-3), m


def test_submit_tier_frozen_runs_the_frozen_suite_without_training(monkeypatch, tmp_path):
    from ncbench.cli import main
    from ncbench.runner import suite

    seen = []

    def recorder(name, specs, out_root, **kw):
        seen.append((name, specs))
        raise ValueError("stop here")            # the CLI reports it (exit 2): nothing is submitted

    monkeypatch.setattr(suite, "run_tasks", recorder)
    from ncbench.models import pretrained
    monkeypatch.setattr(pretrained, "cached_file", lambda cfg, hub_cache=None: "/cache/model.safetensors")  # as if cached
    rc = main(["submit", "--tier", "frozen", "--model", "resnet50", "--pretrained", "a1_in1k", "--device", "cpu",
               "--out", str(tmp_path), "--leaderboards", str(tmp_path / "boards")])
    assert rc == 2
    [(name, specs)] = seen
    assert name == "leaderboard_frozen"
    assert [(s.kind, s.model, s.pretrained) for s in specs] == [("frozen_transfer", "resnet50", "a1_in1k")]
    assert not (tmp_path / "boards").exists() or not any((tmp_path / "boards").glob("*.csv"))
    seen.clear()
    rc = main(["submit", "--tier", "frozen", "--model", "resnet50", "--random-init", "--device", "cpu",
               "--out", str(tmp_path), "--leaderboards", str(tmp_path / "boards")])
    assert rc == 2 and [(s.model, s.pretrained) for s in seen[0][1]] == [("resnet50", "random")]
    assert main(["submit", "--model", "resnet50", "--random-init", "--device", "cpu", "--out", str(tmp_path)]) == 2
    assert len(seen) == 1                         # the trained tier refuses --random-init before any run


# -- no surprises: weights asked for, NaN explained, a figure, layer names ---------------------
@pytest.mark.parametrize("argv, needle", [
    (["run", "frozen_transfer", "--model", "test_resnet", "--dataset", "digits"], "--random-init to measure the random"),
    (["run", "frozen_transfer", "--random-init", "--pretrained", "true"], "drop --pretrained and --checkpoint"),
    (["run", "train_collapse_mnist5k", "--random-init"], "is for the frozen tier"),
    (["suite", "leaderboard_frozen", "--model", "test_resnet"], "no weights to measure"),
])
def test_a_frozen_run_without_weights_is_refused_in_one_line(argv, needle, tmp_path, capsys):
    from ncbench.cli import main

    assert main([*argv, "--device", "cpu", "--out", str(tmp_path / "out"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("ncbench: error:") and needle in err and err.count("\n") == 1 and "Traceback" not in err
    assert not list((tmp_path / "out").rglob("results.csv"))


def test_random_init_run_says_random_explains_its_nans_and_draws_its_figure(tmp_path, one_thread):
    """7 test images per class < 1 shot + 15 queries: the few-shot numbers are NaN with a reason that says
    what to change; the rows and the board say `random`; one figure per run; `layer` holds names."""
    import pandas as pd

    from ncbench.cli import main
    from ncbench.leaderboard import submit

    write_pngs(tmp_path / "imgs" / "train", per_class=10, size=(20, 20))
    write_pngs(tmp_path / "imgs" / "test", per_class=7, size=(20, 20), seed=1)
    rc = main(["run", "frozen_transfer", "--model", "test_resnet", "--dataset", f"imagefolder:{tmp_path / 'imgs'}",
               "--device", "cpu", "--out", str(tmp_path / "out"), "--no-progress", "--random-init"])
    assert rc == 0
    csv = next((tmp_path / "out").rglob("results.csv"))
    df = pd.read_csv(csv)
    df["status_reason"], df["layer"] = df.status_reason.fillna(""), df.layer.fillna("")
    assert set(df.pretrained) == {"random"} and set(df.status) == {"ok"}
    summ = df[df.split == "summary"].set_index("metric")
    nan = summ[summ.value.isna()]
    assert {"fewshot_ncc_acc_1shot", "fewshot_ncc_acc_5shot"} <= set(nan.index)
    assert (nan.status_reason != "").all(), nan.status_reason
    why = nan.loc["fewshot_ncc_acc_1shot", "status_reason"]
    assert "7 images" in why and "1 shot + 15 queries" in why and "options.fewshot.queries" in why
    assert (summ[summ.value.notna()].status_reason == "").all()          # reasons only where a value is missing
    layers = df[(df.split == "train") & (df.metric == "ncc_acc") & (df.layer != "")].layer.tolist()
    assert layers == ["layer1.0", "layer2.0", "layer3.0", "layer4.0", "pre_logits"]
    cfg = json.loads((csv.parent / "config.json").read_text())
    assert cfg["plots"] == ["frozen_transfer.png"] and (csv.parent / "frozen_transfer.png").stat().st_size > 10_000
    board_task = "frozen_digits_unseen"            # a frozen board, for its `pretrained` column
    spec_dir = tmp_path / "out2"
    rc = main(["run", board_task, "--device", "cpu", "--out", str(spec_dir), "--no-progress", "--random-init"])
    assert rc == 0
    submit(next(spec_dir.iterdir()), tmp_path / "boards")
    board = pd.read_csv(tmp_path / "boards" / f"{board_task}.csv", dtype=str, keep_default_na=False)
    assert board.pretrained.tolist() == ["random"]


def test_every_nan_headline_value_has_a_reason():
    from ncbench.tasks.frozen_transfer import collapse_reasons, fewshot_reason, nan_reason

    labels = torch.tensor([0] * 7 + [1] * 3 + [2] * 9)
    why = fewshot_reason(labels, 3, 5, 15, "every class needs k_shot + n_query = 20 samples; class (count): 1 (3)")
    assert "3 images in its smallest class" in why and "5 shot + 15 queries = 20" in why
    assert "at least 2 classes" in fewshot_reason(torch.tensor([0, 0, 0]), 1, 1, 1, "")
    reasons = collapse_reasons({"ncc_depth": math.nan, "nc1": math.nan, "cdnv": 0.1}, {"train": 3, "test": 0}, 1, 0.01)
    assert "epsilon = 0.01" in reasons["ncc_depth"] and "nc1" in reasons["nc1"] and "cdnv" not in reasons
    assert "at least 2" in nan_reason("probe_acc", reasons)                   # the run-wide reason
    assert nan_reason("logme", {}) != ""                                       # never empty


def test_the_figure_averages_a_seed_group_and_keeps_the_layer_order(tmp_path):
    import pandas as pd
    import scipy.stats as st

    from ncbench.plots.frozen_transfer import _accuracies, _per_layer, plot
    from ncbench.tasks.base import TaskOutput
    from ncbench.tasks.frozen_transfer import FrozenTransferMeta, Preprocessing

    names = ["stem", "blocks.0", "blocks.10", "blocks.2", "pre_logits"]          # not alphabetical
    rows = []
    for seed, shift in ((0, 0.0), (1, 0.1), (2, 0.05)):
        for i, name in enumerate(names):
            for split in ("train", "test"):
                rows += [{"split": split, "layer": name, "metric": "ncc_acc", "value": 0.5 + 0.1 * i - shift, "seed": seed,
                          "variant": ""},
                         {"split": split, "layer": name, "metric": "cdnv", "value": 2.0 / (i + 1), "seed": seed, "variant": ""}]
        rows += [{"split": "summary", "layer": None, "metric": m, "value": v, "seed": seed, "variant": "",
                  "status_reason": r}
                 for m, v, r in (("probe_acc", 0.8 + shift, ""), ("ncc_depth", 3.0, ""), ("epsilon", 0.01, ""),
                                 ("fewshot_ncc_acc_1shot", math.nan, "too few test images"))]
    got_names, tab = _per_layer(pd.DataFrame(rows))
    assert got_names == names
    assert tab.loc[("train", "ncc_acc")].tolist() == pytest.approx([0.5 + 0.1 * i - 0.05 for i in range(5)])
    acc = _accuracies(pd.DataFrame(rows).query("split == 'summary'")).set_index("metric")
    probe = [0.8, 0.9, 0.85]
    half = st.t.ppf(0.975, 2) * np.std(probe, ddof=1) / np.sqrt(3)
    assert acc.loc["probe_acc", "mean"] == pytest.approx(np.mean(probe)) and acc.loc["probe_acc", "error"] == pytest.approx(half)
    assert math.isnan(acc.loc["fewshot_ncc_acc_1shot", "mean"]) and acc.loc["fewshot_ncc_acc_1shot", "reason"] == "too few test images"
    spec = small_spec()
    meta = FrozenTransferMeta(Preprocessing([3, 16, 16], "bilinear", [0.5] * 3, [0.5] * 3, 1.0, "center"), names,
                              "blocks", 3, ["a", "b", "c"], "random init", {})
    [path] = plot(TaskOutput(rows, meta=meta), spec, tmp_path)
    assert path.name == "frozen_transfer.png" and path.stat().st_size > 10_000
