"""``python:pkg.module:factory`` with ``--weights``: the user's own module class and a state dict."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ser_audit.models.formats import ModelRequest

if TYPE_CHECKING:
    from ser_audit.models.interface import TargetModel


class PythonFactoryFormat:
    name = "python"
    priority = 0
    takes_weights = True  # --weights: the state dict its factory's module is built for

    def claims(self, request: ModelRequest) -> bool:
        return request.spec.startswith("python:")

    def load(self, request: ModelRequest) -> "TargetModel":
        from ser_audit.models.loading import load_factory, runs_on_its_spec

        return runs_on_its_spec(load_factory(request.spec[len("python:"):], request.weights, request.frontend),
                                request.spec)


FORMAT = PythonFactoryFormat()
