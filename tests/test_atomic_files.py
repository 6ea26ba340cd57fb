"""Atomic replacement: the old file survives a failed write, no temporary is left, threads never share one."""
from __future__ import annotations

import threading

import pytest
import torch

from ncbench.run_files import replacing, save_torch, temporary_path


def test_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "f.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError), replacing(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("disk died")
    assert target.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["f.txt"]


def test_threads_get_their_own_temporaries_and_the_file_is_always_whole(tmp_path):
    target = tmp_path / "w.pt"
    names = set()

    def write(i):
        names.add(temporary_path(target).name)
        for _ in range(20):
            save_torch({"x": torch.full((256,), float(i))}, target)

    threads = [threading.Thread(target=write, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(names) == 4, "one temporary name per thread"
    x = torch.load(target, weights_only=True)["x"]
    assert torch.all(x == x[0]) and float(x[0]) in {0.0, 1.0, 2.0, 3.0}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w.pt"]
