"""The HTML report's structure (sections, figures and their traces, tables, controls) against a recorded summary."""

from __future__ import annotations

import json
from collections.abc import Callable
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.trial import create_trial
from test_report import _study

from effsearch.report.html import render_html
from effsearch.report.info import build_report

EXPECTED = Path(__file__).with_name("html_dom_expected.json")
VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}


class Node:
    """One element of the parsed page: its tag, attributes, children and own text."""

    def __init__(self, tag: str, attrs: dict[str, str]) -> None:
        self.tag, self.attrs = tag, attrs
        self.children: list[Node] = []
        self.parts: list[str] = []

    def text(self) -> str:
        return " ".join("".join(self.parts + [c.text() for c in self.children]).split())

    def walk(self) -> list[Node]:
        return [self] + [n for c in self.children for n in c.walk()]

    def find(self, match: Callable[[Node], bool]) -> list[Node]:
        return [n for n in self.walk() if match(n)]


class Tree(HTMLParser):
    """The page as a tree of Nodes, built with the standard library's parser."""

    def __init__(self, page: str) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Node("#document", {})
        self.stack = [self.root]
        self.feed(page)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        node = Node(tag, {k: v or "" for k, v in attrs})
        self.stack[-1].children.append(node)
        if tag not in VOID:
            self.stack.append(node)

    def handle_endtag(self, tag: str) -> None:
        while len(self.stack) > 1:
            if self.stack.pop().tag == tag:
                break

    def handle_data(self, data: str) -> None:
        self.stack[-1].parts.append(data)


def _title(layout: dict[str, Any]) -> str:
    title = layout.get("title", "")
    return title.get("text", "") if isinstance(title, dict) else str(title)


def _trace(t: dict[str, Any]) -> dict[str, Any]:
    if t["type"] == "parcoords":
        return {"type": "parcoords", "dimensions": [d["label"] for d in t["dimensions"]]}
    return {"type": t["type"], "name": t.get("name"), "points": len(t.get("x", ()))}


def _figures(doc: Node) -> dict[str, Any]:
    (block,) = doc.find(lambda n: n.tag == "script" and n.attrs.get("id") == "report-figures")
    return json.loads("".join(block.parts))


def summarize(page: str) -> dict[str, Any]:
    """What a reader sees of the page's structure, as plain data."""
    doc = Tree(page).root
    tables = []
    for table in doc.find(lambda n: n.tag == "table"):
        head = [th.text() for th in table.find(lambda n: n.tag == "th")]
        rows = table.find(lambda n: n.tag == "tr" and not n.find(lambda c: c.tag == "th"))
        tables.append({"id": table.attrs.get("id"), "class": table.attrs.get("class"), "headers": head, "rows": len(rows)})
    (controls,) = doc.find(lambda n: n.attrs.get("id") == "controls")
    keep = ("id", "type", "min", "max", "step", "value", "class")
    return {
        "title": doc.find(lambda n: n.tag == "title")[0].text(),
        "headings": [[n.tag, n.text()] for n in doc.find(lambda n: n.tag in ("h1", "h2", "h3"))],
        "ids": [n.attrs["id"] for n in doc.find(lambda n: "id" in n.attrs and n.tag != "script")],
        "figures": [
            {"div": div, "title": _title(fig["layout"]), "traces": [_trace(t) for t in fig["data"]]}
            for div, fig in _figures(doc).items()
        ],
        "tables": tables,
        "controls": [
            {"tag": n.tag, **{k: n.attrs[k] for k in keep if k in n.attrs}, "text": n.text()}
            for n in controls.walk()[1:] if n.tag in ("input", "output", "button", "span", "label")
        ],
        "front_rows": [
            [n.attrs["data-trial"], n.attrs["data-latency"], n.attrs["data-drop"]]
            for n in doc.find(lambda n: "front-row" in n.attrs.get("class", "").split())
        ],
        "notes": [n.text() for n in doc.find(lambda n: "note" in n.attrs.get("class", "").split() or n.tag == "li")],
    }


def _one_objective(tmp_path: Path) -> tuple[optuna.Study, str]:
    url = f"sqlite:///{tmp_path / 'one.db'}"
    study = optuna.create_study(study_name="one", storage=url, directions=["maximize"])
    study.set_metric_names(["accuracy"])
    study.set_user_attr("effsearch", {"metric_key": "accuracy", "metric_direction": "maximize", "objectives": ["accuracy"]})
    dists = {"prune_ratio": FloatDistribution(0.0, 0.75), "precision": CategoricalDistribution(["fp32", "int8_static"])}
    for i in range(3):
        params = {"prune_ratio": 0.2 * i, "precision": "fp32" if i == 0 else "int8_static"}
        metrics = {"accuracy": 0.9 - 0.1 * i, "latency_ms": 0.05 - 0.01 * i}
        study.add_trial(create_trial(params=params, distributions=dists, values=[metrics["accuracy"]],
                                     user_attrs={"run": i + 1, "metrics": metrics, "baseline": i == 0}))
    return study, url


CASES: dict[str, Callable[[Path], tuple[optuna.Study, str]]] = {
    "full": lambda tmp: _study(tmp, 6, 2),
    "all_failed": lambda tmp: _study(tmp, 0, 2),
    "no_baseline": lambda tmp: _study(tmp, 3, baseline=False),
    "one_objective": _one_objective,
}


@pytest.mark.parametrize("case", list(CASES))
def test_page_structure_matches_the_recorded_summary(tmp_path: Path, case: str) -> None:
    study, url = CASES[case](tmp_path)
    page = render_html(build_report(study, url))
    expected = json.loads(EXPECTED.read_text())[case]
    assert summarize(page) == expected
