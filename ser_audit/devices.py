"""Where torch runs, and on how many threads.

``--device`` is ``auto`` (CUDA when torch sees it, else the CPU), ``cpu``, ``cuda`` or ``cuda:N``,
checked in one line before any work. The thread count follows the cores this process may
use (its CPU affinity, and a cgroup quota where a container sets one), not the machine's:
torch's default of every core on the host oversubscribes a container, and two threads fighting
other work on a 2-core machine were measured 10-40 times slower than one. ``OMP_NUM_THREADS``,
where the user sets it, wins.

    >>> parse_device("CUDA:1")
    'cuda:1'
"""

from __future__ import annotations

import os
import re
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator

from ser_audit.errors import ConfigError

if TYPE_CHECKING:
    from torch import nn

_DEVICE = re.compile(r"^(auto|cpu|cuda)(?::(\d+))?$")


def parse_device(text: str) -> str:
    """``text`` normalised (``auto``, ``cpu``, ``cuda``, ``cuda:N``), or ConfigError; imports no torch."""
    match = _DEVICE.match(text.strip().lower())
    if not match or (match.group(2) is not None and match.group(1) != "cuda"):
        raise ConfigError(f"--device {text!r}: use auto, cpu, cuda or cuda:N")
    return text.strip().lower()


def resolve_device(text: str) -> str:
    """The device to run on: ``auto`` resolved, a CUDA device checked to exist (ConfigError in one line if not)."""
    import torch

    device = parse_device(text)
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(f"--device {device}: torch sees no CUDA device on this machine; use --device cpu or auto")
        index = int(device.partition(":")[2] or 0)
        if index >= torch.cuda.device_count():
            raise ConfigError(f"--device {device}: this machine has {torch.cuda.device_count()} CUDA device(s), "
                              f"numbered from 0")
    return device


@contextmanager
def moved(module: "nn.Module", device: str) -> Iterator["nn.Module"]:
    """``module`` on ``device`` for the ``with`` block, then back where its first parameter or buffer was
    (in place, as ``nn.Module.to`` moves; a no-op on the device it is already on)."""
    home = next((tensor.device for tensor in (*module.parameters(), *module.buffers())), None)
    module.to(device)
    try:
        yield module
    finally:
        if home is not None:
            module.to(home)


def usable_cores() -> int:
    """Cores this process may use: its affinity, capped by a cgroup v2 CPU quota."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            cores = min(cores, max(1, int(int(quota) // int(period))))
    except (OSError, ValueError):
        pass
    return max(1, cores)


def configure_threads() -> int:
    """Set torch's intra-op threads to the usable cores unless ``OMP_NUM_THREADS`` says otherwise; returns them."""
    import torch

    if os.environ.get("OMP_NUM_THREADS"):
        return torch.get_num_threads()
    threads = usable_cores()
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    return threads


class CoresLeft:
    """Inside the block, torch's and the BLAS libraries' threads are fewer by the cores ``taken()`` says other
    processes of this run are working on (at least one thread is left): a thread that waits for a busy core
    stalls the others of its pool. ``check``, called between steps on this thread, gives the threads back as
    soon as ``taken()`` says 0; the end of the block gives them back in any case."""

    def __init__(self, taken: Callable[[], int]) -> None:
        self.taken = taken
        self._given_back: Callable[[], None] | None = None

    def __enter__(self) -> "CoresLeft":
        taken = self.taken()
        if taken > 0:
            import torch
            from threadpoolctl import threadpool_limits  # scikit-learn's dependency

            threads = torch.get_num_threads()
            left = max(1, threads - taken)
            torch.set_num_threads(left)
            limits = threadpool_limits(left)

            def give_back() -> None:
                limits.restore_original_limits()
                torch.set_num_threads(threads)

            self._given_back = give_back
        return self

    def check(self) -> None:
        if self._given_back is not None and self.taken() == 0:
            self._give_back()

    def _give_back(self) -> None:
        give_back, self._given_back = self._given_back, None
        if give_back is not None:
            give_back()

    def __exit__(self, *_: object) -> None:
        self._give_back()
