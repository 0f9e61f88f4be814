"""One interface for every output format."""

from __future__ import annotations

from typing import Protocol

from ser_audit.errors import ConfigError
from ser_audit.report.model import Report


class Renderer(Protocol):
    suffix: str

    def render(self, report: Report) -> str: ...


def renderer_for(name: str) -> Renderer:
    from ser_audit.report.render.html import HtmlRenderer
    from ser_audit.report.render.json import JsonRenderer
    from ser_audit.report.render.junit import JunitRenderer
    from ser_audit.report.render.markdown import MarkdownRenderer

    renderers: dict[str, Renderer] = {
        "json": JsonRenderer(), "md": MarkdownRenderer(), "html": HtmlRenderer(), "junit": JunitRenderer(),
    }
    if name not in renderers:
        raise ConfigError(f"--format {name!r}: choose one of {', '.join(renderers)}")
    return renderers[name]
