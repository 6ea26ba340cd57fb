"""Few-shot benchmarks: disjoint class splits, each relabelled 0..n-1 with its class names kept.

- `cifar-fs` (Bertinetto et al. 2019, "Meta-learning with differentiable closed-form solvers"):
  CIFAR-100's 100 classes split 64/16/20 into train/val/test, all 600 images of a class (its 500
  CIFAR-100 train images, then its 100 test images). Built from the CIFAR-100 python files that
  torchvision reads (`ROOT/cifar-100-python/`), so fetching `cifar100` is all it needs.
- `mini-imagenet` (Vinyals et al. 2016, split of Ravi & Larochelle 2017): 100 ImageNet classes
  split 64/16/20, 600 images of 84×84 each, read from the pickles `mini-imagenet-cache-{train,val,
  test}.pkl` (`image_data` (N, 84, 84, 3) uint8, `class_dict` {wnid: [row indices]}) in ROOT;
  the val pickle may also be named `mini-imagenet-cache-validation.pkl` (learn2learn's name).

Split names: `train`, `val`, `test` are the class splits (64, 16, 20 classes). To train a backbone on
the source classes and measure it on unseen images of the same classes, `<split>/fit` and
`<split>/holdout` cut each class of a class split 80/20 (deterministic, stratified, seed 0:
`ncbench.data.splits.stratified_split`), e.g. `train/fit` (64 classes × 480 images) and
`train/holdout` (64 × 120). Labels are the same in `train`, `train/fit` and `train/holdout`.
Classes are ordered by name within a split, so label k is `classes[k]`.
"""
from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import torch

from ncbench.data.dataset import ImageDataset
from ncbench.data.registry import DatasetNotFoundError, register_dataset
from ncbench.data.splits import stratified_split
from ncbench.data.torchvision_sets import DATA_ENV, SETS, read_arrays, resolve_root

CLASS_SPLITS = ("train", "val", "test")
WITHIN_CLASS_PARTS = {"fit": "train", "holdout": "test"}  # part name -> stratified_split key

# Bertinetto et al. 2019, github.com/bertinetto/r2d2 `data/cifar-fs/splits/bertinetto/*.txt`
# (sorted here). Together they are CIFAR-100's 100 fine classes, each once.
CIFAR_FS_CLASSES: dict[str, tuple[str, ...]] = {
    "train": (
        "apple", "aquarium_fish", "bear", "bee", "bottle", "bowl", "boy", "bridge", "bus", "can",
        "castle", "caterpillar", "chair", "clock", "cloud", "cockroach", "couch", "cup", "dinosaur",
        "dolphin", "elephant", "forest", "girl", "hamster", "house", "kangaroo", "keyboard",
        "lawn_mower", "lion", "lizard", "lobster", "mountain", "mouse", "mushroom", "oak_tree",
        "orange", "orchid", "palm_tree", "pear", "pine_tree", "plate", "porcupine", "possum",
        "rabbit", "raccoon", "ray", "road", "seal", "shrew", "skunk", "skyscraper", "snake",
        "spider", "squirrel", "streetcar", "sunflower", "tank", "tiger", "train", "trout", "tulip",
        "turtle", "willow_tree", "wolf"),
    "val": (
        "beaver", "beetle", "butterfly", "camel", "cattle", "crab", "crocodile", "flatfish", "lamp",
        "maple_tree", "motorcycle", "otter", "sea", "shark", "television", "tractor"),
    "test": (
        "baby", "bed", "bicycle", "chimpanzee", "fox", "leopard", "man", "pickup_truck", "plain",
        "poppy", "rocket", "rose", "snail", "sweet_pepper", "table", "telephone", "wardrobe",
        "whale", "woman", "worm"),
}
CIFAR_FS_MEAN, CIFAR_FS_STD = SETS["cifar100"].mean, SETS["cifar100"].std  # CIFAR-100 train stats
# Per-channel statistics of mini-ImageNet train as used by MetaOptNet (Lee et al. 2019) and FEAT.
MINI_IMAGENET_MEAN = (120.39586422 / 255, 115.59361427 / 255, 104.54012653 / 255)
MINI_IMAGENET_STD = (70.68188272 / 255, 68.27635443 / 255, 72.54505529 / 255)


def parse_split(name: str, split: str) -> tuple[str, str]:
    """`'train'` → `('train', '')`; `'train/fit'` → `('train', 'fit')`; anything else raises."""
    base, _, part = split.partition("/")
    if base not in CLASS_SPLITS or (part and part not in WITHIN_CLASS_PARTS):
        names = [*CLASS_SPLITS, *(f"{b}/{p}" for b in CLASS_SPLITS for p in WITHIN_CLASS_PARTS)]
        raise ValueError(f"data set '{name}' has splits {names}, not '{split}'")
    return base, part


