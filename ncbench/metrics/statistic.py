"""`Statistic`: a streaming statistic with declared, reducible states (the torchmetrics pattern).

A statistic declares each state with its reduction (`add_state(name, default, reduce=...)`):
`"sum"`, `"max"`, `"min"` (element-wise, tensors or Python numbers), `"cat"` (tensors joined along
dim 0, rank order) or a `Reduction` object that combines several states at once (e.g. Chan et al.'s
merge of counts, means and centred scatters, `ncbench.metrics.collapse`). `update` folds a batch in,
`compute` turns the state into numbers; `merge(other)` folds another shard's state in and
`all_reduce(group)` combines the states of all processes (any torch.distributed backend: one
collective per elementwise reduction kind, all states of that kind packed into one float64 vector).
`state_dict` / `load_state_dict` / `reset` save, restore and clear the declared states.

Python numbers in states are exact through the float64 packing up to 2^53.
"""
from __future__ import annotations

import copy

import torch

DTYPE = torch.float64
ELEMENTWISE = ("sum", "max", "min")


class Reduction:
    """A reduction over a group of states (every state declared with the same object).

    `merge(mine, theirs)` and `all_reduce(mine, group)` get `{name: value}` of the group's states and
    return the combined `{name: value}`; the statistic stores it with `Statistic._write_states`."""

    def merge(self, mine: dict, theirs: dict) -> dict:  # pragma: no cover - interface
        raise NotImplementedError

    def all_reduce(self, mine: dict, group=None) -> dict:  # pragma: no cover - interface
        raise NotImplementedError


def _copy(value):
    return value.clone() if isinstance(value, torch.Tensor) else copy.deepcopy(value)


def _combine(kind: str, a, b):
    """Element-wise `sum`/`max`/`min` or `cat` of two values of one state."""
    if kind == "sum":
        return a + b
    if kind == "cat":
        return torch.cat([a, b.to(a.device)])
    if isinstance(a, torch.Tensor):
        return torch.maximum(a, b.to(a.device)) if kind == "max" else torch.minimum(a, b.to(a.device))
    return max(a, b) if kind == "max" else min(a, b)


class Statistic:
    """Base of every streaming statistic: declared states, merge, all_reduce, state_dict.

    Subclasses call `add_state` in `__init__`, implement `update` and `compute`, and may override
    `_check_compatible(other)` (merge only states of the same configuration), `_write_states`
    (store reduced values, e.g. into a derived representation) and `_constants` (configuration
    saved in `state_dict` ahead of the states)."""

    def __init__(self):
        self._reductions: dict[str, str | Reduction] = {}
        self._defaults: dict[str, object] = {}

    # -- declaration ---------------------------------------------------------------------------------
    def add_state(self, name: str, default, reduce: str | Reduction = "sum") -> None:
        """Declare state `name` starting at `default` (a tensor or a Python number), reduced by
        `reduce`: "sum" | "max" | "min" | "cat" | a `Reduction`. `default=None`: the subclass
        stores the value itself (readable as `getattr(self, name)`, written by `_write_states`)."""
        if not isinstance(reduce, Reduction) and reduce not in (*ELEMENTWISE, "cat"):
            raise ValueError(f"state {name!r}: reduce must be 'sum', 'max', 'min', 'cat' or a Reduction, "
                             f"got {reduce!r}")
        if reduce == "cat" and not isinstance(default, torch.Tensor):
            raise ValueError(f"state {name!r}: a 'cat' state must default to a tensor")
        self._reductions[name] = reduce
        self._defaults[name] = default
        if default is not None:
            setattr(self, name, _copy(default))

    @property
    def state_names(self) -> tuple[str, ...]:
        return tuple(self._reductions)

    def _states(self, names=None) -> dict:
        return {n: getattr(self, n) for n in (names or self._reductions)}

    def _write_states(self, values: dict) -> None:
        for n, v in values.items():
            setattr(self, n, v)

    def _check_compatible(self, other: Statistic) -> None:
        if type(other) is not type(self):
            raise ValueError(f"cannot merge a {type(other).__name__} into a {type(self).__name__}")

    def _constants(self) -> dict:
        return {}

    def _device(self) -> torch.device:
        dev = getattr(self, "device", None)
        if dev is not None:
            return torch.device(dev)
        for v in self._states().values():
            if isinstance(v, torch.Tensor):
                return v.device
        return torch.device("cpu")

    def _groups(self) -> tuple[dict[str, list[str]], dict[int, tuple[Reduction, list[str]]]]:
        """States by element-wise kind (and `cat`), and the custom reductions with their states."""
        kinds: dict[str, list[str]] = {}
        custom: dict[int, tuple[Reduction, list[str]]] = {}
        for n, r in self._reductions.items():
            if isinstance(r, Reduction):
                custom.setdefault(id(r), (r, []))[1].append(n)
            else:
                kinds.setdefault(r, []).append(n)
        return kinds, custom

    # -- the protocol ----------------------------------------------------------------------------------
    def update(self, *args, **kwargs) -> Statistic:  # pragma: no cover - interface
        raise NotImplementedError

    def compute(self, *args, **kwargs):  # pragma: no cover - interface
        raise NotImplementedError

    def merge(self, other: Statistic) -> Statistic:
        """Fold the state of `other` (another shard of the same data) into this one."""
        self._check_compatible(other)
        kinds, custom = self._groups()
        out = {}
        for kind, names in kinds.items():
            for n in names:
                out[n] = _combine(kind, getattr(self, n), getattr(other, n))
        for r, names in custom.values():
            out.update(r.merge(self._states(names), other._states(names)))
        self._write_states(out)
        return self

    def all_reduce(self, group=None) -> Statistic:
        """Combine the states of every process of `group` (torch.distributed, initialised): after it,
        each rank holds the state of the whole data. One collective per element-wise kind, one for
        the `cat` lengths plus one per `cat` state, and whatever each custom `Reduction` needs."""
        import torch.distributed as dist

        kinds, custom = self._groups()
        device = self._device()
        ops = {"sum": dist.ReduceOp.SUM, "max": dist.ReduceOp.MAX, "min": dist.ReduceOp.MIN}
        out = {}
        for kind, names in kinds.items():
            values = self._states(names)
            if kind == "cat":
                out.update(_all_gather_cat(values, device, group))
                continue
            flat = torch.cat([torch.as_tensor(v, dtype=DTYPE).to(device).reshape(-1) for v in values.values()])
            dist.all_reduce(flat, op=ops[kind], group=group)
            out.update(_unpack(values, flat))
        for r, names in custom.values():
            out.update(r.all_reduce(self._states(names), group))
        self._write_states(out)
        return self

    def state_dict(self) -> dict:
        """Configuration (`_constants`) then every declared state (tensors cloned)."""
        return {**self._constants(), **{n: _copy(v) for n, v in self._states().items()}}

    def load_state_dict(self, state: dict) -> Statistic:
        """Restore the states saved by `state_dict` (missing names: ValueError naming them)."""
        missing = [n for n in self._reductions if n not in state]
        if missing:
            raise ValueError(f"{type(self).__name__}.load_state_dict: the state lacks {missing}; "
                             f"expected the keys of state_dict(): {list(self._reductions)}")
        wrong = {k: (state[k], v) for k, v in self._constants().items() if k in state and state[k] != v}
        if wrong:
            raise ValueError(f"{type(self).__name__}.load_state_dict: the state was saved with other settings "
                             + ", ".join(f"{k}={a!r} (this statistic: {b!r})" for k, (a, b) in wrong.items()))
        self._write_states({n: _copy(state[n]) for n in self._reductions})
        return self

    def reset(self) -> Statistic:
        """Every declared state back to its default."""
        self._write_states({n: _copy(d) for n, d in self._defaults.items() if d is not None})
        return self


