"""The HTML report of a run: well-formed (checked with html.parser, no browser), offline, images that
exist, text escaped; the overview (scorecard, a headline per task, failures with their status), class-pair
tables as heatmaps, per-epoch tables behind collapsible sections."""
from __future__ import annotations

import base64
import json
import re
from collections import Counter
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlparse

import pandas as pd
import pytest
from test_leaderboard import TASK, make_run, make_task, reseal

from ncbench.cli import main
from ncbench.results.report import MAX_TABLE_ROWS, write_report
from ncbench.results.writer import write_json, write_long_csv

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
        self.tables_in_details: list[bool] = []
        self.svg_titles: list[str] = []
        self._title: list[str] | None = None

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
        if tag == "table":
            self.tables_in_details.append(any(t == "details" for t, _ in self.stack))
        if tag == "title" and any(t == "svg" for t, _ in self.stack):
            self._title = []
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
        if tag == "title" and self._title is not None:
            self.svg_titles.append("".join(self._title))
            self._title = None

    def handle_data(self, data):
        if self._title is not None:
            self._title.append(data)
        else:
            self.text.append(data)


def check(page: Path) -> Checker:
    c = Checker()
    c.feed(page.read_text(encoding="utf-8"))
    c.close()
    assert not c.errors, c.errors[:5]
    assert not c.stack, f"unclosed tags: {c.stack[:5]}"
    assert c.doctype.lower() == "doctype html"
    assert [c.tags[t] for t in ("html", "head", "body")] == [1, 1, 1]
    assert c.tags["title"] - len(c.svg_titles) == 1, "one page <title>; the others are SVG tooltips"
    return c


def image_target(page: Path, src: str) -> bytes:
    """The bytes of an image: a PNG inlined as a data URI, or a file linked relative to the page."""
    if src.startswith("data:image/png;base64,"):
        return base64.b64decode(src.split(",", 1)[1])
    assert not urlparse(src).scheme and not src.startswith("/"), f"not a relative link: {src}"
    target = (page.parent / unquote(src)).resolve()
    assert target.is_file(), src
    return target.read_bytes()


def tiny_png(path: Path) -> Path:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(2, 1.5), dpi=40)
    ax.plot([1, 2, 3], [3, 1, 2])
    fig.savefig(path)
    plt.close(fig)
    return path



K = 5
MINORITY = "minority_collapse_mnist5k"


def pair_tables(task_dir: Path) -> pd.DataFrame:
    """cdnv_pairs.csv and cdnv_bound_pairs.csv as the cdnv_bound task writes them (K = 5 classes)."""
    i, j = zip(*[(a, b) for a in range(K) for b in range(a + 1, K)])
    train = [0.01 * (a + 1) * (b + 1) for a, b in zip(i, j)]
    pairs = pd.DataFrame({"class_i": i * 2, "class_j": j * 2, "split": ["train"] * len(i) + ["test"] * len(i),
                          "value": train + [10 * v for v in train]})
    pairs.to_csv(task_dir / "cdnv_pairs.csv", index=False)
    bound = pd.DataFrame({"class_i": i, "class_j": j, "train_cdnv": train, "A": 0.1, "B": 0.2,
                          "bound": [3 * v for v in train], "test_cdnv": [2 * v for v in train], "holds": True,
                          "tightness": 1.5, "vacuous": False})
    bound.to_csv(task_dir / "cdnv_bound_pairs.csv", index=False)
    return pairs


def minority_rows() -> list[dict]:
    """Three seeds per sweep point; seed 2 of the ETF run diverged."""
    rows = []
    for seed in range(3):
        for clf, acc in (("learnable", 0.2), ("etf", 0.4)):
            bad = clf == "etf" and seed == 2
            status = {"status": "diverged", "status_reason": "loss became non-finite at epoch 3"} if bad else \
                {"status": "ok", "status_reason": ""}
            v = f"ratio=10,classifier={clf}"
            for e in (1, 2):
                rows.append({"split": "train", "epoch": e, "variant": v, "metric": "loss", "value": 1.0 / e,
                             "seed": seed, **status})
            rows.append({"split": "summary", "epoch": 2, "variant": v, "metric": "minority_accuracy",
                         "value": 0.0 if bad else acc + 0.01 * seed, "seed": seed, **status})
    return rows


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
    pair_tables(run / "cdnv_bound_mnist5k")
    pd.DataFrame({"layer": range(100), "ncc_acc": 0.5}).to_csv(run / "cdnv_bound_mnist5k" / "layers.csv", index=False)
    write_json(run / "test_collapse_mnist5k" / "error.json", {"error": "data set <missing> & download off",
                                                             "traceback": "..."})
    minority = make_task(run, MINORITY)
    write_long_csv(minority / "results.csv", minority_rows(),
                   {"run_id": run.name, "task": MINORITY, "task_version": 1, "model": "test_resnet"})
    reseal(minority)
    return run


