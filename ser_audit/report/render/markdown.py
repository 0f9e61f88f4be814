"""Markdown: the report's sections as headings, bullets and pipe tables.

Every piece of text goes through :func:`escaping.markdown`: labels from the user's files are shown
as text, never as HTML, links or table syntax.
"""

from __future__ import annotations

from ser_audit.report.model import Report
from ser_audit.report.render.escaping import markdown
from ser_audit.report.render.sections import Table, sections


def _table(table: Table) -> list[str]:
    lines = [f"**{markdown(table.collapsed)}**", ""] if table.collapsed else []
    lines += [f"*{markdown(table.caption)}*", ""] if table.caption else []
    lines += ["| " + " | ".join(markdown(h) for h in table.headers) + " |", "|" + "---|" * len(table.headers)]
    lines += ["| " + " | ".join(markdown(c) for c in row) + " |" for row in table.rows]
    return [*lines, ""]


class MarkdownRenderer:
    suffix = ".md"

    def render(self, report: Report) -> str:
        lines = [f"# ser-audit report: {markdown(report.model.path)}", ""]
        for section in sections(report):
            lines += [f"## {markdown(section.title)}", ""]
            lines += [f"**{markdown(section.headline)}**", ""] if section.headline else []
            lines += [*(f"{markdown(p)}\n" for p in section.paragraphs)]
            if section.bullets:
                lines += [*(f"- {markdown(b)}" for b in section.bullets), ""]
            for table in section.tables:
                lines += _table(table)
        return "\n".join(lines).rstrip() + "\n"
