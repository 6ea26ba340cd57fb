"""Typed options per kind (`ncbench.tasks.options`): every kind's dataclass refuses a bad type, a bad
range and an unknown key (with did-you-mean) in one line, says when a list became a sweep, and
round-trips (dataclass -> dict -> dataclass) for its defaults and for every shipped spec's options."""
from __future__ import annotations

import dataclasses

import pytest

from ncbench.specs import load_task, members
from ncbench.specs.loading import task_names
from ncbench.tasks import TASK_KINDS
from ncbench.tasks.options import Options, coerce, integer, number

WHERE = "task 't' (k)"

# kind: (a bad type, a bad range, an unknown key and the known key it resembles)
CASES = {
    "train_collapse": ({"baselines": "no"}, {"labels": "shuffled"}, ("lables", "labels")),
    "test_collapse": ({"model_kwargs": [1]}, {"labels": "none"}, ("baseline", "baselines")),
    "cdnv_bound": ({"delta": "0.1"}, {"delta": 1.0}, ("delt", "delta")),
    "minority_collapse": ({"n": 2.5}, {"ratio": 0.5}, ("clasifier", "classifier")),
    "ncc_depth": ({"batch_size": True}, {"epsilon": 1.0}, ("granularty", "granularity")),
    "fewshot_transfer": ({"probe": "yes"}, {"n_way": 1}, ("epsiodes", "episodes")),
    "frozen_transfer": ({"knn_k": 2.5}, {"probe_l2": 0.0}, ("max_train_per_clas", "max_train_per_class")),
    "transfer_ranking": ({"zoo": "resnet18"}, {"max_parallel": 0}, ("lancher", "launcher")),
    "ufm": ({"lr": "fast"}, {"log_every": 0}, ("stpes", "steps")),
    "layer_peeled": ({"K": 6.5}, {"K": "ten"}, ("restart", "restarts")),
}


REQUIRED = {"transfer_ranking": {"zoo": [{"model": "a", "pretrained": True}, {"model": "b", "pretrained": True}]}}
"""Options a kind has no valid default for."""


def shipped_kinds() -> list[str]:
    """The registered kinds ncbench ships (other tests register kinds of their own)."""
    return sorted(k for k in TASK_KINDS if TASK_KINDS.get(k).__module__.startswith("ncbench.tasks."))


def options_of(kind: str) -> type[Options]:
    return TASK_KINDS.get(kind).options_class()


def test_every_registered_kind_declares_a_frozen_options_dataclass_with_its_cases():
    assert sorted(CASES) == shipped_kinds()
    for kind in shipped_kinds():
        cls = options_of(kind)
        assert dataclasses.is_dataclass(cls) and issubclass(cls, Options) and cls.__name__ != f"{kind}_options"
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(cls(**REQUIRED.get(kind, {})), dataclasses.fields(cls)[0].name, None)


@pytest.mark.parametrize("kind", sorted(CASES))
@pytest.mark.parametrize("case", [0, 1], ids=["type", "range"])
def test_a_bad_value_is_one_line_naming_the_option_and_value(kind, case):
    bad = CASES[kind][case]
    (key, value), = bad.items()
    with pytest.raises(ValueError) as e:
        options_of(kind).from_dict({**REQUIRED.get(kind, {}), **bad}, WHERE)
    msg = str(e.value)
    assert msg.startswith(f"{WHERE}: options.{key} ") and f"got {value!r}" in msg and "\n" not in msg, msg


@pytest.mark.parametrize("kind", sorted(CASES))
def test_an_unknown_key_says_did_you_mean(kind):
    typo, meant = CASES[kind][2]
    with pytest.raises(ValueError, match=rf"unknown options {typo} \(did you mean {meant}\?\); known: ") as e:
        options_of(kind).from_dict({typo: 1}, WHERE)
    assert "\n" not in str(e.value)


