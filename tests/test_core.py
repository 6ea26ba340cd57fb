"""ncbench.core: the torch-free facts every layer shares (metric registry, board blocks, run status, the
t-interval), and that moving them there changed no range, tolerance, direction, role or interval.

tests/data/metric_facts_before_registry.json was captured from main before the registry
(tests/data/make_metric_facts_before_registry.py says how): the old glob vocabulary's facts for every
metric name the suite writes, and every task's parsed board block.
"""
from __future__ import annotations

import json
import math
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from scipy import stats

from ncbench.core import board as core_board
from ncbench.core import metrics as registry
from ncbench.core.intervals import t_interval
from ncbench.core.status import SEVERITY, STATUSES, UNKNOWN_SEVERITY, severity
from ncbench.leaderboard.schema import BoardSpec
from ncbench.specs import load_task, task_names

ROOT = Path(__file__).resolve().parent.parent
BEFORE = json.loads((ROOT / "tests" / "data" / "metric_facts_before_registry.json").read_text())
OVERRIDES = {("ufm_ce_balanced", "nc1", "role"), ("ufm_mse_snc", "snc2", "role"),
             ("transfer_losses_mnist5k", "source_test_accuracy", "role")}
"""Deliberate board overrides of a registry default: the UFM boards rank by a collapse value; the
Kornblith board shows the source accuracy (the losses are matched on it) beside its target."""


# --------------------------------------------------------------------------- torch-free, no other layer

