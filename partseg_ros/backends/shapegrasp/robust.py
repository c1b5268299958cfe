"""Nearest-rank percentiles by partial sorting.

np.percentile interpolates and validates on every call, which dominated the
per-frame time when called a few hundred times on small arrays; robust
extents only need the nearest rank.
"""

from __future__ import annotations

import numpy as np


def percentile(values: np.ndarray, q: float | list[float], axis: int | None = None) -> np.ndarray | float:
    """Nearest-rank q-th percentile(s) (0..100) of values, along axis (flattened when None)."""
    x = np.asarray(values)
    if axis is None:
        x = x.ravel()
        axis = 0
    n = x.shape[axis]
    if n == 0:
        raise ValueError("percentile of an empty array")
    qs = np.atleast_1d(np.asarray(q, dtype=np.float64))
    ranks = np.clip(np.floor(qs / 100.0 * (n - 1) + 0.5).astype(int), 0, n - 1)
    part = np.partition(x, np.unique(ranks), axis=axis)
    out = np.take(part, ranks, axis=axis)
    if np.ndim(q) == 0:
        out = np.take(out, 0, axis=axis)
        return float(out) if np.ndim(out) == 0 else out
    return out
