"""Hugging Face data sets (`--dataset hf:...`, `ncbench.data.huggingface`) on tiny sets the tests
write in both formats (a `save_to_disk` folder, a parquet file), with real PIL images: the pixels
and labels read back, columns found or named, splits mapped (a seeded split when there is no test
split), the streamed path, one-line errors, no network without --download, a missing `datasets`
package, and train_collapse / frozen_transfer runs whose numbers equal those of the same images
as an `imagefolder:`."""
from __future__ import annotations

import json
import socket

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from ncbench.cli import main

datasets = pytest.importorskip("datasets")

CLASSES = ("cat", "dog", "emu")


@pytest.fixture(autouse=True)
def hf_cache(tmp_path, monkeypatch):
    """A private Hugging Face cache per test, and no cached data set from an earlier test."""
    from ncbench.data import huggingface

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "hf-cache"))
    huggingface._open.cache_clear()
    huggingface._sources.cache_clear()
    yield
    huggingface._open.cache_clear()
    huggingface._sources.cache_clear()


def arrays(per_class: int, seed: int, size: int = 16) -> tuple[list[np.ndarray], list[int]]:
    """RGB uint8 images with class-dependent brightness, ordered by class, and their labels."""
    rng = np.random.default_rng(seed)
    ims, labels = [], []
    for k in range(len(CLASSES)):
        for _ in range(per_class):
            ims.append(np.clip(rng.normal(60 + 70 * k, 30, (size, size, 3)), 0, 255).astype(np.uint8))
            labels.append(k)
    return ims, labels


def hf_split(ims, labels, features=None):
    features = features or datasets.Features({"img": datasets.Image(),
                                              "label": datasets.ClassLabel(names=list(CLASSES))})
    return datasets.Dataset.from_dict({"img": [Image.fromarray(a) for a in ims], "label": labels},
                                      features=features)


@pytest.fixture
def saved(tmp_path):
    """A `save_to_disk` folder with train (10 per class) and test (4 per class) splits, `Image` and
    `ClassLabel` features; returns (name, train arrays, train labels, test arrays, test labels)."""
    tr, ytr = arrays(10, 0)
    te, yte = arrays(4, 1)
    datasets.DatasetDict(train=hf_split(tr, ytr), test=hf_split(te, yte)).save_to_disk(tmp_path / "saved")
    return f"hf:{tmp_path / 'saved'}", tr, ytr, te, yte


@pytest.fixture
def parquet(tmp_path):
    """One parquet file, no test split, the image in `image` and string labels in `label` (plain
    columns: no ClassLabel); returns (name, arrays, label names)."""
    ims, labels = arrays(10, 2)
    names = [CLASSES[k] for k in labels]
    features = datasets.Features({"image": datasets.Image(), "label": datasets.Value("string")})
    datasets.Dataset.from_dict({"image": [Image.fromarray(a) for a in ims], "label": names},
                               features=features).to_parquet(str(tmp_path / "pets.parquet"))
    return f"hf:{tmp_path / 'pets.parquet'}", ims, names


def as_chw(ims) -> torch.Tensor:
    return torch.from_numpy(np.stack(ims)).permute(0, 3, 1, 2)


# -- reading -----------------------------------------------------------------------------------
def test_a_save_to_disk_folder_reads_back_its_pixels_labels_and_splits(saved):
    from ncbench.data import load_dataset
    from ncbench.data.registry import dataset_info

    name, tr, ytr, te, yte = saved
    train, test = load_dataset(name, "train"), load_dataset(name, "test")
    assert train.classes == list(CLASSES) and test.classes == list(CLASSES)
    assert torch.equal(train.images, as_chw(tr)) and train.targets.tolist() == ytr
    assert torch.equal(test.images, as_chw(te)) and test.targets.tolist() == yte
    x = as_chw(tr).double() / 255.0                                   # mean/std of the train split
    assert train.mean == pytest.approx(tuple(x.mean((0, 2, 3)).tolist()))
    assert test.std == pytest.approx(tuple(x.std((0, 2, 3)).tolist()))
    assert dataset_info(name) == {"source": "hf", "image_column": "img", "label_column": "label",
                                  "train_split": "train", "test_split": "test"}


