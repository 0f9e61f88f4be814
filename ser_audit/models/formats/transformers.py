"""A transformers ``save_pretrained`` folder (config.json beside the weights), or ``hf:ORG/NAME``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ser_audit.models.formats import ModelRequest

if TYPE_CHECKING:
    from ser_audit.models.interface import TargetModel


class TransformersFormat:
    name = "transformers"
    priority = 10

    def claims(self, request: ModelRequest) -> bool:
        from ser_audit.models.huggingface import is_pretrained_folder

        return request.spec.startswith("hf:") or is_pretrained_folder(request.path)

    def load(self, request: ModelRequest) -> "TargetModel":
        from ser_audit.models.huggingface import load_pretrained, resolve_hub
        from ser_audit.models.loading import runs_on_its_spec

        folder = resolve_hub(request.spec[3:]) if request.spec.startswith("hf:") else request.path
        return runs_on_its_spec(load_pretrained(folder, request.frontend, origin=request.spec), request.spec)


FORMAT = TransformersFormat()