def test_importing_every_core_module_loads_no_torch_nor_another_ncbench_layer():
    code = ("import pkgutil, importlib, sys, ncbench\n"
            "before = set(sys.modules)\n"            # the package root (its version) is no layer
            "import ncbench.core as c\n"
            "for m in pkgutil.iter_modules(c.__path__): importlib.import_module('ncbench.core.' + m.name)\n"
            "print(sorted(k for k in set(sys.modules) - before if k == 'torch' or k.startswith('torch.') or "
            "(k.startswith('ncbench.') and not k.startswith('ncbench.core'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    # one deliberate exception (pyproject's core contract): identity names a checkpoint by its bytes,
    # read through ncbench.provenance.digests -> run_files (which loads torch only to save or load a tensor)
    assert out.stdout.strip() == "['ncbench.provenance', 'ncbench.provenance.digests']", out.stdout
    modules = {p.stem for p in (ROOT / "ncbench" / "core").glob("*.py")} - {"__init__"}
    assert modules == {"metrics", "board", "status", "intervals", "identity", "verdicts"}   # all were imported


# --------------------------------------------------------------------------- the registry keeps every fact

@pytest.mark.parametrize("name", sorted(BEFORE["vocabulary"]))
def test_range_and_tolerance_of_every_written_metric_are_what_the_glob_vocabulary_said(name):
    old = BEFORE["vocabulary"][name]
    d = registry.metric(name)
    if old is None:     # the vocabulary lacked it: no range check, verify's default tolerance
        old = [-math.inf, math.inf, 0.0, 0.05]
    assert [d.scale.low, d.scale.high, d.scale.atol, d.scale.rtol] == old


@pytest.mark.parametrize("task", sorted(set(task_names()) - set(BEFORE["boards"])))
def test_a_spec_written_after_the_registry_has_a_board_that_resolves(task):
    resolved = BoardSpec.from_dict(load_task(task).leaderboard)
    if resolved is not None:
        assert resolved.primary.metric in resolved.metrics


@pytest.mark.parametrize("task", sorted(BEFORE["boards"]))
def test_every_board_resolves_to_the_directions_roles_and_variants_its_yaml_spelt_out(task):
    old = BEFORE["boards"][task]
    board = BoardSpec.from_dict(load_task(task).leaderboard)
    if old is None:
        assert board is None
        return
    got = [[m.name, m.higher_is_better, m.role, list(m.variants) if m.variants is not None else None]
           for m in board.metrics.values()]
    assert got == old["metrics"]                                  # order too: it orders the board's columns
    assert (board.primary.metric, board.primary.variant) == (old["primary"]["metric"],
                                                             old["primary"].get("variant", ""))


def test_task_yaml_boards_state_no_fact_the_registry_has_except_the_listed_overrides():
    found = set()
    for path in sorted((ROOT / "tasks").glob("*.yaml")):
        assert "higher_is_better" not in path.read_text(), path.name
        items = (yaml.safe_load(path.read_text()).get("leaderboard") or {}).get("metrics") or []
        for name, overrides in core_board.metric_items(items, path.name):
            found |= {(path.stem, name, key) for key in overrides if key != "variants"}
            for key in set(overrides) - {"variants"}:
                assert overrides[key] != getattr(registry.metric(name), key), f"{path.name}: {name}.{key} = default"
    assert found == OVERRIDES


def test_every_declared_name_reads_as_its_own_declaration_and_nothing_reads_two_ways():
    for name in registry.EXACT:
        assert registry.find(name) is registry.EXACT[name]
    composed = ["ncc_acc_5shot", "ncc_acc_10shot", "fewshot_probe_acc_1shot", "kendall_tau_logme",
                "weighted_tau_knn_loo_acc", "ncti_seli", "ncc_error_bound_ratio_5shot", "sweep_gain_20shot"]
    for name in composed:
        d = registry.metric(name)
        assert "{" in d.name and re.fullmatch(r"[a-z_]+", d.name.split("{")[0])


@pytest.mark.parametrize(("name", "declared", "higher"), [
    ("test_nc1", "nc1", False), ("last_layer_test_ncc_acc", "ncc_acc", True), ("source_test_accuracy", "accuracy", True),
    ("R10/learnable/minority_accuracy", "minority_accuracy", True), ("kendall_tau_nc1", "kendall_tau_{estimator}", True),
    ("ncc_error_bound_vacuous_1shot", "ncc_error_bound_vacuous_{shots}", None)])
def test_a_composed_name_is_parsed_into_its_declaration(name, declared, higher):
    d = registry.metric(name)
    assert d.name == declared and d.higher_is_better is higher


def test_derived_statistics_of_any_registered_metric_and_only_of_those():
    assert registry.metric("nc1_ci95").scale is registry.HALF_WIDTH
    assert registry.metric("fewshot_ncc_acc_5shot_ci95").scale is registry.HALF_WIDTH
    assert registry.metric("spearman_cdnv_error_5shot_pvalue").scale is registry.P_VALUE
    assert "`ncc_acc_5shot`" in registry.metric("ncc_acc_5shot_ci95").formula
    for name in ("bogus_ci95", "ci95", "kendall_tau_bogus", "ncc_acc_0shot", "ncc_acc_shot", "test_logme", "nc1_"):
        assert registry.find(name) is None, name


def test_an_unknown_metric_is_one_line_with_did_you_mean():
    with pytest.raises(registry.UnknownMetricError) as e:
        registry.metric("ncc_accc")
    msg = str(e.value)
    assert "\n" not in msg and "'ncc_acc'" in msg and "did you mean" in msg and "ncbench/core/metrics.py" in msg


def test_two_readings_of_one_name_are_an_error_not_an_order(monkeypatch):
    assert registry.find("ncti_vc").name == "ncti_{term}"
    twin = registry.Metric("ncti_{term}", "§6", "a twin", registry.REAL)
    monkeypatch.setattr(registry, "TEMPLATES", [*registry.TEMPLATES, (registry._template(twin), twin)])
    with pytest.raises(registry.UnknownMetricError, match="reads as 2 declarations"):
        registry.find("ncti_vc")


def test_spec_metric_table_is_the_registry_section_2():
    text = (ROOT / "docs" / "SPEC.md").read_text()
    section = text[text.index("## 2. Collapse metrics"):text.index("## 3.")]
    table = {}
    for line in section.splitlines():
        if line.startswith("| `"):
            cells = line.split(" | ")
            table |= {name: cells[1] for name in re.findall(r"`([a-z0-9_]+)`", cells[0])}
    assert set(table) == {m.name for m in registry.DECLARATIONS if m.section == "§2"}
    for name, formula in table.items():
        assert registry.metric(name).formula == formula, name


def test_the_engine_computes_the_section_2_declarations_in_their_order():
    from ncbench.metrics import SPEC_METRICS, collapse_metrics

    assert SPEC_METRICS == registry.in_section("§2")
    rng = np.random.default_rng(0)
    h = rng.normal(size=(30, 4))
    y = np.arange(30) % 3
    w = rng.normal(size=(3, 4))
    import torch

    out = collapse_metrics(torch.as_tensor(h), torch.as_tensor(y), torch.as_tensor(w), torch.zeros(3))
    assert list(out)[:len(SPEC_METRICS)] == list(SPEC_METRICS)
    assert all(registry.metric(m).scale.contains(out[m]) for m in SPEC_METRICS)


# --------------------------------------------------------------------------- board blocks

def test_a_board_lists_names_and_takes_the_facts_from_the_registry():
    b = BoardSpec.from_dict({"primary": {"metric": "ncc_acc"},
                             "metrics": ["ncc_acc", {"nc1": {"variants": ["a=1"]}}, {"loss": {"role": "target"}}]})
    assert [(m.name, m.higher_is_better, m.role, m.variants) for m in b.metrics.values()] == [
        ("ncc_acc", True, "target", None), ("nc1", False, "descriptor", ("a=1",)), ("loss", False, "target", None)]
    assert b.direction == "higher"


def test_the_old_mapping_form_of_a_board_reads_the_same():
    old = {"primary": {"metric": "test_error"},
           "metrics": {"test_error": {"higher_is_better": False, "role": "target"},
                       "train_cdnv": {"higher_is_better": False, "role": "descriptor"}}}
    new = {"primary": {"metric": "test_error"}, "metrics": ["test_error", "train_cdnv"]}
    assert BoardSpec.from_dict(old) == BoardSpec.from_dict(new)


@pytest.mark.parametrize(("metrics", "needle"), [
    (["ncc_acc", "nc_1"], "unknown metric 'nc_1': did you mean 'nc1'"),
    (["ncc_acc", "lr"], "registry declares no direction for 'lr'"),
    (["ncc_acc", {"nc1": {"role": "headline"}}], "role: one of ['target', 'descriptor']"),
    (["ncc_acc", {"nc1": {"colour": "red"}}], "expected {variants: [...]"),
    (["ncc_acc", ["nc1"]], "a metric name or {name: {variants: [...]}}"),
    (["ncc_acc", "nc1", {"nc1": {"variants": ["a=1"]}}], "['nc1'] listed more than once"),
])
def test_a_bad_board_item_is_one_line_naming_it(metrics, needle):
    with pytest.raises(ValueError) as e:
        BoardSpec.from_dict({"primary": {"metric": "ncc_acc"}, "metrics": metrics}, "tasks/x.yaml leaderboard")
    assert needle in str(e.value) and "\n" not in str(e.value) and "tasks/x.yaml leaderboard" in str(e.value)


def test_the_report_reads_directions_from_either_form_and_skips_what_it_cannot_read():
    from ncbench.results.report import board_directions

    assert board_directions({"leaderboard": {"metrics": ["nc1", {"ncc_acc": {}}, "nonsense"]}}) == {
        "nc1": False, "ncc_acc": True}
    assert board_directions({"leaderboard": {"metrics": {"nc1": {"higher_is_better": True, "role": "target"}}}}) == {
        "nc1": True}
    assert board_directions({}) == {} and board_directions({"leaderboard": {"metrics": 3}}) == {}


def test_submit_refuses_a_summary_metric_the_registry_lacks_with_did_you_mean():
    from ncbench.leaderboard.submit import _summary_by_variant

    rows = pd.DataFrame({"variant": ["", ""], "metric": ["nc1", "test_acuracy"], "value": [0.1, 0.9],
                         "status": ["ok", "ok"], "status_reason": ["", ""]})
    with pytest.raises(ValueError, match=r"^t: unknown metric 'test_acuracy': did you mean 'test_accuracy'"):
        _summary_by_variant("t", rows)
    rows["metric"] = ["nc1", "test_accuracy"]
    assert _summary_by_variant("t", rows)[""]["values"] == {"nc1": 0.1, "test_accuracy": 0.9}


# --------------------------------------------------------------------------- status and intervals, once

def test_severity_is_defined_once_and_orders_the_statuses():
    import importlib

    from ncbench.leaderboard import aggregate
    from ncbench.training import run_status

    submit = importlib.import_module("ncbench.leaderboard.submit")
    assert run_status.SEVERITY is SEVERITY and submit.SEVERITY is SEVERITY
    copies = [p for p in (ROOT / "ncbench").rglob("*.py")
              if re.search(r"SEVERITY = |\"diverged\": 2|def t_interval|def _interval", p.read_text())]
    assert sorted(p.relative_to(ROOT).as_posix() for p in copies) == ["ncbench/core/intervals.py",
                                                                      "ncbench/core/status.py"]
    assert [severity(s) for s in STATUSES] == [0, 1, 2] and severity("weird") == UNKNOWN_SEVERITY == 3
    assert aggregate.worst_status(["ok", "diverged", "failed"]) == "diverged"
    assert aggregate.worst_status(["ok", "weird", "diverged"]) == "weird"
    assert run_status.worst([run_status.RunStatus("failed", "a"), run_status.RunStatus()]).status == "failed"


@pytest.mark.parametrize("n", [2, 3, 4, 7, 12, 30])
@pytest.mark.parametrize("level", [0.8, 0.95, 0.99])
def test_t_interval_is_scipys_student_t(n, level):
    v = np.random.default_rng(n).normal(0.5, 0.1, n)
    mean, std, half = t_interval(v, level)
    low, high = stats.t.interval(level, n - 1, loc=v.mean(), scale=stats.sem(v))
    assert (mean - half, mean + half) == pytest.approx((low, high), rel=1e-12, abs=1e-15)
    assert std == pytest.approx(np.std(v, ddof=1), rel=1e-15)


def test_one_value_has_no_spread():
    mean, std, half = t_interval(np.array([0.25]))
    assert mean == 0.25 and math.isnan(std) and math.isnan(half)


def test_board_cells_and_task_intervals_share_the_one_interval():
    from ncbench.leaderboard.aggregate import Column, cell
    from ncbench.metrics.confidence import mean_ci

    values = [0.71, 0.74, 0.69, 0.72]
    rows = pd.DataFrame({"variant": [""] * 4, "status": ["ok"] * 4, "status_reason": [""] * 4,
                         "m": [repr(x) for x in values]})
    c, ci = cell(rows, Column("m")), mean_ci(values)
    mean, std, half = t_interval(np.asarray(values, dtype=np.float64))
    assert (c.mean, c.std, c.half_width) == (ci.mean, ci.std, ci.half_width) == (mean, std, half)   # bit-equal
