"""The Python API (`ncbench.run`) against the CLI on the same runner, in-memory models and data named
by content, `--json` on stdout, and the exit status of a run left at chance."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

import ncbench
from ncbench.cli import main

TINY = {"name": "tiny_train", "kind": "train_collapse", "version": 1, "dataset": "digits", "model": "test_resnet",
        "seed": 0, "options": {"baselines": False},
        "recipe": {"epochs": 2, "batch_size": 128, "lr": 0.05, "schedule": "cosine", "weight_decay": 5e-3}}


def tiny_spec(tmp_path: Path, **changes) -> str:
    path = tmp_path / f"{changes.get('name', TINY['name'])}.yaml"
    path.write_text(yaml.safe_dump({**TINY, **changes}), encoding="utf-8")
    return str(path)


def values(csv: Path) -> pd.DataFrame:
    """The measured columns of a results.csv as written (strings: bit-for-bit comparison)."""
    df = pd.read_csv(csv, dtype=str, keep_default_na=False)
    return df[["split", "epoch", "layer", "variant", "metric", "value", "n_samples"]]


def cli(argv: list[str]) -> int:
    return main([*argv, "--device", "cpu", "--no-progress", "--threads", "1"])


def test_the_api_and_the_cli_give_the_same_numbers_bit_for_bit(tmp_path, one_thread):
    spec = tiny_spec(tmp_path)
    assert cli(["run", spec, "--epochs", "1", "--out", str(tmp_path / "cli")]) == 0
    res = ncbench.run(spec, epochs=1, out=tmp_path / "api", device="cpu", progress=False)
    [cli_run] = [p for p in (tmp_path / "cli").iterdir() if p.is_dir()]
    assert res.ok and res.run_dir.name == cli_run.name          # same spec, same config hash, same run id
    [task] = res.tasks
    pd.testing.assert_frame_equal(values(task.results_csv), values(cli_run / "tiny_train" / "results.csv"))
    assert set(res.results.epoch.dropna()) == {1}
    summary = res.results[res.results.split == "summary"]
    pd.testing.assert_series_equal(res.summary.value, pd.Series(summary.value.to_numpy(), name="value"))
    assert list(res.summary.metric) == [str(m) for m in summary.metric]
    assert task.results_csv in task.files and all(f.exists() for f in task.files)


def test_a_dataset_pair_gives_the_values_of_the_registered_set_and_is_named_by_content(tmp_path, one_thread):
    from ncbench.data import load_dataset

    spec = tiny_spec(tmp_path)
    named = ncbench.run(spec, data="digits", epochs=1, out=tmp_path, device="cpu", progress=False)
    train, test = load_dataset("digits", "train"), load_dataset("digits", "test")
    pair = ncbench.run(spec, data=(train, test), epochs=1, out=tmp_path, device="cpu", progress=False)
    assert pair.ok
    pd.testing.assert_frame_equal(values(pair.tasks[0].results_csv), values(named.tasks[0].results_csv))
    [dataset] = set(pair.results.dataset)
    assert dataset.startswith("tensors:") and pair.tasks[0].task == f"tiny_train@dataset={dataset.replace(':', '-')}"
    changed = test.subset(torch.arange(len(test) - 1))         # one test image fewer: another data set
    again = ncbench.run(spec, data=(train, changed), epochs=1, out=tmp_path, device="cpu", progress=False)
    assert set(again.results.dataset) != {dataset}


def test_an_in_memory_module_is_trained_on_a_copy_and_named_by_its_weights(tmp_path, one_thread):
    import timm

    spec = tiny_spec(tmp_path)
    torch.manual_seed(3)
    net = timm.create_model("test_resnet", num_classes=0, in_chans=1)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    res = ncbench.run(spec, model=net, epochs=1, out=tmp_path, device="cpu", progress=False)
    assert res.tasks[0].status == "done", res.tasks
    [model] = set(res.results.model)
    assert model.startswith("module:ResNet-")
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())   # the caller's module untouched
    cfg = json.loads((res.tasks[0].dir / "config.json").read_text())
    assert cfg["spec"]["model"] == model
    again = ncbench.run(spec, model=net, epochs=1, out=tmp_path, device="cpu", progress=False)
    assert again.tasks[0].status == "skipped"                   # same weights: the same run, found again
    with torch.no_grad():
        next(net.parameters()).view(-1)[0] += 1e-3
    other = ncbench.run(spec, model=net, epochs=1, out=tmp_path, device="cpu", progress=False)
    assert other.tasks[0].status == "done" and set(other.results.model) != {model}


def test_a_plain_module_gets_its_feature_width_from_a_forward_pass(tmp_path, one_thread):
    from torch import nn

    spec = tiny_spec(tmp_path)
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    res = ncbench.run(spec, model=net, epochs=2, recipe={"lr": 0.1}, out=tmp_path, device="cpu", progress=False)
    assert res.tasks[0].status == "done"
    W = res.results[(res.results.split == "summary") & (res.results.metric == "test_accuracy")]
    assert len(W) == 1
    trajectory = next((tmp_path).glob("*/_trajectories/*/model_final.pt"))
    state = torch.load(trajectory, weights_only=True)
    assert state["head.weight"].shape == (10, 16)                  # ncbench's head on the 16 features


def test_a_module_measured_frozen_gives_the_numbers_of_its_checkpoint_through_the_cli(tmp_path, one_thread):
    import timm

    torch.manual_seed(1)
    net = timm.create_model("test_resnet", num_classes=0, in_chans=1)
    ckpt = tmp_path / "body.pth"
    torch.save(net.state_dict(), ckpt)
    assert cli(["run", "frozen_digits_unseen", "--checkpoint", str(ckpt), "--out", str(tmp_path / "cli")]) == 0
    res = ncbench.run("frozen_digits_unseen", model=net, out=tmp_path / "api", device="cpu", progress=False)
    assert res.ok
    [cli_csv] = (tmp_path / "cli").glob("*/frozen_digits_unseen/results.csv")
    pd.testing.assert_frame_equal(values(res.tasks[0].results_csv), values(cli_csv))


def test_a_checkpoint_path_is_the_checkpoint_of_the_spec_architecture(tmp_path, one_thread):
    import timm

    torch.manual_seed(2)
    ckpt = tmp_path / "body.pth"
    torch.save(timm.create_model("test_resnet", num_classes=0, in_chans=1).state_dict(), ckpt)
    spec = tiny_spec(tmp_path)
    rc = cli(["run", spec, "--checkpoint", str(ckpt), "--epochs", "1", "--out", str(tmp_path / "cli")])
    res = ncbench.run(spec, model=ckpt, epochs=1, out=tmp_path / "api", device="cpu", progress=False)
    [cli_csv] = (tmp_path / "cli").glob("*/tiny_train/results.csv")
    pd.testing.assert_frame_equal(values(res.tasks[0].results_csv), values(cli_csv))
    written = pd.read_csv(cli_csv)
    assert set(res.results.pretrained) == set(written.pretrained) and set(written.pretrained).pop().startswith("sha256:")
    assert rc == (0 if res.ok else 1) and set(res.results.status) == set(written.status)   # same verdict too


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"model": 42}, "model must be a timm name, a checkpoint path or a torch.nn.Module, not int"),
    ({"data": ("only one",)}, "data must be a data set name"),
    ({"recipe": {"lrr": 0.1}}, "unknown recipe keys: lrr (did you mean lr?)"),
    ({"seeds": [0, 0]}, "distinct non-negative integers"),
    ({"model": "resnet1"}, "Did you mean: resnet18"),
    ({"data": "digitz"}, "Did you mean: digits"),
])
def test_bad_api_arguments_are_one_clear_error_before_any_work(tmp_path, kwargs, message):
    from ncbench.registry import UnknownNameError

    with pytest.raises((ValueError, UnknownNameError)) as e:
        ncbench.run(tiny_spec(tmp_path), out=tmp_path, progress=False, **kwargs)
    assert message in str(e.value) and "\n" not in str(e.value)
    assert not list(tmp_path.glob("*/suite.json"))


def test_a_bad_module_or_data_pair_is_one_clear_error(tmp_path):
    import timm
    from torch import nn

    spec = tiny_spec(tmp_path)
    with pytest.raises(ValueError, match=r"10-class classifier; pass the feature extractor"):
        ncbench.run(spec, model=timm.create_model("test_resnet", num_classes=10, in_chans=1), out=tmp_path)
    with pytest.raises(ValueError, match=r"not \(B, d\) features"):
        ncbench.run(spec, model=nn.Conv2d(1, 4, 3), out=tmp_path)
    with pytest.raises(ValueError, match=r"forward pass on two digits train images \(2, 1, 8, 8\) failed"):
        ncbench.run(spec, model=nn.Sequential(nn.Flatten(), nn.Linear(3, 4)), out=tmp_path)
    ragged = [(torch.zeros(1, 8, 8), 0), (torch.zeros(1, 9, 9), 1)]
    with pytest.raises(ValueError, match=r"the train set has images of several shapes"):
        ncbench.run(spec, data=(ragged, ragged), out=tmp_path)
    with pytest.raises(ValueError, match=r"item 0 of the train set is not an \(image, label\) pair"):
        ncbench.run(spec, data=([torch.zeros(1, 8, 8)], ragged), out=tmp_path)


def test_an_in_memory_name_outside_its_process_is_refused_with_the_way_to_run_it(tmp_path):
    rc = cli(["run", tiny_spec(tmp_path), "--model", "module:ResNet-0123456789abcdef"])
    assert rc == 2


def test_json_on_stdout_human_output_on_stderr(tmp_path, capsys, one_thread):
    spec = tiny_spec(tmp_path)
    assert cli(["run", spec, "--epochs", "1", "--out", str(tmp_path), "--json"]) == 0
    out, err = capsys.readouterr()
    doc = json.loads(out)                                   # one document, nothing else on stdout
    assert doc["ok"] is True and "result files:" in err and "headline metrics" in err
    [task] = doc["tasks"]
    csv = Path(task["results_csv"])
    assert task["status"] == "done" and task["run_status"] == "ok" and csv.exists()
    assert all(Path(f).exists() for f in task["files"]) and str(csv) in task["files"]
    written = pd.read_csv(csv)
    summary = written[written.split == "summary"].set_index("metric").value
    from_json = pd.Series({r["metric"]: r["value"] for r in doc["summary"]}, dtype=float, name="value")
    pd.testing.assert_series_equal(from_json, summary, check_names=False, check_index_type=False)
    assert any(r["value"] is None for r in doc["summary"])      # NaN is null (strict JSON), not NaN
    assert Path(doc["run_dir"]) == csv.parent.parent


def test_suite_json_lists_every_task(tmp_path, capsys, one_thread):
    suite = tmp_path / "mine.yaml"
    suite.write_text(yaml.safe_dump({"suite": "mine", "tasks": [{**TINY, "recipe": {**TINY["recipe"], "epochs": 1}},
                                                                "ufm_ce_balanced"]}), encoding="utf-8")
    assert cli(["suite", str(suite), "--out", str(tmp_path), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [t["task"] for t in doc["tasks"]] == ["tiny_train", "ufm_ce_balanced"]
    assert {r["task"] for r in doc["summary"]} == {"tiny_train", "ufm_ce_balanced"}


def test_a_run_left_at_chance_exits_non_zero(tmp_path, capsys, one_thread):
    spec = tiny_spec(tmp_path, recipe={**TINY["recipe"], "lr": 1e-12, "epochs": 1})   # never learns
    assert cli(["run", spec, "--out", str(tmp_path), "--json"]) == 1
    out, err = capsys.readouterr()
    doc = json.loads(out)
    assert doc["ok"] is False and doc["tasks"][0]["status"] == "done"
    assert doc["tasks"][0]["run_status"] == "failed" and "near chance" in doc["tasks"][0]["reason"]
    assert "did not do what their recipe meant" in err
    res = ncbench.run(spec, out=tmp_path, device="cpu", progress=False)
    assert not res.ok and res.tasks[0].status == "skipped"


def test_a_vit_at_the_wrong_image_size_gets_the_model_kwargs_hint(tmp_path, capsys, one_thread):
    spec = tiny_spec(tmp_path)
    assert cli(["run", spec, "--model", "test_vit", "--epochs", "1", "--out", str(tmp_path)]) == 1
    lines = [ln for ln in capsys.readouterr().out.splitlines() if "FAILED" in ln]
    assert len(lines) == 1 and "--model-kwargs img_size=8,patch_size=2" in lines[0]
    assert "Traceback" not in lines[0]
    cli(["run", spec, "--model", "test_vit", "--model-kwargs", "img_size=8,patch_size=2", "--epochs", "1",
         "--out", str(tmp_path), "--json"])
    [task] = json.loads(capsys.readouterr().out)["tasks"]
    assert task["status"] == "done" and task["results_csv"]     # the hinted command trains and measures


def test_seeds_make_a_group_through_the_api_as_through_the_cli(tmp_path, one_thread):
    assert cli(["run", "ufm_ce_balanced", "--seeds", "0,1", "--out", str(tmp_path / "cli")]) == 0
    res = ncbench.run("ufm_ce_balanced", seeds=[0, 1], out=tmp_path / "api", device="cpu", progress=False)
    assert res.ok and set(res.results.seed.dropna()) == {0, 1}
    [cli_csv] = (tmp_path / "cli").glob("*/ufm_ce_balanced/results.csv")
    pd.testing.assert_frame_equal(values(res.tasks[0].results_csv), values(cli_csv))
    assert (res.tasks[0].dir / "aggregate.csv") in res.tasks[0].files
