"""`include:` in specs (`ncbench.specs.includes`): the merge rule, its errors, and the shipped twins
loading exactly as they did when each was written out in full (`tests/data/identity_head.json`)."""
from __future__ import annotations

import json

import pytest
from identity_snapshot import CHANGED_ON_PURPOSE, DATA, without_boards

from ncbench.cli import main
from ncbench.specs import load_task
from ncbench.specs.includes import merge
from ncbench.specs.loading import _read_yaml, available, spec_dir

TWINS = {"train_collapse_cifar100": "train_collapse_cifar10.yaml", "test_collapse_cifar100": "test_collapse_cifar10.yaml",
         "cdnv_bound_cifar100": "cdnv_bound_cifar10.yaml",
         "minority_collapse_cifar100_lt": "minority_collapse_cifar10_lt.yaml",
         "minority_collapse_exp_mnist5k": "minority_collapse_mnist5k.yaml",
         "frozen_digits_unseen": "frozen_mnist5k_unseen.yaml",
         "transfer_ranking_digits_unseen": "transfer_ranking_mnist5k_unseen.yaml"}


def test_every_shipped_file_reads_as_it_did_written_out_in_full():
    head = json.loads(DATA.read_text())
    files = {p.name: json.loads(json.dumps(_read_yaml(p), default=str)) for p in available().values()}
    for name, before in head["files"].items():      # boards are metric lists since (identity_snapshot.py)
        if f"files/{name}" in CHANGED_ON_PURPOSE:
            assert files[name] != before, f"{name} is listed as changed but is not"
        else:
            assert without_boards(files[name]) == without_boards(before), name
    for name in head["tasks"]:
        spec = load_task(name).to_dict()
        assert without_boards({**json.loads(json.dumps(spec, default=str)), "source": f"{name}.yaml"}) == \
            without_boards({**head["tasks"][name]["spec"], "source": f"{name}.yaml"}), name


@pytest.mark.parametrize("name", sorted(TWINS))
def test_the_twins_use_include(name):
    text = (spec_dir() / f"{name}.yaml").read_text(encoding="utf-8")
    assert f"include: {TWINS[name]}\n" in text and len(text.splitlines()) < 20


def test_merge_deep_merges_mappings_replaces_lists_and_null_removes():
    base = {"a": 1, "m": {"x": 1, "y": {"p": 1, "q": 2}}, "l": [1, 2, 3], "gone": {"k": 1}}
    over = {"m": {"y": {"q": 5}, "z": 0}, "l": [9], "gone": None, "new": "s"}
    assert merge(base, over) == {"a": 1, "m": {"x": 1, "y": {"p": 1, "q": 5}, "z": 0}, "l": [9], "new": "s"}
    assert base["m"]["y"] == {"p": 1, "q": 2} and base["l"] == [1, 2, 3]   # neither argument changed
    assert list(merge({"b": 1, "a": 2}, {"a": 3, "c": 4})) == ["b", "a", "c"]   # the base's key order first
    assert merge({"m": [1]}, {"m": {"k": 1}}) == {"m": {"k": 1}} and merge({"m": {"k": 1}}, {"m": 3}) == {"m": 3}


def test_an_include_beside_the_file_wins_and_chains(tmp_path):
    (tmp_path / "a.yaml").write_text("name: a\nkind: train_collapse\nversion: 1\nrecipe: {epochs: 1, lr: 0.5}\n")
    (tmp_path / "b.yaml").write_text("include: a.yaml\nname: b\nrecipe: {epochs: 2}\n")
    (tmp_path / "c.yaml").write_text("include: b.yaml\nname: c\nseed: 4\n")
    spec = load_task(str(tmp_path / "c.yaml"))
    assert (spec.name, spec.seed, spec.recipe, spec.version) == ("c", 4, {"epochs": 2, "lr": 0.5}, 1)
    (tmp_path / "d.yaml").write_text("include: train_collapse_mnist5k.yaml\nname: d\nseed: 7\n")   # a shipped one
    d = load_task(str(tmp_path / "d.yaml"))
    assert d.to_dict() == {**load_task("train_collapse_mnist5k").to_dict(), "name": "d", "seed": 7, "source": d.source}


@pytest.mark.parametrize("text, words", [
    ("include: nowhere.yaml\n", "include: nowhere.yaml not found"),
    ("include: ../tasks/default.yaml\n", "must be the bare name of a spec file"),
    ("include: /etc/passwd\n", "must be the bare name of a spec file"),
    ("include: [a.yaml]\n", "must be the bare name of a spec file"),
    ("include: self.yaml\nname: x\n", "include cycle self.yaml -> self.yaml"),
    ("include: other.yaml\nname: x\n", "include cycle self.yaml -> other.yaml -> self.yaml"),
])
def test_a_bad_include_is_one_line(tmp_path, capsys, text, words):
    (tmp_path / "self.yaml").write_text(text)
    (tmp_path / "other.yaml").write_text("include: self.yaml\n")
    with pytest.raises(ValueError, match=words.replace(".", r"\.").replace("[", r"\[")) as e:
        load_task(str(tmp_path / "self.yaml"))
    assert "\n" not in str(e.value) and "self.yaml" in str(e.value)
    assert main(["run", str(tmp_path / "self.yaml"), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
