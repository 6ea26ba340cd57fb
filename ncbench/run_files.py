"""Safe file access in a run folder: every read, atomic replacement and deletion ncbench makes in a
run folder (results, configs, records, checkpoints, caches, figures) goes through this module.

A run folder may come from someone else, so a path is used only if, after resolving links, it lies
inside `root` (the run folder; `None`: no containment check) and is a regular file (a folder for
`ensure_dir` / `remove_tree`). A link leading out, a FIFO, a device or a socket is refused with
`UnsafePathError`: one line naming the path and what it is. Files are opened with `O_NONBLOCK` and
checked on the open descriptor (`fstat`), so a FIFO never blocks a read. JSON reads have a size
(`MAX_JSON_BYTES`) and nesting (`MAX_JSON_DEPTH`) limit (`ReadError`). Checkpoints are read with
`torch.load(weights_only=True)` from the checked bytes: no code runs, a foreign or torn file is a
`ReadError` naming it.

Replacements are atomic: the bytes go to `.NAME.tmp<pid>-<thread>` beside the target (created with
`O_EXCL | O_NOFOLLOW`), are fsynced, then `os.replace`d over it, so a reader never sees half a file
and a crash leaves the previous one. Any OS failure (ENOSPC, EDQUOT, EPERM, EACCES, EROFS, ...) is a
`WriteError`: one line naming the file, the cause and the fix. `torch.save` writes to memory first,
so its `[enforce fail at inline_container.cc]` messages never reach the user.
"""
from __future__ import annotations

import contextlib
import errno
import io
import json
import os
import re
import shutil
import stat
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

MAX_JSON_BYTES = 64 << 20
"""Largest JSON file read from a run folder (config.json, record.json, suite.json, error.json)."""
MAX_JSON_DEPTH = 64
"""Deepest nesting of arrays and objects accepted in such a file (ncbench writes at most ~10)."""

TEMPORARY = re.compile(r"\..+\.tmp(\d+)(?:-(\d+))?")
"""The name of a temporary file of an atomic replacement: `.NAME.tmp<pid>-<thread id>`."""


class UnsafePathError(ValueError):
    """A path of a run folder that is not a regular file (or folder) inside it: refused, never used."""


class ReadError(ValueError):
    """A file of a run folder that cannot be trusted: too large, too deep, not JSON, not a checkpoint."""


class WriteError(OSError):
    """A file that could not be written or deleted: one line naming it, the OS reason and the fix."""

    HINTS: ClassVar[dict[int, str]] = {
        errno.ENOSPC: "the disk is full: free space or write to another disk",
        errno.EDQUOT: "the disk quota is exceeded: free space or write to another disk",
        errno.EROFS: "the file system is read-only: write to a writable folder",
        errno.EACCES: "permission denied: write to a folder you may write to",
        errno.EPERM: "permission denied (or the file is immutable, chattr +i): write to a folder you may write to",
        errno.ENOTDIR: "a part of the path is a regular file, not a folder: choose another folder",
        errno.EEXIST: "a part of the path is a regular file, not a folder: choose another folder",
        errno.EISDIR: "the path is a folder, not a file: choose a file name",
        errno.EFBIG: "the file exceeds the size this process may write (ulimit -f) or the file system allows",
    }

    def __init__(self, path: Path, error: OSError):
        super().__init__(error.errno, error.strerror or str(error), str(path))
        self.path = Path(path)
        self.hint = self.HINTS.get(error.errno, "check the path and retry")

    def __str__(self) -> str:
        return f"cannot write {self.path}: {self.strerror}; {self.hint}"


