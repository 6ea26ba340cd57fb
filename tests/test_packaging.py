"""The package ships its task specs: a plain (non-editable) install finds them too."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parent.parent


def test_pyproject_lists_every_package():
    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())
    listed = set(cfg["tool"]["setuptools"]["packages"])
    on_disk = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "ncbench").rglob("__init__.py")}
    assert on_disk | {"ncbench.task_specs"} == listed


def test_non_editable_install_finds_the_specs(tmp_path):
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                    "--target", str(target), str(ROOT)], check=True, cwd=tmp_path,
                   env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"})
    assert (target / "ncbench" / "task_specs" / "default.yaml").is_file()
    assert (target / "ncbench" / "recipes" / "papyan2020.yaml").is_file()   # named recipes ship as data
    code = ("import ncbench, ncbench.specs as s; print(ncbench.__file__); "
            "from ncbench.training.recipe import protocol; protocol('vit-adamw'); "
            "print(s.load_suite('default')[0]); print(len(s.task_names()))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path,
                         env={**os.environ, "PYTHONPATH": str(target)}, check=True).stdout.split()
    assert out[0].startswith(str(target)), "imported the checkout instead of the installed copy"
    assert out[1] == "default" and int(out[2]) >= 3