def test_report_is_well_formed_offline_and_references_existing_images(run):
    page = write_report(run)
    assert page == run / "report.html"
    c = check(page)
    pngs = {p.resolve() for p in run.rglob("*.png")}
    assert len(pngs) == 2
    seen = set()
    for img in c.imgs:
        assert image_target(page, img["src"])[:8] == PNG_MAGIC, img["src"][:80]
        assert img.get("alt")
        if not img["src"].startswith("data:"):
            seen.add((page.parent / unquote(img["src"])).resolve())
    assert seen == pngs, "every PNG of the run"
    for href in c.links:
        if href.startswith("#"):
            assert href[1:] in c.ids, f"dangling anchor {href}"
        else:
            assert not urlparse(href).scheme and (page.parent / unquote(href)).is_file(), href
    text = " ".join(c.text)
    assert "<script>alert(1)</script> & co" in text, "the description must come through as text, escaped"
    assert "data set <missing> & download off" in text, "the failed task's error must be shown"
    for metric in ("nc1", "test_accuracy", "test_cdnv", "train_seconds"):
        assert metric in text
    assert f"first {MAX_TABLE_ROWS} of 100 rows" in text
    assert {TASK, "cdnv_bound_mnist5k", "test_collapse_mnist5k", MINORITY, "overview"} <= c.ids
    assert c.tags["h2"] == 5


def test_report_has_no_external_reference(run):
    page = write_report(run)
    c = check(page)
    html_text = page.read_text()
    assert not re.search(r"(https?:)?//[a-z]", html_text, re.IGNORECASE), re.search(r"(https?:)?//[a-z]", html_text, re.IGNORECASE)
    assert c.tags["script"] == 0 and c.tags["link"] == 0 and c.tags["iframe"] == 0
    assert "xmlns" not in html_text and "@import" not in html_text and "url(" not in html_text
    for img in c.imgs:
        assert img["src"].startswith("data:image/png;base64,") or not urlparse(img["src"]).scheme


def test_overview_comes_first_with_headlines_failures_and_status(run):
    page = write_report(run)
    html_text = page.read_text()
    c = check(page)
    h2 = re.findall(r"<h2 id=\"([^\"]+)\"", html_text)
    assert h2[0] == "overview", "the overview opens the page"
    overview = html_text[html_text.index('id="overview"'):html_text.index(f'<h2 id="{h2[1]}"')]
    assert "Claims scorecard" in overview and "no claims.csv" in overview
    assert overview.count('class="card"') == 4, "one headline per task"
    assert overview.count("<img") == 2, "a task with a plot shows its first PNG"
    assert "minority_accuracy" in overview, "a task without a plot shows a small headline table"
    failures = overview[overview.index('id="failures"'):]
    assert "data set &lt;missing&gt; &amp; download off" in failures
    assert "diverged" in failures and "loss became non-finite at epoch 3" in failures
    assert "ratio=10,classifier=etf" in failures
    assert "1 failure" not in overview and "2 failure(s)" in overview
    assert "every run is ok" not in " ".join(c.text)


def test_headline_shows_variant_and_the_mean_over_ok_seeds(run):
    html_text = write_report(run).read_text()
    section = html_text[html_text.index(f'<h2 id="{MINORITY}"'):]
    section = section[:section.index("<h2", 10)] if "<h2" in section[10:] else section
    headline = section[section.index("Headline metrics"):]
    headline = headline[:headline.index("</table>")]
    header = re.findall(r"<th>([^<]*)</th>", headline)
    assert header[:5] == ["variant", "metric", "mean", "ci95", "n_seeds"]
    cells = re.findall(r"<td>([^<]*)</td>", headline)
    i = cells.index("ratio=10,classifier=etf")
    ok = [0.4, 0.41]                                     # seed 2 diverged: left out
    assert float(cells[i + 2]) == pytest.approx(sum(ok) / 2, rel=1e-4) and cells[i + 4] == "2"
    half = stats_t_half_width(ok)
    assert float(cells[i + 3]) == pytest.approx(half, rel=1e-4)
    j = cells.index("ratio=10,classifier=learnable")
    assert cells[j + 4] == "3"
    assert "1 run(s) not ok, left out of the headline" in section


