"""learn2learn's few-shot benchmarks (Arnold et al. 2020), on disk in learn2learn's own layout.

- `l2l-mini-imagenet` (`MiniImagenet`, 64/16/20 classes):
  `ROOT/mini-imagenet-cache-{train,validation,test}.pkl`
- `l2l-cifar-fs` (`CIFARFS`, 64/16/20): `ROOT/cifarfs/` (raw archive), read from
  `ROOT/cifarfs/processed/{train,val,test}/<class>/*.png`
- `l2l-fc100` (`FC100`, 60/20/20): `ROOT/FC100_{train,val,test}.pickle`
- `l2l-tiered-imagenet` (`TieredImagenet`, 351/97/160):
  `ROOT/tiered-imagenet/{train,val,test}_{images_png,labels}.pkl`
- `l2l-omniglot` (`FullOmniglot`, 1100/100/423): `ROOT/omniglot-py/images_{background,evaluation}/`

(the class in parentheses is the `learn2learn.vision.datasets` class that downloads it).

Splits are the class splits `train`, `val`, `test` and their within-class 80/20 parts
`<split>/fit`, `<split>/holdout` (as in `ncbench.data.fewshot_sets`); labels are 0..n-1 per class
split, classes sorted by name (Omniglot: learn2learn's `FullOmniglot` label order, background
alphabets first, then alphabet/character names sorted; classes 0–1099 train, 1100–1199 val,
1200–1622 test: the sizes of learn2learn's benchmark, which shuffles them without a seed).
Images are read once into `uint8 (N, C, H, W)`. Omniglot has no customary normalisation: its
mean/std are those of the loaded split's pixels.

The root is `data_dir`, else `$NCBENCH_DATA`, else `~/.cache/ncbench/data`. Nothing is downloaded
unless `download=True`, which calls the learn2learn class with `download=True` (learn2learn must be
installed: `scripts/install-learn2learn.sh`); reading the files needs learn2learn only for
CIFAR-FS, whose raw archive learn2learn turns into the processed folders. A missing set raises
`DatasetNotFoundError` with the command that fetches it.
"""
from __future__ import annotations

import io
import pickle
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ncbench.data.dataset import ImageDataset
from ncbench.data.fewshot_sets import (
    CIFAR_FS_MEAN,
    CIFAR_FS_STD,
    MINI_IMAGENET_MEAN,
    MINI_IMAGENET_STD,
    make_split,
    parse_split,
)
from ncbench.data.registry import DatasetNotFoundError, register_each
from ncbench.data.torchvision_sets import DATA_ENV, resolve_root

INSTALL_HINT = "scripts/install-learn2learn.sh .venv"
L2L_MODE = {"train": "train", "val": "validation", "test": "test"}   # ncbench split -> l2l mode
SHORT = {"train": "train", "val": "val", "test": "test"}             # l2l's file-name spelling
OMNIGLOT_SPLITS = {"train": (0, 1100), "val": (1100, 1200), "test": (1200, 1623)}


def _decode_images(blobs, mode: str) -> torch.Tensor:
    """PNG/JPEG bytes or file paths → `uint8 (N, C, H, W)` (all images must share one size)."""
    from PIL import Image

    def load(b):
        with Image.open(io.BytesIO(b) if isinstance(b, (bytes, bytearray)) else b) as im:
            return np.asarray(im.convert(mode))

    arr = np.stack([load(b) for b in blobs])  # decoding is per image by nature
    arr = arr[..., None] if arr.ndim == 3 else arr
    return torch.from_numpy(np.ascontiguousarray(arr.transpose(0, 3, 1, 2)))


def _relabel(labels, names: list[str] | None = None) -> tuple[torch.Tensor, list[str]]:
    """Labels of one class split → 0..n-1 in the order of their sorted class names."""
    raw = np.asarray(labels)
    uniq = np.unique(raw)
    names = names or [str(u) for u in uniq]
    order = sorted(range(len(uniq)), key=lambda i: names[i])
    remap = np.empty(len(uniq), dtype=np.int64)
    remap[order] = np.arange(len(uniq))
    return torch.from_numpy(remap[np.searchsorted(uniq, raw)]), [names[i] for i in order]


