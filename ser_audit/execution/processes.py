"""Jobs in a pool of worker processes on this machine, one torch thread each (``--executor processes``).

One small attacker keeps torch's threads on a second core mostly waiting (#25); here each core
trains an attacker of its own. Workers are forked from a fork server where the platform has one
(Linux, macOS), else spawned; never forked from this process, whose torch thread pools a fork
would copy in whatever state they are in. The fork server is a fresh process that imports the
jobs' modules once (``prepare`` starts it while this process still extracts and probes): each
worker then starts with them loaded instead of importing torch, scikit-learn and torch's compiler
stack anew (about 3 s of CPU a worker on this project's machine), and shares their pages.

Each worker receives the function and ``shared`` once, as one pickle made here and handed over by
its initializer, and unpickles it on its first job, so that what fails there fails as that job;
the BLAS and OpenMP thread pools loaded by then are set to one thread as well. Jobs seed
themselves, and one thread sums as the local executor sums under one thread: the rows are the
local executor's.

A job's error (``ConfigError``, ``CacheError``, ``ModelError``, ...) is pickled back and raised here
as the job raised it. A worker that ends without answering (the kernel's out-of-memory killer, say)
ends the run with a one-line ``ConfigError`` that says how it ended and names ``--executor local``.
"""

from __future__ import annotations

import multiprocessing
import os
import pickle
import signal
import sys
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from multiprocessing import context as contexts
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

from ser_audit.devices import usable_cores
from ser_audit.errors import ConfigError
from ser_audit.execution.interface import Executor, Job, Result, Shared


class ProcessExecutor(Executor):
    """``workers`` spawned processes: by default one per core this process may use, never more than jobs.

    >>> from operator import add
    >>> list(ProcessExecutor(workers=2).map(add, [1, 2, 3], 10))
    [11, 12, 13]
    """

    name = "processes"

    def __init__(self, workers: int | None = None) -> None:
        self.workers = workers

    def run(self, function: Callable[[Job, Shared], Result], jobs: Iterable[Job], shared: Shared) -> Iterator[Result]:
        """Submits every job at once and yields their results in job order, each as soon as it and those
        before it are done. Leaving early (an error, Ctrl-C, a caller that stops reading) stops the workers."""
        jobs = list(jobs)
        if not jobs:
            return
        payload = pickle.dumps((function, shared), protocol=pickle.HIGHEST_PROTOCOL)
        context = _recording_context([getattr(function, "__module__", None) or __name__])
        workers = max(1, min(self.workers or usable_cores(), len(jobs)))
        pool = ProcessPoolExecutor(workers, mp_context=context, initializer=_initialise,
                                   initargs=(payload, dict(os.environ)))
        finished = False
        try:
            for future in [pool.submit(_apply, job) for job in jobs]:
                yield future.result()
            finished = True
        except BrokenProcessPool as error:
            pool.shutdown(wait=True)  # the pool has reaped its workers: their exit codes are known
            raise ConfigError(_lost(context.started)) from error
        finally:
            if not finished:  # the run is over: its running jobs are not waited for
                for process in context.started:
                    process.terminate()
            pool.shutdown(wait=True, cancel_futures=True)

    def prepare(self, modules: Sequence[str]) -> int:
        """Starts the fork server, which imports ``modules`` on one core while this process goes on."""
        if not _fork_server() or _SERVER["started"]:
            return 0
        _start_server(modules)
        return 1

    def sees(self, path: Path) -> bool:
        return True


# Training imports torch's compiler stack on its first optimiser (torch.optim calls into torch._dynamo):
# 0.8 s in every worker unless the fork server has it.
_ALWAYS_PRELOADED = ("torch", "torch._dynamo")
_SERVER = {"started": False}  # by this process: multiprocessing keeps one fork server per process


def _fork_server() -> bool:
    return sys.platform != "win32" and "forkserver" in multiprocessing.get_all_start_methods()


def _start_server(modules: Sequence[str]) -> None:
    """The fork server, importing ``modules``, unless it is running already (and keeps the modules it has)."""
    from multiprocessing import forkserver

    forkserver.set_forkserver_preload(list(dict.fromkeys([*_ALWAYS_PRELOADED, *modules])))
    forkserver.ensure_running()
    _SERVER["started"] = True


def _recording_context(modules: Sequence[str]) -> "_RecordingSpawn | _RecordingForkServer":
    """A context whose workers start from the fork server, or spawned where there is none."""
    if not _fork_server():
        return _RecordingSpawn()
    _start_server(modules)
    return _RecordingForkServer()


class _RecordingSpawn(contexts.SpawnContext):
    """The spawn context, keeping the processes it starts (to stop them, and to say how one ended)."""

    def __init__(self) -> None:
        self.started: list[BaseProcess] = []

    def Process(self, *args: Any, **kwargs: Any) -> BaseProcess:  # type: ignore[override]  # a class attribute there
        self.started.append(contexts.SpawnProcess(*args, **kwargs))
        return self.started[-1]


if sys.platform != "win32":
    class _RecordingForkServer(contexts.ForkServerContext):
        """The fork server's context, keeping the processes it starts."""

        def __init__(self) -> None:
            self.started: list[BaseProcess] = []

        def Process(self, *args: Any, **kwargs: Any) -> BaseProcess:  # type: ignore[override]  # as above
            self.started.append(contexts.ForkServerProcess(*args, **kwargs))
            return self.started[-1]


def _lost(processes: list[BaseProcess]) -> str:
    """One line on a worker that ended without answering, from the exit codes of the pool's processes."""
    codes = [process.exitcode for process in processes if process.exitcode not in (None, 0)]
    codes.sort(key=lambda code: code == -signal.SIGTERM)  # the pool terminates the others once one is lost
    code = codes[0] if codes else None
    if code is None:
        how = "ended"
    elif code == -signal.SIGKILL:
        how = "was killed by SIGKILL (as the kernel kills the largest process when memory runs out)"
    elif code < 0:
        how = f"was killed by {signal.Signals(-code).name}"
    else:
        how = f"exited with code {code} (what it wrote is above)"
    return f"--executor processes: a worker process {how} before its job finished; rerun with --executor local"


# In a worker: the pickled (function, shared) until its first job, then the two.
_WORKER: dict[str, Any] = {}


def _initialise(payload: bytes, environment: dict[str, str]) -> None:
    # A fork server started earlier kept the environment of then (multiprocessing sends the working directory
    # and sys.path with every worker); a job sees this run's, as a spawned worker would.
    os.environ.clear()
    os.environ.update(environment)
    import torch

    torch.set_num_threads(1)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole process group: the parent stops the pool
    _WORKER["payload"] = payload


def _apply(job: Any) -> Any:
    if "function" not in _WORKER:
        from threadpoolctl import threadpool_limits  # scikit-learn's dependency

        _WORKER["function"], _WORKER["shared"] = pickle.loads(_WORKER["payload"])
        del _WORKER["payload"]
        # The BLAS and OpenMP pools loaded by now (numpy's, torch's, scikit-learn's) take one thread too:
        # without OMP_NUM_THREADS they would take every core, and the workers would spend ~15% more.
        threadpool_limits(1)
    return _WORKER["function"](job, _WORKER["shared"])
