"""Boards against forged and hostile submissions (issue #23 items 16-20, issue #27 item 4): headline
values are finite, a row never widens its own verify tolerance, results.csv must agree with the
config.json beside it, cells cannot inject Markdown or spreadsheet formulas, a stale README is
rebuilt, and boards hold public data set names only."""
from __future__ import annotations

import json
import math

import pandas as pd
import pytest
from scipy import stats
from test_leaderboard import TASK, make_run, reseal

from ncbench import leaderboard as lb
from ncbench import leaderboard_cli
from ncbench.leaderboard.agreement import compare
from ncbench.leaderboard.schema import Column
from ncbench.results.writer import write_json


@pytest.fixture(autouse=True)
def tmp_leaderboards(tmp_path, monkeypatch):
    """Boards go to a tmp folder, never the repo's leaderboards/."""
    d = tmp_path / "leaderboards"
    monkeypatch.setenv("NCBENCH_LEADERBOARDS", str(d))
    return d


# --------------------------------------------------------------------------- #23.16: finite headline values

@pytest.mark.parametrize("value", [math.inf, -math.inf])
def test_an_infinite_headline_value_is_refused(value, tmp_path, tmp_leaderboards):
    run = make_run(tmp_path, "inf", values={"nc1": value})     # integrity hashes are consistent (fixed-up sha)
    with pytest.raises(lb.SubmissionRefused, match=r"nc1 = -?inf is not finite"):
        lb.submit(run)
    assert not list(tmp_leaderboards.glob("*.csv"))


def test_verify_never_agrees_with_an_infinite_value_or_tolerance():
    col = [Column("nc1")]
    assert not compare({"nc1": math.inf}, {"nc1": math.inf}, col).agrees.iloc[0]
    assert not compare({"nc1": math.inf}, {"nc1": 0.2}, col).agrees.iloc[0]
    assert not compare({"nc1": 0.2}, {"nc1": 0.3}, col, spread={Column("nc1"): (math.inf, 3)}).agrees.iloc[0]
    assert compare({"nc1": math.nan}, {"nc1": math.nan}, col).agrees.iloc[0]      # not measured on both sides


# --------------------------------------------------------------------------- #23.17: leave-one-out tolerance

def test_a_forged_seed_cannot_widen_its_own_tolerance(tmp_path, tmp_leaderboards):
    accs = [0.98, 0.985]
    for s, a in enumerate(accs):
        lb.submit(make_run(tmp_path, f"s{s}", seed=s, values={"test_accuracy": a}))
    lb.submit(make_run(tmp_path, "forged", seed=2, values={"test_accuracy": 0.5}))
    honest = make_run(tmp_path, "rerun", seed=2, values={"test_accuracy": 0.982})
    [(_, _, cmp)] = leaderboard_cli.verify(f"{TASK}:forged", run_dir=honest)
    got = cmp.set_index("metric").loc["test_accuracy"]
    assert got.seed_half_width == pytest.approx(stats.t.ppf(0.975, 1) * stats.sem(accs))   # seeds 0 and 1 only
    with_itself = stats.t.ppf(0.975, 2) * stats.sem([*accs, 0.5])
    assert abs(0.982 - 0.5) < with_itself        # the old rule (all seeds) would have agreed
    assert not got.agrees


# --------------------------------------------------------------------------- #23.18: results.csv against config.json

def _relabel(csv, old: str, new: str) -> None:
    csv.write_text(csv.read_text().replace(old, new))


@pytest.mark.parametrize("case, needle", [
    ("digits_as_mnist5k", "task 'train_collapse_mnist5k' where config.json's spec says "
                          "'train_collapse_mnist5k@dataset=digits'; dataset 'mnist5k' where config.json's spec "
                          "says 'digits'"),
    ("seed", "seed 5 for config"),
    ("weights", "pretrained 'a1_in1k' where config.json's spec says ''"),
])
def test_results_rows_that_contradict_config_json_are_refused(case, needle, tmp_path, tmp_leaderboards):
    from ncbench.specs import load_task

    run = make_run(tmp_path, "forged")
    task_dir = run / TASK
    csv, cfg_path = task_dir / "results.csv", task_dir / "config.json"
    cfg = json.loads(cfg_path.read_text())
    if case == "digits_as_mnist5k":
        # a `--dataset digits` run whose results.csv was relabelled task=TASK, dataset=mnist5k, the sha fixed
        # and suite.json deleted: config.json (and its hash) still say what really ran
        digits = load_task(TASK, dataset="digits")
        _relabel(csv, cfg["config_hash"], digits.config_hash())
        write_json(cfg_path, {**cfg, "spec": digits.to_dict(), "config_hash": digits.config_hash()})
        (run / "suite.json").unlink()
    elif case == "seed":
        df = pd.read_csv(csv, dtype=str, keep_default_na=False)
        df["seed"] = "5"
        csv.write_text(df.to_csv(index=False, lineterminator="\n"))
    else:
        df = pd.read_csv(csv, dtype=str, keep_default_na=False)
        df["pretrained"] = "a1_in1k"
        csv.write_text(df.to_csv(index=False, lineterminator="\n"))
    reseal(task_dir)
    with pytest.raises(lb.SubmissionRefused) as e:
        lb.submit(run)
    assert needle in str(e.value) and "results.csv and config.json disagree" in str(e.value)
    assert not list(tmp_leaderboards.glob("*.csv"))
