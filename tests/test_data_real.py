"""Real data-set loaders, each read through its real on-disk format, written here in a tmp dir.

Every file is written the way the published archives lay it out (CIFAR python pickles, MNIST idx,
SVHN .mat, mini-ImageNet cache pickles); the expected tensors are built independently from the
arrays the test wrote. torchvision checks the md5 of the CIFAR and SVHN files against the real
archives'; for our small files we set the class's checksum table (`train_list`, `test_list`,
`meta`, `split_list`) to the md5 of the files we wrote, so torchvision's integrity check still runs.
"""
from __future__ import annotations

import ast
import hashlib
import pickle
import re
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision

import ncbench.data.torchvision_sets  # noqa: F401  (registers the torchvision sets)
from ncbench.data import DatasetNotFoundError, fewshot_sets, load_dataset

# CIFAR-100's fine label names (alphabetical, as in its meta file).
CIFAR100_NAMES = [
    "apple", "aquarium_fish", "baby", "bear", "beaver", "bed", "bee", "beetle", "bicycle",
    "bottle", "bowl", "boy", "bridge", "bus", "butterfly", "camel", "can", "castle",
    "caterpillar", "cattle", "chair", "chimpanzee", "clock", "cloud", "cockroach", "couch",
    "crab", "crocodile", "cup", "dinosaur", "dolphin", "elephant", "flatfish", "forest", "fox",
    "girl", "hamster", "house", "kangaroo", "keyboard", "lamp", "lawn_mower", "leopard",
    "lion", "lizard", "lobster", "man", "maple_tree", "motorcycle", "mountain", "mouse",
    "mushroom", "oak_tree", "orange", "orchid", "otter", "palm_tree", "pear", "pickup_truck",
    "pine_tree", "plain", "plate", "poppy", "porcupine", "possum", "rabbit", "raccoon", "ray",
    "road", "rocket", "rose", "sea", "seal", "shark", "shrew", "skunk", "skyscraper", "snail",
    "snake", "spider", "squirrel", "streetcar", "sunflower", "sweet_pepper", "table", "tank",
    "telephone", "television", "tiger", "tractor", "train", "trout", "tulip", "turtle",
    "wardrobe", "whale", "willow_tree", "wolf", "woman", "worm",
]
CIFAR10_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
                 "truck"]
# Published normalisation constants (training-split per-channel mean/std in [0, 1] units).
STATS = {
    "mnist": ((0.1307,), (0.3081,)),
    "fashion-mnist": ((0.2860,), (0.3530,)),
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
    "svhn": ((0.4377, 0.4438, 0.4728), (0.1980, 0.2010, 0.1970)),
}


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def dump(path: Path, obj) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=2)
    return path


def check_normalisation(ds, raw: torch.Tensor, mean, std) -> None:
    assert ds.mean == pytest.approx(mean) and ds.std == pytest.approx(std)
    x, _ = ds.batch(torch.arange(len(ds)))
    m = torch.tensor(mean).view(1, -1, 1, 1)
    s = torch.tensor(std).view(1, -1, 1, 1)
    torch.testing.assert_close(x, (raw.double() / 255 - m.double()).div(s.double()).float(),
                               rtol=1e-5, atol=1e-5)


# ----------------------------------------------------------------------------------------- CIFAR
def write_cifar10(root: Path, rng, n_per_batch: int = 6, n_test: int = 7, checksums=None):
    """`root/cifar-10-batches-py/` as in cifar-10-python.tar.gz; returns the NCHW arrays written."""
    d = root / "cifar-10-batches-py"
    out = {}
    files = {}
    for name, n in [*((f"data_batch_{i}", n_per_batch) for i in range(1, 6)), ("test_batch", n_test)]:
        x = rng.integers(0, 256, size=(n, 3, 32, 32), dtype=np.uint8)
        y = rng.integers(0, 10, size=n).tolist()
        # CIFAR rows: 1024 red, 1024 green, 1024 blue values, each plane row-major.
        files[name] = dump(d / name, {"batch_label": name, "data": x.reshape(n, 3072), "labels": y,
                                      "filenames": [f"{name}_{i}.png" for i in range(n)]})
        out[name] = (x, y)
    files["batches.meta"] = dump(d / "batches.meta", {"label_names": CIFAR10_NAMES,
                                                      "num_cases_per_batch": n_per_batch,
                                                      "num_vis": 3072})
    if checksums is not None:
        checksums(torchvision.datasets.CIFAR10, files)
    return out


