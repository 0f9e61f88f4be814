"""One self-contained HTML page: the report's sections, inline SVG plots and tables that sort.

Nothing is loaded from elsewhere (no scripts, styles, fonts or images by address), so the
page opens offline and can be kept as a CI artifact.
"""

from __future__ import annotations

from typing import Sequence

from ser_audit.report.model import BreakdownRow, LeakageResult, Protection, Report, Robustness
from ser_audit.report.render.charts import Panel, Reference, bar_chart, line_chart, small_multiples, tradeoff_chart
from ser_audit.report.render.escaping import html as escape
from ser_audit.report.render.sections import ComparisonNames, Section, Table, leakage_interval, sections

SCENARIO_ORDER = ("probe", "worst", "s1", "s2", "s3", "s4", "strongest")

_STYLE = """
body{font-family:system-ui,sans-serif;margin:2rem auto;max-width:72rem;padding:0 1rem;color:#222}
table{border-collapse:collapse;margin:.5rem 0 1.5rem;font-size:.9rem}
th,td{border:1px solid #ccc;padding:.2rem .45rem;text-align:left;vertical-align:top}
th{cursor:pointer;background:#f4f4f4;user-select:none}th:after{content:' \\2195';color:#aaa}
caption{caption-side:top;text-align:left;font-style:italic;padding:.25rem 0}
.fail{color:#b00;font-weight:bold}.pass{color:#070}
.sev-critical{background:#f8c9c9}.sev-high{background:#fbe0c4}.sev-medium{background:#fdf3c2}.sev-low{background:#eef7d9}
.headline{font-size:1.15rem;font-weight:600;border-left:4px solid #0072B2;padding:.3rem .7rem;background:#f3f8fc}
details{margin:.3rem 0}summary{cursor:pointer;padding:.2rem 0}details table{margin-top:.3rem}
figure{margin:1rem 0;break-inside:avoid}
figure svg{display:block;width:100%;height:auto}figcaption{font-size:.9rem;color:#444;margin-top:.25rem}
@media print{
 body{max-width:none;margin:0;padding:0;font-size:10pt}
 details::details-content{content-visibility:visible;display:block}details>summary{font-weight:bold}
 figure,svg,tr,caption,.headline{break-inside:avoid}h2{break-after:avoid}thead{display:table-header-group}
 table{font-size:8pt;width:100%}th{background:#eee}th:after{content:none}
}
"""

# Sorting by clicking a header: inline, so the page needs nothing from the network.
_SORT = """
window.addEventListener('beforeprint',()=>document.querySelectorAll('details').forEach(d=>d.open=true));
document.querySelectorAll('table').forEach(t=>t.querySelectorAll('th').forEach((th,i)=>th.addEventListener('click',()=>{
 const body=t.tBodies[0];const rows=[...body.rows];const asc=th.dataset.asc!=='1';
 rows.sort((a,b)=>{const x=a.cells[i].innerText,y=b.cells[i].innerText;const p=parseFloat(x),q=parseFloat(y);
  return (isNaN(p)||isNaN(q)?x.localeCompare(y):p-q)*(asc?1:-1)});
 th.dataset.asc=asc?'1':'0';rows.forEach(r=>body.appendChild(r))})));
"""


def _cell(header: str, text: str) -> str:
    if header == "outcome":
        return f"<td class='{'pass' if text == 'pass' else 'fail'}'>{escape(text)}</td>"
    if header == "severity" and text:
        return f"<td class='sev-{escape(text)}'>{escape(text)}</td>"
    return f"<td>{escape(text)}</td>"


def _table(table: Table) -> str:
    caption = f"<caption>{escape(table.caption)}</caption>" if table.caption else ""
    head = "".join(f"<th>{escape(h)}</th>" for h in table.headers)
    body = "".join("<tr>" + "".join(_cell(h, c) for h, c in zip(table.headers, row)) + "</tr>" for row in table.rows)
    anchor = f" id='{escape(table.key)}'" if table.key else ""
    built = f"<table{anchor}>{caption}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
    return f"<details><summary>{escape(table.collapsed)}</summary>{built}</details>" if table.collapsed else built


def _section(section: Section, figures: Sequence[str]) -> str:
    parts = [f"<section id='{section.key}'><h2>{escape(section.title)}</h2>"]
    if section.headline:
        parts.append(f"<p class='headline'>{escape(section.headline)}</p>")
    parts += [f"<p>{escape(p)}</p>" for p in section.paragraphs]
    if section.bullets:
        parts.append("<ul>" + "".join(f"<li>{escape(b)}</li>" for b in section.bullets) + "</ul>")
    parts += figures
    parts += [_table(t) for t in section.tables]
    parts.append("</section>")
    return "".join(parts)


def _strongest(rows: Sequence[LeakageResult]) -> LeakageResult:
    return max(rows, key=lambda r: r.balanced_accuracy)


