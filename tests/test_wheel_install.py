"""`pip install` without make: the wheel built by `python -m build` carries the task specs, installs into
a fresh venv with its `lightning` extra and without learn2learn, and runs a task outside the checkout,
writing into ./results of the working folder (never into site-packages).

The fresh venv gets its dependencies from this interpreter's site-packages through a folder of links
(ncbench itself and learn2learn left out), so pip resolves the wheel's requirements with `--no-index`
and nothing is downloaded; docs/install.md gives the measured install from the package index.
"""
from __future__ import annotations

import os
import site
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LEFT_OUT = ("ncbench", "__editable__", "_ncbench", "learn2learn", "__pycache__")
pytestmark = pytest.mark.slow


def _run(cmd, cwd, env=None, check=True, timeout=900):
    done = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True,
                          check=False, timeout=timeout)
    if check and done.returncode != 0:
        raise AssertionError(f"{cmd} exited {done.returncode}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return done


def _dependency_view(into: Path) -> Path:
    """A folder of links to every distribution importable here except ncbench and learn2learn."""
    into.mkdir()
    sources = [p for p in dict.fromkeys([*site.getsitepackages(), *sys.path]) if p.endswith("site-packages")]
    for src in map(Path, sources):
        for entry in src.iterdir():
            name = entry.name.lower()
            if name.startswith(LEFT_OUT) or entry.suffix == ".pth" or (into / entry.name).exists():
                continue
            (into / entry.name).symlink_to(entry)
    return into


def _fresh_venv(path: Path, view: Path) -> Path:
    venv.EnvBuilder(with_pip=False).create(path)
    bin_dir = path / "bin"
    purelib = next((path / "lib").glob("python3*/site-packages"))
    (purelib / "dependencies.pth").write_text(f"{view}\n")
    return bin_dir


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    pytest.importorskip("build", reason="needs `pip install build` (the dev extra has it)")
    out = tmp_path_factory.mktemp("dist")
    _run([sys.executable, "-m", "build", "--outdir", out, ROOT], cwd=out)   # sdist, then the wheel from it
    (whl,) = out.glob("ncbench-*.whl")
    return whl


def test_the_wheel_carries_every_task_spec(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    specs = sorted(p.name for p in (ROOT / "tasks").glob("*.yaml"))
    missing = [s for s in specs if f"ncbench/task_specs/{s}" not in names]
    assert specs and not missing, f"the wheel lacks {missing}"
    assert not [n for n in names if n.startswith(("results/", "leaderboards/", "tests/"))]


def test_the_installed_wheel_runs_a_task_outside_the_checkout(wheel, tmp_path):
    bin_dir = _fresh_venv(tmp_path / "venv", _dependency_view(tmp_path / "deps"))
    py = bin_dir / "python"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "NCBENCH_LEADERBOARDS")}
    env.update(NCBENCH_THREADS="1", PIP_DISABLE_PIP_VERSION_CHECK="1")
    _run([py, "-m", "pip", "install", "--no-index", "--quiet", f"{wheel}[lightning]"], cwd=tmp_path, env=env)
    work = tmp_path / "work"
    work.mkdir()

    code = "import ncbench, ncbench.integrations as i; i.NeuralCollapseCallback; print(ncbench.__file__)"
    where = _run([py, "-c", code], cwd=work, env=env).stdout.strip()
    assert where.startswith(str(tmp_path / "venv")), f"imported {where}, not the installed wheel"
    no_l2l = _run([py, "-c", "import learn2learn"], cwd=work, env=env, check=False)
    assert no_l2l.returncode != 0 and "No module named 'learn2learn'" in no_l2l.stderr

    _run([bin_dir / "ncbench", "run", "train_collapse_mnist5k", "--dataset", "digits", "--epochs", "1",
          "--no-progress"], cwd=work, env=env)
    (csv,) = work.glob("results/*/train_collapse_mnist5k@dataset=digits/results.csv")
    assert "nc1" in csv.read_text()
    assert not list((tmp_path / "venv").rglob("results.csv")), "a run wrote into the installed venv"

    # few-shot transfer without learn2learn (ncbench's own episode sampler)
    _run([bin_dir / "ncbench", "run", "fewshot_mnist5k", "--dataset", "digits", "--epochs", "1",
          "--no-progress"], cwd=work, env=env)
    assert list(work.glob("results/*/fewshot_mnist5k@dataset=digits/results.csv"))

    # no checkout: the boards are not in site-packages; one line says where to point ncbench
    lb = _run([bin_dir / "ncbench", "leaderboard"], cwd=work, env=env, check=False)
    assert lb.returncode != 0 and "Traceback" not in lb.stderr
    assert "--leaderboards" in lb.stderr and len(lb.stderr.strip().splitlines()) == 1
