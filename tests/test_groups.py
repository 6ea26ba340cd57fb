"""Groups (`ncbench.specs.groups`, SPEC §9): seeds and sweeps declared in YAML expand into member runs;
comparisons are paired per seed; `aggregate.csv` is the Student-t interval over seeds."""
from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from ncbench.results.aggregation import over_seeds
from ncbench.results.comparisons import comparison_rows
from ncbench.results.load import load_results
from ncbench.results.variants import format_variant, join_variants, parse_variant
from ncbench.runner.suite import run_tasks
from ncbench.specs import TaskSpec, comparisons_of, load_task, member_label, members

TINY = {"epochs": 2, "batch_size": 256, "lr": 0.05, "schedule": "constant", "eval_every": 1}


def spec(**kw) -> TaskSpec:
    return TaskSpec(**{"name": "g", "kind": "train_collapse", "version": 1, "dataset": "digits",
                       "model": "test_resnet", "recipe": TINY, **kw})


# -- variants ---------------------------------------------------------------------------------------
def test_variant_strings_round_trip_and_refuse_ambiguity():
    point = {"ratio": 10.0, "classifier": "etf", "shots": [1, 5], "flag": True}
    text = format_variant(point)
    assert text == "ratio=10,classifier=etf,shots=1+5,flag=true"
    assert parse_variant(text) == {"ratio": "10", "classifier": "etf", "shots": "1+5", "flag": "true"}
    assert format_variant({"R": 3.16227766}) == "R=3.16227766" and parse_variant("") == {}
    assert join_variants("E_H=5", "", "R=2") == "E_H=5,R=2"
    for bad in ({"a": "x,y"}, {"a": "x=y"}, {"a b": 1}, {"a": "p/q"}, {"a": ""}):
        with pytest.raises(ValueError):
            format_variant(bad)
    with pytest.raises(ValueError, match="key=value"):
        parse_variant("a=1,b")


# -- expansion --------------------------------------------------------------------------------------
def test_members_are_the_product_first_key_outermost_seeds_inner():
    g = spec(sweep={"ratio": [1, 10], "classifier": ["learnable", "etf"]}, seeds=[0, 3], kind="minority_collapse")
    ms = members(g)
    assert [(m.variant, m.seed) for m in ms] == [
        (f"ratio={r},classifier={c}", s) for r in (1, 10) for c in ("learnable", "etf") for s in (0, 3)]
    assert all(m.options["ratio"] in (1, 10) and not m.sweep and m.seeds is None for m in ms)
    assert [member_label(m, g) for m in ms][:2] == ["ratio=1,classifier=learnable,seed=0",
                                                    "ratio=1,classifier=learnable,seed=3"]
    assert members(spec()) == [spec()]                    # a plain spec is its own only member
    assert [member_label(m, spec(seeds=[1, 2])) for m in members(spec(seeds=[1, 2]))] == ["seed=1", "seed=2"]


def test_a_sweep_reaches_recipe_keys_and_spec_fields():
    g = spec(sweep={"recipe.weight_decay": [5e-4, 5e-3], "model": ["test_resnet", "test_vit"]})
    ms = members(g)
    assert [m.variant for m in ms] == ["weight_decay=0.0005,model=test_resnet", "weight_decay=0.0005,model=test_vit",
                                       "weight_decay=0.005,model=test_resnet", "weight_decay=0.005,model=test_vit"]
    assert [m.recipe["weight_decay"] for m in ms] == [5e-4, 5e-4, 5e-3, 5e-3] and ms[0].recipe["epochs"] == 2
    assert [m.model for m in ms] == ["test_resnet", "test_vit"] * 2
    assert members(spec(recipe="cpu-mnist5k", sweep={"recipe.lr": [0.1]}))[0].recipe == {"protocol": "cpu-mnist5k",
                                                                                          "lr": 0.1}
    assert len({m.config_hash() for m in ms}) == 4


def test_an_axis_may_name_its_levels():
    g = spec(sweep={"loss": {"ce": {"recipe.loss": "ce"},
                             "label_smoothing": {"recipe.loss": "ce", "recipe.label_smoothing": 0.1},
                             "mse": {"recipe.loss": "mse"}}}, seeds=[0, 1])
    ms = members(g)
    assert [m.variant for m in ms] == ["loss=ce"] * 2 + ["loss=label_smoothing"] * 2 + ["loss=mse"] * 2
    assert [(m.recipe["loss"], m.recipe.get("label_smoothing")) for m in ms[::2]] == [
        ("ce", None), ("ce", 0.1), ("mse", None)]
    with pytest.raises(ValueError, match="names its levels"):
        members(spec(sweep={"loss": {"ce": "ce"}}))
    assert comparisons_of(spec(sweep=g.sweep, aggregate=[
        {"name": "d", "of": "nc1", "difference": {"loss": ["mse", "ce"]}}]))[0].levels == ("mse", "ce")


