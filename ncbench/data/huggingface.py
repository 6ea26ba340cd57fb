"""Hugging Face data sets: `hf:NAME_OR_PATH[:CONFIG][?image=COL&label=COL&train=SPLIT&test=SPLIT]`.

`NAME_OR_PATH` is a folder written by `Dataset(Dict).save_to_disk`, a folder of parquet/arrow (or
image) files that `datasets.load_dataset(PATH)` reads (splits from the file names, e.g.
`train-00000-of-00001.parquet`), one `.parquet`/`.arrow` file, or a hub name (`uoft-cs/cifar10`,
with `:CONFIG` for a configuration). Nothing touches the network unless `download` (`--download`):
without it the Hugging Face cache (`HF_DATASETS_CACHE`, `HF_HOME`) is read offline.

Columns: the image column is the one `datasets.Image` feature, else one named `image` or `img`; the
label column the one `ClassLabel` feature, else `label`, `labels`, `fine_label` or `target`
(classes: the `ClassLabel` names, else the sorted distinct values of every split). `?image=` and
`?label=` name them. Splits: `train` is the split named `train` (or the only one; `?train=`),
`test` the one named `test`, else `validation`/`valid`/`val` (`?test=`); without one, a per-class
80/20 split of train with seed 0 (`ncbench.data.splits`), recorded in the data set's `info`.

`hf_source(name, split)` is a streaming source (`ncbench.data.streaming`: PIL images, labels known
without decoding); `load_hf` reads it into memory or streams it when large, as `imagefolder:` does.
`datasets` is the optional extra `pip install 'ncbench[hf]'`.
"""
from __future__ import annotations

import contextlib
import functools
from pathlib import Path

import numpy as np
import torch

from ncbench.data.dataset import ImageDataset
from ncbench.data.materialise import load_source
from ncbench.data.not_found import DatasetNotFoundError
from ncbench.data.splits import SPLIT_SEED, TRAIN_FRACTION, stratified_split
from ncbench.data.streaming import StreamedImageDataset, Subset
from ncbench.registry import suggest
from ncbench.specs.dataset_names import HFName, parse_hf

SPLITS = ("train", "test")
IMAGE_NAMES = ("image", "img")
LABEL_NAMES = ("label", "labels", "fine_label", "target")
TEST_NAMES = ("test", "validation", "valid", "val")
INSTALL = "pip install 'ncbench[hf]'"


def require_datasets(name: str):
    """The `datasets` module, or one line saying how to install it."""
    try:
        import datasets
    except ImportError:
        raise ValueError(f"data set '{name}' needs the Hugging Face `datasets` package, which is not "
                         f"installed: {INSTALL}") from None
    return datasets


@contextlib.contextmanager
def _offline(on: bool):
    """Hugging Face's offline mode (`HF_HUB_OFFLINE`) for the duration: the cache only, no network."""
    import datasets.config as cfg
    import huggingface_hub.constants as hub

    saved = cfg.HF_HUB_OFFLINE, hub.HF_HUB_OFFLINE
    if on:
        cfg.HF_HUB_OFFLINE = hub.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        cfg.HF_HUB_OFFLINE, hub.HF_HUB_OFFLINE = saved


def check_hf(name: str) -> HFName:
    """Fail fast, before any work: a malformed name, `datasets` not installed, a local path that is
    not there."""
    ref = parse_hf(name)
    require_datasets(name)
    path = Path(ref.path).expanduser()
    if ref.local and not path.exists():
        raise DatasetNotFoundError(f"{name}: no such file or folder {path}. Give a folder written by "
                                   "save_to_disk, a folder of parquet/arrow files, a .parquet/.arrow file, "
                                   "or a hub name such as hf:uoft-cs/cifar10")
    return ref


