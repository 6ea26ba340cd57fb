"""Atomic file replacement: write a temporary file beside the target, then `os.replace` it over the
target, so a reader never sees half a file and a crash leaves the previous file as it was.

The temporary name `.NAME.tmp<pid>-<thread id>` is unique per process and thread (two writers of
one file never share a temporary), starts with a dot (hidden, and found by
`ncbench.results.writer.remove_stale_temporaries`), and is removed when the write fails.
"""
from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from pathlib import Path


def temporary_path(path: str | Path) -> Path:
    path = Path(path)
    return path.with_name(f".{path.name}.tmp{os.getpid()}-{threading.get_ident()}")


@contextlib.contextmanager
def replacing(path: str | Path) -> Iterator[Path]:
    """`with replacing(p) as tmp: write(tmp)`: `tmp` replaces `p` when the block ends without error;
    on any error the temporary file is removed and the error propagates."""
    path = Path(path)
    tmp = temporary_path(path)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise


def torch_save(obj, path: str | Path) -> Path:
    """`torch.save(obj, path)`, atomically (the folder is created if needed)."""
    import torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with replacing(path) as tmp:
        torch.save(obj, tmp)
    return path
