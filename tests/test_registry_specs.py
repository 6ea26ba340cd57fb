"""Registries, task specs and suites: errors name the problem and suggest close names."""
from __future__ import annotations

from dataclasses import replace

import pytest

from ncbench.models.pretrained import WeightsNotCachedError
from ncbench.registry import Registry, UnknownNameError
from ncbench.specs import load_suite, load_task, spec_dir, task_names
from ncbench.tasks import TASK_KINDS, Task, TaskSpec, register_task


def test_duplicate_registration_is_an_error():
    reg: Registry[int] = Registry("thing")
    reg.register("a")(1)
    with pytest.raises(ValueError, match="'a' is already registered"):
        reg.register("a")(2)


def test_duplicate_task_kind_is_an_error():
    with pytest.raises(ValueError, match="already registered"):
        @register_task("train_collapse")
        class Again(Task):
            pass


def test_unknown_name_suggests_close_names():
    reg: Registry[int] = Registry("dataset")
    for n in ("cifar10", "cifar100", "mnist"):
        reg.register(n)(0)
    with pytest.raises(UnknownNameError) as e:
        reg.get("cifar1")
    assert "Did you mean: cifar10, cifar100?" in str(e.value)
    with pytest.raises(UnknownNameError) as e:
        reg.get("zzz")
    assert "Did you mean" not in str(e.value) and "ncbench list datasets" in str(e.value)


def test_every_shipped_spec_loads_and_names_a_registered_kind():
    names = task_names()
    assert "train_collapse_mnist5k" in names
    for n in names:
        spec = load_task(n)
        assert spec.name == n and isinstance(spec.version, int)
        TASK_KINDS.get(spec.kind)
        try:
            TASK_KINDS.get(spec.kind)(spec)  # options validate against the kind
        except WeightsNotCachedError:        # validated; then stops at pretrained weights not on this machine
            assert spec.tier == "frozen", f"{n}: only frozen-transfer specs may need downloaded weights"
        except ValueError as e:              # a frozen spec names no weights: the run must pass them
            assert spec.kind == "frozen_transfer" and "no weights to measure" in str(e), (n, e)
            TASK_KINDS.get(spec.kind)(replace(spec, pretrained="random"))   # its options validate


def test_default_suite_lists_existing_tasks():
    name, specs = load_suite("default")
    assert name == "default" and len(specs) >= 3
    assert all(s.kind in TASK_KINDS for s in specs)


def test_unknown_task_spec_suggests():
    with pytest.raises(UnknownNameError, match="train_collapse_mnist5k"):
        load_task("train_colapse_mnist5k")


def test_spec_with_unknown_key_says_which(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("name: bad\nkind: train_collapse\nversion: 1\nrecipee: {}\n")
    with pytest.raises(ValueError, match=r"unknown keys recipee \(did you mean recipe\?\)"):
        load_task(str(p))


def test_spec_missing_version_is_refused(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("name: bad\nkind: train_collapse\n")
    with pytest.raises(ValueError, match="lacks version"):
        load_task(str(p))


def test_unknown_option_of_a_kind_is_refused():
    spec = TaskSpec(name="x", kind="train_collapse", version=1, options={"epsilon": 0.1})
    with pytest.raises(ValueError, match="unknown options"):
        TASK_KINDS.get("train_collapse")(spec)


def test_config_hash_ignores_paths_but_not_numbers():
    a = TaskSpec(name="x", kind="train_collapse", version=1, data_dir="/a")
    b = TaskSpec(name="x", kind="train_collapse", version=1, data_dir="/b")
    c = TaskSpec(name="x", kind="train_collapse", version=2)
    d = TaskSpec(name="x", kind="train_collapse", version=1, seed=1)
    assert a.config_hash() == b.config_hash()
    assert len({a.config_hash(), c.config_hash(), d.config_hash()}) == 3


def test_specs_come_from_the_top_level_tasks_folder_in_a_checkout():
    assert (spec_dir() / "default.yaml").is_file()