def test_a_parquet_file_without_a_test_split_is_split_per_class_with_a_seed(parquet):
    from ncbench.data import load_dataset
    from ncbench.data.registry import dataset_info

    name, ims, names = parquet
    train, test = load_dataset(name, "train"), load_dataset(name, "test")
    assert train.classes == sorted(set(names))                        # plain strings: sorted classes
    assert torch.bincount(train.targets).tolist() == [8, 8, 8]        # 80/20 of 10 per class
    assert torch.bincount(test.targets).tolist() == [2, 2, 2]
    # every image once, in one split only, with its own label
    rows = {a.tobytes(): CLASSES.index(n) for a, n in zip(ims, names, strict=True)}
    seen = [(im.permute(1, 2, 0).numpy().tobytes(), int(y)) for ds in (train, test)
            for im, y in zip(ds.images, ds.targets, strict=True)]
    assert len(seen) == len(rows) and len({b for b, _ in seen}) == len(rows)
    assert all(rows[b] == y for b, y in seen)
    assert "seeded 80/20 per-class split of 'train' (seed 0)" in dataset_info(name)["test_split"]
    again = load_dataset(name, "test")
    assert torch.equal(again.images, test.images)


def test_columns_and_splits_named_in_options(tmp_path):
    from ncbench.data import load_dataset
    from ncbench.data.registry import dataset_info

    ims, labels = arrays(5, 3)
    features = datasets.Features({"photo": datasets.Image(), "img": datasets.Image(),
                                  "coarse": datasets.ClassLabel(names=["a", "b", "c"]),
                                  "fine": datasets.ClassLabel(names=list(CLASSES))})
    pil = [Image.fromarray(a) for a in ims]
    blank = [Image.fromarray(np.zeros_like(a)) for a in ims]
    split = datasets.Dataset.from_dict({"photo": pil, "img": blank, "coarse": [0] * len(ims), "fine": labels},
                                       features=features)
    datasets.DatasetDict(train=split, validation=split, holdout=split).save_to_disk(tmp_path / "d")
    base = f"hf:{tmp_path / 'd'}"
    with pytest.raises(ValueError, match=r"several image columns \['photo', 'img'\]: name one with \?image="):
        load_dataset(base, "train")
    with pytest.raises(ValueError, match=r"several label columns .*\?label="):
        load_dataset(f"{base}?image=photo", "train")
    name = f"{base}?image=photo&label=fine"
    train = load_dataset(name, "train")
    assert torch.equal(train.images, as_chw(ims)) and train.targets.tolist() == labels
    assert dataset_info(name)["test_split"] == "validation"           # no test: validation is test
    assert dataset_info(f"{name}&test=holdout")["test_split"] == "holdout"
    from ncbench.registry import UnknownNameError
    with pytest.raises(UnknownNameError, match="unknown column 'phto'. Did you mean: photo"):
        load_dataset(f"{base}?image=phto&label=fine", "train")
    with pytest.raises(UnknownNameError, match="unknown split 'holdot'. Did you mean: holdout"):
        load_dataset(f"{name}&test=holdot", "train")
    with pytest.raises(UnknownNameError, match="unknown hf: option 'lable'. Did you mean: label"):
        load_dataset(f"{base}?lable=fine", "train")


def test_an_unlabelled_test_split_is_refused_with_the_option_to_use(tmp_path):
    from ncbench.data import load_dataset

    ims, labels = arrays(4, 4)
    datasets.DatasetDict(train=hf_split(ims, labels), test=hf_split(ims, [-1] * len(ims))).save_to_disk(tmp_path / "u")
    with pytest.raises(ValueError, match=r"split 'test' has labels outside 0..2 .*\?test=SPLIT"):
        load_dataset(f"hf:{tmp_path / 'u'}", "test")


