"""The page a privacy reviewer reads: verdict first, one message per figure at the page width, rows folded per
layer, and a check script (``scripts/check_html.py``) that can fail on each of those."""

from __future__ import annotations

import importlib.util
import re
import shutil
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = pytest.mark.skipif(not shutil.which("chromium"), reason="Debian's chromium is not installed (.ci/run installs it)")


def _check_html() -> ModuleType:
    spec = importlib.util.spec_from_file_location("check_html", ROOT / "scripts" / "check_html.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["check_html"] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def report(onnx_model, manifest, tmp_path_factory):
    from ser_audit.cli.main import main
    from ser_audit.report.model import Report

    out = tmp_path_factory.mktemp("layout") / "report.json"
    assert main(["leakage", str(onnx_model), "--corpus", str(manifest), "--layers", "pool1,fc_relu", "--out", str(out),
                 "--scenarios", "worst", "--quick", "--quiet"]) in (0, 1)
    return Report.model_validate_json(out.read_text())


def test_markdown_and_html_read_in_the_same_order(report) -> None:
    from ser_audit.report.render.html import HtmlRenderer
    from ser_audit.report.render.markdown import MarkdownRenderer

    verdict = report.leakage.verdict
    markdown, page = MarkdownRenderer().render(report), HtmlRenderer().render(report)
    order = [markdown.index(f"**gender verdict: {verdict.statement}**"), markdown.index("| layer | verdict | severity |"),
             markdown.index("Depth curve: the strongest attacker reaches"),
             *(markdown.index(f"**{layer.layer}: ") for layer in verdict.layers), markdown.index("## Provenance")]
    assert order == sorted(order), order
    order = [page.index("class='headline'"), page.index("id='verdict-table'"), page.index("<figure>"),
             *(page.index(f"<details><summary>{layer.layer}: ") for layer in verdict.layers),
             page.index("<section id='provenance'>")]
    assert order == sorted(order), order
    assert page.count("<details>") == len(verdict.layers) and "@media print" in page
    svg = re.findall(r"<svg[^>]*>", page)
    assert svg and all("viewBox" in tag and " width=" not in tag for tag in svg)  # scales to the column


def test_the_summary_never_shows_a_severity_its_layer_does_not_support(report) -> None:
    from ser_audit.report.render.sections import sections

    verdict = report.leakage.verdict
    summary = sections(report)[0]
    assert summary.headline == f"gender verdict: {verdict.statement}"
    table = next(t for t in summary.tables if t.key == "verdict-table")
    for layer, row in zip(verdict.layers, table.rows):
        assert row[:3] == [layer.layer, layer.verdict, layer.severity]
        assert (layer.severity != "none") <= layer.significant, layer  # a severity only where the layer is significant
    agrees, line = _check_html().headline_agrees(summary.headline, {"headers": table.headers, "rows": table.rows})
    assert agrees, line


def test_the_headline_check_catches_a_summary_that_contradicts_the_rows() -> None:
    agree = _check_html().headline_agrees
    headers = ["layer", "verdict", "severity", "leakage L [95%]"]
    rows = [["pool1", "leaks", "high", "0.972 [0.775, 1.000]"], ["fc_relu", "inconclusive", "none", "0.7"]]
    table = {"headers": headers, "rows": rows}
    good = "gender verdict: pool1 leaks: L 0.972 [0.775, 1.000], high (by linear probe; p 0.01); 1 of 2 layers leak past 0.6"
    assert agree(good, table)[0]
    assert not agree(good.replace(", high (", ", low ("), table)[0]  # a severity the row does not have
    assert not agree(good.replace("pool1 leaks", "fc_relu leaks"), table)[0]  # the layer named is inconclusive
    assert not agree(good.replace("1 of 2", "2 of 2"), table)[0]  # a count the table does not show
    assert not agree("gender verdict: private: every one of the 2 audited layers stays under 0.6", table)[0]
    assert not agree("gender verdict: inconclusive: no layer is shown to leak past 0.6", table)[0]
    assert not agree("grade D: privacy score 44.5", table)[0]  # no verdict at all
    assert not agree(good, None)[0]


_BAD_PAGE = """<!DOCTYPE html><html><head><meta charset='utf-8'><style>body{{max-width:72rem;margin:auto}}</style></head>
<body><main><section id='summary'><p class='headline'>gender verdict: pool1 leaks: L 0.9 [0.8, 1.0], high (x); 1 of 1
layers leak past 0.6</p><table id='verdict-table'><thead><tr><th>layer</th><th>verdict</th><th>severity</th></tr></thead>
<tbody><tr><td>pool1</td><td>inconclusive</td><td>none</td></tr></tbody></table></section>
<figure><svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} 200" width="{width}" height="200">
<rect class="mark" x="10" y="10" width="40" height="100" fill="#0072B2"/>
<text class="legend" x="12" y="40" font-size="12">legend over the bar</text></svg><figcaption>bad</figcaption></figure>
</main></body></html>"""


@CHROMIUM
def test_check_html_fails_on_a_narrow_figure_a_covering_legend_and_a_contradicting_headline(tmp_path: Path) -> None:
    page = tmp_path / "bad.html"
    page.write_text(_BAD_PAGE.format(width=420))
    results = _check_html().check(page)
    failed = " | ".join(line for passed, line in results if not passed)
    assert "of the 1152 px content column" in failed  # 420 px of 1152
    assert "legend (1 elements) covers 1 mark(s)" in failed
    assert "headline (pool1 leaks, high) agrees with the verdict table: NO" in failed


def test_the_terminal_ends_with_the_verdict_table_and_sentence(report) -> None:
    from ser_audit.cli import render
    from ser_audit.report.model import Robustness, RobustnessResult

    rows = [RobustnessResult(method="fgsm", eps=eps, eps_raw=eps, domain="features", gradient="white-box",
                             attack_target="labels", steps=1, uar=uar, accuracy=uar, prediction_change_rate=0.1,
                             mean_linf=eps, mean_l2=eps, n=40) for eps, uar in ((0.0, 0.5), (0.02, 0.4))]
    audited = report.model_copy(update={"robustness": Robustness(evaluation_set="all", input_spread=1.0, results=rows)})
    with render.STDOUT.capture() as captured:  # as `audit` calls them
        render.leakage_summary(audited)
        render.robustness_summary(audited)
        render.comparison_summary(audited)
    text = " ".join(captured.get().split())
    verdict = report.leakage.verdict
    assert text.endswith(" ".join(f"gender verdict: {verdict.statement}".split()))
    assert text.index("robustness of") < text.index("verdict per layer") and text.count("robustness of") == 1
