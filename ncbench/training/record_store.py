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

from ncbench.atomic_files import replacing

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


def epochs_from_plain(items: list[dict]) -> list:
    """`EpochRecord`s back from their plain form (as written by `record_to_plain`)."""
    from ncbench.training.evaluation import SplitEval
    from ncbench.training.records import EpochRecord

    split_fields = {f.name for f in fields(SplitEval)}
    out = []
    try:
        for e in items:
            e = dict(e)
            for split in ("train", "test"):
                if e.get(split) is not None:
                    e[split] = SplitEval(**{k: v for k, v in e[split].items() if k in split_fields})
            out.append(EpochRecord(**e))
    except (TypeError, KeyError, AttributeError) as err:
        raise RecordError(f"per-epoch records of an unexpected form ({err})") from None
    return out


def record_from_plain(d: dict):
    from ncbench.training.records import TrajectoryRecord

    try:
        return TrajectoryRecord(**{**d, "epochs": epochs_from_plain(d["epochs"])})
    except (TypeError, KeyError) as err:
        raise RecordError(f"a trajectory record of an unexpected form ({err})") from None


def save_record(rec, directory: Path) -> None:
    """Write `record.safetensors` then `record.json` (the JSON last: its presence marks a whole record)."""
    from safetensors.torch import save_file

    directory.mkdir(parents=True, exist_ok=True)
    tensors: dict[str, torch.Tensor] = {}
    body = _encode(record_to_plain(rec), tensors, "record")
    with replacing(directory / "record.safetensors") as tmp:
        save_file(tensors, str(tmp))
    with replacing(directory / "record.json") as tmp:
        tmp.write_text(json.dumps({"schema": RECORD_SCHEMA, "record": body}, sort_keys=True), encoding="utf-8")


def load_record(directory: Path):
    """The `TrajectoryRecord` stored in `directory`, or None if there is none; RecordError if the
    files are there but unreadable, of another schema or inconsistent."""
    from safetensors.torch import load_file

    jpath, tpath = directory / "record.json", directory / "record.safetensors"
    if not jpath.exists():
        return None
    try:
        doc = json.loads(jpath.read_text(encoding="utf-8"))
        tensors = load_file(str(tpath)) if tpath.exists() else {}
    except Exception as err:  # noqa: BLE001 - any unreadable file is recomputed
        raise RecordError(f"{jpath} or {tpath.name} is unreadable ({type(err).__name__})") from None
    if not isinstance(doc, dict) or doc.get("schema") != RECORD_SCHEMA:
        raise RecordError(f"{jpath} has record schema {doc.get('schema') if isinstance(doc, dict) else '?'}, "
                          f"this ncbench reads schema {RECORD_SCHEMA}")
    return record_from_plain(_decode(doc["record"], tensors))


def load_checkpoint(path: Path, device) -> dict:
    """A trainer checkpoint, read without executing code (`weights_only=True`); RecordError if not."""
    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except Exception as err:  # noqa: BLE001 - a pickle with code, a torn file: never trusted
        raise RecordError(f"{path} is not a checkpoint ncbench can read safely "
                          f"({type(err).__name__}: {str(err).splitlines()[0][:160] if str(err) else ''})") from None
    if not isinstance(state, dict) or not {"model", "optimizer", "epoch", "records"} <= set(state):
        raise RecordError(f"{path} is not an ncbench trainer checkpoint")
    return state