def test_streamed_batches_equal_in_memory_batches(saved, monkeypatch):
    from ncbench.data import load_dataset
    from ncbench.data.huggingface import load_hf
    from ncbench.data.streaming import StreamedImageDataset

    name = saved[0]
    monkeypatch.setenv("NCBENCH_STREAM_BYTES", str(30 * 16 * 16 * 3 - 1))     # one byte short of the set
    assert isinstance(load_dataset(name, "train"), StreamedImageDataset)
    monkeypatch.setenv("NCBENCH_STREAM_BYTES", str(30 * 16 * 16 * 3))
    assert not isinstance(load_dataset(name, "train"), StreamedImageDataset)
    mem = load_hf(name, "train", stream=False)
    st = load_hf(name, "train", stream=True, workers=1)
    assert isinstance(st, StreamedImageDataset) and st.info["streamed"]
    assert st.mean == pytest.approx(mem.mean, abs=1e-12) and st.std == pytest.approx(mem.std, abs=1e-12)
    idx = [torch.tensor([3, 0, 29]), torch.tensor([7, 8])]
    for (xs, ys), (xm, ym) in zip(st.batches(idx), mem.batches(idx), strict=True):
        assert torch.allclose(xs, xm, atol=1e-5) and torch.equal(ys, ym)


# -- names, errors, the network ------------------------------------------------------------------
def test_names_parse_and_local_names_are_local(saved):
    from ncbench.data.registry import is_local_dataset
    from ncbench.specs.dataset_names import name_token, parse_hf

    assert parse_hf("hf:uoft-cs/cifar100:plain?label=fine_label") == \
        parse_hf("hf:uoft-cs/cifar100:plain?label=fine_label")
    ref = parse_hf("hf:uoft-cs/cifar100:plain?label=fine_label&test=test")
    assert (ref.path, ref.config, ref.label, ref.test, ref.image) == ("uoft-cs/cifar100", "plain", "fine_label",
                                                                      "test", None)
    assert parse_hf("hf:/data/sets/pets").path == "/data/sets/pets" and parse_hf("hf:/data/sets/pets").config is None
    assert is_local_dataset(saved[0]) and is_local_dataset("hf:./pets.parquet") and is_local_dataset("imagefolder:/x")
    assert not is_local_dataset("hf:uoft-cs/cifar10") and not is_local_dataset("hf:mnist")
    assert not is_local_dataset("mnist5k")
    a, b = name_token(saved[0]), name_token(saved[0] + "?label=label")
    assert a.startswith("hf-saved-") and b.startswith("hf-saved-") and a != b
    assert name_token("hf:uoft-cs/cifar10") .startswith("hf-uoft-cs-cifar10-")


def test_a_hub_name_without_download_never_touches_the_network(monkeypatch, tmp_path):
    from ncbench.data import DatasetNotFoundError, load_dataset

    def no_network(*a, **k):
        raise AssertionError("network used without --download")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    with pytest.raises(DatasetNotFoundError, match="not in the Hugging Face cache .*pass --download"):
        load_dataset("hf:nobody-here/no-such-set", "train")


def test_a_hub_name_in_the_cache_is_read_offline(monkeypatch, tmp_path, saved):
    """A hub data set cached by an earlier `--download` (here: a cache entry laid out as datasets
    lays out `nobody/pets`) is read without the network and without --download."""
    import shutil

    from ncbench.data import load_dataset

    datasets.Dataset.from_file(str(next((tmp_path / "saved" / "train").glob("*.arrow")))).to_parquet(
        str(tmp_path / "t.parquet"))
    datasets.load_dataset("parquet", data_files={"train": str(tmp_path / "t.parquet")})
    cache = tmp_path / "hf-cache"
    built = next(p for p in (cache / "parquet").glob("*/*/*") if p.is_dir() and any(p.glob("*.arrow")))
    entry = cache / "nobody___pets" / "default" / "0.0.0" / built.name
    shutil.copytree(built, entry)
    for f in entry.glob("parquet-*.arrow"):
        f.rename(entry / f.name.replace("parquet-", "pets-"))

    def no_network(*a, **k):
        raise AssertionError("network used without --download")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    train = load_dataset("hf:nobody/pets", "train")
    assert torch.bincount(train.targets).tolist() == [8, 8, 8] and train.classes == list(CLASSES)
    assert train.info["test_split"].startswith("seeded 80/20")