def _unpack(values: dict, flat: torch.Tensor) -> dict:
    """Split a reduced flat float64 vector back into the shapes and types of `values`."""
    out, offset = {}, 0
    for n, v in values.items():
        if isinstance(v, torch.Tensor):
            k = v.numel()
            out[n] = flat[offset:offset + k].reshape(v.shape).to(v.dtype)
        else:
            k = 1
            x = float(flat[offset])
            out[n] = round(x) if isinstance(v, int) else x
        offset += k
    return out


def _all_gather_cat(values: dict, device: torch.device, group) -> dict:
    """`cat` states of every rank joined in rank order: lengths gathered, then the padded rows."""
    import torch.distributed as dist

    world = dist.get_world_size(group)
    lengths = torch.tensor([v.shape[0] for v in values.values()], dtype=torch.long, device=device)
    all_lengths = [torch.empty_like(lengths) for _ in range(world)]
    dist.all_gather(all_lengths, lengths, group=group)
    out = {}
    for i, (n, v) in enumerate(values.items()):
        longest = max(int(t[i]) for t in all_lengths)
        padded = v.new_zeros((longest, *v.shape[1:])).to(device)
        padded[:v.shape[0]] = v
        parts = [torch.empty_like(padded) for _ in range(world)]
        dist.all_gather(parts, padded, group=group)
        out[n] = torch.cat([p[:int(t[i])] for p, t in zip(parts, all_lengths)]).to(v.device)
    return out


class Totals(Statistic):
    """Named running sums (e.g. a loss sum, correct predictions and samples seen): `update(name=x)`
    adds, `compute()` gives `{name: sum}`; Python numbers stay Python numbers (ints exact)."""

    def __init__(self, device: torch.device | str = "cpu", **start):
        super().__init__()
        self.device = torch.device(device)
        for name, value in start.items():
            self.add_state(name, value, "sum")

    def update(self, **values) -> Totals:
        unknown = [k for k in values if k not in self._reductions]
        if unknown:
            raise ValueError(f"Totals.update: unknown totals {unknown}; declared: {list(self._reductions)}")
        for k, v in values.items():
            setattr(self, k, getattr(self, k) + v)
        return self

    def compute(self) -> dict:
        return self._states()

    def _constants(self) -> dict:
        return {"names": list(self._reductions)}
