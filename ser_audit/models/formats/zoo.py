"""``zoo:NAME``: a bundled reference model, trained once into the cache."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ser_audit.models.formats import ModelRequest

if TYPE_CHECKING:
    from ser_audit.models.interface import TargetModel


class ZooFormat:
    name = "zoo"
    priority = 0

    def claims(self, request: ModelRequest) -> bool:
        return request.spec.startswith("zoo:")

    def load(self, request: ModelRequest) -> "TargetModel":
        from ser_audit.models.loading import load_checkpoint, runs_on_its_spec
        from ser_audit.models.zoo import load_or_train, read_cached_checkpoint

        checkpoint = load_or_train(request.spec[4:], cache_dir=request.cache_dir, seed=request.seed,
                                   observer=request.observer, device=request.device)
        payload = read_cached_checkpoint(checkpoint, request.spec[4:])
        return runs_on_its_spec(load_checkpoint(checkpoint, request.frontend, payload), request.spec)


FORMAT = ZooFormat()
