"""Markdown: the report's sections as headings, bullets and pipe tables."""

from __future__ import annotations

from ser_audit.report.model import Report
from ser_audit.report.render.sections import Table, sections


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _table(table: Table) -> list[str]:
    lines = [f"*{table.caption}*", ""] if table.caption else []
    lines += ["| " + " | ".join(table.headers) + " |", "|" + "---|" * len(table.headers)]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in table.rows]
    return [*lines, ""]


class MarkdownRenderer:
    suffix = ".md"

    def render(self, report: Report) -> str:
        lines = [f"# ser-audit report: {report.model.path}", ""]
        for section in sections(report):
            lines += [f"## {section.title}", ""]
            lines += [*(f"{p}\n" for p in section.paragraphs)]
            if section.bullets:
                lines += [*(f"- {_cell(b)}" for b in section.bullets), ""]
            for table in section.tables:
                lines += _table(table)
        return "\n".join(lines).rstrip() + "\n"