def _load_local(ds, name: str, ref: HFName) -> dict:
    path = Path(ref.path).expanduser()
    if path.is_dir() and ((path / "dataset_dict.json").exists() or (path / "state.json").exists()):
        loaded = ds.load_from_disk(str(path))
    elif path.is_file():
        builder = {".parquet": "parquet", ".arrow": "arrow"}.get(path.suffix)
        if builder is None:
            raise ValueError(f"{name}: '{path.name}' is neither .parquet nor .arrow; give such a file, or "
                             "a folder written by save_to_disk")
        loaded = ds.load_dataset(builder, data_files={"train": str(path)})
    else:
        try:
            loaded = ds.load_dataset(str(path), ref.config)
        except (ValueError, FileNotFoundError) as e:       # datasets' "no data files" and the like
            raise ValueError(f"{name}: the folder {path} holds no data set datasets can read "
                             f"({str(e).splitlines()[0][:160]}); write it with save_to_disk or to_parquet") from None
    return {"train": loaded} if isinstance(loaded, ds.Dataset) else dict(loaded)


def _load_hub(ds, name: str, ref: HFName, download: bool) -> dict:
    with _offline(not download):
        try:
            loaded = ds.load_dataset(ref.path, ref.config)
        except (ConnectionError, FileNotFoundError) as e:     # datasets' DatasetNotFoundError included
            first = str(e).splitlines()[0][:200] if str(e) else type(e).__name__
            if download:
                raise DatasetNotFoundError(f"{name}: could not fetch '{ref.path}' from the Hugging Face hub "
                                           f"({first})") from None
            raise DatasetNotFoundError(
                f"{name}: '{ref.path}' is not in the Hugging Face cache ({ds.config.HF_DATASETS_CACHE}) and "
                "is no local file or folder: pass --download to fetch it from the hub, or set "
                f"HF_DATASETS_CACHE (or HF_HOME) to the cache that holds it ({first})") from None
    return {"train": loaded} if isinstance(loaded, ds.Dataset) else dict(loaded)


@functools.lru_cache(maxsize=8)
def _open(name: str, download: bool) -> tuple[dict, HFName]:
    """Every split of the data set, by its own split names (memory-mapped `datasets.Dataset`s)."""
    ref = check_hf(name)
    ds = require_datasets(name)
    if ref.local:
        with _offline(True):
            splits = _load_local(ds, name, ref)
    else:
        splits = _load_hub(ds, name, ref, download)
    if not splits:
        raise ValueError(f"{name}: the data set has no split")
    return splits, ref


def _pick(splits: dict, ref: HFName, name: str) -> tuple[str, str | None]:
    """The split names read as train and test (test None: a seeded split of train)."""
    names = list(splits)
    for given in (ref.train, ref.test):
        if given is not None and given not in splits:
            raise suggest("split", given, names, f"splits of {name}: {', '.join(names)}")
    train = ref.train or ("train" if "train" in splits else names[0] if len(names) == 1 else None)
    if train is None:
        raise ValueError(f"{name}: no split named 'train' among {names}: name one with ?train=SPLIT")
    test = ref.test or next((t for t in TEST_NAMES if t in splits and t != train), None)
    if test == train:
        raise ValueError(f"{name}: train and test are the same split '{train}'")
    return train, test


def _column(features: dict, given: str | None, feature_type, conventional: tuple[str, ...], what: str,
            name: str, option: str) -> str:
    """The column `given`, else the only one of `feature_type`, else the first conventional name."""
    cols = list(features)
    if given is not None:
        if given not in features:
            raise suggest("column", given, cols, f"columns of {name}: {', '.join(cols)}")
        return given
    typed = [c for c, f in features.items() if isinstance(f, feature_type)]
    if len(typed) > 1:
        raise ValueError(f"{name}: several {what} columns {typed}: name one with ?{option}=COLUMN")
    if typed:
        return typed[0]
    found = next((c for c in conventional if c in features), None)
    if found is None:
        raise ValueError(f"{name}: no {what} column found among {cols} (none is a datasets "
                         f"{feature_type.__name__} feature nor named {'/'.join(conventional)}): "
                         f"name it with ?{option}=COLUMN")
    return found


class HFImages:
    """The images of a `datasets.Dataset` column as a streaming source: `image(i)` a PIL image (modes
    other than L and RGB converted to RGB), `targets`, `classes`."""

    def __init__(self, data, column: str, targets: torch.Tensor, classes: list[str], name: str):
        self.data, self.column = data.select_columns([column]), column
        self.targets, self.classes, self.name = targets, list(classes), name

    def __len__(self) -> int:
        return len(self.targets)

    def image(self, i: int):
        im = self.data[int(i)][self.column]
        return im if im.mode in ("L", "RGB") else im.convert("RGB")


