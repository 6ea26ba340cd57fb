"""The layering of ncbench/ (issue 14): no module imports itself back through any chain of imports,
deferred (function-level) imports included; import-linter's contracts (`make lint`) say which layer
may import which."""
from __future__ import annotations

import grimp


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def test_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_module_of_ncbench_is_in_an_import_cycle():
    graph = grimp.build_graph("ncbench")
    edges = {m: {w for w in graph.find_modules_directly_imported_by(m) if w.startswith("ncbench")}
             for m in graph.modules}
    assert _cycles(edges) == []


def test_import_linter_contracts_are_kept(capsys):
    """`make lint`'s contracts (pyproject.toml) as a test: among them transfer/, fewshot/ and
    training/ never import a kind or the runner, results/ never imports claims/ (issue 24)."""
    from pathlib import Path

    from importlinter import configuration
    from importlinter.application.use_cases import lint_imports

    configuration.configure()
    config = Path(__file__).resolve().parents[1] / "pyproject.toml"
    kept = lint_imports(config_filename=str(config), no_logo=True, cache_dir=None)
    assert kept, capsys.readouterr().out[-3000:]


def test_the_issue_24_contracts_are_declared():
    from pathlib import Path

    import tomllib

    config = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())
    forbidden = {}
    for c in config["tool"]["importlinter"]["contracts"]:
        for src in c.get("source_modules", []):
            forbidden.setdefault(src, set()).update(c.get("forbidden_modules", []))
    for layer in ("ncbench.transfer", "ncbench.fewshot", "ncbench.training"):
        assert {"ncbench.tasks", "ncbench.runner.suite", "ncbench.cli"} <= forbidden[layer], layer
    assert "ncbench.claims" in forbidden["ncbench.results"]
    assert {"ncbench.runner.suite", "ncbench.tasks"} <= forbidden["ncbench.runner.launcher"]


def test_every_kind_module_is_in_the_independence_contract():
    """Kinds never import each other (issue 24: frozen_transfer read ncc_depth's helpers): the contract
    names every module of `KIND_MODULES`, so a new kind is kept apart as well."""
    from pathlib import Path

    import tomllib

    from ncbench.tasks.base import KIND_MODULES

    config = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())
    [contract] = [c for c in config["tool"]["importlinter"]["contracts"] if c["type"] == "independence"]
    assert sorted(contract["modules"]) == sorted(f"ncbench.tasks.{m}" for m in KIND_MODULES)
