"""The "Inside your own training" examples run exactly as printed (extracted from docs/integrations.md,
linked from the README)."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from ncbench.results import load_results

DOC = Path(__file__).resolve().parent.parent / "docs" / "integrations.md"
SECTION = "# Inside your own training"


def examples() -> list[str]:
    """The python code blocks of the section, verbatim."""
    text = DOC.read_text(encoding="utf-8")
    start = text.index(SECTION)
    end = text.find("\n## ", start + len(SECTION))
    return re.findall(r"```python[^\n]*\n(.*?)```", text[start:end if end > 0 else None], flags=re.DOTALL)


def test_the_section_has_the_three_examples():
    blocks = examples()
    assert len(blocks) == 3
    assert "ncbench.track(" in blocks[0] and "CollapseTracker(" in blocks[0]
    assert "NeuralCollapse(" in blocks[1] and "NeuralCollapseCallback(" in blocks[2]


@pytest.mark.parametrize("index", [0, 1, 2], ids=["plain_pytorch", "torchmetrics", "lightning"])
def test_readme_example_runs_as_printed(index, tmp_path, monkeypatch, capsys, one_thread):
    monkeypatch.chdir(tmp_path)
    code = examples()[index]
    exec(compile(code, f"{DOC.name} example {index + 1}", "exec"), {"__name__": f"readme_example_{index}"})  # noqa: S102
    printed = capsys.readouterr().out
    if index == 0:
        df = load_results(tmp_path / "results" / "my_run")
        assert set(df.split) == {"val"} and "nc1" in set(df.metric)
        assert len(printed.split()) == 2 and all(float(v) >= 0 for v in printed.split())
    elif index == 1:
        values = eval(printed.strip().splitlines()[-1])      # the printed dict
        assert set(values) >= {"nc1", "nc4", "cdnv"} and 0 <= values["ncc_acc"] <= 1
    else:
        results = tmp_path / "logs" / "lightning_logs" / "version_0" / "results.csv"
        assert printed.strip().splitlines()[-1] == str(Path("logs/lightning_logs/version_0/results.csv"))
        df = load_results(results)
        assert sorted(df.epoch.unique()) == [1, 2, 3] and set(df.layer) == {"", "net.body.layer3"}
