"""Run identity, computed in one place (torch-free): every config hash, group hash, suite run id,
trajectory key and run name ncbench writes.

- config hash: SHA-1 (12 hex) of a spec's sorted JSON without its runtime fields, a checkpoint
  named by the SHA-256 of its bytes;
- group hash: SHA-1 (12 hex) of the group spec's config hash followed by its members', in order;
- run id: `<suite>-` + SHA-1 (8 hex) of the suite's config hashes, in order;
- trajectory key: SHA-1 (16 hex) of a training configuration without paths, the checkpoint's
  SHA-256 and the code fingerprint (`ncbench.training.cache_key`);
- run name: `<task>@key=value,...` for each way a run differs from its YAML in what it measures.

Compatibility rules (so that results written before a field existed keep their hash): one process
(`world_size == 1`) is left out of every hash, and true labels (`random_labels` false) out of the
trajectory key.
"""
from __future__ import annotations

import functools
import hashlib
import json
from pathlib import Path

from ncbench.provenance import digests

NAME_LIMIT = 128
"""A run name longer than this names its command-line changes by one hash (`set=h<8 hex>`)."""


def sha1_hex(text: str, digits: int) -> str:
    """The first `digits` hex digits of the SHA-1 of `text` (UTF-8)."""
    return hashlib.sha1(text.encode()).hexdigest()[:digits]


def digest_of(d: dict, digits: int) -> str:
    """`sha1_hex` of `d` as JSON with sorted keys (values JSON cannot write, by `str`)."""
    return sha1_hex(json.dumps(d, sort_keys=True, default=str), digits)


@functools.lru_cache(maxsize=64)
def _sha256_cached(path: str, size: int, mtime_ns: int) -> str:
    return digests.file_sha256(path)


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a file's bytes (memoised per path, size and modification time)."""
    p = Path(path).expanduser().resolve()
    st = p.stat()
    return _sha256_cached(str(p), st.st_size, st.st_mtime_ns)


def drop_single_process(d: dict) -> dict:
    """`d` without `world_size` when it is 1: the hash of the configurations written before world
    size was recorded (one process)."""
    if d.get("world_size") == 1:
        d = {k: v for k, v in d.items() if k != "world_size"}
    return d


def config_hash(spec: dict, runtime: tuple[str, ...] | list[str]) -> str:
    """Hash of everything in a spec's dict that changes the numbers: not its `runtime` fields (paths,
    descriptions), a checkpoint that exists by the SHA-256 of its bytes (a file replaced in place is
    another configuration)."""
    d = drop_single_process({k: v for k, v in spec.items() if k not in runtime})
    checkpoint = spec.get("checkpoint")
    if checkpoint and Path(checkpoint).expanduser().is_file():
        d["checkpoint"] = "sha256:" + file_sha256(checkpoint)
    return digest_of(d, 12)


def group_hash(spec_hash: str, member_hashes: list[str]) -> str:
    """A group's configuration hash: its own spec's hash and every member's, in order."""
    return sha1_hex(spec_hash + "".join(member_hashes), 12)


def run_id(suite: str, spec_hashes: list[str]) -> str:
    """A suite run's id: the suite's name and a hash of its tasks' config hashes, in order."""
    return f"{suite}-{sha1_hex(''.join(spec_hashes), 8)}"


def trajectory_key(config: dict, code: str) -> str:
    """Hash of what determines trained weights: the training configuration without its paths and
    switches (`data_dir`, `download`), the checkpoint file's SHA-256 instead of its path, and `code`
    (the code fingerprint)."""
    d = drop_single_process({k: v for k, v in config.items() if k not in ("data_dir", "download")})
    if not d.get("random_labels", True):   # true labels: the key of the configs before the field existed
        d.pop("random_labels")
    if config.get("checkpoint") is not None:
        d["checkpoint"] = file_sha256(config["checkpoint"])
    d["code"] = code
    return digest_of(d, 16)


def run_name(name: str, *, dataset_token: str | None = None, world_size: int = 1,
             changed: list[str] | tuple[str, ...] = ()) -> str:
    """`name` plus `@key=value,...` for each way a run differs from its YAML in what it measures:
    another data set (`dataset_token`, None when the same or when its tier measures any data set),
    several DDP processes (BatchNorm statistics change), the command line's `changed` tokens
    (`recipe=vit-adamw`, `recipe.lr=0.001`), replaced by one hash past `NAME_LIMIT` characters."""
    parts = [f"dataset={dataset_token}"] if dataset_token is not None else []
    if world_size != 1:
        parts.append(f"world={world_size}")
    if changed:
        text = ",".join(changed)
        if len(name) + len(",".join(parts)) + len(text) + 2 > NAME_LIMIT:
            text = "set=h" + sha1_hex(text, 8)
        parts.append(text)
    return name + ("@" + ",".join(parts) if parts else "")


def weights_identity(checkpoint: str | None, pretrained: bool | str) -> str:
    """The `pretrained` column of a run: `sha256:<16 hex>` of a checkpoint's bytes (a file replaced in
    place is other weights), else the pretrained tag (`true` for timm's default), else empty."""
    if checkpoint:
        return f"sha256:{file_sha256(checkpoint)[:16]}"
    if pretrained is True or (isinstance(pretrained, str) and pretrained.lower() == "true"):
        return "true"
    return str(pretrained or "")