def kind_of(mode: int) -> str:
    """What a file of this `st_mode` is, in words."""
    for test, words in ((stat.S_ISREG, "a regular file"), (stat.S_ISDIR, "a folder"),
                        (stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"),
                        (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"),
                        (stat.S_ISLNK, "a symbolic link")):
        if test(mode):
            return words
    return "not a regular file"


def inside(path: str | Path, root: str | Path | None, verb: str = "read") -> Path:
    """The resolved `path`, which must lie inside the resolved `root` (any `root` if None)."""
    path = Path(path)
    real = Path(os.path.realpath(path))
    if root is None:
        return real
    top = Path(os.path.realpath(root))
    if real != top and top not in real.parents:
        link = " (through a symbolic link)" if real != Path(os.path.abspath(path)) else ""
        raise UnsafePathError(f"refusing to {verb} {path}: it resolves to {real}{link}, outside the run folder "
                              f"{root}; remove the link and rerun")
    return real


def _refuse(path: Path, mode: int, verb: str, wanted: str = "a regular file") -> UnsafePathError:
    return UnsafePathError(f"refusing to {verb} {path}: it is {kind_of(mode)}, not {wanted}; "
                           f"remove it and rerun")


@contextlib.contextmanager
def open_bytes(path: str | Path, root: str | Path | None = None) -> Iterator[io.BufferedReader]:
    """`open(path, "rb")` of a regular file inside `root`; never blocks on a FIFO or a device."""
    real = inside(path, root)
    fd = os.open(real, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0))
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise _refuse(Path(path), mode, "read")
        os.set_blocking(fd, True)
        f = os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise
    with f:
        yield f


@contextlib.contextmanager
def open_text(path: str | Path, root: str | Path | None = None) -> Iterator[io.TextIOWrapper]:
    """`open(path, newline="", encoding="utf-8")` of a regular file inside `root` (for csv, pandas)."""
    with open_bytes(path, root) as f, io.TextIOWrapper(f, encoding="utf-8", newline="") as t:
        yield t


def read_bytes(path: str | Path, root: str | Path | None = None, limit: int | None = None) -> bytes:
    """The bytes of a regular file inside `root`; `ReadError` beyond `limit` bytes."""
    with open_bytes(path, root) as f:
        data = f.read() if limit is None else f.read(limit + 1)
    if limit is not None and len(data) > limit:
        raise ReadError(f"{path} is larger than {limit} bytes: not a file ncbench wrote; delete it and rerun")
    return data


def read_text(path: str | Path, root: str | Path | None = None, limit: int | None = None) -> str:
    try:
        return read_bytes(path, root, limit).decode("utf-8")
    except UnicodeDecodeError as e:
        raise ReadError(f"{path} is not UTF-8 text ({e.reason} at byte {e.start})") from None


_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)
_BRACKET = re.compile(r"[\[\]{}]")


def json_depth(text: str, stop: int | None = None) -> int:
    """The deepest nesting of arrays/objects in JSON `text` (strings skipped); stops counting past `stop`."""
    depth = deepest = 0
    for m in _BRACKET.finditer(_STRING.sub('""', text)):
        depth += 1 if m.group() in "[{" else -1
        if depth > deepest:
            deepest = depth
            if stop is not None and deepest > stop:
                break
    return deepest


def read_json(path: str | Path, root: str | Path | None = None, max_bytes: int = MAX_JSON_BYTES,
              max_depth: int = MAX_JSON_DEPTH):
    """The JSON document of a regular file inside `root`, within the size and depth limits."""
    text = read_text(path, root, max_bytes)
    if json_depth(text, max_depth) > max_depth:
        raise ReadError(f"{path} nests arrays/objects deeper than {max_depth} levels: not a file ncbench "
                        f"wrote; delete it and rerun")
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as e:
        raise ReadError(f"{path} is not valid JSON ({str(e).splitlines()[0][:120]})") from None


def load_torch(path: str | Path, root: str | Path | None = None, map_location="cpu"):
    """`torch.load(path, weights_only=True)` of a regular file inside `root`: no code runs; a pickle
    with code, a truncated or foreign file is a `ReadError` naming the file."""
    import torch

    data = read_bytes(path, root)
    try:
        return torch.load(io.BytesIO(data), map_location=map_location, weights_only=True)
    except Exception as e:  # noqa: BLE001 - any file torch cannot read safely is untrusted
        first = str(e).strip().splitlines()[0][:160] if str(e).strip() else ""
        raise ReadError(f"{path} is not a file ncbench can load safely ({type(e).__name__}: {first})") from None


# --------------------------------------------------------------------------------------- writing

def temporary_path(path: str | Path) -> Path:
    """`.NAME.tmp<pid>-<thread id>` beside `path`: unique per process and thread."""
    path = Path(path)
    return path.with_name(f".{path.name}.tmp{os.getpid()}-{threading.get_ident()}")


