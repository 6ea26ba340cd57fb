"""How a training trajectory's per-epoch record is stored: JSON plus safetensors, never pickle.

A run folder may come from someone else, so nothing ncbench reads from it may execute code. A
`TrajectoryRecord` is written as `record.json` (schema version `RECORD_SCHEMA`, every number and
string) and `record.safetensors` (its tensors, e.g. the CDNV matrices, referenced from the JSON as
`{"__tensor__": key}`). Checkpoints hold the same plain form (`record_to_plain`) and are read with
`torch.load(..., weights_only=True)`. A file that fails to load raises `RecordError`: the caller
reports it and recomputes, it never trusts it.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, fields
from pathlib import Path

import torch

from ncbench.run_files import (
    ReadError,
    UnsafePathError,
    load_torch,
    read_bytes,
    read_json,
    replace_bytes,
)

RECORD_SCHEMA = 1
"""Bumped when the stored form of a record changes; another schema is recomputed, not read."""


class RecordError(ValueError):
    """A stored record or checkpoint that cannot be trusted (unreadable, foreign, other schema)."""


def _encode(obj, tensors: dict[str, torch.Tensor], path: str):
    if isinstance(obj, torch.Tensor):
        tensors[path] = obj.detach().to("cpu").contiguous()
        return {"__tensor__": path}
    if isinstance(obj, dict):
        return {str(k): _encode(v, tensors, f"{path}.{k}") for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_encode(v, tensors, f"{path}.{i}") for i, v in enumerate(obj)]
    if isinstance(obj, float) and not math.isfinite(obj):
        return {"__float__": repr(obj)}          # nan, inf, -inf: JSON has no literal for them
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"cannot store {type(obj).__name__} at {path} in a trajectory record")


def _decode(obj, tensors: dict[str, torch.Tensor]):
    if isinstance(obj, dict):
        if set(obj) == {"__tensor__"}:
            if obj["__tensor__"] not in tensors:
                raise RecordError(f"the record refers to a tensor '{obj['__tensor__']}' that is not stored")
            return tensors[obj["__tensor__"]]
        if set(obj) == {"__float__"}:
            return float(obj["__float__"])
        return {k: _decode(v, tensors) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_decode(v, tensors) for v in obj]
    return obj


def record_to_plain(rec) -> dict:
    """A `TrajectoryRecord` (or `EpochRecord` list) as dicts, lists, numbers, strings and tensors."""
    return asdict(rec) if not isinstance(rec, list) else [asdict(e) for e in rec]


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


_SHAPE = {   # field -> (check, what is expected); a record read back must have the shape it was written in
    "epoch": (lambda v: isinstance(v, int) and not isinstance(v, bool), "an integer"),
    "lr": (_number, "a number"), "fit_loss": (_number, "a number"), "fit_accuracy": (_number, "a number"),
    "loss": (_number, "a number"), "accuracy": (_number, "a number"),
    "n": (lambda v: isinstance(v, int) and not isinstance(v, bool), "an integer"),
    "collapse": (lambda v: isinstance(v, dict), "an object"), "diagnostics": (lambda v: isinstance(v, dict), "an object"),
    "extra": (lambda v: isinstance(v, dict), "an object"), "probes": (lambda v: isinstance(v, dict), "an object"),
    "cdnv_matrix": (lambda v: v is None or isinstance(v, torch.Tensor), "a tensor or null"),
    "config": (lambda v: isinstance(v, dict), "an object"), "trained_by": (lambda v: isinstance(v, dict), "an object"),
    "seconds": (_number, "a number"),
    "class_counts": (lambda v: isinstance(v, list) and all(isinstance(c, int) for c in v), "a list of integers"),
}


def _check_shape(obj: dict, where: str) -> None:
    for k, v in obj.items():
        check, what = _SHAPE.get(k, (lambda v: True, ""))
        if not check(v):
            raise RecordError(f"{where}.{k} is {type(v).__name__} {str(v)[:40]!r}, expected {what}")


def epochs_from_plain(items: list[dict]) -> list:
    """`EpochRecord`s back from their plain form (as written by `record_to_plain`); RecordError for
    anything of another shape (a dict instead of a list, a string instead of a number, ...)."""
    from ncbench.training.evaluation import SplitEval
    from ncbench.training.records import EpochRecord

    if not isinstance(items, list):
        raise RecordError(f"per-epoch records of an unexpected form (a {type(items).__name__}, not a list)")
    split_fields = {f.name for f in fields(SplitEval)}
    out = []
    try:
        for i, e in enumerate(items):
            if not isinstance(e, dict):
                raise RecordError(f"per-epoch record {i} is a {type(e).__name__}, not an object")
            e = dict(e)
            _check_shape(e, f"epochs[{i}]")
            for split in ("train", "test"):
                if e.get(split) is not None:
                    if not isinstance(e[split], dict):
                        raise RecordError(f"epochs[{i}].{split} is a {type(e[split]).__name__}, not an object")
                    _check_shape(e[split], f"epochs[{i}].{split}")
                    e[split] = SplitEval(**{k: v for k, v in e[split].items() if k in split_fields})
            if e.get("train") is None:
                raise RecordError(f"epochs[{i}] has no train split")
            out.append(EpochRecord(**e))
    except (TypeError, KeyError, AttributeError, ValueError) as err:
        if isinstance(err, RecordError):
            raise
        raise RecordError(f"per-epoch records of an unexpected form ({err})") from None
    return out


def record_from_plain(d: dict):
    """A `TrajectoryRecord` from its plain form: an object with at least one evaluated epoch."""
    from ncbench.training.records import TrajectoryRecord

    if not isinstance(d, dict):
        raise RecordError(f"a trajectory record of an unexpected form (a {type(d).__name__}, not an object)")
    if not d.get("epochs"):
        raise RecordError("a trajectory record without any evaluated epoch")
    _check_shape({k: v for k, v in d.items() if k != "epochs"}, "record")
    try:
        return TrajectoryRecord(**{**d, "epochs": epochs_from_plain(d["epochs"])})
    except (TypeError, KeyError) as err:
        raise RecordError(f"a trajectory record of an unexpected form ({err})") from None


def save_record(rec, directory: Path, root: Path | None = None) -> None:
    """Write `record.safetensors` then `record.json` (the JSON last: its presence marks a whole record).
    The JSON keeps the record's key order (not sorted), so a record read back yields its rows in the
    order of the run that wrote it."""
    from safetensors.torch import save

    tensors: dict[str, torch.Tensor] = {}
    body = _encode(record_to_plain(rec), tensors, "record")
    replace_bytes(directory / "record.safetensors", save(tensors), root)
    replace_bytes(directory / "record.json", json.dumps({"schema": RECORD_SCHEMA, "record": body}).encode(), root)


def load_record(directory: Path, root: Path | None = None):
    """The `TrajectoryRecord` stored in `directory`, or None if there is none; RecordError if the
    files are there but unreadable, of another schema or of another shape (e.g. no epochs). The files
    must be regular files inside `root` (`ncbench.run_files`)."""
    from safetensors.torch import load

    jpath, tpath = directory / "record.json", directory / "record.safetensors"
    if not jpath.exists():
        return None
    try:
        doc = read_json(jpath, root)
        tensors = load(read_bytes(tpath, root)) if tpath.exists() else {}
    except (UnsafePathError, ReadError) as err:
        raise RecordError(str(err)) from None
    except Exception as err:  # noqa: BLE001 - any unreadable file is recomputed
        raise RecordError(f"{jpath} or {tpath.name} is unreadable ({type(err).__name__})") from None
    if not isinstance(doc, dict) or doc.get("schema") != RECORD_SCHEMA:
        raise RecordError(f"{jpath} has record schema {doc.get('schema') if isinstance(doc, dict) else '?'}, "
                          f"this ncbench reads schema {RECORD_SCHEMA}")
    if "record" not in doc:
        raise RecordError(f"{jpath} holds no record")
    try:
        return record_from_plain(_decode(doc["record"], tensors))
    except RecordError as err:
        raise RecordError(f"{jpath}: {err}") from None


def load_checkpoint(path: Path, device, root: Path | None = None) -> dict:
    """A trainer checkpoint, read without executing code (`weights_only=True`); RecordError if not."""
    try:
        state = load_torch(path, root, map_location=device)
    except (UnsafePathError, ReadError) as err:  # a pickle with code, a torn file, a FIFO: never trusted
        raise RecordError(str(err)) from None
    if not isinstance(state, dict) or not {"model", "optimizer", "epoch", "records"} <= set(state):
        raise RecordError(f"{path} is not an ncbench trainer checkpoint")
    return state
