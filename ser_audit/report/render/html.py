"""One self-contained HTML page: inline SVG plots (no scripts from elsewhere, no network), sortable tables."""

from __future__ import annotations

from html import escape
from typing import Sequence

from ser_audit.report.model import Report
from ser_audit.report.render.markdown import MarkdownRenderer

_WIDTH, _HEIGHT, _MARGIN = 560, 260, 44

_STYLE = """
body{font-family:system-ui,sans-serif;margin:2rem auto;max-width:60rem;color:#222}
table{border-collapse:collapse;margin:1rem 0}
th,td{border:1px solid #ccc;padding:.25rem .5rem;text-align:left}
th{cursor:pointer;background:#f4f4f4}.fail{color:#b00;font-weight:bold}.pass{color:#070}
figure{margin:1rem 0}figcaption{font-size:.9rem;color:#555}
"""

# Sorting by clicking a header: inline, so the page needs nothing from the network.
_SORT = """
document.querySelectorAll('th').forEach((th,i)=>th.addEventListener('click',()=>{
 const body=th.closest('table').tBodies[0];const rows=[...body.rows];const asc=th.dataset.asc!=='1';
 rows.sort((a,b)=>{const x=a.cells[i].innerText,y=b.cells[i].innerText;const p=parseFloat(x),q=parseFloat(y);
  return (isNaN(p)||isNaN(q)?x.localeCompare(y):p-q)*(asc?1:-1)});
 th.dataset.asc=asc?'1':'0';rows.forEach(r=>body.appendChild(r))}));
"""


def line_plot(title: str, labels: Sequence[str], series: dict[str, Sequence[float]], *,
              bands: dict[str, tuple[Sequence[float], Sequence[float]]] | None = None, y_label: str = "") -> str:
    """An SVG line chart over categorical x positions, values in [0, 1], optional interval bands."""
    colours = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e"]
    n = max(1, len(labels) - 1)

    def x(i: int) -> float:
        return _MARGIN + i * (_WIDTH - 2 * _MARGIN) / n

    def y(v: float) -> float:
        return _HEIGHT - _MARGIN - max(0.0, min(1.0, v)) * (_HEIGHT - 2 * _MARGIN)

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{_WIDTH}" height="{_HEIGHT}" role="img" '
             f'aria-label="{escape(title)}">']
    for tick in (0.0, 0.25, 0.5, 0.75, 1.0):
        parts.append(f'<line x1="{_MARGIN}" x2="{_WIDTH - _MARGIN}" y1="{y(tick):.1f}" y2="{y(tick):.1f}" stroke="#eee"/>'
                     f'<text x="{_MARGIN - 6}" y="{y(tick) + 4:.1f}" font-size="10" text-anchor="end">{tick:g}</text>')
    for i, label in enumerate(labels):
        parts.append(f'<text x="{x(i):.1f}" y="{_HEIGHT - _MARGIN + 14}" font-size="10" text-anchor="middle">'
                     f'{escape(label)}</text>')
    for k, (name, values) in enumerate(series.items()):
        colour = colours[k % len(colours)]
        if bands and name in bands:
            low, high = bands[name]
            outline = [f"{x(i):.1f},{y(v):.1f}" for i, v in enumerate(high)]
            outline += [f"{x(i):.1f},{y(v):.1f}" for i, v in reversed(list(enumerate(low)))]
            parts.append(f'<polygon points="{" ".join(outline)}" fill="{colour}" fill-opacity="0.15"/>')
        points = " ".join(f"{x(i):.1f},{y(v):.1f}" for i, v in enumerate(values))
        parts.append(f'<polyline points="{points}" fill="none" stroke="{colour}" stroke-width="2"/>')
        parts += [f'<circle cx="{x(i):.1f}" cy="{y(v):.1f}" r="3" fill="{colour}"/>' for i, v in enumerate(values)]
        parts.append(f'<text x="{_WIDTH - _MARGIN}" y="{16 + 14 * k}" font-size="11" fill="{colour}" '
                     f'text-anchor="end">{escape(name)}</text>')
    parts.append(f'<text x="12" y="{_HEIGHT / 2:.0f}" font-size="11" transform="rotate(-90 12 {_HEIGHT / 2:.0f})" '
                 f'text-anchor="middle">{escape(y_label)}</text></svg>')
    return f"<figure>{''.join(parts)}<figcaption>{escape(title)}</figcaption></figure>"


class HtmlRenderer:
    suffix = ".html"

    def render(self, report: Report) -> str:
        figures = []
        if report.leakage and report.leakage.results:
            rows = sorted(report.leakage.results, key=lambda r: (r.layer_index is None, r.layer_index or 0))
            groups: dict[str, list] = {}
            for row in rows:
                groups.setdefault(f"{row.scenario}/{row.attacker_kind}", []).append(row)
            layers = [r.layer for r in next(iter(groups.values()))]
            figures.append(line_plot(
                f"Depth curve: {report.leakage.attribute} leakage per tapped layer (band: 95% interval; chance "
                f"{rows[0].chance:.2f})", layers,
                {name: [r.accuracy.mean for r in group] for name, group in groups.items()},
                bands={name: ([r.accuracy.ci_low for r in group], [r.accuracy.ci_high for r in group])
                       for name, group in groups.items()},
                y_label="attacker accuracy",
            ))
        if report.robustness:
            fgsm = [r for r in report.robustness.results if r.method == "fgsm"]
            if fgsm:
                figures.append(line_plot("UAR under FGSM by eps (relative to the input's spread)",
                                         [f"{r.eps:g}" for r in fgsm], {"UAR": [r.uar for r in fgsm]}, y_label="UAR"))
        body = _markdown_tables_to_html(MarkdownRenderer().render(report))
        return (
            "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
            f"<title>ser-audit: {escape(report.model.path)}</title><style>{_STYLE}</style></head><body>"
            f"{body}{''.join(figures)}<script>{_SORT}</script></body></html>\n"
        )


def _markdown_tables_to_html(markdown: str) -> str:
    """The Markdown renderer's output as HTML (headings, bullets, pipe tables, paragraphs)."""
    out: list[str] = []
    table: list[list[str]] = []

    def flush() -> None:
        if table:
            head, *body = table
            out.append("<table><thead><tr>" + "".join(f"<th>{c}</th>" for c in head) + "</tr></thead><tbody>")
            out.extend("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in body)
            out.append("</tbody></table>")
            table.clear()

    for line in markdown.splitlines():
        if line.startswith("|"):
            cells = [escape(c.strip()) for c in line.strip("|").split("|")]
            if not all(set(c) <= {"-"} for c in cells):
                table.append([c.replace("**FAIL**", "<span class='fail'>FAIL</span>") for c in cells])
            continue
        flush()
        if line.startswith("#"):
            level = len(line) - len(line.lstrip("#"))
            out.append(f"<h{level}>{escape(line[level:].strip())}</h{level}>")
        elif line.startswith("- "):
            out.append(f"<p>• {escape(line[2:]).replace('`', '')}</p>")
        elif line.strip():
            out.append(f"<p>{escape(line).replace('**', '')}</p>")
    flush()
    return "\n".join(out)