def make_split(name: str, split: str, images: torch.Tensor, targets: torch.Tensor,
               classes: list[str], mean: tuple[float, ...], std: tuple[float, ...],
               info: dict) -> ImageDataset:
    """One class split (already relabelled 0..n-1), cut to its `fit`/`holdout` part if asked."""
    _, part = parse_split(name, split)
    if part:
        idx = torch.from_numpy(stratified_split(targets.numpy())[WITHIN_CLASS_PARTS[part]])
        images, targets = images[idx], targets[idx]
    return ImageDataset(images, targets, classes, mean, std, name, split, info)


@register_dataset("cifar-fs")
def cifar_fs(split: str, data_dir: Path | None = None, download: bool = False) -> ImageDataset:
    """CIFAR-FS (Bertinetto et al. 2019) from the CIFAR-100 python files."""
    base, _ = parse_split("cifar-fs", split)
    spec = SETS["cifar100"]
    parts = [read_arrays(spec, s, data_dir, download, requested_as="cifar-fs") for s in ("train", "test")]
    all_classes = parts[0][2]
    keep = list(CIFAR_FS_CLASSES[base])
    unknown = sorted(set(keep) - set(all_classes))
    if unknown:
        raise ValueError(f"cifar-fs: CIFAR-100 meta file in {resolve_root(data_dir)} lacks classes {unknown}")
    images = torch.cat([p[0] for p in parts])
    targets = torch.cat([p[1] for p in parts])
    relabel = torch.full((len(all_classes),), -1, dtype=torch.long)
    relabel[[all_classes.index(c) for c in keep]] = torch.arange(len(keep))
    new = relabel[targets]
    rows = torch.nonzero(new >= 0).squeeze(1)
    return make_split("cifar-fs", split, images[rows], new[rows], keep, CIFAR_FS_MEAN, CIFAR_FS_STD,
                      {"source": "cifar-100-python", "root": str(resolve_root(data_dir))})


def mini_imagenet_files(root: Path, base: str) -> list[Path]:
    """Where split `base` may be: learn2learn and the public copies name val `...-validation.pkl`."""
    names = [base] + (["validation"] if base == "val" else [])
    return [root / f"mini-imagenet-cache-{n}.pkl" for n in names]


@register_dataset("mini-imagenet")
def mini_imagenet(split: str, data_dir: Path | None = None, download: bool = False) -> ImageDataset:
    """mini-ImageNet (Vinyals et al. 2016; Ravi & Larochelle 2017 split) from its cache pickles."""
    base, _ = parse_split("mini-imagenet", split)
    root = resolve_root(data_dir)
    found = [p for p in mini_imagenet_files(root, base) if p.is_file()]
    if not found:
        why = ("ncbench cannot download mini-ImageNet itself (it is not in torchvision)"
               if download else "it is not downloaded automatically")
        raise DatasetNotFoundError.missing(
            f"data set 'mini-imagenet' (split '{split}')", root,
            f"missing {' or '.join(p.name for p in mini_imagenet_files(root, base))}; {why}",
            "pip install learn2learn && python -c \"import learn2learn as l2l; "
            f"[l2l.vision.datasets.MiniImagenet({str(root)!r}, mode=m, download=True) "
            "for m in ('train', 'validation', 'test')]\"",
            downloadable=False, alternative="or copy mini-imagenet-cache-{train,validation,test}.pkl there yourself; ",
            env=DATA_ENV)
    path = found[0]
    with open(path, "rb") as f:
        data = pickle.load(f)  # a local file the user put there
    if not isinstance(data, dict) or not {"image_data", "class_dict"} <= set(data):
        raise ValueError(f"{path}: expected a dict with keys 'image_data' and 'class_dict'")
    x = np.asarray(data["image_data"])
    if x.ndim != 4 or x.shape[3] != 3 or x.dtype != np.uint8:
        raise ValueError(f"{path}: image_data must be uint8 (N, H, W, 3), got {x.dtype} {x.shape}")
    classes = sorted(data["class_dict"])
    targets = np.full(len(x), -1, dtype=np.int64)
    for k, c in enumerate(classes):  # one assignment per class
        targets[np.asarray(data["class_dict"][c], dtype=np.int64)] = k
    if (targets < 0).any():
        raise ValueError(f"{path}: {int((targets < 0).sum())} images belong to no class in class_dict")
    images = torch.from_numpy(x).permute(0, 3, 1, 2).contiguous()
    return make_split("mini-imagenet", split, images, torch.from_numpy(targets), classes,
                      MINI_IMAGENET_MEAN, MINI_IMAGENET_STD, {"source": path.name, "root": str(root)})
