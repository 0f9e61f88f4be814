"""The CLI's default executor (``--executor auto``): worker processes where they pay, this process otherwise.

On a CPU with two or more usable cores, one single-threaded worker per core trains attackers faster
than one process spreading each small attacker over the cores, idle or loaded (#25: the quick demo
23-24 s against 29-31 s idle, 41 s against 81-86 s with one core busy). On a GPU the jobs share one
device, and a CUDA context per worker would only cost memory, so they stay in this process; so do a
single job, a single core (``OMP_NUM_THREADS`` counts as the cores granted), a caller that is itself
a daemonic worker, a main script that spawned workers cannot re-import (piped in on standard input),
a model a worker cannot load (a ``python:__main__:`` factory), and jobs that do not pickle.

The Python API defaults to ``local``: a spawned worker re-imports the calling script, and a script
without an ``if __name__ == "__main__":`` guard would run its audit again there.
"""

from __future__ import annotations

import multiprocessing
import os
import pickle
import sys
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

from ser_audit.devices import usable_cores
from ser_audit.execution.interface import Executor, Job, Result, Shared
from ser_audit.execution.local import LocalExecutor
from ser_audit.execution.processes import ProcessExecutor


def spawnable() -> bool:
    """Whether a spawned worker can start in this program: not inside a daemonic worker, and a ``__main__``
    it can re-import from its file, if it has one."""
    if multiprocessing.current_process().daemon:
        return False
    path = getattr(sys.modules.get("__main__"), "__file__", None)
    return path is None or Path(path).is_file()


def granted_cores() -> int:
    """The usable cores, capped by ``OMP_NUM_THREADS`` where it is set (a user's budget for this run)."""
    cores = usable_cores()
    try:
        return max(1, min(cores, int(os.environ.get("OMP_NUM_THREADS", "") or cores)))
    except ValueError:
        return cores


def choose(device: str, *, jobs: int, cores: int, can_spawn: bool) -> str:
    """``processes`` or ``local``, by the rule of the module docstring."""
    if device.startswith("cuda") or jobs < 2 or cores < 2 or not can_spawn:
        return LocalExecutor.name
    return ProcessExecutor.name


class AutoExecutor(Executor):
    """Runs its jobs on the executor ``choose`` picks for ``device`` (the run's resolved device, which the
    runner sets, as it sets ``workers_can_load``).

    >>> from operator import add
    >>> list(AutoExecutor().map(add, [1, 2], 10))
    [11, 12]
    """

    name = "auto"

    def __init__(self, device: str = "cpu", *, workers_can_load: bool = True) -> None:
        self.device = device
        self.workers_can_load = workers_can_load  # False for a model only this process can build
        self.chosen: str | None = None  # what the last run used, for the report's notes

    def run(self, function: Callable[[Job, Shared], Result], jobs: Iterable[Job], shared: Shared) -> Iterator[Result]:
        jobs, cores = list(jobs), granted_cores()
        self.chosen = self._choose(len(jobs), cores)
        if self.chosen == ProcessExecutor.name and not _pickles((function, shared)):
            self.chosen = LocalExecutor.name
        delegate = ProcessExecutor(cores) if self.chosen == ProcessExecutor.name else LocalExecutor()
        return delegate.run(function, jobs, shared)

    def prepare(self, modules: Sequence[str]) -> Callable[[], int]:
        """Starts the worker processes' fork server early where ``run`` would likely choose them (the job
        count and whether the jobs pickle are not known yet; if ``run`` then stays here, it only idles)."""
        cores = granted_cores()
        if self._choose(2, cores) == ProcessExecutor.name:
            return ProcessExecutor(cores).prepare(modules)
        return super().prepare(modules)

    def _choose(self, jobs: int, cores: int) -> str:
        return choose(self.device, jobs=jobs, cores=cores, can_spawn=self.workers_can_load and spawnable())

    def sees(self, path: Path) -> bool:
        return True  # both of its executors' workers read this machine's files


def _pickles(payload: object) -> bool:
    try:
        pickle.dumps(payload, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception:  # pickle raises PicklingError, TypeError, AttributeError, ... for what it cannot send
        return False
    return True
