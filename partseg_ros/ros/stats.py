"""Counters and rolling rates/latencies behind the node's diagnostics.

Thread-safe (subscription callbacks, the worker and the diagnostics timer all
touch it) and free of rclpy, so it is unit-testable on its own.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from typing import Callable, Optional

import numpy as np


class RollingRate:
    """Events per second over the last ``window_s`` seconds."""

    def __init__(self, window_s: float = 5.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.window_s = window_s
        self._clock = clock
        self._times: deque[float] = deque()

    def tick(self) -> None:
        now = self._clock()
        self._times.append(now)
        self._trim(now)

    def rate(self) -> float:
        now = self._clock()
        self._trim(now)
        if len(self._times) < 2:
            return 0.0
        return (len(self._times) - 1) / max(self._times[-1] - self._times[0], 1e-9)

    def _trim(self, now: float) -> None:
        while self._times and now - self._times[0] > self.window_s:
            self._times.popleft()


class NodeStats:
    """What the node reports: input/processing rates, latency percentiles, drops, rejections."""

    def __init__(self, latency_window: int = 200, rate_window_s: float = 5.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._lock = threading.Lock()
        self.input_rate = RollingRate(rate_window_s, clock)
        self.processed_rate = RollingRate(rate_window_s, clock)
        self._latency_ms: deque[float] = deque(maxlen=latency_window)
        self._inference_ms: deque[float] = deque(maxlen=latency_window)
        self._overhead_ms: deque[float] = deque(maxlen=latency_window)
        self._transport_ms: deque[float] = deque(maxlen=latency_window)
        self._stages_ms: dict[str, deque[float]] = {}
        self._window = latency_window
        self.rejections: Counter[str] = Counter()
        self.drops: Counter[str] = Counter()
        self.events: Counter[str] = Counter()  # things worth counting that are neither drops nor rejections
        self.frames_in = 0
        self.frames_processed = 0

    def frame_received(self, transport_ms: Optional[float] = None) -> None:
        """One colour frame arrived; ``transport_ms`` is arrival minus header stamp."""
        with self._lock:
            self.frames_in += 1
            self.input_rate.tick()
            if transport_ms is not None:
                self._transport_ms.append(float(transport_ms))

    def frame_processed(self, latency_ms: float, inference_ms: float, overhead_ms: float = float("nan"),
                        stages_ms: Optional[dict[str, float]] = None) -> None:
        """Results published: stamp-to-publish latency, model time, the node's own time and its parts."""
        with self._lock:
            for name, value in (stages_ms or {}).items():
                self._stages_ms.setdefault(name, deque(maxlen=self._window)).append(float(value))
            self.frames_processed += 1
            self.processed_rate.tick()
            self._latency_ms.append(float(latency_ms))
            self._inference_ms.append(float(inference_ms))
            self._overhead_ms.append(float(overhead_ms))

    def reject(self, reason: str) -> int:
        """Count one rejected input; returns the new count for that reason."""
        with self._lock:
            self.rejections[reason] += 1
            return self.rejections[reason]

    def event(self, name: str) -> int:
        """Count one event (e.g. a synchroniser reset); returns the new count."""
        with self._lock:
            self.events[name] += 1
            return self.events[name]

    def drop(self, reason: str, count: int = 1) -> None:
        with self._lock:
            self.drops[reason] += count

    def set_drops(self, reason: str, total: int) -> None:
        """Mirror a counter kept elsewhere (the synchroniser's)."""
        with self._lock:
            self.drops[reason] = int(total)

    def snapshot(self) -> dict[str, float]:
        """Flat name -> number map for diagnostics and tests."""
        with self._lock:
            latency = np.asarray(self._latency_ms, dtype=np.float64)
            inference = np.asarray(self._inference_ms, dtype=np.float64)
            overhead = np.asarray(self._overhead_ms, dtype=np.float64)
            transport = np.asarray(self._transport_ms, dtype=np.float64)
            out: dict[str, float] = {
                "frames_in": self.frames_in,
                "frames_processed": self.frames_processed,
                "input_hz": round(self.input_rate.rate(), 3),
                "processed_hz": round(self.processed_rate.rate(), 3),
                "latency_p50_ms": _percentile(latency, 50),
                "latency_p95_ms": _percentile(latency, 95),
                "inference_p50_ms": _percentile(inference, 50),
                "inference_p95_ms": _percentile(inference, 95),
                "overhead_p50_ms": _percentile(overhead, 50),
                "overhead_p95_ms": _percentile(overhead, 95),
                "transport_p50_ms": _percentile(transport, 50),
                "transport_p95_ms": _percentile(transport, 95),
                "rejected_total": sum(self.rejections.values()),
                "dropped_total": sum(v for k, v in self.drops.items() if ":" not in k),
            }
            out.update({f"stage.{name}_p50_ms": _percentile(np.asarray(values, dtype=np.float64), 50)
                        for name, values in sorted(self._stages_ms.items())})
            out.update({f"rejected.{k}": v for k, v in sorted(self.rejections.items())})
            out.update({f"dropped.{k}": v for k, v in sorted(self.drops.items())})
            out.update({f"events.{k}": v for k, v in sorted(self.events.items())})
            return out


def _percentile(values: np.ndarray, q: float) -> float:
    values = values[np.isfinite(values)]
    return round(float(np.percentile(values, q)), 3) if values.size else float("nan")


def limited_log(count: int) -> bool:
    """Log the 1st..5th occurrence of a problem, then every 100th: clear but not flooding."""
    return count <= 5 or count % 100 == 0


def elapsed_ms(start: float, end: Optional[float] = None) -> float:
    return ((time.perf_counter() if end is None else end) - start) * 1e3
