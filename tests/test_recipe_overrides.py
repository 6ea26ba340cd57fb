"""`--recipe NAME` and `--set KEY=VALUE` (issue 26 item 3): typed, did-you-mean, before any work,
recorded in config.json, and part of the run's identity; no flag leaves every identity as it was."""
from __future__ import annotations

import json

import pytest

from ncbench.cli import main
from ncbench.registry import UnknownNameError
from ncbench.runner.preflight import check_spec
from ncbench.specs import load_suite, load_task
from ncbench.specs.overrides import parse_set
from ncbench.tasks import TASK_KINDS
from ncbench.training.recipe import Recipe, protocol


@pytest.mark.parametrize("text, key, value", [
    ("recipe.lr=1e-3", "recipe.lr", 0.001),            # YAML 1.1 reads 1e-3 as text: the number it spells
    ("recipe.optimizer=adamw", "recipe.optimizer", "adamw"),
    ("options.baselines=false", "options.baselines", False),
    ("model_kwargs.img_size=28", "options.model_kwargs.img_size", 28),
    ("recipe.milestones=[0.5, 0.75]", "recipe.milestones", [0.5, 0.75]),
])
def test_set_values_are_read_as_yaml(text, key, value):
    got = parse_set(text)
    assert got == (key, value) and type(got[1]) is type(value)


@pytest.mark.parametrize("text, needle", [
    ("lr", "write KEY=VALUE"), ("=3", "write KEY=VALUE"), ("recipe..lr=1", "write KEY=VALUE"),
    ("name=x", "`name` names the task"), ("version=9", "`version` names the task"),
    ("recipe.lr=[1, 2", "not valid YAML"),
])
def test_bad_set_is_one_line(text, needle):
    with pytest.raises(ValueError, match=needle) as e:
        parse_set(text)
    assert "\n" not in str(e.value)


def test_recipe_and_sets_change_the_spec_its_name_and_its_hash():
    plain = load_task("train_collapse_mnist5k")
    spec = load_task("train_collapse_mnist5k", recipe="vit-adamw",
                     sets=[parse_set("recipe.lr=1e-3"), parse_set("options.baselines=false")])
    assert spec.recipe == {"protocol": "vit-adamw", "lr": 0.001} and spec.options["baselines"] is False
    assert Recipe.from_dict(spec.recipe) == Recipe(**{**protocol("vit-adamw").to_dict(), "lr": 0.001})
    assert spec.name == "train_collapse_mnist5k@recipe=vit-adamw,recipe.lr=0.001,baselines=false"
    assert spec.config_hash() != plain.config_hash()
    assert spec.overrides == {"recipe": "vit-adamw", "set": {"recipe.lr": 0.001, "options.baselines": False}}
    # the spec's own recipe named again, or no flag at all: the same name and hash as before
    same = load_task("train_collapse_mnist5k", recipe="cpu-mnist5k")
    assert same.name == plain.name and same.config_hash() == plain.config_hash()
    assert load_task("train_collapse_mnist5k", recipe=None, sets=[]).to_dict() == plain.to_dict()


def test_the_model_seed_and_data_set_keep_the_name_rules_of_their_flags():
    spec = load_task("train_collapse_mnist5k", sets=[parse_set("model=resnet18"), parse_set("seed=3"),
                                                     parse_set("dataset=digits")])
    assert (spec.model, spec.seed) == ("resnet18", 3) and spec.name == "train_collapse_mnist5k@dataset=digits"


def test_a_long_set_list_names_the_run_by_a_hash():
    sets = [parse_set(f"recipe.{k}=0.25") for k in ("lr", "momentum", "weight_decay", "gamma", "label_smoothing",
                                                     "mixup_alpha")] + [parse_set("recipe.betas=[0.5, 0.25]")]
    name = load_task("train_collapse_mnist5k", sets=sets).name
    assert len(name) <= 128 and name.startswith("train_collapse_mnist5k@set=h")


def test_bad_values_and_unknown_keys_fail_in_the_checks_before_any_work():
    with pytest.raises(ValueError, match="recipe.lr must be a finite number, got 'abc'"):
        check_spec(load_task("train_collapse_mnist5k", sets=[parse_set("recipe.lr=abc")]))
    with pytest.raises(ValueError, match=r"unknown recipe keys: lrr \(did you mean lr\?\)"):
        check_spec(load_task("train_collapse_mnist5k", sets=[parse_set("recipe.lrr=1")]))
    with pytest.raises(ValueError, match="unknown recipe 'vit-adam'. Did you mean: vit-adamw"):
        check_spec(load_task("train_collapse_mnist5k", recipe="vit-adam"))
    spec = load_task("train_collapse_mnist5k", sets=[parse_set("options.baselnes=false")])
    with pytest.raises(ValueError, match=r"unknown options baselnes \(did you mean baselines\?\)"):
        TASK_KINDS.get(spec.kind)(spec)
    with pytest.raises(ValueError, match="min_train_accuracy must be a finite number or null, got 'high'"):
        load_task("train_collapse_mnist5k", sets=[parse_set("min_train_accuracy=high")])
    with pytest.raises(UnknownNameError):
        protocol("nope")


def test_suite_flags_apply_to_every_task():
    _, specs = load_suite("default", recipe="papyan2020")
    assert all(s.name.endswith("@recipe=papyan2020") and s.recipe == {"protocol": "papyan2020"} for s in specs)


def test_cli_run_records_recipe_and_sets_in_config_json(tmp_path, capsys):
    spec = tmp_path / "tiny.yaml"
    spec.write_text("name: tiny\nkind: train_collapse\nversion: 1\ndataset: digits\nmodel: test_resnet\n"
                    "recipe: {epochs: 1, batch_size: 256}\n")
    out = tmp_path / "out"
    assert main(["run", str(spec), "--out", str(out), "--no-progress", "--device", "cpu", "--recipe", "vit-adamw",
                 "--set", "recipe.epochs=1", "--set", "recipe.batch_size=256", "--set", "options.baselines=false"]) in (0, 1)
    (cfg_path,) = out.glob("*/tiny@*/config.json")
    assert cfg_path.parent.name == "tiny@recipe=vit-adamw,recipe.epochs=1,recipe.batch_size=256,baselines=false"
    cfg = json.loads(cfg_path.read_text())
    assert cfg["spec"]["overrides"] == {"recipe": "vit-adamw", "set": {"recipe.epochs": 1, "recipe.batch_size": 256,
                                                                       "options.baselines": False}}
    assert cfg["spec"]["recipe"] == {"protocol": "vit-adamw", "epochs": 1, "batch_size": 256}
    (record,) = out.glob("*/_trajectories/*/record.json")   # what was trained: the named recipe, then the sets
    trained = json.loads(record.read_text())["record"]["config"]["recipe"]
    assert trained == {**protocol("vit-adamw").to_dict(), "epochs": 1, "batch_size": 256,
                       "betas": [0.9, 0.999], "milestones": list(protocol("vit-adamw").milestones)}


def test_cli_bad_set_exits_2_before_any_work(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["run", "train_collapse_mnist5k", "--out", str(out), "--set", "recipe.lr=abc"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "recipe.lr must be a finite number, got 'abc'" in err and not out.exists()
