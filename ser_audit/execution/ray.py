"""Jobs as Ray tasks, on a local or remote Ray cluster (the optional ``ray`` extra).

The function and ``shared`` go into the object store once per ``map`` (``ray.put``); each task gets
their references, which Ray resolves on the worker (numpy arrays zero-copy from the node's store).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from ser_audit.errors import ConfigError
from ser_audit.execution.interface import Executor, Job, Result, Shared

SEES_TIMEOUT_S = 60.0  # a node that does not answer in time counts as one that cannot read the file


def _apply(function: Callable[[Any, Any], Any], job: Any, shared: Any) -> Any:
    return function(job, shared)


def _exists(path: str) -> bool:
    return os.path.exists(path)


class RayExecutor(Executor):
    """Connects to ``address`` (default: $RAY_ADDRESS, else a local cluster started on demand)."""

    name = "ray"

    def __init__(self, address: str | None = None, cpus_per_job: float = 1.0) -> None:
        try:
            import ray
        except ImportError:
            raise ConfigError(
                "--executor ray needs Ray, which is not installed; run: pip install 'ser-audit[ray]'"
            ) from None
        self.ray = ray
        self.address = address
        self.cpus_per_job = cpus_per_job
        self._seen: dict[Path, bool] = {}

    def _connect(self) -> None:
        if not self.ray.is_initialized():
            self.ray.init(address=self.address, ignore_reinit_error=True, log_to_driver=False)

    def run(self, function: Callable[[Job, Shared], Result], jobs: Iterable[Job], shared: Shared) -> Iterator[Result]:
        self._connect()
        remote = self.ray.remote(num_cpus=self.cpus_per_job)(_apply)
        function_reference, shared_reference = self.ray.put(function), self.ray.put(shared)
        pending = [remote.remote(function_reference, job, shared_reference) for job in jobs]
        for reference in pending:
            yield self.ray.get(reference)

    def sees(self, path: Path) -> bool:
        """Asks every live node of the cluster (a zero-CPU task pinned to each) whether ``path`` exists there.

        Nodes that join later are not asked: a job that then cannot read the file fails, naming it.
        """
        if path not in self._seen:
            from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

            self._connect()
            exists = self.ray.remote(num_cpus=0)(_exists)
            checks = [exists.options(scheduling_strategy=NodeAffinitySchedulingStrategy(node["NodeID"], soft=False))
                      .remote(str(path)) for node in self.ray.nodes() if node["Alive"]]
            try:
                self._seen[path] = bool(checks) and all(self.ray.get(checks, timeout=SEES_TIMEOUT_S))
            except self.ray.exceptions.GetTimeoutError:
                self._seen[path] = False
        return self._seen[path]
