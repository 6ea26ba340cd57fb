"""Standard image benchmarks read through torchvision's own dataset classes, on disk in its layout.

| name            | class              | splits               | shape   | classes |
|-----------------|--------------------|----------------------|---------|---------|
| `mnist`         | `MNIST`            | train, test          | 1×28×28 | 10      |
| `fashion-mnist` | `FashionMNIST`     | train, test          | 1×28×28 | 10      |
| `cifar10`       | `CIFAR10`          | train, test          | 3×32×32 | 10      |
| `cifar100`      | `CIFAR100`         | train, test          | 3×32×32 | 100     |
| `svhn`          | `SVHN`             | train, test, extra   | 3×32×32 | 10      |

Each split is read once into one `uint8 (N, C, H, W)` tensor; `mean`/`std` are the per-channel
statistics of the training split in [0, 1] units (the values the literature normalises with).
Files live where torchvision puts them under the root (`ROOT/cifar-10-batches-py/`,
`ROOT/MNIST/raw/`, `ROOT/train_32x32.mat`, ...), so one root can be shared with torchvision.
The root is `data_dir`, else `$NCBENCH_DATA`, else `~/.cache/ncbench/data`. Nothing is downloaded
unless `download=True`; a missing set raises `DatasetNotFoundError` with the command that fetches it.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ncbench.data.dataset import ImageDataset
from ncbench.data.registry import DatasetNotFoundError, register_each

DATA_ENV = "NCBENCH_DATA"
DEFAULT_ROOT = "~/.cache/ncbench/data"


def default_root() -> Path:
    """`$NCBENCH_DATA` if set, else `~/.cache/ncbench/data`."""
    return Path(os.environ.get(DATA_ENV) or DEFAULT_ROOT).expanduser()


def resolve_root(data_dir: str | Path | None) -> Path:
    return Path(data_dir).expanduser() if data_dir else default_root()


@dataclass(frozen=True)
class TorchvisionSet:
    """How one registered name maps onto a torchvision dataset class."""

    name: str
    cls_name: str                       # attribute of torchvision.datasets
    splits: dict[str, dict]             # split -> constructor keyword arguments
    mean: tuple[float, ...]
    std: tuple[float, ...]
    classes: tuple[str, ...] | None = None   # None: take them from the files (CIFAR meta)

    def torchvision_class(self):
        import torchvision.datasets

        return getattr(torchvision.datasets, self.cls_name)

    def split_kwargs(self, split: str) -> dict:
        if split not in self.splits:
            raise ValueError(f"data set '{self.name}' has splits {sorted(self.splits)}, not '{split}'")
        return self.splits[split]

    def expected_files(self, root: Path, split: str) -> list[Path]:
        """The files torchvision checks before it reads `split` (taken from the class itself)."""
        cls = self.torchvision_class()
        if hasattr(cls, "base_folder") and hasattr(cls, "train_list"):  # CIFAR10 / CIFAR100
            names = [f for f, _ in cls.train_list + cls.test_list] + [cls.meta["filename"]]
            return [root / cls.base_folder / f for f in names]
        if hasattr(cls, "resources"):                                    # MNIST family
            raw = root / cls.__name__ / "raw"
            return [raw / Path(f).stem for f, _ in cls.resources]       # the .gz names, unpacked
        if hasattr(cls, "split_list"):                                   # SVHN
            return [root / cls.split_list[self.split_kwargs(split)["split"]][1]]
        raise TypeError(f"don't know the file layout of torchvision.datasets.{self.cls_name}")

    def fetch_command(self, root: Path, split: str) -> str:
        args = ", ".join([repr(str(root))] + [f"{k}={v!r}" for k, v in self.split_kwargs(split).items()
                                              if k != "train"])
        return (f'python -c "import torchvision; torchvision.datasets.{self.cls_name}({args}, '
                f'download=True)"')


SETS: dict[str, TorchvisionSet] = {
    s.name: s for s in [
        TorchvisionSet("mnist", "MNIST", {"train": {"train": True}, "test": {"train": False}},
                       (0.1307,), (0.3081,), tuple(str(d) for d in range(10))),
        TorchvisionSet("fashion-mnist", "FashionMNIST",
                       {"train": {"train": True}, "test": {"train": False}}, (0.2860,), (0.3530,),
                       ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                        "Sneaker", "Bag", "Ankle boot")),
        TorchvisionSet("cifar10", "CIFAR10", {"train": {"train": True}, "test": {"train": False}},
                       (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
        TorchvisionSet("cifar100", "CIFAR100", {"train": {"train": True}, "test": {"train": False}},
                       (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
        TorchvisionSet("svhn", "SVHN", {s: {"split": s} for s in ("train", "test", "extra")},
                       (0.4377, 0.4438, 0.4728), (0.1980, 0.2010, 0.1970),
                       tuple(str(d) for d in range(10))),
    ]
}


def not_found(spec: TorchvisionSet, split: str, root: Path, detail: str,
              requested_as: str | None = None) -> DatasetNotFoundError:
    """The error for a set that is not on disk: names the set, the directory and the fetch command."""
    what = f"data set '{spec.name}' (split '{split}')"
    if requested_as:
        what = f"data set '{requested_as}' needs {what}, which"
    return DatasetNotFoundError.missing(what, root, detail, spec.fetch_command(root, split), env=DATA_ENV)


def read_arrays(spec: TorchvisionSet, split: str, data_dir: str | Path | None, download: bool,
                requested_as: str | None = None) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """`uint8 (N, C, H, W)` images, `int64 (N,)` labels and class names of one split, via torchvision."""
    kwargs = spec.split_kwargs(split)
    root = resolve_root(data_dir)
    cls = spec.torchvision_class()
    try:
        ds = cls(str(root), download=download, **kwargs)
    except (RuntimeError, OSError) as err:  # torchvision: "not found or corrupted"; URLError on download
        missing = [p for p in spec.expected_files(root, split) if not p.is_file()]
        if missing:
            detail = "missing " + ", ".join(str(p.relative_to(root)) for p in missing)
        else:
            detail = f"its files are there but torchvision rejected them ({err}); delete and re-fetch"
        if download:
            detail += f"; the download failed: {err}"
        raise not_found(spec, split, root, detail, requested_as) from None
    if hasattr(ds, "labels"):  # SVHN: data is already (N, 3, 32, 32); label 10 already mapped to 0
        images, targets = torch.from_numpy(np.ascontiguousarray(ds.data)), torch.as_tensor(ds.labels)
    elif isinstance(ds.data, np.ndarray):  # CIFAR: (N, 32, 32, 3) HWC
        images = torch.from_numpy(np.ascontiguousarray(ds.data.transpose(0, 3, 1, 2)))
        targets = torch.as_tensor(ds.targets)
    else:  # MNIST family: uint8 tensor (N, 28, 28)
        images, targets = ds.data.unsqueeze(1).contiguous(), torch.as_tensor(ds.targets)
    classes = list(spec.classes) if spec.classes is not None else [str(c) for c in ds.classes]
    return images.to(torch.uint8), targets.long(), classes


def load(name: str, split: str, data_dir: Path | None, download: bool) -> ImageDataset:
    spec = SETS[name]
    images, targets, classes = read_arrays(spec, split, data_dir, download)
    return ImageDataset(images, targets, classes, spec.mean, spec.std, name, split,
                        {"source": f"torchvision.datasets.{spec.cls_name}",
                         "root": str(resolve_root(data_dir))})


register_each(SETS, load, lambda n: f"`{n}` through torchvision.datasets.{SETS[n].cls_name}.")
