"""The performance scripts' own logic: the docs/performance.md table splice and the CPU hogs of
`scripts/loaded_epoch.py` (started in their own session, stopped by PID even when the block raises)."""
from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


def _script(name: str):
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


def test_the_performance_table_replaces_only_the_marked_block(tmp_path):
    pt = _script("performance_table")
    readme = tmp_path / "README.md"
    readme.write_text(f"# x\nbefore\n{pt.START}\nold | table\n{pt.END}\nafter\n")
    table = tmp_path / "t.md"
    table.write_text("ratio table, 2026-12-01\n\n| a | b |\n|---|---|\n")
    assert pt.main(["--table", str(table), "--readme", str(readme)]) == 0
    assert readme.read_text() == (f"# x\nbefore\n{pt.START}\nratio table, 2026-12-01\n\n| a | b |\n"
                                  f"|---|---|\n{pt.END}\nafter\n")
    assert pt.main(["--table", str(table), "--readme", str(readme)]) == 0      # idempotent
    assert readme.read_text().count("ratio table") == 1


def test_the_default_target_is_the_performance_page_with_its_markers():
    pt = _script("performance_table")
    assert pt.DOC == SCRIPTS.parent / "docs" / "performance.md"
    text = pt.DOC.read_text()
    assert pt.splice(text, "| a |\n|---|\n").count("| a |") == 1


def test_the_performance_table_refuses_missing_inputs_in_one_line(tmp_path, capsys):
    pt = _script("performance_table")
    readme = tmp_path / "README.md"
    readme.write_text("no markers\n")
    assert pt.main(["--table", str(tmp_path / "none.md"), "--readme", str(readme)]) == 2
    assert "run `make benchmark` first" in capsys.readouterr().err
    (tmp_path / "t.md").write_text("| a |\n")
    assert pt.main(["--table", str(tmp_path / "t.md"), "--readme", str(readme)]) == 2
    assert "markers" in capsys.readouterr().err and readme.read_text() == "no markers\n"


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")
def test_hogs_run_in_their_own_session_and_are_stopped_by_pid_on_error():
    le = _script("loaded_epoch")
    with pytest.raises(RuntimeError, match="inside"), le.hogs(2) as pids:
        assert len(pids) == 2 and all(_alive(p) for p in pids)
        assert all(os.getsid(p) == p != os.getsid(0) for p in pids)   # setsid: own autogroup
        raise RuntimeError("inside")
    assert not any(_alive(p) for p in pids)
    with le.hogs(1, own_session=False) as pids:
        assert os.getsid(pids[0]) == os.getsid(0)
    assert not _alive(pids[0])


def test_gpu_check_without_a_gpu_says_so_and_exits_zero():
    """`make gpu-check` (scripts/gpu_check.py) on a machine without CUDA: one line naming what was
    skipped and how to run it, exit status 0 (issue 17's done-when)."""
    import subprocess

    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present: the script would run the GPU checks")
    p = subprocess.run([sys.executable, str(SCRIPTS / "gpu_check.py")], check=False, capture_output=True,
                       text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    out = p.stdout + p.stderr
    assert "gpu-check: no CUDA device" in out and "skipped the GPU tests" in out
