"""Leaderboards with seeds, sweep variants and run status (issues #14, #15): (metric, variant)
columns from the data, mean ± 95% Student-t interval over seeds (against scipy), runs that are not
`ok` listed apart and never ranked, verify tolerances from the seed spread, the typed YAML section,
the migration of the old wide boards, and the torch-free import."""
from __future__ import annotations

import math
import subprocess
import sys

import pandas as pd
import pytest
from scipy import stats
from test_leaderboard import ROOT, TASK, make_run

from ncbench import leaderboard as lb
from ncbench import leaderboard_cli
from ncbench.leaderboard import legacy
from ncbench.leaderboard.aggregate import board_columns
from ncbench.leaderboard.schema import BoardSpec, Column

MINORITY = "minority_collapse_mnist5k"


@pytest.fixture(autouse=True)
def tmp_leaderboards(tmp_path, monkeypatch):
    """Boards go to a tmp folder, never the repo's leaderboards/."""
    monkeypatch.setenv("NCBENCH_LEADERBOARDS", str(tmp_path / "leaderboards"))
    return tmp_path / "leaderboards"
PRIMARY = "minority_accuracy (ratio=10,classifier=learnable) ↑"


def _section(readme: str, task: str) -> str:
    return readme.split(f"## {task}\n")[1].split("\n## ")[0]


def _rows(table_text: str) -> list[list[str]]:
    return [[c.strip() for c in ln.strip("|").split(" | ")] for ln in table_text.splitlines() if ln.startswith("|")]


def _tables(readme: str, task: str) -> tuple[list[list[str]], list[list[str]]]:
    """(ranked table rows, not-ranked table rows) of a task's README section."""
    sec = _section(readme, task)
    ranked, _, rest = sec.partition("**Not ranked**")
    pick = lambda text: _rows("\n".join(ln for ln in text.splitlines() if ln.startswith("|")))
    return pick(ranked), pick(rest)


# --------------------------------------------------------------------------- (metric, variant) columns

def test_a_sweep_run_gives_one_row_per_variant_and_columns_from_the_data(tmp_path, tmp_leaderboards):
    lb.submit(make_run(tmp_path, "m0", tasks=(MINORITY,), values={"minority_accuracy": 0.7}))
    df = pd.read_csv(tmp_leaderboards / f"{MINORITY}.csv", dtype=str, keep_default_na=False)
    spec = BoardSpec.from_dict(lb.current_spec(MINORITY).leaderboard)
    declared = {v for m in spec.metrics.values() for v in m.variants}
    assert set(df.variant) == declared | {""} and len(df) == len(declared) + 1    # one row per sweep point
    assert df.loc[df.variant == "", "train_seconds"].tolist() == ["12.5"]       # the fixture's run-level row
    assert not [c for c in lb.metric_columns(df.columns) if set(c) & set("/=[")]
    readme = (tmp_leaderboards / "README.md").read_text()
    [header, _, row] = _tables(readme, MINORITY)[0]
    assert header[5] == PRIMARY
    assert "minority_feature_cosine (ratio=10,classifier=etf) ↓ (descriptor)" in header
    assert "minority_accuracy (ratio=1,classifier=learnable) ↑" in header
    assert row[5] == "0.7"


def test_undeclared_variants_all_get_a_column_in_natural_order():
    spec = BoardSpec.from_dict({"primary": {"metric": "accuracy", "variant": "source_classes=10"},
                                "metrics": {"accuracy": {"higher_is_better": True, "role": "target"},
                                            "nc1": {"higher_is_better": False, "role": "descriptor"}}})
    table = pd.DataFrame({"variant": ["source_classes=10", "source_classes=2", "source_classes=3", ""],
                          "accuracy": ["0.9", "0.5", "0.6", ""], "nc1": ["0.1", "0.2", "", "0.3"]})
    assert board_columns(table, spec) == [
        Column("accuracy", "source_classes=10"), Column("accuracy", "source_classes=2"), Column("accuracy", "source_classes=3"),
        Column("nc1", ""), Column("nc1", "source_classes=2"), Column("nc1", "source_classes=10")]
    assert Column("accuracy", "source_classes=2").header() == "accuracy (source_classes=2)" and Column("nc1").header() == "nc1"


