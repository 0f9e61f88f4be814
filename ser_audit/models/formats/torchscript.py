"""TorchScript archives (``torch.jit.save``), whatever their suffix."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ser_audit.models.formats import ModelRequest

if TYPE_CHECKING:
    from ser_audit.models.interface import TargetModel


class TorchScriptFormat:
    name = "torchscript"
    priority = 31

    def claims(self, request: ModelRequest) -> bool:
        return any("/code/" in name for name in request.archive_entries)

    def load(self, request: ModelRequest) -> "TargetModel":
        from ser_audit.models.loading import sidecar_spec
        from ser_audit.models.torchscript import load_torchscript

        return load_torchscript(request.file(), request.frontend or sidecar_spec(request.path))


FORMAT = TorchScriptFormat()