@pytest.mark.parametrize("kw, match", [
    ({"sweep": {"ratio": []}}, "non-empty list"),
    ({"sweep": {"ratio": [1, 1.0]}}, "repeats"),
    ({"sweep": [1, 2]}, "sweep must be a mapping"),        # the spec's field types (ncbench.specs.schema)
    ({"seeds": [0, 0]}, "distinct"),
    ({"seeds": [-1]}, "non-negative"),
    ({"seeds": "0,1"}, "seeds must be a list of integers or null, got '0,1'"),
])
def test_bad_groups_are_refused(kw, match):
    with pytest.raises(ValueError, match=match):
        members(spec(**kw))


# -- comparisons and intervals ----------------------------------------------------------------------
def _summary(rows):
    df = pd.DataFrame(rows, columns=["variant", "seed", "metric", "value"])
    return df.assign(split="summary", epoch=3.0, status="ok", status_reason="")


def test_paired_differences_and_spearman_trends_by_hand():
    rows = [(f"S={s},w={w}", seed, "acc", 0.1 * s + 0.01 * seed + (0.5 if w == "b" else 0.0))
            for s in (2, 3, 5) for w in ("a", "b") for seed in (0, 1)]
    g = spec(sweep={"S": [2, 3, 5], "w": ["a", "b"]},
             aggregate=[{"name": "gain", "of": "acc", "difference": {"S": [5, 2]}},
                        {"name": "trend", "of": "acc", "spearman": "S"}])
    out = pd.DataFrame(comparison_rows(_summary(rows), comparisons_of(g)))
    gain = out[out.metric == "gain"]
    assert sorted(zip(gain.variant, gain.seed)) == [("w=a", 0), ("w=a", 1), ("w=b", 0), ("w=b", 1)]
    np.testing.assert_allclose(gain.value, 0.3, atol=1e-12)              # (0.5 − 0.2), every seed and w
    assert (out[out.metric == "trend"].value == 1.0).all() and set(out.epoch) == {3.0}
    two = spec(sweep={"S": [2, 5]}, aggregate=[{"name": "trend", "of": "acc", "spearman": "S"}])
    assert math.isnan(comparison_rows(_summary([("S=2", 0, "acc", 1.0), ("S=5", 0, "acc", 2.0)]),
                                   comparisons_of(two))[0]["value"])   # two points: no rank trend


def test_over_seeds_is_the_student_t_interval_and_leaves_out_runs_not_ok():
    vals = [0.61, 0.64, 0.58, 0.9]
    df = _summary([("", s, "acc", v) for s, v in enumerate(vals)])
    df.loc[3, ["status", "status_reason"]] = ["diverged", "loss became nan"]
    agg = over_seeds(df, "t").iloc[0]
    ok = np.array(vals[:3])
    half = stats.t.ppf(0.975, 2) * ok.std(ddof=1) / math.sqrt(3)
    assert (agg.n_seeds, agg.n_not_ok, agg.seeds) == (3, 1, "0 1 2")
    assert agg["mean"] == pytest.approx(ok.mean()) and agg.ci_high - agg["mean"] == pytest.approx(half)
    lo, hi = stats.t.interval(0.95, 2, loc=ok.mean(), scale=stats.sem(ok))
    assert (agg.ci_low, agg.ci_high) == pytest.approx((lo, hi))


