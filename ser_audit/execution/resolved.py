"""What a worker process resolved from a job's references (a memory-mapped store, a loaded model),
kept for the jobs it runs next.

A worker process runs one job at a time (Ray's tasks, the local executor's loop), so a cache
needs no lock. The process that planned the jobs can ``lend`` the objects it already holds for
the length of a run: jobs the local executor runs in that process then use them, and read or
load nothing again.
"""

from __future__ import annotations

import contextlib
from collections import OrderedDict
from typing import Callable, Generic, Hashable, Iterator, Mapping, TypeVar

Key = TypeVar("Key", bound=Hashable)
Value = TypeVar("Value")


class ProcessCache(Generic[Key, Value]):
    """A least-recently-used map of at most ``size`` entries, plus what is lent for a while.

    >>> cache: ProcessCache[str, int] = ProcessCache(size=1)
    >>> cache.get("a", lambda: 1), cache.get("a", lambda: 2), cache.get("b", lambda: 3), cache.get("a", lambda: 4)
    (1, 1, 3, 4)
    >>> with cache.lend({"c": 5}):
    ...     cache.get("c", lambda: 6)
    5
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self._entries: OrderedDict[Key, Value] = OrderedDict()
        self._lent: dict[Key, Value] = {}

    def get(self, key: Key, load: Callable[[], Value]) -> Value:
        """The value under ``key``: lent, kept, or loaded now (and kept, the least recently used dropped)."""
        if key in self._lent:
            return self._lent[key]
        if key in self._entries:
            self._entries.move_to_end(key)
            return self._entries[key]
        value = load()
        self._entries[key] = value
        while len(self._entries) > self.size:
            self._entries.popitem(last=False)
        return value

    @contextlib.contextmanager
    def lend(self, values: Mapping[Key, Value]) -> Iterator[None]:
        """Within the block, ``values`` answer their keys in this process (never evicted, then forgotten)."""
        self._lent.update(values)
        try:
            yield
        finally:
            for key in values:
                self._lent.pop(key, None)

    def clear(self) -> None:
        self._entries.clear()