def test_a_list_where_one_value_belongs_became_a_sweep():
    with pytest.raises(ValueError, match=r"options.delta takes one value; a list became a sweep: declare "
                                         r"`sweep: \{delta: \[0.1, 0.2\]\}`"):
        options_of("cdnv_bound").from_dict({"delta": [0.1, 0.2]}, WHERE)
    with pytest.raises(ValueError, match=r"options.ratios became a sweep: declare `sweep: \{ratio: \[1, 10\]\}`"):
        options_of("minority_collapse").from_dict({"ratios": [1, 10]}, WHERE)


def _shipped_options():
    for name in task_names():
        spec = load_task(name)
        for m in members(spec):
            yield pytest.param(m.kind, m.options, id=f"{name}:{m.variant}" if m.variant else name)


@pytest.mark.parametrize("kind, options", [pytest.param(k, REQUIRED.get(k, {}), id=f"{k}:defaults") for k in sorted(CASES)]
                         + list(_shipped_options()))
def test_options_round_trip_and_keep_what_the_spec_wrote(kind, options):
    cls = options_of(kind)
    typed = cls.from_dict(dict(options), WHERE)
    assert cls.from_dict(typed.to_dict(), WHERE) == typed
    assert set(typed.to_dict()) == {f.name for f in dataclasses.fields(cls)} >= set(options)
    normalised = {"class_counts": tuple, "labels": lambda v: "true" if v is True else v}   # the two that change
    for key, value in options.items():   # the kind reads what the spec wrote (a YAML number as that number)
        assert typed.to_dict()[key] == normalised.get(key, lambda v: v)(value), key


def test_the_family_fields_come_with_every_trained_kind():
    from ncbench.tasks.trajectory_task import TrainedOptions

    trained = [k for k in shipped_kinds() if issubclass(TASK_KINDS.get(k), TASK_KINDS.get("train_collapse").__mro__[1])]
    assert sorted(trained) == ["cdnv_bound", "fewshot_transfer", "minority_collapse", "ncc_depth", "test_collapse",
                               "train_collapse"]
    for kind in trained:
        assert issubclass(options_of(kind), TrainedOptions)
        with pytest.raises(ValueError, match="options.labels must be true or random"):
            options_of(kind).from_dict({"labels": "shuffled"}, WHERE)
    assert options_of("cdnv_bound").from_dict({"labels": True}, WHERE).labels == "true"


def test_checks_at_their_bounds():
    at_least_two = integer(2)
    assert at_least_two(2) == 2
    for bad in (1, True, 2.0, "2"):
        with pytest.raises(ValueError, match="an integer >= 2"):
            at_least_two(bad)
    open_unit = number(0, 1, closed="()")
    assert open_unit(0.5) == 0.5 and isinstance(number(1)(10), int)   # a number is used as written
    for bad in (0, 1, float("nan"), float("inf"), False):
        with pytest.raises(ValueError, match=r"a number in \(0, 1\)"):
            open_unit(bad)
    assert number(0, 1)(0) == 0
    assert coerce("1e-3", float) == 0.001 and coerce(10.0, int) == 10 and isinstance(coerce(10.0, int), int)
    for value, kind in ((10.5, int), (True, int), ("yes", bool), (True, float)):
        with pytest.raises(ValueError, match=f"must be a {kind.__name__}"):
            coerce(value, kind)


def test_a_kind_without_a_dataclass_gets_one_from_its_default_options():
    from ncbench.tasks.base import Task
    from ncbench.tasks.trajectory_task import TrainedOptions, TrajectoryTask

    class Plain(Task):
        default_options = {"n": 3, "xs": [1]}   # noqa: RUF012 - the legacy declaration, read once

    class Trained(TrajectoryTask):
        default_options = {"k": 1}   # noqa: RUF012

    assert Plain.options_class().defaults() == {"n": 3, "xs": [1]}
    assert Plain.options_class()().xs is not Plain.options_class()().xs   # a list default per instance
    assert issubclass(Trained.options_class(), TrainedOptions) and Trained.known_options()["k"] == 1
    with pytest.raises(ValueError, match=r"unknown options nn \(did you mean n\?\)"):
        Plain.options_class().from_dict({"nn": 1}, WHERE)
