"""Trustworthy runs (issue 13, items 1-3, 7, 8, 10, 12): resume through the CLI stack with the
shipped cosine recipe, no code execution from run folders, cache keys that follow the code and the
checkpoint's bytes, `--force` retrains, fail-fast checks, network only with `--download`, identical
values for identical commands, and runs named after what ran."""
from __future__ import annotations

import json
import os
import pickle

import pandas as pd
import pytest
import torch

from ncbench.cli import main
from ncbench.runner.suite import run_tasks
from ncbench.tasks import TaskSpec
from ncbench.training import trajectory as trajectory_module

COSINE = {"protocol": "cpu-mnist5k", "epochs": 3, "batch_size": 256, "eval_every": 1}


def spec(name="t", **kw) -> TaskSpec:
    return TaskSpec(name=name, kind="train_collapse", version=1,
                    **{"dataset": "digits", "model": "test_resnet", "seed": 0, "recipe": COSINE, **kw})


def quiet(*a, **k):
    return run_tasks(*a, progress=False, log=lambda m: None, **k)


class Poison:
    """Unpickling this writes a marker file: proof that a load executed code."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


# -- item 1 and 10: resume with the shipped cosine schedule; same command, same bytes ----------------
def test_interrupted_cosine_run_resumes_to_the_same_values_at_any_epoch(tmp_path, interrupt_after, one_thread):
    _, fresh = quiet("t", [spec()], tmp_path / "fresh")
    reference = pd.read_csv(fresh[0].csv)
    for done in (1, 2):
        out = tmp_path / f"cut{done}"
        interrupt_after(done)
        with pytest.raises(KeyboardInterrupt):
            quiet("t", [spec()], out)
        interrupt_after(None)
        _, resumed = quiet("t", [spec()], out)
        got = pd.read_csv(resumed[0].csv)
        assert len(got) == len(reference) > 50
        assert got.value.map(repr).tolist() == reference.value.map(repr).tolist(), f"resumed after epoch {done}"


def test_same_command_twice_gives_byte_identical_values(tmp_path, one_thread):
    _, a = quiet("t", [spec()], tmp_path / "a")
    _, b = quiet("t", [spec()], tmp_path / "b")
    col = lambda r: [line.split(",")[list(pd.read_csv(r.csv, nrows=0).columns).index("value")]
                     for line in r.csv.read_text().splitlines()]
    assert col(a[0]) == col(b[0])
    df = pd.read_csv(a[0].csv)
    assert not df.metric.str.contains("seconds").any(), "timings belong to provenance, not values"
    cfg = json.loads((a[0].dir / "config.json").read_text())
    assert cfg["training"][0]["train_seconds"] > 0 and cfg["training"][0]["code_fingerprint"]


# -- item 2: nothing read from a run folder is unpickled with code execution -------------------------
def test_poisoned_run_folder_files_never_execute(tmp_path, one_thread):
    run_dir, _ = quiet("t", [spec()], tmp_path)
    traj_dir = next((run_dir / "_trajectories").iterdir())
    assert (traj_dir / "record.json").exists() and not list(traj_dir.glob(".*tmp*"))
    assert not (traj_dir / "record.pt").exists()
    marker = tmp_path / "executed"
    # a poisoned checkpoint (and no record): it must not be unpickled, the run trains again
    (traj_dir / "record.json").unlink()
    torch.save({"model": Poison(marker), "optimizer": {}, "epoch": 1, "records": []}, traj_dir / "checkpoint.pt")
    _, again = quiet("t", [spec("t2")], tmp_path, run_id=run_dir.name)   # same training, a task not done yet
    assert [r.outcome for r in again] == ["done"] and not marker.exists()
    assert (traj_dir / "record.json").exists(), "the untrusted checkpoint was replaced by a new training"
    # a poisoned record.json / safetensors pair: unreadable, recomputed
    (traj_dir / "record.safetensors").write_bytes(pickle.dumps(Poison(marker)))
    from ncbench.training.record_store import RecordError, load_record
    with pytest.raises(RecordError):
        load_record(traj_dir)
    assert not marker.exists()
    # a poisoned feature-cache entry
    from ncbench.training.feature_cache import FeatureCache, FeatureKey
    cache = FeatureCache(tmp_path / "features")
    key = FeatureKey("m", "w", "digits", "train")
    cache.root.mkdir()
    torch.save({"key": Poison(marker)}, cache.path(key))
    with pytest.warns(UserWarning, match="unreadable"):
        assert cache.load(key) is None
    assert not marker.exists()
    # a poisoned final-weights file read by a task after the run
    torch.save(Poison(marker), traj_dir / "model_final.pt")
    from ncbench.training.recipe import Recipe
    traj = trajectory_module.Trajectory(trajectory_module.TrajectoryConfig("digits", "test_resnet",
                                                                           Recipe.from_dict(COSINE)), tmp_path)
    traj.dir = traj_dir
    traj.load_final_model()            # refused in one line, trained again (issue 23 item 6), never unpickled
    assert not marker.exists()
    assert isinstance(torch.load(traj_dir / "model_final.pt", weights_only=True), dict)


def test_record_round_trips_with_nan_inf_and_tensors(tmp_path):
    from ncbench.training.evaluation import SplitEval
    from ncbench.training.record_store import load_record, save_record
    from ncbench.training.trajectory import EpochRecord, TrajectoryRecord

    ev = SplitEval(0.5, 1.0, 10, {"nc1": float("nan"), "cdnv": float("inf")}, {"x": -float("inf")},
                   torch.arange(4.0).view(2, 2), {"e": 1.0})
    rec = TrajectoryRecord({"a": 1}, [EpochRecord(1, 0.1, 0.2, 0.3, ev, None, {"p": {"l": [1.0, 2.0]}})], [5, 5], 1.5,
                           {"git_hash": "abc"})
    save_record(rec, tmp_path)
    back = load_record(tmp_path)
    e = back.epochs[0]
    assert torch.equal(e.train.cdnv_matrix, ev.cdnv_matrix) and e.test is None
    assert e.train.collapse["cdnv"] == float("inf") and e.train.collapse["nc1"] != e.train.collapse["nc1"]
    assert e.train.diagnostics["x"] == -float("inf") and e.probes == {"p": {"l": [1.0, 2.0]}}
    assert back.trained_by == {"git_hash": "abc"} and back.class_counts == [5, 5]


# -- item 3: the cache key follows the checkpoint's bytes and the code; --force retrains ------------
def test_force_retrains_and_keeps_trainer_provenance(tmp_path, monkeypatch, one_thread):
    calls = []
    original = trajectory_module.Trainer.fit
    monkeypatch.setattr(trajectory_module.Trainer, "fit", lambda self, *a, **k: calls.append(1) or original(self, *a, **k))
    specs = [spec("a"), spec("b").__class__(**{**spec("b").to_dict(), "kind": "test_collapse"})]
    quiet("t", specs, tmp_path)
    assert len(calls) == 1
    quiet("t", specs, tmp_path, force=True)
    assert len(calls) == 2, "--force must train again (once for both tasks)"
    cfg = json.loads((tmp_path / os.listdir(tmp_path)[0] / "a" / "config.json").read_text())
    trained, measured = cfg["training"][0], cfg["provenance"]
    assert {"git_hash", "torch_version", "started_at", "finished_at", "world_size"} <= set(trained)
    assert trained["trajectory"] and "started_at" in measured


def test_cache_key_follows_checkpoint_content_and_code(tmp_path, monkeypatch):
    from ncbench.training import cache_key
    from ncbench.training.recipe import Recipe
    from ncbench.training.trajectory import TrajectoryConfig

    ck = tmp_path / "w.pt"
    torch.save({"a": torch.zeros(2)}, ck)
    cfg = TrajectoryConfig("digits", "test_resnet", Recipe(), checkpoint=str(ck))
    k1 = cfg.key()
    torch.save({"a": torch.ones(2)}, ck)          # replaced in place: same path, other weights
    os.utime(ck, ns=(1, 1))
    assert cfg.key() != k1
    copy = tmp_path / "elsewhere.pt"
    copy.write_bytes(ck.read_bytes())            # same bytes under another path: the same run
    assert TrajectoryConfig("digits", "test_resnet", Recipe(), checkpoint=str(copy)).key() == cfg.key()
    base = TrajectoryConfig("digits", "test_resnet", Recipe()).key()
    monkeypatch.setattr(cache_key, "code_fingerprint", lambda: "other-code")
    monkeypatch.setattr(trajectory_module, "code_fingerprint", lambda: "other-code")
    assert TrajectoryConfig("digits", "test_resnet", Recipe()).key() != base
    assert TrajectoryConfig("digits", "test_resnet", Recipe(), data_dir="/x", download=True).key() == \
        TrajectoryConfig("digits", "test_resnet", Recipe()).key(), "paths and permissions are not identity"


# -- item 7: fail before any work ----------------------------------------------------------------
@pytest.mark.parametrize("extra, needle", [
    (["--device", "tpu"], "unknown device 'tpu'"),
    (["--seed", "-1"], "seed must be an integer in [0,"),
    (["--seed", str(2**40)], "seed must be an integer in [0,"),
    (["--pretrained", "nosuchtag", "--model", "resnet18"], "unknown pretrained tag 'nosuchtag'"),
    (["--pretrained", "a1_in1", "--model", "resnet18"], "did you mean a1_in1k"),
    (["--pretrained", "a1_in1k", "--model", "resnet18"], "not on this machine"),
])
def test_bad_run_inputs_fail_before_any_work(extra, needle, capsys, monkeypatch, tmp_path):
    from ncbench import data

    monkeypatch.setattr(data.registry, "load_dataset", lambda *a, **k: pytest.fail("data loaded before the check"))
    code = main(["run", "train_collapse_mnist5k", "--out", str(tmp_path), "--no-progress", *extra])
    err = capsys.readouterr().err
    assert code == 2 and needle in err and "Traceback" not in err
    assert not any(tmp_path.iterdir()), "nothing may be written for a rejected run"


def test_cuda_without_a_gpu_and_bad_checkpoints_fail_fast(tmp_path, capsys):
    if not torch.cuda.is_available():
        assert main(["run", "train_collapse_mnist5k", "--device", "cuda", "--out", str(tmp_path)]) == 2
        assert "no CUDA device is available" in capsys.readouterr().err
    marker = tmp_path / "executed"
    bad = tmp_path / "evil.pt"
    torch.save({"w": Poison(marker)}, bad)
    torn = tmp_path / "torn.pt"
    torn.write_bytes(b"\x80\x02garbage")
    unreadable = tmp_path / "locked.pt"
    torch.save({"w": torch.zeros(1)}, unreadable)
    unreadable.chmod(0)
    cases = [(bad, "could not load the checkpoint"), (torn, "could not load the checkpoint"),
             (tmp_path / "missing.pt", "does not exist"), (tmp_path, "is not a file")]
    if os.geteuid() != 0:   # root reads any file
        cases.append((unreadable, "not readable"))
    for path, needle in cases:
        assert main(["run", "train_collapse_mnist5k", "--checkpoint", str(path), "--out", str(tmp_path / "o")]) == 2
        assert needle in capsys.readouterr().err, path
    assert not marker.exists() and not (tmp_path / "o").exists()


# -- item 8 and 12: --download reaches the data loading; the tag reaches timm; runs named as run ------
def test_download_flag_reaches_the_training_data_loader(tmp_path, monkeypatch):
    from ncbench.training.recipe import Recipe
    from ncbench.training.trajectory import TrajectoryConfig, load_splits

    seen = []
    monkeypatch.setattr(trajectory_module, "load_dataset", lambda name, split, d, dl: seen.append(dl) or
                        __import__("ncbench.data", fromlist=["load_dataset"]).load_dataset(name, split, d))
    load_splits(TrajectoryConfig("digits", "test_resnet", Recipe(), download=True))
    assert seen == [True, True]
    from ncbench.specs import load_task
    from ncbench.tasks.trajectory_task import TrajectoryTask
    s = load_task("train_collapse_mnist5k", download=True)
    assert TrajectoryTask(s).trajectory_config().download is True


def _fake_hub_cache(root, repo: str, state: dict) -> None:
    from safetensors.torch import save_file

    d = root / f"models--{repo.replace('/', '--')}"
    (d / "refs").mkdir(parents=True)
    (d / "refs" / "main").write_text("0" * 40)
    snap = d / "snapshots" / ("0" * 40)
    snap.mkdir(parents=True)
    save_file({k: v.contiguous() for k, v in state.items()}, str(snap / "model.safetensors"))


def test_pretrained_tag_reaches_timm_from_the_local_cache(tmp_path, monkeypatch):
    import huggingface_hub.constants as hf
    import timm

    from ncbench.models.backbone import build_backbone
    from ncbench.models.pretrained import resolve_weights

    torch.manual_seed(7)
    reference = timm.create_model("test_resnet", num_classes=1000)
    _fake_hub_cache(tmp_path, "timm/test_resnet.r160_in1k", reference.state_dict())
    monkeypatch.setattr(hf, "HF_HUB_CACHE", str(tmp_path))
    w = resolve_weights("test_resnet", "r160_in1k")
    assert w.name == "test_resnet.r160_in1k" and w.file and w.file.endswith("model.safetensors")
    assert resolve_weights("test_resnet", True).tag == "r160_in1k"     # timm's default tag, recorded as such
    model = build_backbone("test_resnet", 3, 3, pretrained="r160_in1k")
    assert model.pretrained == "r160_in1k"
    body = model.body.state_dict()
    for k, v in reference.state_dict().items():
        if not k.startswith("fc."):
            assert torch.equal(body[k], v), k
    monkeypatch.setattr(hf, "HF_HUB_CACHE", str(tmp_path / "empty"))
    with pytest.raises(ValueError, match="not on this machine.*--download"):
        build_backbone("test_resnet", 3, 3, pretrained="r160_in1k")
    assert resolve_weights("test_resnet", "r160_in1k", download=True).file is None   # timm fetches it


def test_checkpoint_replaced_in_place_is_not_skipped(tmp_path, one_thread):
    import timm

    from ncbench.core.identity import weights_identity

    ck = tmp_path / "w.pth"
    torch.manual_seed(0)
    torch.save(timm.create_model("test_resnet", num_classes=0, in_chans=1).state_dict(), ck)
    s = spec(checkpoint=str(ck), recipe={**COSINE, "epochs": 1})
    first, hash1 = weights_identity(s.checkpoint, s.pretrained), s.config_hash()
    _, runs = quiet("t", [s], tmp_path / "out", run_id="r")
    assert [r.outcome for r in runs] == ["done"]
    torch.manual_seed(1)
    torch.save(timm.create_model("test_resnet", num_classes=0, in_chans=1).state_dict(), ck)   # same path
    os.utime(ck, ns=(5, 5))
    assert first.startswith("sha256:") and weights_identity(s.checkpoint, s.pretrained) != first and s.config_hash() != hash1
    _, again = quiet("t", [s], tmp_path / "out", run_id="r")
    assert [r.outcome for r in again] == ["done"], "other weights under the same path must be measured again"
    assert pd.read_csv(again[0].csv).pretrained.iloc[0] == weights_identity(s.checkpoint, s.pretrained)


def test_runs_are_named_and_hashed_as_what_ran(monkeypatch):
    from ncbench.specs import load_task

    plain = load_task("train_collapse_mnist5k")
    assert plain.name == "train_collapse_mnist5k"
    assert load_task("train_collapse_mnist5k", model="resnet18").name == "train_collapse_mnist5k"
    other = load_task("train_collapse_mnist5k", dataset="digits")
    assert other.name == "train_collapse_mnist5k@dataset=digits" and other.config_hash() != plain.config_hash()
    folder = load_task("train_collapse_mnist5k", dataset="imagefolder:/data/my pets")
    assert folder.name.startswith("train_collapse_mnist5k@dataset=imagefolder-my-pets-")
    from ncbench.results.names import check_name
    check_name("task", folder.name)
    assert load_task("frozen_transfer", dataset="digits").name == "frozen_transfer"   # any data set, by design
    ddp = load_task("train_collapse_mnist5k", world_size=2)
    assert ddp.name == "train_collapse_mnist5k@world=2" and ddp.config_hash() != plain.config_hash()
    from ncbench.tasks.trajectory_task import TrajectoryTask
    assert TrajectoryTask(ddp).trajectory_config().key() != TrajectoryTask(plain).trajectory_config().key()
    tagged = load_task("train_collapse_mnist5k", pretrained="r160_in1k")
    assert tagged.name == plain.name and tagged.config_hash() != plain.config_hash()   # weights: a board column
    from ncbench.cli import _overrides, build_parser
    monkeypatch.setenv("WORLD_SIZE", "2")
    args = build_parser().parse_args(["run", "x", "--pretrained", "false", "--device", "cpu"])
    assert _overrides(args)["world_size"] == 2 and _overrides(args)["pretrained"] is False


def test_submit_refuses_a_run_on_another_dataset(tmp_path, one_thread):
    """Item 12: `--dataset digits` on an mnist5k task is stored as `…@dataset=digits`, and no board takes it."""
    from ncbench import leaderboard as lb
    from ncbench.specs import load_task

    s = load_task("train_collapse_mnist5k", dataset="digits")
    s.recipe = {"protocol": "cpu-mnist5k", "epochs": 1}
    run_dir, runs = quiet("t", [s], tmp_path / "out")
    assert runs[0].dir.name == "train_collapse_mnist5k@dataset=digits" and runs[0].outcome == "done"
    with pytest.raises(lb.SubmissionRefused, match="this board is for mnist5k: the run measured digits"):
        lb.submit(run_dir, tmp_path / "boards")
    assert not (tmp_path / "boards").exists() or not list((tmp_path / "boards").glob("*.csv"))