# -- end to end -------------------------------------------------------------------------------------
def test_a_seed_group_runs_each_seed_once_and_aggregates(tmp_path, one_thread):
    g = spec(seeds=[0, 1])
    run_dir, runs = run_tasks("s", [g], tmp_path, progress=False, log=lambda m: None)
    assert runs[0].outcome == "done", runs[0].error
    gdir = run_dir / "g"
    assert sorted(p.name for p in (gdir / "_members").iterdir()) == ["seed=0", "seed=1"]
    df = pd.read_csv(gdir / "results.csv", keep_default_na=False, na_values=[""])
    assert sorted(df.seed.unique()) == [0, 1] and set(df.variant.dropna()) == {"baseline=raw_pixels", "baseline=random_init"}
    # every member's own file is in the group's, row for row
    members_rows = pd.concat([pd.read_csv(gdir / "_members" / f"seed={s}" / "results.csv") for s in (0, 1)])
    assert len(df) == len(members_rows)
    # seeds really differ, and aggregate.csv is their t-interval
    s = df[(df.split == "summary") & (df.metric == "nc1") & df.variant.isna()].set_index("seed").value
    assert s[0] != s[1]
    agg = pd.read_csv(gdir / "aggregate.csv").loc[lambda d: (d.metric == "nc1") & d.variant.isna()].iloc[0]
    assert agg["mean"] == pytest.approx(s.mean()) and agg.n_seeds == 2
    assert agg.ci_high - agg["mean"] == pytest.approx(stats.t.ppf(0.975, 1) * s.std(ddof=1) / math.sqrt(2))
    # load_results reads the group's file once (not its members' copies)
    assert len(load_results(run_dir)) == len(df)
    cfg = json.loads((gdir / "config.json").read_text())
    assert [m["folder"] for m in cfg["members"]] == ["_members/seed=0", "_members/seed=1"]
    # a second run skips every member and the group; a new seed runs only that member
    logs = []
    _, again = run_tasks("s", [g], tmp_path, progress=False, log=logs.append)
    assert again[0].outcome == "skipped" and sum("already done" in m for m in logs) == 3
    logs.clear()
    run_tasks("s", [spec(seeds=[0, 1, 2])], tmp_path, progress=False, log=logs.append, run_id=run_dir.name)
    assert [m for m in logs if "running" in m] == [next(m for m in logs if m.startswith("[g seed=2] running"))]


def test_cli_seeds_flag_makes_a_seed_group(tmp_path, one_thread):
    from ncbench.cli import main

    assert main(["run", "ufm_ce_balanced", "--seeds", "0,1", "--out", str(tmp_path), "--no-progress"]) == 0
    (agg,) = tmp_path.glob("*/ufm_ce_balanced/aggregate.csv")
    assert set(pd.read_csv(agg).n_seeds) == {2}
    with pytest.raises(SystemExit) as e:                  # argparse: one line, exit 2
        main(["run", "ufm_ce_balanced", "--seeds", "0,0", "--out", str(tmp_path)])
    assert e.value.code == 2


def test_shipped_groups_declare_their_sweeps():
    fs, mc, lpm = (load_task(n) for n in ("fewshot_mnist5k", "minority_collapse_mnist5k", "lpm_minority_curve"))
    assert fs.sweep == {"source_classes": [2, 3, 5]} and len(members(fs)) == 3
    assert mc.sweep == {"ratio": [1, 10, 100], "classifier": ["learnable", "etf", "etf_dr"]} and len(members(mc)) == 9
    assert list(lpm.sweep) == ["E_H"] and len(members(lpm)) == 4
    for g in (fs, mc, lpm):
        assert comparisons_of(g)


def test_submit_takes_seeds_only_with_a_model_and_the_board_suite_runs_three(capsys):
    from ncbench.cli import main
    from ncbench.specs import load_suite

    assert main(["submit", "results/some-run", "--seeds", "0,1"]) == 2
    assert "--seeds go with --model" in capsys.readouterr().err
    _, specs = load_suite("leaderboard")
    assert {tuple(s.seeds) for s in specs} == {(0, 1, 2)}            # every board entry: three seeds
    _, one = load_suite("leaderboard", seeds=[4])
    assert {tuple(s.seeds) for s in one} == {(4,)}


def test_a_comparison_never_mixes_a_networks_rows_with_its_baselines():
    """The sweep's rows and their `baseline=…` sub-variants are compared apart (the first real
    default-suite run after the baselines gave sweep_spearman 0.27 instead of 1.0 from the mix)."""
    rows = []
    for s, acc in ((2, 0.4), (3, 0.5), (5, 0.7)):
        rows += [(f"source_classes={s}", 0, "acc", acc), (f"source_classes={s},baseline=raw_pixels", 0, "acc", 0.9)]
    g = spec(sweep={"source_classes": [2, 3, 5]}, aggregate=[{"name": "trend", "of": "acc", "spearman": "source_classes"},
                                                              {"name": "gain", "of": "acc", "difference": {"source_classes": [5, 2]}}])
    out = pd.DataFrame(comparison_rows(_summary(rows), comparisons_of(g))).set_index(["metric", "variant"])
    assert out.loc[("trend", ""), "value"] == 1.0 and math.isnan(out.loc[("trend", "baseline=raw_pixels"), "value"])
    assert out.loc[("gain", ""), "value"] == pytest.approx(0.3) and out.loc[("gain", "baseline=raw_pixels"), "value"] == 0.0
