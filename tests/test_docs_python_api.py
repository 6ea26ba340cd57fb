"""docs/python-api.md: every Python block runs as printed and prints what the text says it prints."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parent.parent / "docs" / "python-api.md"


def blocks() -> list[str]:
    return re.findall(r"```python[^\n]*\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.DOTALL)


EXPECTED = [r"True .*results\.csv", r"module:ResNet-[0-9a-f]{16}\n",
            r"train_collapse_mnist5k@dataset=tensors-[0-9a-f]{16}\n"]


def test_the_doc_has_its_three_examples():
    assert len(blocks()) == len(EXPECTED)


@pytest.mark.parametrize("index", range(len(EXPECTED)), ids=["by_name", "nn_module", "dataset_pair"])
def test_doc_example_runs_as_printed(index, tmp_path, monkeypatch, capsys, one_thread):
    monkeypatch.chdir(tmp_path)
    exec(compile(blocks()[index], f"docs/python-api.md example {index + 1}", "exec"), {"__name__": "doc"})  # noqa: S102
    assert re.search(EXPECTED[index], capsys.readouterr().out)
    assert list((tmp_path / "results").glob("*/*/results.csv"))       # written under ./results, like the CLI
