"""Back-projection and the supporting table plane.

Objects are found relative to the table: the plane is fitted by vectorised
RANSAC (all hypotheses scored in one matrix product), refined by least
squares on its inliers, and oriented so its normal points at the camera side
(up). Heights above that plane and a table-aligned frame (z up) are what the
segmentation and the part decomposition work in.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from partseg_ros.geometry.camera import CameraModel, as_camera_model
from partseg_ros.geometry.principal_axes import principal_axes
from partseg_ros.types import CameraIntrinsics


def backproject(depth_m: np.ndarray, camera: CameraModel | CameraIntrinsics) -> np.ndarray:
    """HxWx3 points in the camera optical frame (NaN where depth is missing).

    Through the camera model, distortion included, so the table and the
    objects are found among the same 3D points the grasp regions are built from.
    """
    return as_camera_model(camera).backproject(depth_m)


@dataclass
class TablePlane:
    """n . p + d = 0 with n pointing up (towards the camera side); plus a table-aligned frame."""

    normal: np.ndarray  # (3,)
    offset: float
    inlier_fraction: float
    origin: np.ndarray  # a point on the plane (centroid of inliers)
    axes: np.ndarray  # 3x3 rows: table x, table y, up (camera frame)

    def height(self, points: np.ndarray) -> np.ndarray:
        """Signed height above the plane, metres."""
        return points @ self.normal + self.offset

    def to_table_frame(self, points: np.ndarray) -> np.ndarray:
        """(N, 3) camera points -> table frame (x, y on the table, z height)."""
        return (points - self.origin) @ self.axes.T


def _plane_frame(normal: np.ndarray, origin: np.ndarray) -> np.ndarray:
    # Table x follows the camera's x axis projected onto the table, so images and table frames agree roughly.
    x = np.array([1.0, 0.0, 0.0]) - normal * normal[0]
    if np.linalg.norm(x) < 1e-6:
        x = np.array([0.0, 0.0, 1.0]) - normal * normal[2]
    x /= np.linalg.norm(x)
    y = np.cross(normal, x)
    return np.stack([x, y, normal])


def _refined(candidates: np.ndarray, normal: np.ndarray, offset: float,
             inlier_threshold_m: float) -> tuple[np.ndarray, float]:
    """Least-squares refinement on all inliers (two rounds, the second with a tighter band)."""
    for threshold in (inlier_threshold_m * 1.5, inlier_threshold_m):
        inliers = candidates[np.abs(candidates @ normal + offset) < threshold]
        if len(inliers) < 10:
            break
        centre = inliers.mean(axis=0)
        refined = principal_axes(inliers[:: max(1, len(inliers) // 20000)], centre=centre).minor
        if refined @ normal < 0:
            refined = -refined
        normal, offset = refined, -float(refined @ centre)
    return normal, offset


def _support_surface_above(candidates: np.ndarray, heights: np.ndarray, normal: np.ndarray, offset: float,
                           band_m: float, min_rise_m: float, min_share: float, min_extent_m: float) -> Optional[float]:
    """Height of the highest table-sized layer of points parallel to the plane and above it, if any (``heights``:
    the candidates' heights above the plane)."""
    with np.errstate(invalid="ignore"):
        above = heights > min_rise_m
    needed = min_share * len(candidates)
    if above.sum() < needed:
        return None
    edges = np.arange(min_rise_m, float(heights[above].max()) + 2 * band_m, band_m)
    counts = np.histogram(heights[above], edges)[0]
    layer_counts = np.convolve(counts, np.ones(3), mode="same")  # a layer's points fall in about three bins
    axes = _plane_frame(normal, -normal * offset)[:2]
    for index in np.flatnonzero(layer_counts >= needed)[::-1]:
        rise = float(edges[index] + band_m / 2.0)
        layer = candidates[np.abs(heights - rise) < 1.5 * band_m]
        in_plane = layer[:: max(1, len(layer) // 20000)] @ axes.T
        spread = np.percentile(in_plane, 95, axis=0) - np.percentile(in_plane, 5, axis=0)
        if len(layer) >= needed and spread.max() >= min_extent_m:
            return rise
    return None


def _floating_objects_base(heights: np.ndarray, min_rise_m: float, min_share: float, max_gap_share: float,
                           base_percentile: float, clearance_m: float, min_relief_m: float,
                           gap_from_m: float, min_base_m: float) -> Optional[float]:
    """Height of the underside of points that float clear of the dominant plane, if any: objects on a table whose
    own top returned no depth (black or glossy under active stereo), so the floor below is all the plane fitting
    sees. They float when at least ``min_share`` of the points rise ``min_rise_m`` above the plane and nearly
    nothing (``max_gap_share`` of them) lies between the plane and their underside; a tall object standing on
    the plane fills that gap, so it never counts. Objects have relief (``min_relief_m`` between the 5th and 95th
    percentile of their heights); a flat floating layer is a box top or a shelf, left to the support search.
    The gap is looked at from ``gap_from_m`` up: stereo depth error grows with the square of range, and a floor
    2-3 m away scatters by centimetres (a tall object standing on it still fills the rest of the gap). Seen from
    above, a bottle standing on a table shows its top and little of its sides, so it too would float; but its
    points' underside is near ``min_rise_m``, while a table stands at least ``min_base_m`` above the floor.
    ``heights``: every point's height above the plane."""
    with np.errstate(invalid="ignore"):
        elevated = heights > min_rise_m
    if elevated.sum() < max(min_share * len(heights), 1):
        return None
    lifted = heights[elevated]
    if float(np.percentile(lifted, 95) - np.percentile(lifted, 5)) < min_relief_m:
        return None
    base = float(np.percentile(lifted, base_percentile))
    if base < min_base_m:
        return None
    in_gap = (heights > gap_from_m) & (heights < base - clearance_m)
    if in_gap.sum() > max_gap_share * elevated.sum():
        return None
    return base


def _plane_under_objects(points: np.ndarray, toward_camera: np.ndarray, max_tilt_deg: float, band_m: float,
                         clearance_m: float) -> Optional[tuple[np.ndarray, float]]:
    """(normal, offset) of the plane the points stand on when no surface under them returned depth, or None.

    Every facet of the points' convex hull whose outer side faces away from the camera is a plane with all the
    points on the camera's side: the table is one of them. It is the one most points lie close to (the objects'
    undersides, a lying tool's length, a cup's floor), within ``band_m``. It is lowered by ``clearance_m`` so
    that every point on it counts as an object: with no table in the depth image, every return is one.
    """
    from scipy.spatial import ConvexHull, QhullError

    try:
        hull = ConvexHull(points)
    except (QhullError, ValueError):  # too few points, or all on one plane or line
        return None
    up, up_offset = -hull.equations[:, :3], -hull.equations[:, 3]  # points: up . p + up_offset >= 0
    facing = up @ toward_camera > np.cos(np.deg2rad(max_tilt_deg))
    if not facing.any():
        return None
    up, up_offset = up[facing], up_offset[facing]
    support = ((points @ up.T + up_offset) < band_m).sum(axis=0)
    best = int(np.argmax(support))
    return up[best], float(up_offset[best]) + clearance_m


def fit_table_plane(
    points: np.ndarray,
    valid: Optional[np.ndarray] = None,
    inlier_threshold_m: float = 0.006,
    hypotheses: int = 128,
    sample_size: int = 4000,
    max_tilt_deg: float = 75.0,
    rng: Optional[np.random.Generator] = None,
    support_min_rise_m: float = 0.15,
    support_min_share: float = 0.08,
    support_min_extent_m: float = 0.4,
    floating_min_share: float = 0.01,
    floating_max_gap_share: float = 0.05,
    floating_base_percentile: float = 1.0,
    floating_clearance_m: float = 0.024,
    floating_min_relief_m: float = 0.02,
    floating_gap_from_m: float = 0.08,
    floating_min_base_m: float = 0.35,
    bare_max_valid_share: float = 0.3,
    bare_max_image_share: float = 0.15,
    bare_band_m: float = 0.01,
    bare_clearance_m: float = 0.012,
) -> Optional[TablePlane]:
    """The table: the dominant plane facing the camera, or a table-sized parallel surface above it; None if there
    are too few points.

    ``max_tilt_deg`` rejects walls: the table normal must not be more than that
    from the direction back to the camera, as a camera looking at a table
    sees its top, never edge-on. A wide camera (a Kinect at 1280x720) often
    sees more floor than table; the floor then wins RANSAC and the whole
    table stands "above" it. So the highest surface parallel to the dominant
    plane at least ``support_min_rise_m`` above it, holding at least
    ``support_min_share`` of the points and spanning ``support_min_extent_m``
    (bigger than a box top), is taken instead. When the table itself returned no
    depth, the objects on it float above the floor with an empty gap below them
    (``floating_*``, :func:`_floating_objects_base`): the table is then the plane
    parallel to the floor through their undersides. When neither table nor floor returned depth (a black table
    under time of flight, seen from above), under ``bare_max_valid_share`` of the image has depth and the
    dominant plane, an object's face or a few lying tools' tops, holds under ``bare_max_image_share`` of it: the
    table is then the plane under all the points (``bare_*``, :func:`_plane_under_objects`).
    """
    rng = rng or np.random.default_rng(0)
    flat = points.reshape(-1, 3)
    mask = np.isfinite(flat[:, 2]) if valid is None else (valid.reshape(-1) & np.isfinite(flat[:, 2]))
    candidates = flat[mask]
    if len(candidates) < 50:
        return None
    sample = candidates[rng.choice(len(candidates), size=min(sample_size, len(candidates)), replace=False)]

    # All hypotheses at once: (H, 3) triples -> normals -> inlier counts on the sample.
    idx = rng.integers(0, len(sample), size=(hypotheses, 3))
    a, b, c = sample[idx[:, 0]], sample[idx[:, 1]], sample[idx[:, 2]]
    normals = np.cross(b - a, c - a)
    norms = np.linalg.norm(normals, axis=1)
    good = norms > 1e-9
    normals = normals[good] / norms[good, None]
    a = a[good]
    centroid_dir = -sample.mean(axis=0)
    centroid_dir /= np.linalg.norm(centroid_dir)
    flip = normals @ centroid_dir < 0  # orient towards the camera (origin)
    normals[flip] *= -1
    tilt_ok = normals @ centroid_dir > np.cos(np.deg2rad(max_tilt_deg))
    if not tilt_ok.any():
        return None
    normals, a = normals[tilt_ok], a[tilt_ok]
    offsets = -np.sum(normals * a, axis=1)
    distances = np.abs(sample @ normals.T + offsets[None, :])
    counts = (distances < inlier_threshold_m).sum(axis=0)
    best = int(np.argmax(counts))
    normal, offset = _refined(candidates, normals[best], float(offsets[best]), inlier_threshold_m)
    heights = candidates @ normal + offset  # one pass for both searches of a surface above the dominant plane
    rise = _support_surface_above(candidates, heights, normal, offset, inlier_threshold_m, support_min_rise_m,
                                  support_min_share, support_min_extent_m)
    if rise is not None:
        normal, offset = _refined(candidates, normal, offset - rise, inlier_threshold_m)
    else:
        base = _floating_objects_base(heights, support_min_rise_m, floating_min_share, floating_max_gap_share,
                                      floating_base_percentile, floating_clearance_m, floating_min_relief_m,
                                      floating_gap_from_m, floating_min_base_m)
        if base is not None:  # no table points to refine on: parallel to the floor
            offset -= base
        elif (len(candidates) < bare_max_valid_share * len(flat)
              and (np.abs(heights) < inlier_threshold_m).sum() < bare_max_image_share * len(flat)):
            under = _plane_under_objects(sample, centroid_dir, max_tilt_deg, bare_band_m, bare_clearance_m)
            if under is not None:
                normal, offset = under
    inlier_mask = np.abs(candidates @ normal + offset) < inlier_threshold_m
    origin = candidates[inlier_mask].mean(axis=0) if inlier_mask.any() else -normal * offset
    return TablePlane(
        normal=normal.astype(np.float64),
        offset=float(offset),
        inlier_fraction=float(inlier_mask.mean()),
        origin=origin.astype(np.float64),
        axes=_plane_frame(normal.astype(np.float64), origin),
    )
