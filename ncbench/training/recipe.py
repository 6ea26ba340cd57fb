"""Training recipes as data: optimiser, loss, schedule, budget; named recipes (the paper protocols of
SPEC §10, the CPU default, a ViT recipe) are the YAML files `ncbench/recipes/<name>.yaml`, each a flat
mapping of `Recipe` field names (`--recipe NAME`, `recipe: {protocol: NAME}` in a spec)."""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace
from importlib import resources
from pathlib import Path

import torch

from ncbench.specs.schema import check_fields
from ncbench.specs.yaml_limits import read_yaml

OPTIMIZERS = ("sgd", "adamw")
LOSSES = ("ce", "mse", "squentropy", "dot_regression")


@dataclass(frozen=True)
class Recipe:
    """An optimiser (`sgd`: SGD with momentum and coupled L2 weight decay; `adamw`: AdamW, Loshchilov &
    Hutter 2019, decoupled weight decay, `betas`), a loss (`ce` with optional `label_smoothing`
    (Szegedy et al. 2016), `mse`, `squentropy`, `dot_regression`; `ncbench.training.losses`) and a
    step/cosine/constant LR schedule, after `warmup_epochs` of linear warm-up (Goyal et al. 2017: the lr
    rises as `lr·(s+1)/W` over the first W steps, then the schedule runs over the remaining steps)."""

    epochs: int = 30
    batch_size: int = 128
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 5e-4
    schedule: str = "step"                 # step | cosine | constant
    milestones: tuple[float, ...] = (1 / 3, 2 / 3)   # fractions of `epochs` (step schedule)
    gamma: float = 0.1
    augment: bool = False
    loss: str = "ce"                       # ce | mse | squentropy | dot_regression
    optimizer: str = "sgd"                 # sgd (momentum, coupled L2) | adamw (decoupled weight decay)
    betas: tuple[float, float] = (0.9, 0.999)   # adamw only (torch's defaults)
    label_smoothing: float = 0.0           # ce / squentropy: targets (1-ε)·onehot + ε/K
    precision: str = "fp32"                # fp32 | bf16 | fp16 (CUDA autocast)
    eval_every: int = 1
    checkpoint_every: int = 1              # epochs between checkpoints (resume loses at most this many)
    mixup_alpha: float = 0.0
    warmup_epochs: int = 0                 # linear warm-up epochs before the schedule (0: none)

    def __post_init__(self) -> None:
        check_fields(self, prefix="recipe.")   # types first (`ncbench.specs.schema`), then ranges
        if self.lr <= 0 or self.weight_decay < 0 or self.gamma <= 0 or self.mixup_alpha < 0 or self.momentum < 0:
            raise ValueError(f"recipe.lr and gamma must be positive, weight_decay, momentum and mixup_alpha "
                             f"non-negative; got lr={self.lr!r}, gamma={self.gamma!r}, weight_decay="
                             f"{self.weight_decay!r}, momentum={self.momentum!r}, mixup_alpha={self.mixup_alpha!r}")
        if self.warmup_epochs < 0:
            raise ValueError(f"recipe.warmup_epochs must be 0 or more, got {self.warmup_epochs!r}")
        if self.schedule not in ("step", "cosine", "constant"):
            raise ValueError(f"recipe.schedule must be step, cosine or constant, not {self.schedule!r}")
        if self.precision not in ("fp32", "bf16", "fp16"):
            raise ValueError(f"recipe.precision must be fp32, bf16 or fp16, not {self.precision!r}")
        if self.epochs < 1 or self.batch_size < 1 or self.eval_every < 1 or self.checkpoint_every < 1:
            raise ValueError("recipe.epochs, batch_size, eval_every and checkpoint_every must be positive")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"recipe.optimizer must be one of {', '.join(OPTIMIZERS)}, not {self.optimizer!r}")
        if self.loss not in LOSSES:
            raise ValueError(f"recipe.loss must be one of {', '.join(LOSSES)}, not {self.loss!r}")
        if not 0.0 <= float(self.label_smoothing) < 1.0:
            raise ValueError(f"recipe.label_smoothing must be in [0, 1), got {self.label_smoothing!r}")
        if self.label_smoothing and self.loss not in ("ce", "squentropy"):
            raise ValueError(f"recipe.label_smoothing applies to the ce and squentropy losses, not "
                             f"{self.loss!r}: set label_smoothing: 0 or loss: ce")
        betas = tuple(float(b) for b in self.betas)
        if len(betas) != 2 or not all(0.0 <= b < 1.0 for b in betas):
            raise ValueError(f"recipe.betas must be two numbers in [0, 1), got {self.betas!r}")
        object.__setattr__(self, "betas", betas)
        object.__setattr__(self, "milestones", tuple(self.milestones))

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict | str | None) -> Recipe:
        """A dict (keys = fields; `protocol: NAME` starts from a named recipe) or a recipe name."""
        if d is None:
            return cls()
        if isinstance(d, str):
            return protocol(d)
        if not isinstance(d, dict):
            raise ValueError(f"recipe must be a recipe name or a mapping of recipe keys, got {d!r}")  # noqa: TRY004
        d = dict(d)
        base = protocol(d.pop("protocol")) if "protocol" in d else cls()
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            import difflib
            hints = {u: difflib.get_close_matches(u, known, 1) for u in unknown}
            raise ValueError("unknown recipe keys: " + ", ".join(
                f"{u}" + (f" (did you mean {h[0]}?)" if h else "") for u, h in hints.items()))
        return replace(base, **d)

    def build_optimizer(self, params) -> torch.optim.Optimizer:
        """`torch.optim.SGD(lr, momentum, weight_decay)` or `torch.optim.AdamW(lr, betas, weight_decay)`."""
        params = list(params)
        if self.optimizer == "adamw":
            return torch.optim.AdamW(params, lr=self.lr, betas=self.betas, weight_decay=self.weight_decay)
        return torch.optim.SGD(params, lr=self.lr, momentum=self.momentum, weight_decay=self.weight_decay)

    def scheduler(self, optimizer: torch.optim.Optimizer, steps_per_epoch: int):
        total = self.epochs * steps_per_epoch
        if self.warmup_epochs:
            return torch.optim.lr_scheduler.LambdaLR(optimizer, self.lr_factor(steps_per_epoch))
        if self.schedule == "constant":
            return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0)
        if self.schedule == "cosine":
            return torch.optim.lr_scheduler.LambdaLR(
                optimizer, lambda s: 0.5 * (1 + torch.cos(torch.tensor(torch.pi * s / total)).item()))
        bounds = [round(m * self.epochs) * steps_per_epoch for m in self.milestones]
        return torch.optim.lr_scheduler.MultiStepLR(optimizer, bounds, self.gamma)


    def lr_factor(self, steps_per_epoch: int):
        """The lr multiplier at optimiser step `s` with warm-up: `(s+1)/W` for the first `W` steps
        (`warmup_epochs`, at most `epochs`), then the schedule over the `total − W` steps left."""
        total = self.epochs * steps_per_epoch
        warm = min(self.warmup_epochs, self.epochs) * steps_per_epoch
        rest = max(1, total - warm)
        bounds = [round(m * self.epochs) * steps_per_epoch - warm for m in self.milestones]

        def factor(s: int) -> float:
            if s < warm:
                return (s + 1) / warm
            t = s - warm
            if self.schedule == "cosine":
                return 0.5 * (1 + math.cos(math.pi * t / rest))
            if self.schedule == "step":
                return self.gamma ** sum(t >= b for b in bounds)
            return 1.0

        return factor

    def decay_budget(self, steps_per_epoch: int, from_epoch: int = 0) -> float:
        """The weight-decay budget of the steps after epoch `from_epoch` (e.g. the terminal phase's
        start): `wd · Σ_{s ≥ from_epoch·steps_per_epoch} lr_s`. Coupled L2 alone scales the weights by
        `Π(1 − lr_s·wd) ≈ exp(−budget)` over those steps (momentum aside), so it says how far decay can
        move a fitted network: issue 28 asks ≥ 0.1 of a terminal phase (Papyan et al. 2020's CIFAR-10
        runs: about 0.6)."""
        f = self.lr_factor(steps_per_epoch)
        start = min(max(from_epoch, 0), self.epochs) * steps_per_epoch
        return self.weight_decay * self.lr * sum(f(s) for s in range(start, self.epochs * steps_per_epoch))


RECIPES_DIR = Path(str(resources.files("ncbench.recipes")))
"""The named recipes shipped with ncbench: `<name>.yaml`, each a flat mapping of `Recipe` fields."""


def load_recipe_file(path: Path) -> Recipe:
    """A recipe YAML file (a flat mapping of `Recipe` fields over the defaults), checked."""
    data = read_yaml(path)
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a recipe is a mapping of recipe keys (lr: 0.1, ...)")  # noqa: TRY004
    if "protocol" in data:
        raise ValueError(f"{path}: a named recipe gives its values itself (no `protocol:` key)")
    try:
        return Recipe.from_dict(data)
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from None


PROTOCOLS: dict[str, Recipe] = {p.stem: load_recipe_file(p) for p in sorted(RECIPES_DIR.glob("*.yaml"))}
"""Name → recipe of every file in `RECIPES_DIR` (`ncbench list recipes`)."""


def protocol(name: str) -> Recipe:
    """The named recipe `name` (`ncbench/recipes/<name>.yaml`); did-you-mean when unknown."""
    if not isinstance(name, str) or name not in PROTOCOLS:
        from ncbench.registry import suggest
        raise suggest("recipe", str(name), list(PROTOCOLS))
    return PROTOCOLS[name]

