"""Run identity in one module (`ncbench.core.identity`): the rules, and every identity of every
shipped spec unchanged from the code before the module (`tests/data/identity_head.json`)."""
from __future__ import annotations

import hashlib
import json
import subprocess
import sys

import pytest
from identity_snapshot import CHANGED_ON_PURPOSE, DATA, snapshot, without_boards

from ncbench.core import identity


def _sha1(obj, digits: int) -> str:
    text = obj if isinstance(obj, str) else json.dumps(obj, sort_keys=True, default=str)
    return hashlib.sha1(text.encode()).hexdigest()[:digits]


def test_every_identity_of_every_shipped_spec_is_unchanged(tmp_path):
    head = json.loads(DATA.read_text())
    now = json.loads(json.dumps(snapshot(tmp_path), default=str))
    # every spec and suite of the capture is still shipped (specs added since have no earlier identity)
    assert set(head["tasks"]) <= set(now["tasks"]) and set(head["suites"]) <= set(now["suites"])
    for section in ("tasks", "suites", "files"):
        for name, value in head[section].items():
            if f"{section}/{name}" in CHANGED_ON_PURPOSE:
                assert now[section][name] != value, f"{section}/{name} is listed as changed but is not"
                continue
            assert without_boards(now[section][name]) == without_boards(value), f"{section}/{name}"



def test_config_hash_is_the_sorted_json_without_runtime_fields_and_one_process():
    spec = {"name": "t", "kind": "k", "world_size": 1, "description": "words", "seed": 3}
    assert identity.config_hash(spec, ("description",)) == _sha1({"name": "t", "kind": "k", "seed": 3}, 12)
    assert identity.config_hash({**spec, "description": "other"}, ("description",)) == \
        identity.config_hash(spec, ("description",))
    two = {**spec, "world_size": 2}
    assert identity.config_hash(two, ("description",)) == _sha1({"name": "t", "kind": "k", "seed": 3, "world_size": 2}, 12)


def test_a_checkpoint_is_named_by_its_bytes_not_its_path(tmp_path):
    a, b = tmp_path / "a.pt", tmp_path / "b.pt"
    a.write_bytes(b"weights")
    b.write_bytes(b"weights")
    spec = {"name": "t", "checkpoint": str(a)}
    h = identity.config_hash(spec, ())
    assert h == _sha1({"name": "t", "checkpoint": "sha256:" + hashlib.sha256(b"weights").hexdigest()}, 12)
    assert identity.config_hash({"name": "t", "checkpoint": str(b)}, ()) == h
    missing = {"name": "t", "checkpoint": str(tmp_path / "gone.pt")}   # not on this machine: its path
    assert identity.config_hash(missing, ()) == _sha1(missing, 12)
    assert identity.weights_identity(str(a), False) == "sha256:" + hashlib.sha256(b"weights").hexdigest()[:16]
    assert [identity.weights_identity(None, p) for p in (False, True, "TRUE", "augreg", None)] == \
        ["", "true", "true", "augreg", ""]


def test_trajectory_key_drops_paths_one_process_and_true_labels(tmp_path):
    cfg = {"dataset": "d", "data_dir": "/x", "download": True, "world_size": 1, "random_labels": False,
           "checkpoint": None}
    assert identity.trajectory_key(cfg, "c0de") == _sha1({"dataset": "d", "checkpoint": None, "code": "c0de"}, 16)
    assert identity.trajectory_key({**cfg, "data_dir": "/y", "download": False}, "c0de") == \
        identity.trajectory_key(cfg, "c0de")
    shuffled = identity.trajectory_key({**cfg, "random_labels": True, "world_size": 4}, "c0de")
    assert shuffled == _sha1({"dataset": "d", "checkpoint": None, "random_labels": True, "world_size": 4,
                              "code": "c0de"}, 16)
    assert identity.trajectory_key(cfg, "other") != identity.trajectory_key(cfg, "c0de")
    ckpt = tmp_path / "w.pt"
    ckpt.write_bytes(b"abc")
    assert identity.trajectory_key({**cfg, "checkpoint": str(ckpt)}, "c0de") == \
        _sha1({"dataset": "d", "checkpoint": hashlib.sha256(b"abc").hexdigest(), "code": "c0de"}, 16)


def test_group_hash_and_run_id_follow_the_order_of_their_parts():
    assert identity.group_hash("aaa", ["b", "c"]) == _sha1("aaabc", 12)
    assert identity.group_hash("aaa", ["c", "b"]) != identity.group_hash("aaa", ["b", "c"])
    assert identity.run_id("default", ["x1", "y2"]) == "default-" + _sha1("x1y2", 8)


def test_run_name_says_each_difference_and_hashes_a_long_command_line():
    assert identity.run_name("t") == "t"
    assert identity.run_name("t", dataset_token="cifar10", world_size=2, changed=["recipe.lr=0.1"]) == \
        "t@dataset=cifar10,world=2,recipe.lr=0.1"
    long = ["options.x=" + "y" * 200]
    assert identity.run_name("t", changed=long) == "t@set=h" + _sha1(long[0], 8)
    fits = ["k=" + "v" * (identity.NAME_LIMIT - 5)]   # 1 + 1 + len + 1 + 0 = NAME_LIMIT
    assert identity.run_name("t", changed=fits) == "t@" + fits[0]
    assert identity.run_name("t", changed=["k=" + "v" * (identity.NAME_LIMIT - 4)]).startswith("t@set=h")


def test_identity_imports_no_torch():
    code = "import sys, ncbench.core.identity; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


@pytest.mark.parametrize("module", ["ncbench.specs.task_spec", "ncbench.specs.groups", "ncbench.runner.suite",
                                    "ncbench.runner.preflight", "ncbench.leaderboard.submit", "ncbench.training.trajectory",
                                    "ncbench.training.cache_key"])
def test_no_site_hashes_an_identity_itself(module):
    import importlib
    import inspect

    source = inspect.getsource(importlib.import_module(module))
    assert "hashlib.sha1" not in source and "world_size == 1" not in source and '["world_size"] == 1' not in source