@functools.lru_cache(maxsize=16)
def _sources(name: str, download: bool) -> tuple[dict, dict]:
    """`({"train": source, "test": source}, info)`: both splits labelled with one class list."""
    ds = require_datasets(name)
    splits, ref = _open(name, download)
    train_name, test_name = _pick(splits, ref, name)
    data = {"train": splits[train_name]} | ({"test": splits[test_name]} if test_name else {})
    features = data["train"].features
    image = _column(features, ref.image, ds.Image, IMAGE_NAMES, "image", name, "image")
    label = _column(features, ref.label, ds.ClassLabel, LABEL_NAMES, "label", name, "label")
    for split, d in data.items():
        if image not in d.features or label not in d.features:
            raise ValueError(f"{name}: split '{train_name if split == 'train' else test_name}' lacks the "
                             f"column '{image if image not in d.features else label}'")
        if not isinstance(d.features[image], ds.Image):
            try:
                data[split] = d.cast_column(image, ds.Image())
            except (TypeError, ValueError) as e:
                raise ValueError(f"{name}: column '{image}' holds no images ({d.features[image]}: "
                                 f"{str(e).splitlines()[0][:120]}); name the image column with ?image=COLUMN") from None
    values = {s: list(d[label]) for s, d in data.items()}
    feature = features[label]
    if isinstance(feature, ds.ClassLabel):
        classes = list(feature.names)
        targets = {s: np.asarray(v, dtype=np.int64) for s, v in values.items()}
    else:
        if any(v is None for vs in values.values() for v in vs):
            raise ValueError(f"{name}: column '{label}' has empty labels; drop those rows or name another "
                             "column with ?label=COLUMN")
        distinct = sorted({v for vs in values.values() for v in vs})
        index = {v: i for i, v in enumerate(distinct)}
        classes = [str(v) for v in distinct]
        targets = {s: np.asarray([index[v] for v in vs], dtype=np.int64) for s, vs in values.items()}
    for s, t in targets.items():
        if len(t) and (t.min() < 0 or t.max() >= len(classes)):
            raise ValueError(f"{name}: split '{train_name if s == 'train' else test_name}' has labels outside "
                             f"0..{len(classes) - 1} (e.g. -1: unlabelled); name a labelled split with ?test=SPLIT")
    out = {s: HFImages(d, image, torch.from_numpy(targets[s]), classes, f"{name}/{s}") for s, d in data.items()}
    info = {"source": "hf", "image_column": image, "label_column": label, "train_split": train_name}
    if test_name:
        info["test_split"] = test_name
    else:
        full = out["train"]
        idx = stratified_split(full.targets.numpy())
        out = {s: Subset(full, torch.from_numpy(idx[s])) for s in SPLITS}
        info["test_split"] = (f"seeded {round(TRAIN_FRACTION * 100)}/{round((1 - TRAIN_FRACTION) * 100)} "
                              f"per-class split of '{train_name}' (seed {SPLIT_SEED})")
    return out, info


def hf_source(name: str, split: str, download: bool = False):
    """Split `split` (`train` or `test`) of an `hf:` data set as a streaming source."""
    if split not in SPLITS:
        raise ValueError(f"{name} has splits {list(SPLITS)} (mapped with ?train= / ?test=), not '{split}'")
    return _sources(name, bool(download))[0][split]


def hf_info(name: str, download: bool = False) -> dict:
    """What was read: image and label columns, and the splits read as train and test."""
    return dict(_sources(name, bool(download))[1])


def load_hf(name: str, split: str, download: bool = False, stream: bool | None = None,
            workers: int | None = None) -> ImageDataset | StreamedImageDataset:
    """An `hf:` data set for the training tasks: in memory (uint8, one image size), or streamed when
    large (`ncbench.data.materialise.load_source`)."""
    return load_source(name, split, lambda s: hf_source(name, s, download), hf_info(name, download),
                       stream, workers)
