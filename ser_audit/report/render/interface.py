"""One interface for every output format."""

from __future__ import annotations

from typing import Protocol

from ser_audit.report.model import Report


class Renderer(Protocol):
    suffix: str

    def render(self, report: Report) -> str: ...


RENDERER_GROUP = "ser_audit.renderers"


def renderers() -> dict[str, type[Renderer]]:
    """Every report format, by ``--format`` name: the bundled ones and any plugin's (entry points
    in ``ser_audit.renderers``, each a class with ``suffix`` and ``render(report)``)."""
    from ser_audit.plugins import load_plugins

    return load_plugins(RENDERER_GROUP, kind="renderer")


def renderer_for(name: str) -> Renderer:
    from ser_audit.plugins import registered

    renderer: Renderer = registered(RENDERER_GROUP, name, kind="renderer", flag="--format")()
    return renderer
