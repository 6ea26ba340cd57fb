"""The data-set names a spec may hold, as strings (torch-free): a registered name, `imagefolder:PATH`,
or `hf:NAME_OR_PATH[:CONFIG][?KEY=VALUE&...]` (a Hugging Face data set, `ncbench.data.huggingface`).

`parse_hf` splits an `hf:` name into its parts; `is_local_dataset` says whether a name points at
this machine's files (an image folder, a local `hf:` folder or file), which a public board must not
hold; `name_token` turns a name into a folder-name token for run names.
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

HF_PREFIX = "hf:"
FOLDER_PREFIX = "imagefolder:"
HF_OPTIONS = ("image", "label", "train", "test")   # column names, and the splits read as train / test
LOCAL_SUFFIXES = (".parquet", ".arrow")


@dataclass(frozen=True)
class HFName:
    """An `hf:` name: `path` (hub name or local path), `config` (the hub's configuration name or
    None), and the options `image`, `label` (column names), `train`, `test` (split names)."""

    path: str
    config: str | None = None
    image: str | None = None
    label: str | None = None
    train: str | None = None
    test: str | None = None

    @property
    def local(self) -> bool:
        """A path on this machine (it exists, or it is written as a path), not a hub name."""
        p = self.path
        return (Path(p).expanduser().exists() or p.startswith(("/", ".", "~")) or "\\" in p
                or p.endswith(LOCAL_SUFFIXES) or p.count("/") > 1)


def parse_hf(name: str) -> HFName:
    """`hf:NAME_OR_PATH[:CONFIG][?image=COL&label=COL&train=SPLIT&test=SPLIT]` → `HFName`; a bad
    option raises ValueError (with the close option names)."""
    if not name.startswith(HF_PREFIX):
        raise ValueError(f"'{name}' is not an hf: data-set name (hf:NAME_OR_PATH[:CONFIG][?image=COL&label=COL])")
    rest, _, query = name[len(HF_PREFIX):].partition("?")
    config = None
    head, sep, tail = rest.rpartition(":")
    if sep and head and tail and "/" not in tail:
        rest, config = head, tail
    if not rest:
        raise ValueError(f"'{name}': no data set after hf: (give a hub name such as hf:uoft-cs/cifar10, or a "
                         "folder saved with save_to_disk, or a .parquet/.arrow file)")
    options: dict[str, str] = {}
    for item in filter(None, query.split("&")):
        key, eq, value = item.partition("=")
        if key not in HF_OPTIONS:
            from ncbench.registry import suggest

            raise suggest("hf: option", key, list(HF_OPTIONS), f"options of '{name}': {', '.join(HF_OPTIONS)}")
        if not eq or not value:
            raise ValueError(f"'{name}': option '{key}' has no value (write {key}=NAME)")
        options[key] = value
    return HFName(rest, config, **options)


def is_local_dataset(name: str) -> bool:
    """Whether the data-set name points at files on this machine (`imagefolder:PATH`, a local `hf:`
    folder or file): such a name means nothing on another machine, so boards refuse it."""
    if name.startswith(FOLDER_PREFIX):
        return True
    if name.startswith(HF_PREFIX):
        try:
            return parse_hf(name).local
        except (ValueError, KeyError):
            return True          # not a readable hub name: never public
    return False


def name_token(dataset: str) -> str:
    """A data set as a folder-name token: `imagefolder:/a/b/pets` → `imagefolder-pets-<8 hex of the
    path>`, `hf:/a/b/pets?label=y` → `hf-pets-<8 hex of the name>`, an in-memory pair of `ncbench.run`
    `tensors:<hex>` → `tensors-<hex>`, a registered name as it is."""
    if dataset.startswith("tensors:"):
        return dataset.replace(":", "-", 1)
    if dataset.startswith(FOLDER_PREFIX):
        path = dataset[len(FOLDER_PREFIX):]
        return f"imagefolder-{_stem(Path(path).name)}-{hashlib.sha1(path.encode()).hexdigest()[:8]}"
    if dataset.startswith(HF_PREFIX):
        body = dataset[len(HF_PREFIX):]
        stem = body.partition("?")[0]
        stem = Path(stem).name if stem.startswith(("/", ".", "~")) else stem
        return f"hf-{_stem(stem)}-{hashlib.sha1(body.encode()).hexdigest()[:8]}"
    return dataset


def _stem(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.+-]", "-", text)[:40].strip(".-") or "root"
