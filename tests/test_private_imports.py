"""No module of ncbench uses a `_private` name of another package (issue 24): what two packages
share is public, in the package that owns it. Scanned with `ast`, deferred imports included:
`from ncbench.a.b import _x`, `from ..b import _x`, `import ncbench.a._m`, and `mod._x` on a name
bound to an ncbench module (`from ncbench.training import distributed as dist; dist._x`). Within one
package (the module's folder) private names stay private to that package and may be shared."""
from __future__ import annotations

import ast
from pathlib import Path

import ncbench

ROOT = Path(ncbench.__file__).parent

# Deliberate exceptions: (importing module, imported module, name) -> why. Empty: none is needed.
ALLOWED: dict[tuple[str, str, str], str] = {}


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def _package(module: str, is_package: bool) -> str:
    return module if is_package else module.rpartition(".")[0]


def _is_module(name: str, root: Path) -> bool:
    rel = Path(*name.split(".")[1:])
    return (root / rel).with_suffix(".py").is_file() or (root / rel / "__init__.py").is_file()


def private_uses(source: str, module: str, is_package: bool = False, root: Path = ROOT) -> list[tuple[str, str]]:
    """`(imported module, private name)` for every private name `module` takes from another package."""
    pkg = _package(module, is_package)
    found, bound = [], {}

    def other(target: str) -> bool:
        """Whether module `target` lies in another package than `module`."""
        return _package(target, (root / Path(*target.split(".")[1:]) / "__init__.py").is_file()) != pkg

    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = pkg.split(".")[:len(pkg.split(".")) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            if base.split(".")[0] != "ncbench":
                continue
            for alias in node.names:
                full = f"{base}.{alias.name}"
                if _is_module(full, root):                       # a module: its name is checked below
                    bound[alias.asname or alias.name] = full
                    mod, name = full, full
                else:
                    mod, name = base, alias.name
                if any(_private(s) for s in name.split(".")) and other(mod):
                    found.append((mod, alias.name))
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] != "ncbench":
                    continue
                if any(_private(s) for s in alias.name.split(".")) and other(alias.name):
                    found.append((alias.name, alias.name.rpartition(".")[2]))
                if alias.asname:
                    bound[alias.asname] = alias.name
    for node in ast.walk(ast.parse(source)):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in bound
                and _private(node.attr) and other(bound[node.value.id])):
            found.append((bound[node.value.id], node.attr))
    return found


def _modules():
    for path in sorted(ROOT.rglob("*.py")):
        parts = ("ncbench",) + path.relative_to(ROOT).with_suffix("").parts
        is_package = parts[-1] == "__init__"
        yield ".".join(parts[:-1] if is_package else parts), is_package, path


def test_no_module_uses_a_private_name_of_another_package():
    bad = [f"{m} uses {src}.{name}" for m, is_package, path in _modules()
           for src, name in private_uses(path.read_text(encoding="utf-8"), m, is_package)
           if (m, src, name) not in ALLOWED]
    assert bad == [], "make the name public in the package that owns it:\n" + "\n".join(bad)


def test_every_allowed_exception_still_exists_and_says_why():
    used = {(m, src, name) for m, is_package, path in _modules()
            for src, name in private_uses(path.read_text(encoding="utf-8"), m, is_package)}
    assert all(why.strip() for why in ALLOWED.values())
    assert set(ALLOWED) <= used, "drop allow-list entries that no longer occur"


def test_the_scanner_finds_each_form_of_a_private_use():
    m = "ncbench.metrics.heldout"
    assert private_uses("from ncbench.training.feature_pass import _x", m) == [("ncbench.training.feature_pass", "_x")]
    assert private_uses("def f():\n    from ncbench.tasks.base import _y", m) == [("ncbench.tasks.base", "_y")]
    assert private_uses("from ..training.trainer import _z", m) == [("ncbench.training.trainer", "_z")]
    assert private_uses("from ncbench.training import distributed as dist\ndist._w()", m) == \
        [("ncbench.training.distributed", "_w")]
    assert private_uses("import ncbench.training.distributed as d\nd._v", m) == [("ncbench.training.distributed", "_v")]
    assert private_uses("from ncbench.training import _hidden", m) == [("ncbench.training", "_hidden")]


def test_the_scanner_allows_same_package_dunders_and_public_names():
    m = "ncbench.metrics.heldout"
    assert private_uses("from ncbench.metrics.collapse import _bias", m) == []          # same package
    assert private_uses("from .collapse import _bias", m) == []
    assert private_uses("from ncbench.version import __version__", m) == []
    assert private_uses("from ncbench.metrics.collapse import classifier_bias", m) == []
    assert private_uses("import torch\ntorch._C", m) == []                                # not ncbench
    assert private_uses("from ncbench.metrics import _x", "ncbench.metrics", is_package=True) == []


def test_the_scanner_sees_the_leak_that_issue_24_found():
    """metrics/heldout.py imported collapse's private `_bias` / `_classifier`: from another package
    (here: a module of `fewshot`) the same import is caught."""
    src = "from ncbench.metrics.collapse import (\n    DTYPE,\n    _bias,\n    _classifier,\n)"
    assert private_uses(src, "ncbench.fewshot.episodes") == [("ncbench.metrics.collapse", "_bias"),
                                                             ("ncbench.metrics.collapse", "_classifier")]
