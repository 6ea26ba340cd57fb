"""The data-set registry: `@register_dataset(name)` on a loader `(split, data_dir, download) -> ImageDataset`."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from ncbench.data.dataset import ImageDataset
from ncbench.data.not_found import DatasetNotFoundError  # noqa: F401 - re-exported
from ncbench.registry import Registry


class DatasetLoader(Protocol):
    def __call__(self, split: str, data_dir: Path | None, download: bool) -> ImageDataset: ...


DATASETS: Registry[DatasetLoader] = Registry("dataset")


def register_dataset(name: str) -> Callable[[DatasetLoader], DatasetLoader]:
    return DATASETS.register(name)


def register_each(names, load: Callable[[str, str, Path | None, bool], ImageDataset],
                  describe: Callable[[str], str]) -> None:
    """Register one loader per name for a family that shares `load(name, split, data_dir, download)`."""
    def make(name: str) -> DatasetLoader:
        def loader(split: str, data_dir: Path | None = None, download: bool = False) -> ImageDataset:
            return load(name, split, data_dir, download)

        loader.__name__ = loader.__qualname__ = name.replace("-", "_")
        loader.__doc__ = describe(name)
        return loader

    for name in names:
        register_dataset(name)(make(name))


def load_dataset(name: str, split: str = "train", data_dir: str | Path | None = None,
                 download: bool = False) -> ImageDataset:
    """Load split `split` of data set `name`; unknown names raise with the close names.

    `imagefolder:PATH` reads your own folder of images (`ncbench.data.imagefolder`); a `tensors:` name
    is a pair of torch Datasets passed to `ncbench.run` (`ncbench.data.in_memory`)."""
    from ncbench.data import in_memory

    if in_memory.is_in_memory(name):
        return in_memory.load_pair_split(name, split)
    if name.startswith("imagefolder:"):
        from ncbench.data.imagefolder import load_imagefolder

        return load_imagefolder(name, split)
    loader = DATASETS.get(name)
    return loader(split, Path(data_dir).expanduser() if data_dir else None, download)


def check_dataset_name(name: str) -> None:
    """Raise (with the close names) unless `name` is registered, an `imagefolder:PATH` or an in-memory pair."""
    from ncbench.data import in_memory

    if in_memory.is_in_memory(name):
        in_memory.load_pair_split(name, "train")
    elif not name.startswith("imagefolder:"):
        DATASETS.get(name)


def list_datasets(pattern: str | None = None) -> list[str]:
    import fnmatch
    names = DATASETS.names()
    return [n for n in names if fnmatch.fnmatch(n, pattern)] if pattern else names
