"""Jobs as Ray tasks, on a local or remote Ray cluster (the optional ``ray`` extra)."""

from __future__ import annotations

from typing import Callable, Iterable, Iterator

from ser_audit.errors import ConfigError
from ser_audit.execution.interface import Executor, Job, Result


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

    def map(self, function: Callable[[Job], Result], jobs: Iterable[Job]) -> Iterator[Result]:
        if not self.ray.is_initialized():
            self.ray.init(address=self.address, ignore_reinit_error=True, log_to_driver=False)
        remote = self.ray.remote(num_cpus=self.cpus_per_job)(function)
        pending = [remote.remote(job) for job in jobs]
        for reference in pending:
            yield self.ray.get(reference)
