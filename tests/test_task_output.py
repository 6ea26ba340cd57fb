"""The typed runner <-> kind contract (issue 24, item 3): a kind returns a `TaskOutput` whose facts are
its frozen `TaskMeta` dataclass (config.json's "meta" block via `to_dict`, read back by `from_dict`),
and `layer_statistics` returns a picklable `LayerStatistics`."""
from __future__ import annotations

import json
import math
import pickle
from dataclasses import FrozenInstanceError, dataclass

import pytest

from ncbench.tasks.base import NoMeta, TaskMeta, TaskOutput
from ncbench.training.layer_statistics import LAYER_METRICS, LayerStatistics, SplitLayers
from ncbench.training.run_status import RunStatus


@dataclass(frozen=True)
class Inner(TaskMeta):
    hits: int
    names: list[str]


@dataclass(frozen=True)
class Outer(TaskMeta):
    precision: str
    inner: Inner
    runs: list[Inner]
    depth: int | None


def outer() -> Outer:
    return Outer("fp64", Inner(2, ["a"]), [Inner(0, []), Inner(1, ["b", "c"])], None)


def test_meta_round_trips_through_json_with_nested_facts():
    m = outer()
    plain = json.loads(json.dumps(m.to_dict()))
    assert plain == {"precision": "fp64", "inner": {"hits": 2, "names": ["a"]},
                     "runs": [{"hits": 0, "names": []}, {"hits": 1, "names": ["b", "c"]}], "depth": None}
    back = Outer.from_dict(plain)
    assert back == m and type(back.inner) is Inner and all(type(r) is Inner for r in back.runs)
    assert NoMeta().to_dict() == {} and NoMeta.from_dict({}) == NoMeta()
    with pytest.raises(FrozenInstanceError):
        m.precision = "fp32"


@pytest.mark.parametrize("bad, says", [
    ({"precision": "fp64", "inner": {"hits": 2, "names": []}, "runs": []}, "'depth'"),               # a key missing
    ({**outer().to_dict(), "extra": 1}, "'extra'"),                                                     # a key too many
    ({**outer().to_dict(), "inner": {"hits": 2}}, "meta.inner"),                                        # nested, named
    ([1, 2], "a list"),
])
def test_meta_of_another_version_is_one_clear_line(bad, says):
    with pytest.raises(ValueError, match="run the task again with --force") as e:
        Outer.from_dict(bad, "run/t/config.json")
    assert says in str(e.value) and "run/t/config.json" in str(e.value) and "\n" not in str(e.value)


def test_task_output_is_typed():
    out = TaskOutput([{"split": "summary", "metric": "nc1", "value": 1.0}])
    assert out.meta == NoMeta() and out.status == RunStatus() and out.precision == "fp32" and out.members == ()
    assert TaskOutput([], meta=outer(), precision="fp64").meta.inner.hits == 2
    with pytest.raises(TypeError, match="TaskMeta dataclass, got dict"):
        TaskOutput([], meta={"num_classes": 3})                  # a free dict no longer crosses the contract
    with pytest.raises(ValueError, match="precision is 'fp32' but its meta records 'fp64'"):
        TaskOutput([], meta=outer())                              # one precision, not two that disagree


def layer_stats(with_test: bool = True) -> LayerStatistics:
    def split(n, shift):
        return SplitLayers({m: [0.1 * i + shift for i in range(3)] for m in LAYER_METRICS},
                           {"nc1": 0.5 + shift, "ncc_acc": 1.0}, n)
    return LayerStatistics(["blocks.0", "blocks.1", "pre_logits"], ["block", "block", "pre_logits"], [8, 16, 16],
                           "blocks", "avg", split(30, 0.0), split(20, math.nan) if with_test else None)


@pytest.mark.parametrize("with_test", [True, False])
def test_layer_statistics_pickle_and_plain_round_trips(with_test):
    st = layer_stats(with_test)
    again = pickle.loads(pickle.dumps(st))              # crosses process boundaries (frozen pass, jobs)
    assert again.layers == st.layers and again.train == st.train and type(again.train) is SplitLayers
    plain = st.to_plain()                               # what a trajectory record stores (probes)
    assert isinstance(plain["train"], dict) and (plain["test"] is None) == (not with_test)
    back = LayerStatistics.from_plain(plain)
    assert back.train == st.train and back.layers == st.layers and back.dims == st.dims
    if with_test:
        assert type(back.test) is SplitLayers and back.test.n == 20 and math.isnan(back.test.collapse["nc1"])
    assert st.train.at(1) == {m: st.train.metrics[m][1] for m in LAYER_METRICS}
    assert list(st.train.at(1)) == list(LAYER_METRICS)                 # the rows' metric order
