"""One instance per process of what is expensive to build (a reasoner, an embedder and their caches).

Several backends in one process should share the weights and the caches, and
two threads asking first at the same moment must not each load their own: the
instance is built under a lock, once, and kept. A build that raises keeps
nothing, so the next call tries again.
"""

from __future__ import annotations

import functools
import threading
from typing import Callable, TypeVar

T = TypeVar("T")


def process_wide(build: Callable[[], T]) -> Callable[[], T]:
    """Wrap a no-argument factory so that every call returns the one instance its first successful call built."""
    lock = threading.Lock()
    built: list[T] = []

    @functools.wraps(build)
    def instance() -> T:
        with lock:
            if not built:
                built.append(build())
            return built[0]

    return instance