@pytest.mark.parametrize("section, needle", [
    ({"primary": "nc1", "metrics": {"nc1": {"higher_is_better": False, "role": "target"}}}, "expected {metric"),
    ({"primary": {"metric": "nc1"}, "metrics": {"nc1": {"higher_is_better": False, "role": "descriptor"}}},
     "a board ranks by a target"),
    ({"primary": {"metric": "acuracy"}, "metrics": {"accuracy": {"higher_is_better": True, "role": "target"}}},
     "did you mean 'accuracy'?"),
    ({"primary": {"metric": "accuracy"}, "metrics": {"accuracy": {"higher_is_better": True, "role": "headline"}}}, "role: one of"),
    ({"primary": {"metric": "accuracy"}, "metrics": {"accuracy": {"higher_is_better": "yes", "role": "target"}}},
     "higher_is_better: true or false"),
    ({"primary": {"metric": "R10/a"}, "metrics": {"R10/a": {"higher_is_better": True, "role": "target"}}},
     "a sweep point goes in its variant"),
    ({"primary": {"metric": "acc"}, "metrics": {"acc": {"higher_is_better": True, "role": "target"}}},
     "unknown metric 'acc': did you mean"),
    ({"primary": {"metric": "accuracy", "variant": "ratio=3"},
      "metrics": {"accuracy": {"higher_is_better": True, "role": "target", "variants": ["ratio=1"]}}}, "not among"),
])
def test_the_yaml_section_is_checked_with_a_message_naming_the_key(section, needle):
    with pytest.raises(ValueError, match="leaderboard") as e:
        BoardSpec.from_dict(section)
    assert needle in str(e.value)


def test_every_shipped_board_ranks_by_a_target():
    from ncbench.specs import load_task, task_names

    for t in task_names():
        spec = BoardSpec.from_dict(load_task(t).leaderboard, t)
        if spec is not None:
            assert spec.metrics[spec.primary.metric].role == "target", t


# --------------------------------------------------------------------------- seeds: per-seed rows and the CI

def test_seeds_are_kept_and_aggregated_to_a_student_t_interval(tmp_path, tmp_leaderboards):
    accs = [0.80, 0.90, 0.86]
    for s, a in enumerate(accs):
        lb.submit(make_run(tmp_path, f"s{s}", seed=s, values={"test_accuracy": a, "nc1": 0.1 + s / 100}))
    lb.submit(make_run(tmp_path, "other", model="resnet18", values={"test_accuracy": 0.5}))
    board = lb.load_leaderboard(TASK)
    assert sorted(board.runs.loc[board.runs.model == "test_resnet", "seed"]) == [0, 1, 2]   # every seed kept
    cell = board.entries[(board.entries.model == "test_resnet") & (board.entries.metric == "test_accuracy")].iloc[0]
    sem = stats.sem(accs)
    low, high = stats.t.interval(0.95, len(accs) - 1, loc=sum(accs) / 3, scale=sem)
    assert cell.n_seeds == 3 and cell["mean"] == pytest.approx(sum(accs) / 3, rel=1e-12)
    assert (cell.ci_low, cell.ci_high) == (pytest.approx(low, rel=1e-12), pytest.approx(high, rel=1e-12))
    from ncbench.metrics.confidence import mean_ci

    assert cell.half_width == pytest.approx(mean_ci(accs).half_width, rel=1e-12)
    single = board.entries[(board.entries.model == "resnet18") & (board.entries.metric == "test_accuracy")].iloc[0]
    assert single.n_seeds == 1 and math.isnan(single.half_width) and single["mean"] == 0.5
    [_, _, *body] = _tables((tmp_leaderboards / "README.md").read_text(), TASK)[0]
    rows = {r[1]: r for r in body}
    assert rows["test_resnet"][4] == "3" and rows["resnet18"][4] == "1 (no CI)"
    assert rows["test_resnet"][5] == f"{sum(accs) / 3:.4g} ± {(high - low) / 2:.2g}" and rows["resnet18"][5] == "0.5"


# --------------------------------------------------------------------------- status: never ranked

