"""Principal axes (PCA) and oriented bounding box of a point set.

Signs of eigenvectors are arbitrary, so they are fixed here by rules a
consumer can rely on: the minor axis faces the viewer (the camera), the
major axis has a non-negative component along a fixed reference direction,
and the frame is right-handed (major x middle = minor).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Any fixed direction works to pick the major axis' sign deterministically;
# one with no zero component is rarely perpendicular to a real axis.
_SIGN_REFERENCE = np.array([1.0, 0.6, 0.3]) / np.linalg.norm([1.0, 0.6, 0.3])


@dataclass(frozen=True)
class PrincipalAxes:
    """Second moments of a point set about a centre, by decreasing variance (no sign convention)."""

    centre: np.ndarray  # (d,)
    variances: np.ndarray  # (d,) descending
    axes: np.ndarray  # (d, d) columns, in the order of ``variances``

    @property
    def major(self) -> np.ndarray:
        return self.axes[:, 0]

    @property
    def minor(self) -> np.ndarray:
        """The direction of least spread (a plane's normal)."""
        return self.axes[:, -1]


def principal_axes(points: np.ndarray, centre: np.ndarray | None = None) -> PrincipalAxes:
    """PCA of (N, d) points about ``centre`` (their mean by default): the one PCA of the package.

    The grasp regions, the table plane, the objects' horizontal axes and the
    part extents all use this, so one rule decides what "the main axis" of a
    point set is. A ``centre`` other than the points' mean is for a subsample
    of a larger set whose mean is known. Eigenvector signs are whatever the
    solver gives; ``principal_frame`` fixes them where a consumer relies on them.
    """
    # Coordinates as contiguous rows: reductions over (N, d) columns are several times slower.
    coordinates = np.array(np.asarray(points).T, dtype=np.float64, order="C")
    count = coordinates.shape[1]
    if centre is None:
        centre = coordinates.mean(axis=1)
    coordinates -= np.asarray(centre, dtype=np.float64)[:, None]
    # einsum's own loops, not BLAS: a threaded BLAS call on a (d, N) operand
    # costs more in thread wake-ups (and spinning, on a busy machine) than
    # the arithmetic, which is tiny.
    covariance = np.einsum("ik,jk->ij", coordinates, coordinates) / count
    variances, vectors = np.linalg.eigh(covariance)  # ascending
    return PrincipalAxes(np.asarray(centre, dtype=np.float64), variances[::-1], vectors[:, ::-1])


@dataclass(frozen=True)
class PrincipalFrame:
    centroid: np.ndarray  # (3,)
    axes: np.ndarray  # (3, 3) columns: major, middle, minor
    variances: np.ndarray  # (3,) descending
    minimum: np.ndarray  # (3,) smallest coordinate along each axis, relative to the centroid
    maximum: np.ndarray  # (3,) largest coordinate along each axis

    @property
    def extents(self) -> np.ndarray:
        return self.maximum - self.minimum

    @property
    def box_center(self) -> np.ndarray:
        """Centre of the oriented bounding box (differs from the centroid for skewed shapes)."""
        return self.centroid + self.axes @ ((self.minimum + self.maximum) / 2)


def principal_frame(points: np.ndarray, viewer: np.ndarray | None = None, trim_fraction: float = 0.0) -> PrincipalFrame:
    """PCA frame of (N, 3) points; ``viewer`` (a position) orients the minor axis toward it.

    The box bounds are the ``trim_fraction`` and ``1 - trim_fraction``
    quantiles along each axis rather than the extremes, so a handful of
    stray points cannot inflate a grasp width.
    """
    points = np.asarray(points)
    if points.ndim != 2 or points.shape[1] != 3 or points.shape[0] == 0:
        raise ValueError(f"expected (N, 3) points with N > 0, got {points.shape}")
    pca = principal_axes(points)
    centroid, variances = pca.centre, pca.variances
    coordinates = np.array(points.T, dtype=np.float64, order="C")
    coordinates -= centroid[:, None]
    major, minor = pca.major, pca.minor
    if viewer is not None and np.dot(minor, np.asarray(viewer, dtype=np.float64) - centroid) < 0:
        minor = -minor
    if np.dot(major, _SIGN_REFERENCE) < 0:
        major = -major
    # minor x major, written out: np.cross costs more than the rest of this block.
    middle = np.array(
        [
            minor[1] * major[2] - minor[2] * major[1],
            minor[2] * major[0] - minor[0] * major[2],
            minor[0] * major[1] - minor[1] * major[0],
        ]
    )
    axes = np.column_stack([major, middle, minor])
    along = np.einsum("ji,jk->ik", axes, coordinates)  # (3, N): along major, middle, minor
    low, high = _trimmed_bounds(along, trim_fraction)
    return PrincipalFrame(centroid, axes, np.maximum(variances, 0.0), low, high)


def _trimmed_bounds(along: np.ndarray, trim_fraction: float, max_samples: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    """Per-row ``trim_fraction`` and ``1 - trim_fraction`` quantiles (min and max when nothing is trimmed).

    Large sets are subsampled with a fixed stride before the selection: the
    bounds are a robustness measure, and an exact order statistic over tens
    of thousands of points would cost more than the rest of the PCA.
    """
    count = along.shape[1]
    if int(trim_fraction * count) == 0:
        return along.min(axis=1), along.max(axis=1)
    sample = along[:, :: max(1, count // max_samples)]
    size = sample.shape[1]
    trimmed = min(max(int(trim_fraction * size), 1), (size - 1) // 2)
    ordered = np.partition(sample, [trimmed, size - 1 - trimmed], axis=1)
    return ordered[:, trimmed], ordered[:, size - 1 - trimmed]