def stats_t_half_width(values) -> float:
    import numpy as np
    from scipy import stats

    v = np.asarray(values, dtype=float)
    return float(stats.t.ppf(0.975, v.size - 1) * v.std(ddof=1) / np.sqrt(v.size))


def test_pair_tables_become_symmetric_heatmaps(run):
    c = check(write_report(run))
    pairs = pd.read_csv(run / "cdnv_bound_mnist5k" / "cdnv_pairs.csv")
    tips = Counter(c.svg_titles)
    for r in pairs[pairs.split == "test"].itertuples():
        v = f"{r.value:.4g}"
        assert tips[f"{r.class_i}, {r.class_j}: {v}"] >= 1 and tips[f"{r.class_j}, {r.class_i}: {v}"] >= 1
    figures = [t for t in c.svg_titles if t.startswith("cdnv_pairs: value")]
    assert sorted(figures) == [f"cdnv_pairs: value (test), {K} classes", f"cdnv_pairs: value (train), {K} classes"]
    bound = [t for t in c.svg_titles if t.startswith("cdnv_bound_pairs: ")]
    assert [t.split(": ")[1].split(",")[0] for t in bound] == ["train_cdnv", "test_cdnv", "bound", "tightness"]
    assert c.tags["svg"] == 2 + 4
    cells = [t for t in c.svg_titles if re.fullmatch(r"\d+, \d+: .*", t)]
    assert len(cells) == 6 * K * (K - 1), "every off-diagonal cell of every heatmap has its value"


def test_large_pair_table_is_an_inline_png(tmp_path):
    run = make_run(tmp_path, "big", tasks=("cdnv_bound_mnist5k",))
    n = 60
    i, j = zip(*[(a, b) for a in range(n) for b in range(a + 1, n)])
    pd.DataFrame({"class_i": i, "class_j": j, "value": [1.0 + a + b for a, b in zip(i, j)]}).to_csv(
        run / "cdnv_bound_mnist5k" / "cdnv_pairs.csv", index=False)
    page = write_report(run)
    c = check(page)
    inline = [img for img in c.imgs if img["src"].startswith("data:")]
    assert len(inline) == 1 and image_target(page, inline[0]["src"])[:8] == PNG_MAGIC
    assert c.tags["svg"] == 0 and f"{n} classes" in inline[0]["alt"]


def test_per_epoch_and_bulky_tables_are_collapsible(run):
    page = write_report(run)
    c = check(page)
    assert c.tags["details"] >= 6 and c.tags["summary"] == c.tags["details"]
    html_text = page.read_text()
    for title in ("Per-epoch table", "Spec", "Provenance", "Table cdnv_pairs"):
        assert f"<summary>{title}" in html_text
    block = html_text[html_text.index("<summary>Per-epoch table"):]
    assert block.index("</details>") > block.index("<table")
    assert sum(c.tables_in_details) >= 5 and not all(c.tables_in_details), "headlines stay visible"


def test_scorecard_in_the_overview(run, capsys):
    from test_claims import catalog_rows, write_run

    write_run(run, {k: v for k, v in catalog_rows().items() if k == "lpm_minority_curve"})
    assert main(["report", str(run), "--claims"]) == 0
    card = pd.read_csv(run / "claims.csv")
    page = run / "report.html"
    html_text = page.read_text()
    check(page)
    overview = html_text[html_text.index('id="scorecard"'):html_text.index('id="headlines"')]
    from ncbench.claims.catalog import CLAIMS

    assert overview.count("<tr class=\"verdict-") == len(card) == len(CLAIMS) >= 20
    assert 'verdict-reproduced' in overview and "lpm_threshold_grows_with_eh" in overview
    assert (f"1 reproduced, 0 contradicted, 0 weaker than claimed, {len(CLAIMS) - 1} inconclusive, "
            "0 not applicable") in overview
    assert "Rule: reproduced if the 95% Student-t CI" in overview
    assert "no results of task" in overview, "the reason of an inconclusive claim is shown"


