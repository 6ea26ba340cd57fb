"""Training recipes as data: optimiser, loss, schedule, budget; the paper protocols of SPEC §10 by name."""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace

import torch

OPTIMIZERS = ("sgd", "adamw")
LOSSES = ("ce", "mse", "squentropy", "dot_regression")


@dataclass(frozen=True)
class Recipe:
    """An optimiser (`sgd`: SGD with momentum and coupled L2 weight decay; `adamw`: AdamW, Loshchilov &
    Hutter 2019, decoupled weight decay, `betas`), a loss (`ce` with optional `label_smoothing`
    (Szegedy et al. 2016), `mse`, `squentropy`, `dot_regression`; `ncbench.training.losses`) and a
    step/cosine/constant LR schedule."""

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

    def __post_init__(self) -> None:
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
        """A dict (keys = fields; `protocol: NAME` starts from a named protocol) or a protocol name."""
        if d is None:
            return cls()
        if isinstance(d, str):
            return protocol(d)
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
        if self.schedule == "constant":
            return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0)
        if self.schedule == "cosine":
            return torch.optim.lr_scheduler.LambdaLR(
                optimizer, lambda s: 0.5 * (1 + torch.cos(torch.tensor(torch.pi * s / total)).item()))
        bounds = [round(m * self.epochs) * steps_per_epoch for m in self.milestones]
        return torch.optim.lr_scheduler.MultiStepLR(optimizer, bounds, self.gamma)


PROTOCOLS: dict[str, Recipe] = {
    # Papyan, Han, Donoho 2020: 350 epochs, lr ÷10 at 1/3 and 2/3, wd 5e-4, batch 128, no augmentation
    "papyan2020": Recipe(epochs=350, batch_size=128, lr=0.1, weight_decay=5e-4, eval_every=10),
    # Fang et al. 2021: minority collapse, lr 0.1, wd 5e-4, batch 128, 350 epochs
    "fang2021": Recipe(epochs=350, batch_size=128, lr=0.1, weight_decay=5e-4, eval_every=10),
    # Yang et al. 2022: CIFAR-LT, 200 epochs, lr 0.1, wd 2e-4, batch 128, mixup α = 1
    "yang2022": Recipe(epochs=200, batch_size=128, lr=0.1, weight_decay=2e-4, schedule="cosine",
                       augment=True, mixup_alpha=1.0, eval_every=10),
    # the embedded default (MNIST-5k, CPU, ~2 min for test_resnet): strong weight decay and a long
    # cosine tail, so the run enters the terminal phase (100% train accuracy by about epoch 24) and
    # NC1 keeps falling by more than 10x after it
    "cpu-mnist5k": Recipe(epochs=60, batch_size=128, lr=0.05, schedule="cosine", weight_decay=5e-3,
                          eval_every=2),
}


def protocol(name: str) -> Recipe:
    if name not in PROTOCOLS:
        from ncbench.registry import suggest
        raise suggest("protocol", name, list(PROTOCOLS))
    return PROTOCOLS[name]

