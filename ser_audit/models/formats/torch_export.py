"""``*.pt2``: a ``torch.export`` archive (told apart from TorchScript by its entries, not its suffix)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ser_audit.models.formats import ModelRequest

if TYPE_CHECKING:
    from ser_audit.models.interface import TargetModel


class TorchExportFormat:
    name = "torch-export"
    priority = 30

    def claims(self, request: ModelRequest) -> bool:
        # ``ARCHIVE/models/`` at the top: TorchScript archives hold ``ARCHIVE/code/__torch__/<package>/models/``
        # for any module defined in a ``models`` package (transformers' are).
        return any(name.endswith("archive_format") or name.split("/")[1:2] == ["models"]
                   for name in request.archive_entries)

    def load(self, request: ModelRequest) -> "TargetModel":
        from ser_audit.models.exported import load_exported
        from ser_audit.models.loading import sidecar_spec

        return load_exported(request.file(), request.frontend or sidecar_spec(request.path))


FORMAT = TorchExportFormat()