def test_an_entry_with_a_run_not_ok_is_listed_apart_and_its_failed_cells_say_so(tmp_path, tmp_leaderboards):
    bad = {"ratio=10,classifier=etf_dr": ("diverged", "training loss became nan at epoch 3")}
    lb.submit(make_run(tmp_path, "best", tasks=(MINORITY,), model="test_resnet", values={"minority_accuracy": 0.99},
                       status=bad))
    lb.submit(make_run(tmp_path, "fine", tasks=(MINORITY,), model="test_efficientnet",
                       values={"minority_accuracy": 0.6}))
    df = pd.read_csv(tmp_leaderboards / f"{MINORITY}.csv", dtype=str, keep_default_na=False)
    flagged = df[df.status != "ok"]
    assert flagged[["model", "variant", "status"]].values.tolist() == [
        ["test_resnet", "ratio=10,classifier=etf_dr", "diverged"]]
    readme = (tmp_leaderboards / "README.md").read_text()
    ranked, unranked = _tables(readme, MINORITY)
    assert [r[1] for r in ranked[2:]] == ["test_efficientnet"]          # the best value is not ranked
    [head, _, row] = unranked
    row = dict(zip(head, row))
    assert row["model"] == "test_resnet" and row["status"] == "diverged"
    assert "ratio=10,classifier=etf_dr" in row["reason"] and "nan at epoch 3" in row["reason"]
    assert row["minority_accuracy (ratio=10,classifier=etf_dr) ↑"] == "diverged"
    assert row[PRIMARY] == "0.99"                                        # its own run was ok
    entries = lb.load_leaderboard(MINORITY).entries
    cell = entries[(entries.model == "test_resnet") & (entries.variant == "ratio=10,classifier=etf_dr")
                   & (entries.metric == "minority_accuracy")].iloc[0]
    assert cell.status == "diverged" and cell.n_seeds == 0 and math.isnan(cell["mean"])


def test_a_diverged_run_with_a_nan_primary_is_accepted_and_flagged(tmp_path, tmp_leaderboards):
    res = lb.submit(make_run(tmp_path, "nan", values={"test_accuracy": math.nan},
                             status={"": ("diverged", "training loss became inf at epoch 1")}))
    assert "not ranked" in res.added[0].describe()
    ranked, unranked = _tables((tmp_leaderboards / "README.md").read_text(), TASK)
    assert not ranked[2:] and unranked[2][0] == "test_resnet"


# --------------------------------------------------------------------------- verify: tolerance from the seed spread

def test_verify_tolerance_is_the_larger_of_the_declared_one_and_the_other_seeds_half_width(tmp_path,
                                                                                           tmp_leaderboards):
    accs = [0.80, 0.90, 0.85, 0.88]
    for s, a in enumerate(accs):
        lb.submit(make_run(tmp_path, f"v{s}", seed=s, values={"test_accuracy": a}))
    half = stats.t.ppf(0.975, 2) * stats.sem(accs[1:])          # leave-one-out: seeds 1, 2, 3 only
    near = make_run(tmp_path, "near", seed=0, values={"test_accuracy": 0.80 + 0.9 * half})
    far = make_run(tmp_path, "far", seed=0, values={"test_accuracy": 0.80 + 1.1 * half})
    [(_, _, cmp)] = leaderboard_cli.verify("v0", run_dir=near)
    got = cmp.set_index("metric").loc["test_accuracy"]
    assert got.seed_half_width == pytest.approx(half) and got.tolerance == pytest.approx(half) and got.agrees
    assert got.n_seeds == 3
    [(_, _, cmp)] = leaderboard_cli.verify("v0", run_dir=far)
    assert not cmp.set_index("metric").loc["test_accuracy", "agrees"]
    # one seed: no spread, the declared tolerance (0.01 for a fraction) decides
    lb.submit(make_run(tmp_path, "solo", model="resnet18", values={"test_accuracy": 0.80}))
    solo_near = make_run(tmp_path, "solo_near", model="resnet18", values={"test_accuracy": 0.88})
    [(_, _, cmp)] = leaderboard_cli.verify(f"{TASK}:solo", run_dir=solo_near)
    got = cmp.set_index("metric").loc["test_accuracy"]
    assert got.n_seeds == 0 and got.tolerance == pytest.approx(0.01) and not got.agrees


# --------------------------------------------------------------------------- migration of the old wide boards

def test_old_column_names_map_to_metric_and_variant():
    assert legacy.legacy_column("R10/etf_dr/minority_accuracy") == ("minority_accuracy", "ratio=10,classifier=etf_dr")
    assert legacy.legacy_column("S3/ncc_acc_5shot", 5) == ("ncc_acc_5shot", "source_classes=3")
    assert legacy.legacy_column("ncc_acc_5shot", 5) == ("ncc_acc_5shot", "source_classes=5")
    assert legacy.legacy_column("sweep_gain_5shot", 5) == ("sweep_gain_5shot", "")
    assert legacy.legacy_column("threshold_ratio_E_H=5") == ("threshold_ratio", "E_H=5")
    assert legacy.legacy_column("nc1") == ("nc1", "")