def _accuracies(picked: Sequence[LeakageResult | None]) -> tuple[list, tuple[list, list]]:
    """Leakage and 95% interval ends of the picked rows, ``None`` where a cell has no row."""
    intervals = [leakage_interval(r) if r else (None, None) for r in picked]
    return ([r.balanced_accuracy if r else None for r in picked],
            ([low for low, _ in intervals], [high for _, high in intervals]))


def _layers_in_order(rows: Sequence[LeakageResult]) -> list[str]:
    index = {r.layer: (r.layer_index if r.layer_index is not None else 10**6) for r in rows}
    return sorted(index, key=lambda name: index[name])


def _depth_curve(report: Report, layers: Sequence[str]) -> str:
    """The strongest row of each layer and the linear probe, with 95% whiskers, against chance and the threshold."""
    assert report.leakage is not None
    rows, verdict = report.leakage.results, report.leakage.verdict
    series, errors = {}, {}
    for name, keep in (("strongest attacker", lambda r: True), ("linear probe", lambda r: r.is_probe)):
        picked = [_strongest(cell) if (cell := [r for r in rows if r.layer == layer and keep(r)]) else None
                  for layer in layers]
        if any(picked):
            series[name], errors[name] = _accuracies(picked)
    chance = rows[0].chance
    references = [Reference(chance, f"chance {chance:.2f}")]
    if verdict is not None:
        references.append(Reference(verdict.threshold, f"threshold T {verdict.threshold:.2f}", dash="2 3"))
    sources = {"input:lld": "from the raw audio's LLDs", "input:egemaps": "from eGeMAPS"}
    inputs = "".join(f"; {sources.get(r.layer, r.layer)}: {r.balanced_accuracy:.3f}" for r in report.leakage.references)
    message = f"{verdict.statement}. " if verdict is not None else ""
    return line_chart(
        f"Depth curve: {message}{report.leakage.attribute} leakage per layer, the strongest attacker and the linear "
        f"probe (whiskers: 95% interval){inputs}",
        layers, series, errors=errors, y_label="leakage (balanced accuracy)", references=references)


def _scenario_panels(report: Report, layers: Sequence[str]) -> str | None:
    """One small panel per layer the scenario attackers ran on: the strongest attacker per scenario and kind."""
    assert report.leakage is not None
    rows, panels = report.leakage.results, []
    for layer in layers:
        audited = [r for r in rows if r.layer == layer and not r.is_probe]
        if not audited:
            continue
        scenarios = [s for s in SCENARIO_ORDER if any(r.column == s for r in audited)]
        values, errors = {}, {}
        for kind in ("generic", "aware"):
            picked = [_strongest(cell) if (cell := [r for r in audited if r.column == scenario
                                                    and r.attacker_kind == kind]) else None for scenario in scenarios]
            if any(picked):
                values[kind], errors[kind] = _accuracies(picked)
        panels.append(Panel(f"Scenarios at {layer}", scenarios, values, errors))
    if not panels:
        return None
    chance = rows[0].chance
    return small_multiples(
        "Scenarios per layer: the strongest attacker of each scenario and kind (whiskers: 95% interval, clipped to "
        "the axis; dashed: chance)", panels, y_label="leakage L", references=[Reference(chance, f"chance {chance:.2f}")])


def leakage_figures(report: Report) -> list[str]:
    assert report.leakage is not None
    rows = report.leakage.results
    if not rows:
        return []
    layers = _layers_in_order(rows)
    scenarios = _scenario_panels(report, layers)
    return [_depth_curve(report, layers), *([scenarios] if scenarios else [])]


def _breakdown_figure(report: Report, by: Sequence[BreakdownRow], what: str) -> str | None:
    assert report.leakage is not None
    if not by:
        return None
    rows = report.leakage.results
    groups = sorted({b.group for b in by})
    series, errors = {}, {}
    for layer in _layers_in_order(rows)[:8]:
        strongest = _strongest([r for r in rows if r.layer == layer])
        key = (strongest.layer, strongest.scenario, strongest.attacker_kind, strongest.attacker_design)
        cells = {b.group: b for b in by if (b.layer, b.scenario, b.attacker_kind, b.attacker_design) == key}
        if cells:
            series[layer] = [cells[g].accuracy if g in cells else None for g in groups]
            errors[layer] = ([cells[g].ci_low if g in cells else None for g in groups],
                             [cells[g].ci_high if g in cells else None for g in groups])
    if not series:
        return None
    return bar_chart(
        f"Attacker accuracy per {what}: each layer's strongest attacker (whiskers: Wilson 95% interval)",
        groups, series, errors=errors, y_label="leakage (balanced accuracy)",
    )