def ensure_dir(path: str | Path, root: str | Path | None = None) -> Path:
    """`mkdir -p path` inside `root`: the deepest existing part is checked before anything is created."""
    path = Path(path)
    probe = path
    while not os.path.lexists(probe) and probe != probe.parent:
        probe = probe.parent
    top = None if root is None else Path(os.path.abspath(root))
    if top is not None and Path(os.path.abspath(probe)) not in (top, *top.parents):
        inside(probe, root, "write into")      # the deepest existing part below the run folder
    if os.path.lexists(path) and not path.is_dir():
        raise _refuse(path, os.lstat(path).st_mode, "write into", "a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise WriteError(path, e) from None
    inside(path, root, "write into")
    return path


@contextlib.contextmanager
def replacing(path: str | Path, root: str | Path | None = None) -> Iterator[Path]:
    """`with replacing(p) as tmp: write(tmp)`: `tmp` replaces `p` when the block ends without error;
    on any error the temporary file is removed and the error propagates (OS errors as `WriteError`)."""
    path = Path(path)
    ensure_dir(path.parent, root)
    tmp = temporary_path(path)
    try:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()                     # a leftover of this very process and thread (or a planted link)
        yield tmp
        os.replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        if isinstance(e, OSError) and not isinstance(e, WriteError):
            raise WriteError(path, e) from None
        raise


def replace_bytes(path: str | Path, data: bytes, root: str | Path | None = None) -> Path:
    """Atomically replace `path` (inside `root`) by `data`, fsynced; `WriteError` on any OS failure."""
    path = Path(path)
    with replacing(path, root) as tmp:
        write_new_file(tmp, data)
    return path


def write_new_file(path: Path, data: bytes) -> None:
    """Create `path` (never through a link, never over an existing file), write `data`, fsync."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    with os.fdopen(os.open(path, flags, 0o666), "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def replace_text(path: str | Path, text: str, root: str | Path | None = None) -> Path:
    return replace_bytes(path, text.encode("utf-8"), root)


def save_torch(obj, path: str | Path, root: str | Path | None = None) -> Path:
    """`torch.save(obj, path)`, into memory first, then `replace_bytes` (one-line `WriteError`s)."""
    import torch

    buf = io.BytesIO()
    torch.save(obj, buf)
    return replace_bytes(path, buf.getvalue(), root)


# -------------------------------------------------------------------------------------- deleting

def remove(path: str | Path, root: str | Path | None = None) -> bool:
    """Delete the regular file `path` inside `root` (False if there was none); anything else is refused."""
    path = Path(path)
    if not os.path.lexists(path):
        return False
    inside(path, root, "delete")
    mode = os.stat(path).st_mode if path.exists() else os.lstat(path).st_mode
    if not stat.S_ISREG(mode):
        raise _refuse(path, mode, "delete")
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    except OSError as e:
        raise WriteError(path, e) from None
    return True


def remove_tree(path: str | Path, root: str | Path | None = None) -> bool:
    """Delete the folder `path` and what it holds; it must be a folder inside `root`, not a link to one
    (links inside it are removed, never followed)."""
    path = Path(path)
    if not os.path.lexists(path):
        return False
    inside(path, root, "delete")
    mode = os.lstat(path).st_mode
    if not stat.S_ISDIR(mode):
        raise _refuse(path, mode, "delete", "a folder")
    try:
        shutil.rmtree(path)
    except OSError as e:
        raise WriteError(path, e) from None
    return True


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True            # someone else's process: alive
    return True


def remove_stale_temporaries(folder: str | Path, root: str | Path | None = None) -> list[Path]:
    """Delete the `.NAME.tmp<pid>-<thread>` files of writers that died (their process is gone) in
    `folder`, a folder inside `root`; a live writer's temporary, or any other file, is left alone."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    inside(folder, root, "clean")
    gone = []
    for p in folder.iterdir():
        m = TEMPORARY.fullmatch(p.name)
        if m is None:
            continue
        pid, tid = int(m.group(1)), m.group(2)
        ours = pid == os.getpid()
        if (ours and tid != str(threading.get_ident())) or (not ours and _alive(pid)):
            continue           # a live writer's temporary
        with contextlib.suppress(OSError):
            p.unlink()         # a file, or a link named like one (the link only, never its target)
            gone.append(p)
    return gone