def test_report_elsewhere_still_finds_the_images(run, tmp_path, capsys):
    page = tmp_path / "reports" / "deep" / "r.html"
    assert main(["report", str(run), "--out", str(page)]) == 0
    assert str(page) in capsys.readouterr().out
    c = check(page)
    assert {i["src"] for i in c.imgs if not i["src"].startswith("data:")} and len(c.imgs) == 4
    assert all((page.parent / unquote(i["src"])).is_file() for i in c.imgs)


def test_report_of_one_task_folder_and_bad_input(run, tmp_path, capsys):
    c = check(write_report(run / TASK, tmp_path / "one.html"))
    assert c.tags["h2"] == 2 and len(c.imgs) == 2, "the overview and the task, its plot in both"
    assert main(["report", str(tmp_path / "nope")]) == 2
    assert "not found" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["report", str(tmp_path / "empty")]) == 2
    assert "holds no task results" in capsys.readouterr().err


def test_report_of_a_relative_run_dir_finds_its_plots(run, monkeypatch):
    """`ncbench suite` writes under a relative `results/`; the report must resolve the plots anyway."""
    monkeypatch.chdir(run.parent)
    page = write_report(Path(run.name))
    targets = {(page.parent / unquote(img["src"])).resolve() for img in check(page).imgs
               if not img["src"].startswith("data:")}
    assert targets == {p.resolve() for p in run.rglob("*.png")}


def test_heatmap_colours_inf_cells_and_uses_a_log_scale_for_wide_ranges():
    from ncbench.results.pair_heatmap import INF_COLOUR, _colour, pair_heatmaps

    t = pd.DataFrame({"class_i": [0, 0, 1], "class_j": [1, 2, 2], "value": [0.001, float("inf"), 10.0],
                      "holds": [True, False, True]})
    [fig] = pair_heatmaps(t, "p")                       # the boolean column is not drawn
    assert fig.count(f'fill="{INF_COLOUR}"') == 2 and "0, 2: inf" in fig and ">log<" in fig
    assert fig.count(f'fill="{_colour(0.0)}"') == 3 and fig.count(f'fill="{_colour(1.0)}"') == 3, "2 cells + legend"
    assert pair_heatmaps(pd.DataFrame({"a": [1], "value": [2.0]}), "not a pair table") == []


def test_report_claims_flag_on_a_missing_folder_is_a_one_line_error(tmp_path, capsys):
    assert main(["report", str(tmp_path / "nope"), "--claims"]) == 2
    err = capsys.readouterr().err
    assert "not found" in err and "Traceback" not in err


def test_headline_of_seeds_with_non_finite_values(tmp_path):
    run = make_run(tmp_path, "inf", tasks=(MINORITY,))
    rows = [{"split": "summary", "epoch": 2, "variant": "ratio=10,classifier=etf", "metric": "minority_accuracy",
             "value": v, "seed": s, "status": "ok"} for s, v in enumerate([float("inf"), float("nan"), 0.5])]
    rows += [{"split": "summary", "epoch": 2, "variant": "ratio=1,classifier=etf", "metric": "minority_accuracy",
              "value": float("inf"), "seed": s, "status": "ok"} for s in range(2)]
    write_long_csv(run / MINORITY / "results.csv", rows, {"run_id": "inf", "task": MINORITY})
    reseal(run / MINORITY)
    c = check(write_report(run))
    assert "ratio=1,classifier=etf" in " ".join(c.text)


def test_splits_of_one_value_share_the_colour_scale():
    from ncbench.results.pair_heatmap import _colour, pair_heatmaps

    t = pd.DataFrame({"class_i": [0, 0, 1] * 2, "class_j": [1, 2, 2] * 2, "split": ["train"] * 3 + ["test"] * 3,
                      "value": [1.0, 2.0, 3.0, 1.0, 5.0, 9.0]})
    train, test = pair_heatmaps(t, "p")
    assert ">9<" in train and ">1<" in train, "the legend of train spans both splits"
    assert ">9<" in test and ">1<" in test
    mid = _colour((3.0 - 1.0) / (9.0 - 1.0))
    assert train.count(f'fill="{mid}"') >= 2, "train's 3.0 is coloured on the shared 1..9 range"
