"""Hostile or mistyped specs (issue 23 items 8, 9): every field type-checked before any work, one line
naming the file, the key, the value and what was expected; YAML size, depth and alias limits."""
from __future__ import annotations

import pytest

from ncbench.cli import main
from ncbench.runner.preflight import check_spec
from ncbench.specs import load_suite, load_task, spec_dir
from ncbench.specs.schema import as_number
from ncbench.specs.yaml_limits import MAX_BYTES, MAX_DEPTH, MAX_NODES

BASE = (spec_dir() / "train_collapse_mnist5k.yaml").read_text(encoding="utf-8")
RECIPE = "recipe: {protocol: cpu-mnist5k}"


def _spec(tmp_path, text: str, name: str = "t.yaml"):
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


# (how the shipped spec is edited, the key the message must name, what it must say was expected); the
# message ends with the value as YAML read it
CASES = {
    "epochs: ten": (BASE.replace(RECIPE, "recipe: {protocol: cpu-mnist5k, epochs: ten}"), "recipe.epochs",
                    "an integer"),
    "recipe: [1, 2]": (BASE.replace(RECIPE, "recipe: [1, 2]"), "recipe", "a mapping"),
    "milestones: 5": (BASE.replace(RECIPE, "recipe: {milestones: 5}"), "recipe.milestones", "a list of"),
    "name: 12345": (BASE.replace("name: train_collapse_mnist5k", "name: 12345"), "name", "text"),
    "options: [1, 2]": (BASE + "options: [1, 2]\n", "options", "a mapping"),
    "dataset: 5": (BASE.replace("dataset: mnist5k", "dataset: 5"), "dataset", "text"),
    "model: [a]": (BASE.replace("model: test_resnet", "model: [a]"), "model", "text"),
    "batch_size: 2.5": (BASE.replace(RECIPE, "recipe: {protocol: cpu-mnist5k, batch_size: 2.5}"),
                        "recipe.batch_size", "an integer"),
    "min_train_accuracy: abc": (BASE + "min_train_accuracy: abc\n", "min_train_accuracy", "a finite number"),
    "seed: 1.5": (BASE.replace("seed: 0", "seed: 1.5"), "seed", "an integer"),
    "lr: .inf": (BASE.replace(RECIPE, "recipe: {lr: .inf}"), "recipe.lr", "a finite number"),
    "betas: [0.9]": (BASE.replace(RECIPE, "recipe: {optimizer: adamw, betas: [0.9]}"), "recipe.betas",
                     "a list of 2"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_mistyped_field_is_one_line_naming_file_key_value_and_type(tmp_path, case):
    text, key, expected = CASES[case]
    path = _spec(tmp_path, text)
    with pytest.raises(ValueError) as e:
        check_spec(load_task(str(path)))
    msg = str(e.value)
    assert "\n" not in msg and str(path) in msg
    assert f"{key} must be {expected}" in msg, msg
    import yaml

    assert msg.endswith(f"got {yaml.safe_load(case)[case.split(':')[0]]!r}"), msg


def test_the_cli_answers_a_mistyped_spec_with_exit_2_and_one_line(tmp_path, capsys):
    path = _spec(tmp_path, CASES["epochs: ten"][0])
    assert main(["run", str(path), "--out", str(tmp_path / "out"), "--no-progress", "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "recipe.epochs must be an integer, got 'ten'" in err
    assert not (tmp_path / "out").exists()   # before any work


def test_a_number_yaml_reads_as_text_is_the_number_it_spells(tmp_path):
    # YAML 1.1 reads `1.0e12` and `1e-3` (no sign in the exponent / no dot) as strings
    path = _spec(tmp_path, BASE.replace(RECIPE, "recipe: {protocol: cpu-mnist5k, lr: 1e-3, weight_decay: 1.0e12}"))
    spec = load_task(str(path))
    from ncbench.training.recipe import Recipe

    r = Recipe.from_dict(spec.recipe)
    assert r.lr == 1e-3 and r.weight_decay == 1e12
    assert spec.recipe["lr"] == 1e-3   # the spec (hence its hash) holds the number too
    assert as_number("abc") == "abc" and as_number("1e5") == 1e5 and as_number("-.5E+2") == -50.0


def test_an_inline_suite_entry_of_the_wrong_type_is_one_line(tmp_path):
    path = _spec(tmp_path, "suite: s\ntasks:\n  - 5\n")
    with pytest.raises(ValueError, match="tasks entry 1 must be a task name or a mapping, got 5"):
        load_suite(str(path))


def _laughs(levels: int) -> str:
    lines = ["  l0: &l0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"  l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 10) + "]" for i in range(1, levels)]
    return "leaderboard:\n" + "\n".join(lines) + "\n"


def test_billion_laughs_in_a_spec_is_refused_before_it_expands(tmp_path):
    path = _spec(tmp_path, BASE.replace("leaderboard:\n", _laughs(9)))   # 10^9 strings once expanded
    with pytest.raises(ValueError, match=f"more than {MAX_NODES:,} values once its aliases"):
        load_task(str(path))


def test_small_alias_trees_stay_allowed(tmp_path):
    from ncbench.specs.yaml_limits import read_yaml

    l2 = read_yaml(_spec(tmp_path, _laughs(3)))["leaderboard"]["l2"]   # 10^2 lists of 10: 1,111 values
    assert len(l2) == 10 and all(len(l1) == 10 for l1 in l2) and l2[9][9] == ["x"] * 10


def test_a_recursive_alias_and_a_deep_document_are_one_line(tmp_path):
    from ncbench.specs.yaml_limits import read_yaml

    with pytest.raises(ValueError, match="refers to a node that contains it"):
        read_yaml(_spec(tmp_path, "a: &a [1, *a]\n", "rec.yaml"))
    deep = BASE.replace("description: NC1", "description: " + "[" * 5000 + "]" * 5000 + "\nnote: NC1")
    with pytest.raises(ValueError, match=f"nested more than {MAX_DEPTH} levels"):
        load_task(str(_spec(tmp_path, deep, "deep.yaml")))
    with pytest.raises(ValueError, match="larger than"):
        read_yaml(_spec(tmp_path, "a: " + "x" * MAX_BYTES + "\n", "big.yaml"))


def test_shipped_specs_keep_their_config_hashes():
    """The default suite's identities are those of main before this change (56dfe16): the schema checks,
    it never rewrites a valid spec."""
    _, specs = load_suite("default")
    assert [s.config_hash() for s in specs] == [
        "310d2a880c9e", "acafb0d1b227", "275d10a38d00", "fb1a2e8f130a", "3be60684703f", "2a085d5a6c57",
        "6b07df69436d", "8941d7b1a79e", "9724f332d028"]


def test_a_path_in_a_text_field_is_its_text_and_keeps_the_hash(tmp_path):
    from pathlib import Path

    from ncbench.specs import TaskSpec

    as_text = TaskSpec(name="t", kind="train_collapse", version=1, data_dir=str(tmp_path), checkpoint="w.pth")
    as_path = TaskSpec(name="t", kind="train_collapse", version=1, data_dir=tmp_path, checkpoint=Path("w.pth"))
    assert as_path.data_dir == str(tmp_path) and as_path.checkpoint == "w.pth"
    assert as_path.config_hash() == as_text.config_hash()
