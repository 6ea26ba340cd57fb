"""SHA-256 digests of files: what identifies a checkpoint's weights and a results file's content."""
from __future__ import annotations

import hashlib
from pathlib import Path


def file_sha256(path: str | Path, root: str | Path | None = None) -> str:
    """Hex SHA-256 of the file's bytes, read in 1 MiB blocks (a regular file, inside `root` if given)."""
    from ncbench.run_files import open_bytes

    h = hashlib.sha256()
    with open_bytes(path, root) as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