def _uar_series(robustness: Robustness, suffix: str, grid: Sequence[float]) -> dict[str, list[float | None]]:
    series: dict[str, list[float | None]] = {}
    untargeted = [r for r in robustness.results if r.targeted_class is None]
    for method, domain in dict.fromkeys((r.method, r.domain) for r in untargeted):
        by_eps = {r.eps: r.uar for r in untargeted if (r.method, r.domain) == (method, domain)}
        clean = next((r.uar for r in untargeted if r.eps == 0 and r.domain == domain), None)
        if 0.0 not in by_eps and clean is not None:  # every curve starts from the clean UAR
            by_eps[0.0] = clean
        series[f"{method} {domain}{suffix}"] = [by_eps.get(eps) for eps in grid]
    return series


def _uar_figure(title: str, runs: Sequence[tuple[Robustness, str]]) -> list[str]:
    grid = sorted({r.eps for robustness, _ in runs for r in robustness.results if r.targeted_class is None})
    if not grid:
        return []
    series: dict[str, list[float | None]] = {}
    for robustness, suffix in runs:
        series.update(_uar_series(robustness, suffix, grid))
    return [line_chart(title, [f"{eps:g}" for eps in grid], series, y_label="UAR")]


def robustness_figures(report: Report) -> list[str]:
    assert report.robustness is not None
    return _uar_figure("UAR against eps (relative to the input's spread)", [(report.robustness, "")])


def comparison_figures(report: Report) -> list[str]:
    """Each shared layer's linear-probe L on both models (whiskers where the rows have intervals), and both models'
    UAR against eps."""
    comparison, names = report.compared, ComparisonNames.of(report)
    assert comparison is not None
    figures = []
    layers = comparison.layers
    if layers:
        intervals = {names.before: [layer.before_interval for layer in layers],
                     names.after: [layer.after_interval for layer in layers]}
        errors = None
        if all(interval is not None for side in intervals.values() for interval in side):
            errors = {name: ([i[0] if i else None for i in side], [i[1] if i else None for i in side])
                      for name, side in intervals.items()}
        figures.append(bar_chart(
            f"Linear-probe leakage per layer, {names.before} and {names.after}"
            + (" (whiskers: 95% interval)" if errors else ""), [layer.layer for layer in layers],
            {names.before: [layer.leakage_before for layer in layers],
             names.after: [layer.leakage_after for layer in layers]},
            errors=errors, y_label="leakage (balanced accuracy)"))
    if report.robustness is not None and comparison.robustness is not None:
        figures += _uar_figure(f"UAR against eps (relative to each input's spread), {names.before} and {names.after}",
                               [(report.robustness, f" ({names.before})"), (comparison.robustness, f" ({names.after})")])
    return figures


def protection_figure(protection: Protection) -> str:
    """Emotion UAR against the informed strongest leakage at the protected layer, one point per strength."""
    before = next((v for v in protection.before if v.layer == protection.layer), None)
    points = [("before", protection.utility_before.uar, before.balanced_accuracy, before.ci_low, before.ci_high)
              ] if before is not None else []
    points += [(f"strength {p.strength:g}" + (" (chosen)" if p.strength == protection.chosen_strength else ""),
                p.utility.uar, p.informed.balanced_accuracy, p.informed.ci_low, p.informed.ci_high)
               for p in protection.tradeoff]
    threshold = next((p.informed.chance for p in protection.tradeoff), None)
    return tradeoff_chart(
        f"Trade-off at {protection.layer}: emotion UAR against the informed strongest {protection.attribute} leakage "
        "(whiskers: 95% interval; dotted: chance)", points, x_label="emotion UAR (held-out speakers)",
        y_label=f"informed {protection.attribute} leakage", threshold=threshold, threshold_name="chance")


class HtmlRenderer:
    suffix = ".html"

    def render(self, report: Report) -> str:
        figures: dict[str, list[str]] = {}
        if report.leakage:
            figures["leakage"] = leakage_figures(report)
            figures["breakdowns"] = [
                figure for figure in (
                    _breakdown_figure(report, report.leakage.breakdowns.by_emotion, "emotion"),
                    _breakdown_figure(report, report.leakage.breakdowns.by_spontaneity, "spontaneity"),
                ) if figure
            ]
        if report.robustness:
            figures["robustness"] = robustness_figures(report)
        if report.compared is not None:
            figures["comparison"] = comparison_figures(report)
        if report.protection is not None:
            figures["protection"] = [protection_figure(report.protection)]
        body = "".join(_section(s, figures.get(s.key, [])) for s in sections(report))
        return (
            "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
            "<meta name='viewport' content='width=device-width, initial-scale=1'>"
            f"<title>ser-audit: {escape(report.model.path)}</title><style>{_STYLE}</style></head><body>"
            f"<main><h1>ser-audit report: {escape(report.model.path)}</h1>{body}</main><script>{_SORT}</script></body></html>\n"
        )