def test_migration_keeps_every_value_and_judges_train_accuracy():
    ident = {"task": MINORITY, "task_version": "1", "model": "m", "pretrained": "", "dataset": "mnist5k", "seed": "0"}
    prov = {c: "x" for c in lb.PROVENANCE}
    old = pd.DataFrame([{**ident, "R10/learnable/minority_accuracy": "0.8", "R10/learnable/train_accuracy": "1.0",
                         "R10/etf_dr/minority_accuracy": "0.0", "R10/etf_dr/train_accuracy": "0.2", **prov}], dtype=str)
    new = legacy.migrate_table(old, num_classes=10)
    assert legacy.check_same_values(old, new) == []
    by = new.set_index("variant")
    assert by.loc["ratio=10,classifier=learnable", "status"] == "ok"
    # near chance: below 1/10 + 0.25·(1 − 1/10) = 0.325 (ncbench.training.run_status)
    assert by.loc["ratio=10,classifier=etf_dr", "status"] == "failed"
    assert "0.2 stayed near chance" in by.loc["ratio=10,classifier=etf_dr", "status_reason"]


def test_committed_boards_are_migrated_and_their_failed_runs_are_not_ranked(tmp_path):
    boards = lb.read_tables(ROOT / "leaderboards")                  # raises on a board still in the old format
    minority = boards[MINORITY]
    failed = minority[minority.status != "ok"]
    assert set(failed.model) == {"mobilenetv3_small_050", "test_mambaout"}
    assert "ratio=1,classifier=etf_dr" in set(failed[failed.model == "mobilenetv3_small_050"].variant)
    readme = (ROOT / "leaderboards" / "README.md").read_text()
    ranked, unranked = _tables(readme, MINORITY)
    assert {r[1] for r in ranked[2:]} == {"test_resnet", "test_efficientnet", "test_byobnet"}
    assert {r[0] for r in unranked[2:]} == {"mobilenetv3_small_050", "test_mambaout"}
    lines = (ROOT / "leaderboards" / "train_collapse_mnist5k.csv").read_text().splitlines()
    plain = [ln for ln in lines[1:] if ",,ok," in ln]          # rows without a variant, in the old layout
    old = "\n".join([lines[0].replace(",variant,status,status_reason", "")] + [ln.replace(",,ok,", ",") for ln in plain])
    (tmp_path / "train_collapse_mnist5k.csv").write_text(old + "\n")
    with pytest.raises(lb.LeaderboardError, match="migrate it with"):
        lb.read_table(tmp_path / "train_collapse_mnist5k.csv")


# --------------------------------------------------------------------------- layering

def test_reading_and_rendering_boards_does_not_import_torch():
    code = ("import sys; from ncbench.leaderboard import load_leaderboard, read_tables, render_readme; "
            f"b = load_leaderboard({MINORITY!r}, {str(ROOT / 'leaderboards')!r}); "
            f"render_readme(read_tables({str(ROOT / 'leaderboards')!r})); "
            "sys.exit(3 if 'torch' in sys.modules else (0 if len(b.entries) else 4))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, (done.returncode, done.stderr[-2000:])


# --------------------------------------------------------------------------- a seed group, submitted
def test_a_seed_group_folder_submits_every_seed_and_refuses_an_edited_member_list(tmp_path, monkeypatch):
    """A real group run (the layer-peeled sweep over E_H, seeds 0 and 1: seconds of CPU) submits one
    board row per (seed, variant); a config.json whose members are not what its spec expands to is
    refused."""
    import json

    from ncbench.runner.suite import run_tasks
    from ncbench.specs import load_task

    boards = tmp_path / "boards"
    monkeypatch.setenv("NCBENCH_LEADERBOARDS", str(boards))
    spec = load_task("lpm_minority_curve", seeds=[0, 1])
    run_dir, runs = run_tasks("s", [spec], tmp_path / "results", progress=False, log=lambda m: None)
    assert runs[0].outcome == "done", runs[0].error
    result = lb.submit([run_dir], boards)
    assert len(result.added) == 1
    assert result.added[0].describe().endswith(", seeds 0, 1")   # the message names every seed
    board = pd.read_csv(boards / "lpm_minority_curve.csv", keep_default_na=False)
    assert sorted(set(board.seed)) == [0, 1]
    assert {v for v in board.variant if v.startswith("E_H=")} == {"E_H=1", "E_H=2", "E_H=5", "E_H=10"}
    entries = lb.load_leaderboard("lpm_minority_curve", boards).entries
    assert set(entries[entries.metric == "threshold_ratio"].n_seeds) == {2}
    cfg_path = run_dir / "lpm_minority_curve" / "config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["members"] = cfg["members"][::-1]
    cfg_path.write_text(json.dumps(cfg))
    with pytest.raises(lb.SubmissionRefused, match="members are not the runs its spec expands to"):
        lb.submit([run_dir], boards, replace=True)