def _unpickle(path: Path):
    with open(path, "rb") as f:  # a local file the user fetched; latin1 for the py2 pickles
        u = pickle._Unpickler(f)
        u.encoding = "latin1"
        return u.load()


# ---------------------------------------------------------------- readers: (root, base) -> arrays
Arrays = tuple[torch.Tensor, torch.Tensor, list[str]]


def _read_mini_imagenet(root: Path, base: str) -> Arrays:
    from ncbench.data.fewshot_sets import mini_imagenet

    ds = mini_imagenet(base, root, False)
    return ds.images, ds.targets, ds.classes


def _read_cifar_fs(root: Path, base: str) -> Arrays:
    folder = root / "cifarfs" / "processed" / SHORT[base]
    if not folder.is_dir():  # only the raw archive is there: learn2learn builds the split folders
        _l2l_class("CIFARFS")(str(root), mode=L2L_MODE[base], download=False)
    classes = sorted(p.name for p in folder.iterdir() if p.is_dir())
    files, labels = [], []
    for k, c in enumerate(classes):
        imgs = sorted((folder / c).glob("*.png"))
        files += imgs
        labels += [k] * len(imgs)
    return _decode_images(files, "RGB"), torch.tensor(labels, dtype=torch.long), classes


def _read_fc100(root: Path, base: str) -> Arrays:
    archive = _unpickle(root / f"FC100_{SHORT[base]}.pickle")
    x = np.asarray(archive["data"], dtype=np.uint8)
    targets, classes = _relabel(archive["labels"])
    return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2))), targets, classes


def _read_tiered_imagenet(root: Path, base: str) -> Arrays:
    d = root / "tiered-imagenet"
    meta = _unpickle(d / f"{SHORT[base]}_labels.pkl")
    labels = np.asarray(meta["label_specific"])
    names = None
    if "label_specific_str" in meta:
        strs = list(meta["label_specific_str"])
        names = [str(strs[int(u)]) for u in np.unique(labels)]
    targets, classes = _relabel(labels, names)
    return _decode_images(_unpickle(d / f"{SHORT[base]}_images_png.pkl"), "RGB"), targets, classes


def _read_omniglot(root: Path, base: str) -> Arrays:
    files, labels, names = [], [], []
    for part in ("background", "evaluation"):  # FullOmniglot: background classes first
        folder = root / "omniglot-py" / f"images_{part}"
        for char in sorted(p for p in folder.glob("*/*") if p.is_dir()):  # alphabet/character
            imgs = sorted(char.glob("*.png"))
            files += imgs
            labels += [len(names)] * len(imgs)
            names.append(f"{char.parent.name}/{char.name}")
    lo, hi = OMNIGLOT_SPLITS[base]
    labels = np.asarray(labels)
    rows = np.flatnonzero((labels >= lo) & (labels < hi))
    if len(names) < hi:
        raise ValueError(f"{root / 'omniglot-py'}: expected 1623 character classes, found "
                         f"{len(names)}; delete the folder and fetch it again")
    images = _decode_images([files[i] for i in rows], "L")
    return images, torch.from_numpy(labels[rows] - lo), names[lo:hi]


# ---------------------------------------------------------------- specs and registration
@dataclass(frozen=True)
class L2LSet:
    name: str
    l2l_class: str
    marker: Callable[[Path, str], list[Path]]   # files whose absence means "not downloaded"
    reader: Callable[[Path, str], Arrays]
    mean: tuple[float, ...] | None   # None: statistics of the loaded split
    std: tuple[float, ...] | None
    takes_mode: bool = True

    def fetch_command(self, root: Path, base: str) -> str:
        mode = f", mode={L2L_MODE[base]!r}" if self.takes_mode else ""
        return (f"{INSTALL_HINT} && .venv/bin/python -c \"import learn2learn as l2l; "
                f"l2l.vision.datasets.{self.l2l_class}({str(root)!r}{mode}, download=True)\"")


