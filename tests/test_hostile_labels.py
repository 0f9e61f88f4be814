"""Outputs stay inert whatever the labels say (issue #18).

A hostile-label corpus (``<script>``, ``=cmd|``, Markdown links and images, control characters,
code points XML 1.0 forbids, names thousands of characters long) is audited end to end, with a
policy whose gate names carry the same; then every string field of a report is made hostile at
once. Each time: the JUnit file parses with ``xml.etree``, the Markdown holds no raw HTML and no
link or image from data, and the HTML holds no markup but the renderer's own.
"""

from __future__ import annotations

import csv
import json
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import pytest

from ser_audit.report.model import Report
from ser_audit.report.render import renderer_for

HOSTILE = ("<script>alert(1)</script><img src=x onerror=alert(2)>=cmd|' /C calc'!A0 ![x](http://evil/t.png) "
           "[y](javascript:alert(3)) `code` \\| \x07\x1b[31m\x00\x0b\ufffe\uffff</td></table>")
LONG = "long" * 1000  # lowercase: the manifest loader lowercases emotions
# Tags and attributes the HTML renderer writes itself; data may add none.
OWN_TAGS = {"html", "head", "meta", "title", "style", "body", "h1", "h2", "section", "p", "ul", "li", "table",
            "caption", "thead", "tbody", "tr", "th", "td", "figure", "figcaption", "svg", "line", "text", "rect",
            "polygon", "polyline", "circle", "script", "main", "details", "summary"}
OWN_ATTRIBUTES = {"charset", "name", "content", "lang", "id", "class", "xmlns", "viewbox", "width", "height", "role",
                  "aria-label", "x1", "x2", "y1", "y2", "stroke", "x", "y", "font-size", "text-anchor", "fill",
                  "stroke-dasharray", "transform", "points", "fill-opacity", "stroke-width", "cx", "cy", "r"}


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, list[str]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, [name for name, _ in attrs]))


def check_outputs(junit: str, markdown: str, html: str) -> None:
    """The three acceptance checks on rendered text."""
    ElementTree.fromstring(junit.encode())  # well-formed, or ParseError
    unescaped = re.sub(r"\\.", "", markdown)  # what Markdown reads as syntax: backslash escapes taken out
    assert not re.search(r"<[A-Za-z/!?]", unescaped), "raw HTML in the Markdown"
    assert not re.search(r"\]\(|\]\[", unescaped), "a link or image in the Markdown"
    assert not re.search(r"[\x00-\x08\x0b\x0c\x0e-\x1f]", markdown + html + junit), "control characters"
    parser = _Tags()
    parser.feed(html)
    assert {tag for tag, _ in parser.tags} <= OWN_TAGS, {tag for tag, _ in parser.tags} - OWN_TAGS
    assert {a for _, attrs in parser.tags for a in attrs} <= OWN_ATTRIBUTES
    assert sum(tag == "script" for tag, _ in parser.tags) == 1  # the table sorter, nothing else


def _hostile_rows(rows: list[dict]) -> list[dict]:
    for row in rows:
        row["speaker"] = f"{row['speaker']}{HOSTILE}"
        row["emotion"] = f"{row['emotion']}{HOSTILE}{LONG if row['emotion'] == 'sad' else ''}"
        row["session"] = f"{row['session']}{HOSTILE}"
        row["id"] = f"{row['id']}{HOSTILE}"
    return rows


@pytest.fixture(scope="module")
def hostile_run(onnx_model: Path, manifest: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from ser_audit.cli.main import main

    root = tmp_path_factory.mktemp("hostile")
    folder = root / "corpus"
    shutil.copytree(manifest.parent / "wav", folder / "wav")
    rows = _hostile_rows(list(csv.DictReader(manifest.open())))
    (folder / "manifest.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    policy = root / "policy.toml"
    policy.write_text('[[leakage]]\nlayer = "pool*<script>\\u0001\\ufffe"\nmax_leakage = 0.99\n'
                      '[[leakage]]\nscenario = "s2"\nmax_gap = 0.0\n', encoding="utf-8")
    out = root / "out"
    code = main(["leakage", str(onnx_model), "--corpus", str(folder / "manifest.jsonl"), "--layers", "pool4",
                 "--scenarios", "s2", "--quick", "--quiet", "--policy", str(policy), "--out", str(out),
                 "--format", "json,md,html,junit"])
    assert code == 1  # the max_gap 0 gate fails: its JUnit case carries a failure
    return out


def test_a_hostile_corpus_renders_inert(hostile_run: Path) -> None:
    junit, markdown, html = ((hostile_run / name).read_text(encoding="utf-8")
                             for name in ("report.junit.xml", "report.md", "report.html"))
    check_outputs(junit, markdown, html)
    suite = ElementTree.fromstring(junit.encode())
    names = [case.get("name", "") for case in suite.iter("testcase")]
    assert any("<script>" in name and "\ufffe" not in name for name in names), names
    assert suite.find("testcase/failure") is not None
    assert "&lt;script>alert(1)&lt;/script>" in markdown  # the label is shown, as text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert LONG in markdown and LONG in html  # long names are kept whole


def _make_hostile(value: Any, path: tuple = ()) -> Any:
    if isinstance(value, dict):
        return {k: _make_hostile(v, (*path, k)) for k, v in value.items()}
    if isinstance(value, list):
        return [_make_hostile(v, (*path, i)) for i, v in enumerate(value)]
    if isinstance(value, str):
        return value + HOSTILE
    return value


def _restore(data: Any, original: Any, location: tuple) -> None:
    for key in location[:-1]:
        data, original = data[key], original[key]
    data[location[-1]] = original[location[-1]]


def test_every_string_of_a_report_renders_inert(hostile_run: Path) -> None:
    """Every string field made hostile at once (fields whose values are fixed choices stay as they were)."""
    from pydantic import ValidationError

    original = json.loads((hostile_run / "report.json").read_text(encoding="utf-8"))
    data = _make_hostile(original)
    data["config"] = original["config"]  # settings, checked on load (choices); the renderers do not show them
    for _ in range(50):
        try:
            report = Report.model_validate(data)
            break
        except ValidationError as error:
            for problem in error.errors():
                location = tuple(problem["loc"])
                while location:
                    try:
                        _restore(data, original, location)
                        break
                    except (KeyError, IndexError, TypeError):
                        location = location[:-1]
    else:
        pytest.fail("could not build a hostile report")
    assert HOSTILE in report.model.path and any(HOSTILE in r.layer for r in report.leakage.results)
    check_outputs(*(renderer_for(name).render(report) for name in ("junit", "md", "html")))
