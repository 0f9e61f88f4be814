"""The report itself, as JSON."""

from __future__ import annotations

from ser_audit.report.model import Report


class JsonRenderer:
    suffix = ".json"

    def render(self, report: Report) -> str:
        return report.model_dump_json(indent=2) + "\n"