def write_cifar100(root: Path, rng, names: list[str], n_train: int, n_test: int, checksums=None):
    """`root/cifar-100-python/{train,test,meta}`: n_train / n_test images of each fine class."""
    d = root / "cifar-100-python"
    out, files = {}, {}
    for name, n in [("train", n_train), ("test", n_test)]:
        y = np.repeat(np.arange(100), n)
        y = y[rng.permutation(len(y))]
        x = rng.integers(0, 256, size=(len(y), 3, 32, 32), dtype=np.uint8)
        files[name] = dump(d / name, {"filenames": [f"{i}.png" for i in range(len(y))],
                                      "batch_label": name, "fine_labels": y.tolist(),
                                      "coarse_labels": (y // 5).tolist(), "data": x.reshape(len(y), -1)})
        out[name] = (x, y)
    files["meta"] = dump(d / "meta", {"fine_label_names": names,
                                      "coarse_label_names": [f"super{i}" for i in range(20)]})
    if checksums is not None:
        checksums(torchvision.datasets.CIFAR100, files)
    return out


@pytest.fixture
def checksums(monkeypatch):
    """Point a CIFAR class's md5 table at the files the test wrote (torchvision still checks them)."""
    def set_for(cls, files: dict[str, Path]) -> None:
        monkeypatch.setattr(cls, "train_list", [[f, md5(files[f])] for f, _ in cls.train_list])
        monkeypatch.setattr(cls, "test_list", [[f, md5(files[f])] for f, _ in cls.test_list])
        monkeypatch.setattr(cls, "meta", {**cls.meta, "md5": md5(files[cls.meta["filename"]])})
    return set_for


def test_cifar10_reads_the_python_batches(tmp_path, checksums):
    written = write_cifar10(tmp_path, np.random.default_rng(0), checksums=checksums)
    train = load_dataset("cifar10", "train", data_dir=tmp_path)
    test = load_dataset("cifar10", "test", data_dir=tmp_path)
    x = np.concatenate([written[f"data_batch_{i}"][0] for i in range(1, 6)])
    y = [label for i in range(1, 6) for label in written[f"data_batch_{i}"][1]]
    assert train.images.dtype == torch.uint8 and train.images.shape == (30, 3, 32, 32)
    assert torch.equal(train.images, torch.from_numpy(x))
    assert train.targets.tolist() == y and train.targets.dtype == torch.long
    assert torch.equal(test.images, torch.from_numpy(written["test_batch"][0]))
    assert test.targets.tolist() == written["test_batch"][1]
    # One pixel by the CIFAR format's own rule: row[1024 c + 32 h + w].
    row = written["data_batch_2"][0][3].reshape(-1)
    assert int(train.images[6 + 3, 2, 5, 7]) == int(row[1024 * 2 + 32 * 5 + 7])
    assert train.classes == CIFAR10_NAMES and train.num_classes == 10
    assert (train.name, train.split, test.split) == ("cifar10", "train", "test")
    check_normalisation(train, torch.from_numpy(x), *STATS["cifar10"])


def test_cifar100_reads_fine_labels_and_names(tmp_path, checksums):
    rng = np.random.default_rng(1)
    names = list(np.array(CIFAR100_NAMES)[rng.permutation(100)])  # meta order is what counts
    written = write_cifar100(tmp_path, rng, names, n_train=2, n_test=1, checksums=checksums)
    train = load_dataset("cifar100", "train", data_dir=tmp_path)
    test = load_dataset("cifar100", "test", data_dir=tmp_path)
    assert train.images.shape == (200, 3, 32, 32) and test.images.shape == (100, 3, 32, 32)
    assert torch.equal(train.images, torch.from_numpy(written["train"][0]))
    assert train.targets.tolist() == written["train"][1].tolist()  # fine, not coarse, labels
    assert torch.equal(test.images, torch.from_numpy(written["test"][0]))
    assert train.classes == names and train.class_counts().tolist() == [2] * 100
    check_normalisation(test, torch.from_numpy(written["test"][0]), *STATS["cifar100"])


def test_corrupted_cifar_files_are_reported_not_a_traceback(tmp_path):
    write_cifar10(tmp_path, np.random.default_rng(2))  # real md5 table: our files fail it
    with pytest.raises(DatasetNotFoundError) as e:
        load_dataset("cifar10", "train", data_dir=tmp_path)
    assert "torchvision rejected them" in str(e.value) and "missing" not in str(e.value)
    assert e.value.__cause__ is None and e.value.__suppress_context__


# -------------------------------------------------------------------------------------- CIFAR-FS
def test_cifar_fs_class_lists_are_the_published_partition():
    s = fewshot_sets.CIFAR_FS_CLASSES
    assert [len(s[k]) for k in ("train", "val", "test")] == [64, 16, 20]
    union = set(s["train"]) | set(s["val"]) | set(s["test"])
    assert len(union) == 100 and union == set(CIFAR100_NAMES)
    # Bertinetto et al. 2019, splits/bertinetto/{val,test}.txt.
    assert set(s["val"]) == {"otter", "motorcycle", "television", "lamp", "crocodile", "shark",
                             "butterfly", "beaver", "beetle", "tractor", "flatfish", "maple_tree",
                             "camel", "crab", "sea", "cattle"}
    assert set(s["test"]) == {"baby", "bed", "bicycle", "chimpanzee", "fox", "leopard", "man",
                              "pickup_truck", "plain", "poppy", "rocket", "rose", "snail",
                              "sweet_pepper", "table", "telephone", "wardrobe", "whale", "woman",
                              "worm"}


def test_cifar_fs_built_from_cifar100_files(tmp_path, checksums):
    rng = np.random.default_rng(3)
    names = list(np.array(CIFAR100_NAMES)[rng.permutation(100)])
    written = write_cifar100(tmp_path, rng, names, n_train=4, n_test=1, checksums=checksums)
    x_all = np.concatenate([written["train"][0], written["test"][0]])
    y_names = [names[k] for k in np.concatenate([written["train"][1], written["test"][1]])]
    key = {x.tobytes(): i for i, x in enumerate(x_all)}  # random images are distinct
    sizes = {"train": 64, "val": 16, "test": 20}
    for split, n in sizes.items():
        ds = load_dataset("cifar-fs", split, data_dir=tmp_path)
        order = sorted(fewshot_sets.CIFAR_FS_CLASSES[split])
        expected = [i for i, c in enumerate(y_names) if c in order]  # file order: train, then test
        assert ds.classes == order and ds.num_classes == n and len(ds) == 5 * n
        assert torch.equal(ds.images, torch.from_numpy(x_all[expected]))
        assert ds.targets.tolist() == [order.index(y_names[i]) for i in expected]
        assert ds.class_counts().tolist() == [5] * n
    assert ds.mean == STATS["cifar100"][0] and ds.images.dtype == torch.uint8

    full = load_dataset("cifar-fs", "train", data_dir=tmp_path)
    fit = load_dataset("cifar-fs", "train/fit", data_dir=tmp_path)
    hold = load_dataset("cifar-fs", "train/holdout", data_dir=tmp_path)
    assert fit.split == "train/fit" and fit.classes == full.classes == hold.classes
    assert fit.class_counts().tolist() == [4] * 64 and hold.class_counts().tolist() == [1] * 64
    rows_fit = {key[x.numpy().tobytes()] for x in fit.images}
    rows_hold = {key[x.numpy().tobytes()] for x in hold.images}
    rows_full = {key[x.numpy().tobytes()] for x in full.images}
    assert rows_fit.isdisjoint(rows_hold) and rows_fit | rows_hold == rows_full
    label_of = {key[x.numpy().tobytes()]: int(t) for x, t in zip(full.images, full.targets)}
    assert all(label_of[key[x.numpy().tobytes()]] == int(t) for x, t in zip(hold.images, hold.targets))
    again = load_dataset("cifar-fs", "train/holdout", data_dir=tmp_path)
    assert torch.equal(again.images, hold.images)  # deterministic


def test_cifar_fs_missing_cifar100_names_both(tmp_path):
    with pytest.raises(DatasetNotFoundError) as e:
        load_dataset("cifar-fs", "test", data_dir=tmp_path)
    msg = str(e.value)
    assert "'cifar-fs' needs data set 'cifar100'" in msg and str(tmp_path) in msg
    assert "torchvision.datasets.CIFAR100(" in msg and "cifar-100-python/train" in msg


def test_fewshot_unknown_split_lists_the_names(tmp_path):
    with pytest.raises(ValueError, match=r"train/holdout.*not 'train/dev'"):
        load_dataset("cifar-fs", "train/dev", data_dir=tmp_path)


# ----------------------------------------------------------------------------------- MNIST family
def write_idx(path: Path, array: np.ndarray) -> None:
    """IDX format (LeCun): big-endian magic 0x0000 08 <ndim>, the dims, then uint8 data."""
    path.parent.mkdir(parents=True, exist_ok=True)
    header = struct.pack(">I", 0x0800 | array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def write_mnist(root: Path, folder: str, rng) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    out = {}
    for prefix, n in [("train", 12), ("t10k", 5)]:
        x = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        y = rng.integers(0, 10, size=n).astype(np.uint8)
        write_idx(root / folder / "raw" / f"{prefix}-images-idx3-ubyte", x)
        write_idx(root / folder / "raw" / f"{prefix}-labels-idx1-ubyte", y)
        out[prefix] = (x, y)
    return out


@pytest.mark.parametrize("name,folder,classes", [
    ("mnist", "MNIST", [str(d) for d in range(10)]),
    ("fashion-mnist", "FashionMNIST", ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                                       "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]),
])
def test_mnist_family_reads_raw_idx_files(tmp_path, name, folder, classes):
    written = write_mnist(tmp_path, folder, np.random.default_rng(4))
    for split, prefix in [("train", "train"), ("test", "t10k")]:
        ds = load_dataset(name, split, data_dir=tmp_path)
        x, y = written[prefix]
        assert ds.images.dtype == torch.uint8 and ds.images.shape == (len(x), 1, 28, 28)
        assert torch.equal(ds.images[:, 0], torch.from_numpy(x))
        assert ds.targets.tolist() == y.tolist() and ds.classes == classes
    check_normalisation(ds, torch.from_numpy(x).unsqueeze(1), *STATS[name])


# ------------------------------------------------------------------------------------------ SVHN
def test_svhn_reads_mat_files_and_maps_label_10_to_0(tmp_path, monkeypatch):
    from scipy.io import savemat

    rng = np.random.default_rng(5)
    written, table = {}, dict(torchvision.datasets.SVHN.split_list)
    for split, n in [("train", 9), ("test", 4), ("extra", 3)]:
        x = rng.integers(0, 256, size=(32, 32, 3, n), dtype=np.uint8)   # (H, W, C, N) as published
        y = rng.integers(1, 11, size=(n, 1)).astype(np.uint8)            # 1..10, 10 means digit 0
        y[0, 0] = 10
        fname = table[split][1]
        savemat(tmp_path / fname, {"X": x, "y": y})
        table[split] = [table[split][0], fname, md5(tmp_path / fname)]
        written[split] = (x, y)
    monkeypatch.setattr(torchvision.datasets.SVHN, "split_list", table)
    for split, (x, y) in written.items():
        ds = load_dataset("svhn", split, data_dir=tmp_path)
        assert ds.images.dtype == torch.uint8 and ds.images.shape == (x.shape[3], 3, 32, 32)
        assert torch.equal(ds.images, torch.from_numpy(x).permute(3, 2, 0, 1))  # [n, c, h, w] = X[h, w, c, n]
        assert ds.targets.tolist() == [0 if v == 10 else int(v) for v in y[:, 0]]
        assert ds.targets[0] == 0 and ds.classes == [str(d) for d in range(10)]
    check_normalisation(ds, torch.from_numpy(x).permute(3, 2, 0, 1), *STATS["svhn"])


# --------------------------------------------------------------------------------- mini-ImageNet
def write_mini_imagenet(path: Path, rng, wnids: list[str], per_class: int):
    n = len(wnids) * per_class
    x = rng.integers(0, 256, size=(n, 84, 84, 3), dtype=np.uint8)
    rows = rng.permutation(n)  # classes interleaved in the file, as indices say
    class_dict = {w: rows[i * per_class:(i + 1) * per_class].tolist() for i, w in enumerate(wnids)}
    dump(path, {"image_data": x, "class_dict": class_dict})
    return x, class_dict


def test_mini_imagenet_reads_cache_pickles(tmp_path):
    rng = np.random.default_rng(6)
    wnids = ["n04596742", "n01532829", "n03400231", "n02074367"]
    x, class_dict = write_mini_imagenet(tmp_path / "mini-imagenet-cache-train.pkl", rng, wnids, 5)
    ds = load_dataset("mini-imagenet", "train", data_dir=tmp_path)
    assert ds.classes == sorted(wnids) and ds.images.shape == (20, 3, 84, 84)
    assert ds.images.dtype == torch.uint8
    assert torch.equal(ds.images, torch.from_numpy(x).permute(0, 3, 1, 2))
    expected = np.empty(20, dtype=np.int64)
    for w, idx in class_dict.items():
        expected[idx] = sorted(wnids).index(w)
    assert ds.targets.tolist() == expected.tolist()
    mean = (120.39586422 / 255, 115.59361427 / 255, 104.54012653 / 255)
    std = (70.68188272 / 255, 68.27635443 / 255, 72.54505529 / 255)
    check_normalisation(ds, torch.from_numpy(x).permute(0, 3, 1, 2), mean, std)

    fit = load_dataset("mini-imagenet", "train/fit", data_dir=tmp_path)
    hold = load_dataset("mini-imagenet", "train/holdout", data_dir=tmp_path)
    assert fit.class_counts().tolist() == [4] * 4 and hold.class_counts().tolist() == [1] * 4
    assert len({x.numpy().tobytes() for x in torch.cat([fit.images, hold.images])}) == 20


def test_mini_imagenet_val_accepts_the_validation_file_name(tmp_path):
    write_mini_imagenet(tmp_path / "mini-imagenet-cache-validation.pkl", np.random.default_rng(7),
                        ["n01855672", "n02091244"], 3)
    ds = load_dataset("mini-imagenet", "val", data_dir=tmp_path)
    assert ds.classes == ["n01855672", "n02091244"] and len(ds) == 6


def test_mini_imagenet_missing_names_dir_and_command(tmp_path):
    with pytest.raises(DatasetNotFoundError) as e:
        load_dataset("mini-imagenet", "test", data_dir=tmp_path, download=True)
    msg = str(e.value)
    assert "'mini-imagenet'" in msg and str(tmp_path) in msg
    assert "mini-imagenet-cache-test.pkl" in msg and "MiniImagenet(" in msg


# ---------------------------------------------------------------------------- missing data sets
def python_code(msg: str) -> str:
    return re.search(r'python -c "(.*?)"', msg).group(1)


@pytest.mark.parametrize("name,cls,first_file", [
    ("cifar10", "CIFAR10", "cifar-10-batches-py/data_batch_1"),
    ("cifar100", "CIFAR100", "cifar-100-python/train"),
    ("mnist", "MNIST", "MNIST/raw/train-images-idx3-ubyte"),
    ("fashion-mnist", "FashionMNIST", "FashionMNIST/raw/train-images-idx3-ubyte"),
    ("svhn", "SVHN", "train_32x32.mat"),
])
def test_missing_set_names_dir_and_a_working_fetch_command(tmp_path, monkeypatch, name, cls,
                                                           first_file):
    root = tmp_path / "nothing here"
    with pytest.raises(DatasetNotFoundError) as e:
        load_dataset(name, "train", data_dir=root)
    msg = str(e.value)
    assert f"'{name}'" in msg and str(root) in msg and f"missing {first_file}" in msg
    assert "--download" in msg and e.value.__cause__ is None and e.value.__suppress_context__
    assert isinstance(e.value, FileNotFoundError)
    # The printed command is valid Python that asks torchvision to download into that directory.
    calls = []
    monkeypatch.setattr(torchvision.datasets, cls, lambda *a, **k: calls.append((a, k)))
    code = python_code(msg)
    ast.parse(code)
    exec(code, {})  # noqa: S102  (the command we print, with torchvision's download stubbed)
    assert calls and calls[0][0] == (str(root),) and calls[0][1]["download"] is True


def test_default_root_is_ncbench_data_env(tmp_path, monkeypatch):
    monkeypatch.setenv("NCBENCH_DATA", str(tmp_path / "envroot"))
    with pytest.raises(DatasetNotFoundError, match=re.escape(str(tmp_path / "envroot"))):
        load_dataset("cifar10", "test")
    monkeypatch.delenv("NCBENCH_DATA")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    with pytest.raises(DatasetNotFoundError) as e:
        load_dataset("cifar10", "test")
    assert str(tmp_path / "home" / ".cache" / "ncbench" / "data") in str(e.value)


def test_failed_download_is_reported(tmp_path, monkeypatch):
    from urllib.error import URLError

    def offline(*args, **kwargs):
        raise URLError("no network")

    monkeypatch.setattr(torchvision.datasets.cifar, "download_and_extract_archive", offline)
    with pytest.raises(DatasetNotFoundError, match="download failed.*no network"):
        load_dataset("cifar10", "train", data_dir=tmp_path, download=True)


def test_unknown_split_is_a_value_error(tmp_path):
    with pytest.raises(ValueError, match=r"'cifar10' has splits \['test', 'train'\], not 'extra'"):
        load_dataset("cifar10", "extra", data_dir=tmp_path)