def test_cli_errors_are_one_line(saved, capsys, tmp_path):
    capsys.readouterr()
    for dataset, needle in [(f"hf:{tmp_path / 'nowhere'}", "no such file or folder"),
                            (f"{saved[0]}?label=lable", "unknown column 'lable'. Did you mean: label"),
                            ("hf:?image=x", "no data set after hf:")]:
        rc = main(["run", "train_collapse_mnist5k", "--dataset", dataset, "--epochs", "1", "--device", "cpu",
                   "--out", str(tmp_path / "out"), "--no-progress"])
        err = capsys.readouterr().err
        assert rc != 0 and needle in err and "Traceback" not in err, err


def test_without_the_datasets_package_one_line_says_how_to_install_it(monkeypatch, capsys, saved, tmp_path):
    import sys

    monkeypatch.setitem(sys.modules, "datasets", None)          # `import datasets` raises ImportError
    capsys.readouterr()
    rc = main(["run", "frozen_transfer", "--model", "test_resnet", "--random-init", "--dataset", saved[0], "--device", "cpu",
               "--out", str(tmp_path / "out"), "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert "needs the Hugging Face `datasets` package" in err and "pip install 'ncbench[hf]'" in err
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").rglob("results.csv"))


# -- the tasks ------------------------------------------------------------------------------------
def write_folder(root, ims, labels):
    """The same images as PNG files `root/<class>/<i>.png`, in the order of the rows."""
    for i, (a, y) in enumerate(zip(ims, labels, strict=True)):
        (root / CLASSES[y]).mkdir(parents=True, exist_ok=True)
        Image.fromarray(a).save(root / CLASSES[y] / f"{i:03d}.png")


def run_csv(args, out) -> pd.DataFrame:
    assert main([*args, "--device", "cpu", "--out", str(out), "--no-progress"]) == 0
    return pd.read_csv(next(out.rglob("results.csv")))


def summary(df: pd.DataFrame) -> pd.Series:
    """The run's own headline values (baseline rows, with a variant, left out)."""
    return df[(df.split == "summary") & df.variant.isna()].set_index("metric").value


VALUES = ["split", "epoch", "layer", "variant", "metric", "value", "n_samples"]


def same_values(a: pd.DataFrame, b: pd.DataFrame) -> None:
    a, b = (d[VALUES].sort_values(VALUES[:5]).reset_index(drop=True) for d in (a, b))
    pd.testing.assert_frame_equal(a, b)


def collapse_spec(path, dataset: str):
    """train_collapse_mnist5k's kind and model for one epoch in batches of 8 (so that 30 images
    take four steps and the run leaves chance, as a run must to be `ok`)."""
    path.write_text(f"name: hf_collapse\nkind: train_collapse\nversion: 1\ntier: cpu\ndataset: '{dataset}'\n"
                    "model: test_resnet\nseed: 0\n"
                    "recipe: {protocol: cpu-mnist5k, epochs: 1, batch_size: 8, eval_every: 1}\n")
    return str(path)


def test_train_collapse_on_a_saved_folder_equals_the_same_images_as_an_image_folder(saved, tmp_path, one_thread):
    name, tr, ytr, te, yte = saved
    write_folder(tmp_path / "pngs" / "train", tr, ytr)
    write_folder(tmp_path / "pngs" / "test", te, yte)
    spec = collapse_spec(tmp_path / "spec.yaml", f"imagefolder:{tmp_path / 'pngs'}")
    hf = run_csv(["run", spec, "--dataset", name], tmp_path / "hf")
    folder = run_csv(["run", spec], tmp_path / "folder")
    summ = summary(hf)
    assert 0.0 <= summ["test_accuracy"] <= 1.0 and np.isfinite(summ["nc1"])
    assert set(hf.dataset) == {name} and set(hf.epoch.dropna()) == {1} and set(hf.status) == {"ok"}
    assert (hf[hf.split == "test"].n_samples == 12).all() and (hf[hf.split == "train"].n_samples == 30).all()
    same_values(hf, folder)
    run_dir = next((tmp_path / "hf").rglob("results.csv")).parent
    assert run_dir.name.startswith("hf_collapse@dataset=hf-saved-")


def test_train_collapse_on_a_parquet_file_trains_an_epoch(parquet, tmp_path, one_thread):
    name = parquet[0]
    df = run_csv(["run", collapse_spec(tmp_path / "spec.yaml", name)], tmp_path / "out")
    summ = summary(df)
    assert np.isfinite(summ["nc1"]) and 0.0 <= summ["test_accuracy"] <= 1.0 and set(df.status) == {"ok"}
    assert (df[df.split == "train"].n_samples == 24).all() and (df[df.split == "test"].n_samples == 6).all()


def test_frozen_transfer_on_a_saved_folder_equals_the_image_folder_and_records_the_columns(saved, tmp_path,
                                                                                          one_thread):
    name, tr, ytr, te, yte = saved
    write_folder(tmp_path / "pngs" / "train", tr, ytr)
    write_folder(tmp_path / "pngs" / "test", te, yte)
    args = ["run", "frozen_transfer", "--model", "test_resnet", "--random-init", "--dataset"]
    hf = run_csv([*args, name], tmp_path / "hf")
    folder = run_csv([*args, f"imagefolder:{tmp_path / 'pngs'}"], tmp_path / "folder")
    summ = summary(hf)
    assert summ["n_train"] == 30 and summ["n_test"] == 12
    same_values(hf, folder)
    cfg = json.loads((next((tmp_path / "hf").rglob("results.csv")).parent / "config.json").read_text())
    assert cfg["meta"]["classes"] == list(CLASSES)
    assert cfg["meta"]["data"]["image_column"] == "img" and cfg["meta"]["data"]["test_split"] == "test"


def test_frozen_transfer_on_a_parquet_file_records_its_seeded_split(parquet, tmp_path, one_thread):
    name = parquet[0]
    df = run_csv(["run", "frozen_transfer", "--model", "test_resnet", "--random-init", "--dataset", name], tmp_path / "out")
    summ = summary(df)
    assert summ["n_train"] == 24 and summ["n_test"] == 6 and 0.0 <= summ["probe_acc"] <= 1.0
    cfg = json.loads((next((tmp_path / "out").rglob("results.csv")).parent / "config.json").read_text())
    assert cfg["meta"]["data"]["test_split"].startswith("seeded 80/20 per-class split of 'train'")
    assert cfg["meta"]["data"]["label_column"] == "label"


def test_the_examples_of_docs_data_md_write_sets_that_every_command_there_reads(tmp_path, monkeypatch):
    """docs/data.md: the doc's Python block runs, and every `--dataset` of its commands opens: its own 75/25 split
    for the saved folder, the 80/20 per-class rule for the others."""
    import os
    import re
    import shlex
    import subprocess
    import sys
    from pathlib import Path

    from ncbench.data import load_dataset
    from ncbench.data.registry import check_dataset_name

    doc = (Path(__file__).resolve().parent.parent / "docs" / "data.md").read_text()
    code = re.search(r"```python[^\n]*\n(.*?)```", doc, re.DOTALL).group(1)
    commands = re.search(r"```bash[^\n]*\n(.*?)```", doc, re.DOTALL).group(1).strip().splitlines()
    monkeypatch.chdir(tmp_path)
    env = {**os.environ, "HF_DATASETS_CACHE": str(tmp_path / "hf-cache"), "HF_DATASETS_DISABLE_PROGRESS_BARS": "1"}
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                          check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    names = [shlex.split(c)[shlex.split(c).index("--dataset") + 1] for c in commands]
    assert len(names) == 4 and {n.split(":")[0] for n in names} == {"imagefolder", "hf"}
    for name in names:
        check_dataset_name(name)
        train, test = load_dataset(name, "train"), load_dataset(name, "test")
        expected = (45, 15) if name == "hf:pets_hf" else (48, 12)
        assert (len(train), len(test)) == expected and train.classes == list(CLASSES), name
