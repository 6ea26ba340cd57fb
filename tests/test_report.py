"""The HTML report of a run: well-formed (checked with html.parser, no browser), offline, images that
exist, text escaped, failed tasks shown."""
from __future__ import annotations

import json
from collections import Counter
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlparse

import pandas as pd
import pytest
from test_leaderboard import TASK, make_run

from ncbench.cli import main
from ncbench.results.report import MAX_TABLE_ROWS, write_report
from ncbench.results.writer import write_json

VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


class Checker(HTMLParser):
    """Records structure errors (unclosed or misnested tags), images, links, ids and text."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.stack: list[tuple[str, tuple]] = []
        self.errors: list[str] = []
        self.tags: Counter = Counter()
        self.imgs: list[dict] = []
        self.links: list[str] = []
        self.ids: set[str] = set()
        self.text: list[str] = []
        self.doctype = ""

    def handle_decl(self, decl):
        self.doctype = decl

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags[tag] += 1
        if tag == "img":
            self.imgs.append(a)
        if "href" in a:
            self.links.append(a["href"])
        if "id" in a:
            if a["id"] in self.ids:
                self.errors.append(f"duplicate id {a['id']}")
            self.ids.add(a["id"])
        if tag not in VOID:
            self.stack.append((tag, self.getpos()))

    def handle_startendtag(self, tag, attrs):
        self.handle_starttag(tag, attrs)
        if tag not in VOID:
            self.stack.pop()

    def handle_endtag(self, tag):
        if tag in VOID:
            self.errors.append(f"end tag for void element {tag} at {self.getpos()}")
        elif not self.stack or self.stack[-1][0] != tag:
            self.errors.append(f"</{tag}> at {self.getpos()} closes {self.stack[-1] if self.stack else 'nothing'}")
        else:
            self.stack.pop()

    def handle_data(self, data):
        self.text.append(data)


def check(page: Path) -> Checker:
    c = Checker()
    c.feed(page.read_text(encoding="utf-8"))
    c.close()
    assert not c.errors, c.errors[:5]
    assert not c.stack, f"unclosed tags: {c.stack[:5]}"
    assert c.doctype.lower() == "doctype html"
    assert [c.tags[t] for t in ("html", "head", "body", "title")] == [1, 1, 1, 1]
    return c


def tiny_png(path: Path) -> Path:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(2, 1.5), dpi=40)
    ax.plot([1, 2, 3], [3, 1, 2])
    fig.savefig(path)
    plt.close(fig)
    return path


@pytest.fixture
def run(tmp_path) -> Path:
    run = make_run(tmp_path, "rep & <run>", tasks=(TASK, "cdnv_bound_mnist5k"))
    task_dir = run / TASK
    plot = tiny_png(task_dir / "collapse curve.png")           # a space: the link must be URL-quoted
    tiny_png(run / "cdnv_bound_mnist5k" / "cdnv.png")             # found by glob, not listed in config.json
    cfg = json.loads((task_dir / "config.json").read_text())
    cfg["plots"] = [plot.name]
    cfg["spec"]["description"] = "escape me: <script>alert(1)</script> & co"
    write_json(task_dir / "config.json", cfg)
    pairs = pd.DataFrame({"class_i": range(100), "class_j": range(1, 101), "split": "train", "value": 0.5})
    pairs.to_csv(run / "cdnv_bound_mnist5k" / "cdnv_pairs.csv", index=False)
    write_json(run / "test_collapse_mnist5k" / "error.json", {"error": "data set <missing> & download off",
                                                             "traceback": "..."})
    return run


def test_report_is_well_formed_offline_and_references_existing_images(run):
    page = write_report(run)
    assert page == run / "report.html"
    c = check(page)
    pngs = {p.resolve() for p in run.rglob("*.png")}
    assert len(pngs) == 2
    seen = set()
    for img in c.imgs:
        src = img["src"]
        assert not urlparse(src).scheme and not src.startswith("/"), f"not a relative link: {src}"
        target = (page.parent / unquote(src)).resolve()
        assert target.is_file() and target.read_bytes()[:8] == PNG_MAGIC, src
        assert img.get("alt")
        seen.add(target)
    assert seen == pngs, "every PNG of the run, each once"
    for href in c.links:
        if href.startswith("#"):
            assert href[1:] in c.ids, f"dangling anchor {href}"
        else:
            assert not urlparse(href).scheme and (page.parent / unquote(href)).is_file(), href
    html_text = page.read_text()
    assert "http://" not in html_text and "https://" not in html_text and c.tags["script"] == 0
    text = " ".join(c.text)
    assert "<script>alert(1)</script> & co" in text, "the description must come through as text, escaped"
    assert "data set <missing> & download off" in text, "the failed task's error must be shown"
    for metric in ("nc1", "test_accuracy", "test_cdnv", "train_seconds"):
        assert metric in text
    assert c.tags["table"] >= 8 and f"first {MAX_TABLE_ROWS} of 100 rows" in text
    assert c.tags["h2"] == 3 and {TASK, "cdnv_bound_mnist5k", "test_collapse_mnist5k"} <= c.ids


def test_report_elsewhere_still_finds_the_images(run, tmp_path, capsys):
    page = tmp_path / "reports" / "deep" / "r.html"
    assert main(["report", str(run), "--out", str(page)]) == 0
    assert str(page) in capsys.readouterr().out
    c = check(page)
    assert len(c.imgs) == 2
    assert all((page.parent / unquote(i["src"])).is_file() for i in c.imgs)


def test_report_of_one_task_folder_and_bad_input(run, tmp_path, capsys):
    c = check(write_report(run / TASK, tmp_path / "one.html"))
    assert c.tags["h2"] == 1 and len(c.imgs) == 1
    assert main(["report", str(tmp_path / "nope")]) == 2
    assert "not found" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["report", str(tmp_path / "empty")]) == 2
    assert "holds no task results" in capsys.readouterr().err


def test_report_of_a_relative_run_dir_finds_its_plots(run, monkeypatch):
    """`ncbench suite` writes under a relative `results/`; the report must resolve the plots anyway."""
    monkeypatch.chdir(run.parent)
    page = write_report(Path(run.name))
    targets = {(page.parent / unquote(img["src"])).resolve() for img in check(page).imgs}
    assert targets == {p.resolve() for p in run.rglob("*.png")}