SETS: dict[str, L2LSet] = {s.name: s for s in [
    L2LSet("l2l-mini-imagenet", "MiniImagenet",
           lambda r, b: [r / f"mini-imagenet-cache-{L2L_MODE[b]}.pkl"]
           + ([r / "mini-imagenet-cache-val.pkl"] if b == "val" else []),
           _read_mini_imagenet, MINI_IMAGENET_MEAN, MINI_IMAGENET_STD),
    L2LSet("l2l-cifar-fs", "CIFARFS", lambda r, b: [r / "cifarfs"], _read_cifar_fs,
           CIFAR_FS_MEAN, CIFAR_FS_STD),
    L2LSet("l2l-fc100", "FC100", lambda r, b: [r / f"FC100_{SHORT[b]}.pickle"], _read_fc100,
           CIFAR_FS_MEAN, CIFAR_FS_STD),
    L2LSet("l2l-tiered-imagenet", "TieredImagenet",
           lambda r, b: [r / "tiered-imagenet" / f"{SHORT[b]}_{s}.pkl"
                         for s in ("images_png", "labels")],
           _read_tiered_imagenet, MINI_IMAGENET_MEAN, MINI_IMAGENET_STD),
    L2LSet("l2l-omniglot", "FullOmniglot",
           lambda r, b: [r / "omniglot-py" / f"images_{s}" for s in ("background", "evaluation")],
           _read_omniglot, None, None, takes_mode=False),
]}


def _l2l_class(cls_name: str):
    try:
        import learn2learn
    except ImportError as err:
        raise ImportError(f"this needs learn2learn, which is not installed: run `{INSTALL_HINT}` "
                          "(PyPI's sdist does not build on Python >= 3.11 without it)") from err
    return getattr(learn2learn.vision.datasets, cls_name)


def _missing(spec: L2LSet, root: Path, base: str) -> list[Path]:
    paths = spec.marker(root, base)
    if spec.name == "l2l-mini-imagenet":  # either spelling of the val pickle will do
        return [] if any(p.exists() for p in paths) else paths[:1]
    return [p for p in paths if not p.exists()]


def not_found(spec: L2LSet, split: str, root: Path, missing: list[Path],
              failure: str = "") -> DatasetNotFoundError:
    base, _ = parse_split(spec.name, split)
    return DatasetNotFoundError.missing(
        f"data set '{spec.name}' (split '{split}')", root,
        f"missing {', '.join(str(p.relative_to(root)) for p in missing)}{failure}", spec.fetch_command(root, base),
        env=DATA_ENV)


def load(name: str, split: str, data_dir: Path | None = None,
         download: bool = False) -> ImageDataset:
    spec = SETS[name]
    base, _ = parse_split(name, split)
    root = resolve_root(data_dir)
    missing = _missing(spec, root, base)
    if missing and download:
        root.mkdir(parents=True, exist_ok=True)
        kwargs = {"mode": L2L_MODE[base]} if spec.takes_mode else {}
        try:
            _l2l_class(spec.l2l_class)(str(root), download=True, **kwargs)
        except (OSError, RuntimeError, ValueError, EOFError, zipfile.BadZipFile,
                pickle.UnpicklingError) as err:  # network errors, partial archives
            raise not_found(spec, split, root, _missing(spec, root, base) or missing,
                            f"; the learn2learn download failed: {err}") from None
        missing = _missing(spec, root, base)
    if missing:
        raise not_found(spec, split, root, missing)
    images, targets, classes = spec.reader(root, base)
    mean, std = spec.mean, spec.std
    if mean is None:
        x = images.to(torch.float64).div_(255.0)
        mean, std = tuple(x.mean((0, 2, 3)).tolist()), tuple(x.std((0, 2, 3)).tolist())
    info = {"source": f"learn2learn.vision.datasets.{spec.l2l_class}", "root": str(root)}
    return make_split(name, split, images.to(torch.uint8), targets.long(), classes, mean, std, info)


register_each(SETS, load, lambda n: f"`{n}`: learn2learn.vision.datasets.{SETS[n].l2l_class}'s files.")
