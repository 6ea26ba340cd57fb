"""The data-set registry: `@register_dataset(name)` on a loader `(split, data_dir, download) -> ImageDataset`."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from ncbench.data.dataset import ImageDataset
from ncbench.data.not_found import DatasetNotFoundError  # noqa: F401 - re-exported
from ncbench.registry import Registry
from ncbench.specs.dataset_names import (
    FOLDER_PREFIX,
    HF_PREFIX,
    is_local_dataset,  # noqa: F401 - re-exported (boards refuse local data)
)


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

    `imagefolder:PATH` reads your own folder of images (`ncbench.data.imagefolder`), `hf:NAME_OR_PATH`
    a Hugging Face data set (`ncbench.data.huggingface`); a `tensors:` name is a pair of torch Datasets
    passed to `ncbench.run` (`ncbench.data.in_memory`)."""
    from ncbench.data import in_memory

    if in_memory.is_in_memory(name):
        return in_memory.load_pair_split(name, split)
    if name.startswith(FOLDER_PREFIX):
        from ncbench.data.imagefolder import load_imagefolder

        return load_imagefolder(name, split)
    if name.startswith(HF_PREFIX):
        from ncbench.data.huggingface import load_hf

        return load_hf(name, split, download)
    loader = DATASETS.get(name)
    return loader(split, Path(data_dir).expanduser() if data_dir else None, download)


def image_source(name: str, split: str, data_dir: str | Path | None = None, download: bool = False):
    """Split `split` of data set `name` as a streaming source (`ncbench.data.streaming`): image files
    and `hf:` rows are decoded one at a time, any size; other sets are read, then viewed as PIL."""
    if name.startswith(FOLDER_PREFIX):
        from ncbench.data.imagefolder import folder_source

        return folder_source(name[len(FOLDER_PREFIX):], split)
    if name.startswith(HF_PREFIX):
        from ncbench.data.huggingface import hf_source

        return hf_source(name, split, download)
    from ncbench.data.streaming import TensorImages

    return TensorImages(load_dataset(name, split, data_dir, download))


def dataset_info(name: str, download: bool = False) -> dict:
    """What a run read beyond the name: for `hf:` the image and label columns and the splits read as
    train and test (a seeded split says so); empty for the other sets."""
    if name.startswith(HF_PREFIX):
        from ncbench.data.huggingface import hf_info

        return hf_info(name, download)
    return {}


def check_dataset_name(name: str, download: bool = False) -> None:
    """Raise (with the close names) unless `name` is registered, an `imagefolder:PATH`, or an `hf:` name
    that opens (`datasets` installed, the data there, its columns and splits found: the data set's
    metadata and labels are read, not its images), or an in-memory pair (`ncbench.run`)."""
    from ncbench.data import in_memory

    if in_memory.is_in_memory(name):
        in_memory.load_pair_split(name, "train")
    elif name.startswith(HF_PREFIX):
        from ncbench.data.huggingface import check_hf, hf_info

        check_hf(name)
        hf_info(name, download)
    elif not name.startswith(FOLDER_PREFIX):
        DATASETS.get(name)


def list_datasets(pattern: str | None = None) -> list[str]:
    import fnmatch
    names = DATASETS.names()
    return [n for n in names if fnmatch.fnmatch(n, pattern)] if pattern else names
