"""Renderers turn a Report into text. They compute nothing and import neither torch nor the runners."""

from __future__ import annotations

from ser_audit.report.render.interface import Renderer, renderer_for

__all__ = ["Renderer", "renderer_for"]
