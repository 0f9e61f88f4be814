"""Any other torch archive: a reference-model checkpoint (``.ckpt``), or a pickled module under ``--trust-pickle``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ser_audit.models.formats import ModelRequest

if TYPE_CHECKING:
    from ser_audit.models.interface import TargetModel


class TorchCheckpointFormat:
    name = "torch-checkpoint"
    priority = 40

    def claims(self, request: ModelRequest) -> bool:
        return bool(request.archive_entries)

    def load(self, request: ModelRequest) -> "TargetModel":
        from ser_audit.models.loading import load_pickle, runs_on_its_spec, sidecar_spec

        model = load_pickle(request.file(), request.frontend or sidecar_spec(request.path), request.trust_pickle)
        return runs_on_its_spec(model, request.spec)


FORMAT = TorchCheckpointFormat()
