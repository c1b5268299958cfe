"""Part mask + depth + intrinsics -> a 3D grasp region for a grasp planner.

Conventions
-----------
* Points are first built in the camera optical frame of the depth image
  (REP-103: x right, y down, z forward, metres). With ``camera_to_target``
  (a :class:`RigidTransform` whose child is the optical frame and whose
  parent is, say, ``base_link``, REP-105 naming) every output is expressed
  in the parent frame instead; ``GraspRegion.frame`` says which. The ROS node
  looks the transform up with tf2 when available, or builds a static one
  from parameters; this module only does the math.
* A depth camera sees only the surface facing it. The centroid, axes and box
  are those of the *visible surface* of the part, not of the solid: the
  centroid of a cylinder seen from the side lies on its near skin, not on
  its axis. Tests measure against the same quantity computed from ray-cast
  ground truth.
* ``axes`` columns are (major, middle, minor), right-handed; the minor axis
  faces the camera. ``orientation_xyzw`` is that rotation as a quaternion, so
  a Pose built from centroid + orientation has x along the part's length.
* ``approach`` is the mean surface normal of the visible part, pointing away
  from the surface toward the camera side: the gripper moves along
  ``-approach`` to reach the part. Parts too thin for normals (one or two
  pixels wide) get the line of sight toward the camera instead.
* ``grasp_width`` is measured across the *closing axis*: the non-major
  principal axis most perpendicular to the approach. A parallel gripper
  coming along the approach closes its fingers perpendicular to it. For the
  visible surface of a thin part (stem, handle) the PCA minor axis is the
  viewing direction and spans only half the thickness (a cylinder's visible
  skin is r deep, 2r wide), so the closing axis is usually the *middle* axis
  and the width is the part's full visible thickness across it.
* Extents (``extents``, ``grasp_width``) span the points between the 0.2 %
  and 99.8 % quantiles along each axis (``extent_trim_fraction``), which
  keeps a few stray returns from inflating them. Pixel centres lie inside
  the silhouette, so the span of the points is short by between nothing
  (edges crossing many pixel rows) and one pixel footprint (an edge along a
  pixel row or column; a footprint is depth / focal length, about 1 mm at
  0.6 m). Half a footprint, scaled by how much the axis lies in the image
  plane, is added back, so the error stays within half a footprint. What
  the camera cannot see it cannot measure: where the object hides part of
  the solid (a mug body in front of its handle), the width reads low.

* ``grasp_poses`` (grasp_poses.py) are gripper poses ON the part's surface,
  best first: the centroid of a ring handle is in the air, a pose is a
  measured point of the part. They are computed in the optical frame and
  moved into the target frame with the region.

Failures never raise for data problems: a region with a non-OK ``status``
and a ``status_reason`` comes back instead (values match GraspRegion.msg).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum
from typing import Iterable, Optional

import numpy as np

from partseg_ros.geometry.camera import CameraModel, InvalidIntrinsicsError, as_camera_model
from partseg_ros.geometry.filters import (
    NeighbourLinks,
    erode_mask,
    readmit_border,
    reject_depth_discontinuities,
    reject_depth_outliers,
)
from partseg_ros.geometry.grasp_poses import GraspPose, GraspPoseParams, compute_grasp_poses
from partseg_ros.geometry.normals import organised_normals
from partseg_ros.geometry.principal_axes import principal_frame
from partseg_ros.geometry.transforms import RigidTransform, matrix_to_quaternion
from partseg_ros.types import CameraIntrinsics

CAMERA_FRAME = "camera"


class GraspRegionStatus(IntEnum):
    """Mirrors the STATUS_* constants of msg/GraspRegion.msg."""

    OK = 0
    NO_DEPTH = 1
    TOO_FEW_POINTS = 2
    EMPTY_MASK = 3
    BAD_INTRINSICS = 4


@dataclass(frozen=True)
class GraspRegionConfig:
    """Filter and scoring parameters; defaults suit a RealSense/Kinect-class sensor at 0.3-1.5 m."""

    erosion_px: int = 2  # border band treated as suspect (flying pixels, mask bleed)
    discontinuity_abs_m: float = 0.005  # neighbour depth step allowed on one surface ...
    discontinuity_rel: float = 0.01  # ... plus this fraction of the depth
    outlier_gap_m: float = 0.02  # an empty depth interval this long separates the part from strays
    outlier_sparse_fraction: float = 0.002  # depth bins with fewer points than this count as empty
    min_points: int = 30  # fewer surviving points -> TOO_FEW_POINTS
    extent_trim_fraction: float = 0.002  # box bounds are these quantiles, not the extreme points
    normal_step_px: int = 2  # baseline of the finite differences for normals
    max_normal_samples: int = 2048  # normals are estimated on a strided grid above this
    full_quality_points: int = 500  # point count at which the count term of quality saturates
    with_colors: bool = True
    # Grasp poses on the part (see grasp_poses.py); node parameters grasp.<name>.
    grasp_poses_max: int = 3  # poses per region, best first; 0 turns them off
    pregrasp_standoff_m: float = 0.10  # pre-grasp position this far back along the approach
    grasp_finger_width_m: float = 0.02  # slab of the part one pose's fingers cover, along the part
    grasp_pose_spacing_m: float = 0.03  # distance between candidate poses along the part
    grasp_min_gap_m: float = 0.01  # an empty gap this wide across the closing axis takes a finger
    grasp_max_width_m: float = 0.0  # widest opening of the gripper; wider poses get quality 0 (0: no limit)

    def pose_params(self) -> GraspPoseParams:
        return GraspPoseParams(
            max_poses=self.grasp_poses_max,
            pregrasp_standoff_m=self.pregrasp_standoff_m,
            finger_width_m=self.grasp_finger_width_m,
            spacing_m=self.grasp_pose_spacing_m,
            min_gap_m=self.grasp_min_gap_m,
            max_width_m=self.grasp_max_width_m,
        )

    def __post_init__(self) -> None:
        if self.erosion_px < 0 or self.normal_step_px < 1 or self.min_points < 3:
            raise ValueError("erosion_px >= 0, normal_step_px >= 1 and min_points >= 3 are required")
        if self.discontinuity_abs_m <= 0 or self.discontinuity_rel < 0:
            raise ValueError("discontinuity thresholds must be positive")
        if self.outlier_gap_m <= 0 or not 0 <= self.outlier_sparse_fraction < 1:
            raise ValueError("outlier_gap_m must be positive and outlier_sparse_fraction in [0, 1)")
        if not 0.0 <= self.extent_trim_fraction < 0.5:
            raise ValueError("extent_trim_fraction must be in [0, 0.5)")
        if self.full_quality_points < 1 or self.max_normal_samples < 16:
            raise ValueError("full_quality_points >= 1 and max_normal_samples >= 16 are required")
        self.pose_params()  # validates the grasp-pose fields


@dataclass
class GraspRegion:
    """One part lifted into 3D; geometric fields are zeros unless ``status`` is OK."""

    status: GraspRegionStatus
    status_reason: str
    frame: str  # CAMERA_FRAME (the depth image's optical frame) or the target frame's name
    points: np.ndarray = field(default_factory=lambda: np.zeros((0, 3), dtype=np.float32))
    colors: Optional[np.ndarray] = None  # (N, 3) uint8 RGB, aligned with points
    pixels: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), dtype=np.int32))  # (N, 2) row, col
    centroid: np.ndarray = field(default_factory=lambda: np.zeros(3))
    axes: np.ndarray = field(default_factory=lambda: np.eye(3))  # columns major, middle, minor
    orientation_xyzw: np.ndarray = field(default_factory=lambda: np.array([0.0, 0.0, 0.0, 1.0]))
    extents: np.ndarray = field(default_factory=lambda: np.zeros(3))  # along major, middle, minor
    approach: np.ndarray = field(default_factory=lambda: np.zeros(3))
    closing_axis: np.ndarray = field(default_factory=lambda: np.zeros(3))
    grasp_width: float = 0.0
    num_valid_points: int = 0
    depth_coverage: float = 0.0  # kept points / mask pixels
    quality: float = 0.0  # depth_coverage * min(1, num_valid_points / full_quality_points)
    grasp_poses: list[GraspPose] = field(default_factory=list)  # on the part's surface, best first

    @property
    def ok(self) -> bool:
        return self.status == GraspRegionStatus.OK


def compute_grasp_region(
    mask: np.ndarray,
    depth_m: np.ndarray,
    intrinsics: CameraModel | CameraIntrinsics,
    rgb: Optional[np.ndarray] = None,
    camera_to_target: Optional[RigidTransform] = None,
    config: GraspRegionConfig = GraspRegionConfig(),
) -> GraspRegion:
    """Grasp region of one part.

    ``mask`` (HxW bool) and ``depth_m`` (HxW float32 metres, NaN = no return;
    see :func:`partseg_ros.geometry.depth.depth_to_metres`) must be aligned
    pixel for pixel, and so must ``rgb`` if given. ``intrinsics`` describe
    that image: a :class:`CameraModel` (use one per CameraInfo: it caches the
    undistortion map) or plain pinhole :class:`CameraIntrinsics`.
    Shape mismatches between mask, depth and rgb are caller bugs and raise
    ValueError; bad data yields a non-OK status.
    """
    frame = (camera_to_target.parent_frame or "target") if camera_to_target is not None else CAMERA_FRAME
    mask = np.asarray(mask, dtype=bool)
    depth_m = np.asarray(depth_m)
    if mask.ndim != 2 or mask.shape != depth_m.shape:
        raise ValueError(f"mask {mask.shape} and depth {depth_m.shape} must be the same HxW")
    if not np.issubdtype(depth_m.dtype, np.floating):
        raise ValueError(f"depth must be float metres (got {depth_m.dtype}); convert with depth.depth_to_metres")
    if rgb is not None and np.shape(rgb)[:2] != mask.shape:
        raise ValueError(f"rgb {np.shape(rgb)} does not match mask {mask.shape}")
    try:
        camera = as_camera_model(intrinsics)
    except InvalidIntrinsicsError as error:
        return GraspRegion(GraspRegionStatus.BAD_INTRINSICS, str(error), frame)
    if camera.shape != mask.shape:
        return GraspRegion(
            GraspRegionStatus.BAD_INTRINSICS,
            f"camera describes {camera.shape[1]}x{camera.shape[0]} images, depth is {mask.shape[1]}x{mask.shape[0]}",
            frame,
        )

    rows_any = np.flatnonzero(mask.any(axis=1))
    if rows_any.size == 0:
        return GraspRegion(GraspRegionStatus.EMPTY_MASK, "the instance mask has no pixels", frame)
    cols_any = np.flatnonzero(mask.any(axis=0))
    window = (slice(int(rows_any[0]), int(rows_any[-1]) + 1), slice(int(cols_any[0]), int(cols_any[-1]) + 1))
    part = mask[window]
    depth = depth_m[window]
    window_width = part.shape[1]
    mask_pixels = int(np.count_nonzero(part))
    x_rays, y_rays = camera.normalized_rays(*window)
    valid = part & (depth > 0) & (depth < np.inf)  # NaN fails both comparisons
    if camera.is_distorted:
        valid &= np.isfinite(x_rays) & np.isfinite(y_rays)
    valid_count = int(np.count_nonzero(valid))
    if valid_count == 0:
        return GraspRegion(
            GraspRegionStatus.NO_DEPTH, f"none of the {mask_pixels} mask pixels has a valid depth", frame
        )

    kept = _surface_pixels(part, depth, valid, config)
    # Flat indices into the window: far cheaper than 2-D nonzero/fancy indexing.
    index = np.flatnonzero(kept)
    z = depth.ravel()[index].astype(np.float32, copy=False)
    inliers = reject_depth_outliers(z, config.outlier_gap_m, config.outlier_sparse_fraction)
    if not inliers.all():
        index, z = index[inliers], z[inliers]
        kept = np.zeros_like(kept)
        kept.ravel()[index] = True
    count = int(z.size)
    if count < config.min_points:
        return GraspRegion(
            GraspRegionStatus.TOO_FEW_POINTS,
            f"{count} points left after filtering ({valid_count} of {mask_pixels} mask pixels had depth); "
            f"at least {config.min_points} needed",
            frame,
            num_valid_points=count,
            depth_coverage=count / mask_pixels,
        )

    x_grid = np.broadcast_to(x_rays, part.shape)
    y_grid = np.broadcast_to(y_rays, part.shape)
    rows = index // window_width
    cols = index - rows * window_width
    points = np.empty((count, 3), dtype=np.float32)
    points[:, 0] = x_grid[rows, cols] * z
    points[:, 1] = y_grid[rows, cols] * z
    points[:, 2] = z
    pca = principal_frame(points, viewer=np.zeros(3), trim_fraction=config.extent_trim_fraction)
    approach = _mean_normal(kept, depth, x_grid, y_grid, count, config)
    if approach is None:  # too thin or sparse for finite differences: approach along the line of sight
        approach = -pca.centroid / np.linalg.norm(pca.centroid)

    # Pixel centres lie inside the silhouette: half a pixel footprint at each
    # end for a straight edge at one phase, nothing for an edge crossing many
    # rows at varying phase. Half the footprint in all halves the worst case.
    pixel_pitch = float(pca.centroid[2]) / (0.5 * (camera.intrinsics.fx + camera.intrinsics.fy))
    extents = pca.extents + 0.5 * pixel_pitch * np.linalg.norm(pca.axes[:2, :], axis=0)
    closing_index = 1 if abs(np.dot(pca.axes[:, 1], approach)) <= abs(np.dot(pca.axes[:, 2], approach)) else 2
    coverage = count / mask_pixels
    quality = float(coverage * min(1.0, count / config.full_quality_points))
    # In the optical frame, where the pixel footprint is known; moved with the region below.
    poses = compute_grasp_poses(
        points, pca.centroid, pca.axes, approach, pca.axes[:, closing_index], quality,
        pixel_pitch_m=pixel_pitch, params=config.pose_params(), trim_fraction=config.extent_trim_fraction,
    )

    centroid, axes, out_points = pca.centroid, pca.axes, points
    if camera_to_target is not None:
        out_points = camera_to_target.apply_to_points(points)
        centroid = camera_to_target.apply_to_points(centroid)
        axes = camera_to_target.rotation @ axes
        approach = camera_to_target.rotation @ approach
        poses = [pose.transformed(camera_to_target) for pose in poses]
    colors = None
    if rgb is not None and config.with_colors:
        colors = np.asarray(rgb)[window][rows, cols].astype(np.uint8, copy=False)
    return GraspRegion(
        status=GraspRegionStatus.OK,
        status_reason="",
        frame=frame,
        points=out_points,
        colors=colors,
        pixels=np.stack([rows + window[0].start, cols + window[1].start], axis=1).astype(np.int32),
        centroid=centroid,
        axes=axes,
        orientation_xyzw=matrix_to_quaternion(axes),
        extents=extents,
        approach=approach,
        closing_axis=axes[:, closing_index].copy(),
        grasp_width=float(extents[closing_index]),
        num_valid_points=count,
        depth_coverage=coverage,
        quality=quality,
        grasp_poses=poses,
    )


def compute_grasp_regions(
    masks: Iterable[np.ndarray],
    depth_m: np.ndarray,
    intrinsics: CameraModel | CameraIntrinsics,
    rgb: Optional[np.ndarray] = None,
    camera_to_target: Optional[RigidTransform] = None,
    config: GraspRegionConfig = GraspRegionConfig(),
) -> list[GraspRegion]:
    """Grasp regions of several instances in one frame, in mask order.

    The camera model is built once, so a distortion map is computed at most
    once per call (pass a CameraModel to keep it across frames).
    """
    try:
        camera: CameraModel | CameraIntrinsics = as_camera_model(intrinsics)
    except InvalidIntrinsicsError:
        camera = intrinsics  # each region then reports BAD_INTRINSICS with the reason
    return [compute_grasp_region(mask, depth_m, camera, rgb, camera_to_target, config) for mask in masks]


def _surface_pixels(part: np.ndarray, depth: np.ndarray, valid: np.ndarray, config: GraspRegionConfig) -> np.ndarray:
    """Mask pixels that lie on the part's surface: eroded core, discontinuity-free, border re-admitted.

    Thin parts may not survive the full erosion; the radius then shrinks
    until the core holds enough points (down to no erosion at all).
    """
    links = NeighbourLinks(depth, valid, config.discontinuity_abs_m, config.discontinuity_rel)
    for radius in range(config.erosion_px, -1, -1):
        eroded = erode_mask(part, radius) & valid
        core = reject_depth_discontinuities(links, eroded)
        if radius == 0 or np.count_nonzero(core) >= config.min_points:
            # ``radius`` rounds reach every border pixel next to the core; a few
            # more follow thin protrusions (a stem's tip) that lost their core.
            return readmit_border(links, core, valid & ~eroded, rounds=2 * radius + 2)
    raise AssertionError("unreachable: radius 0 always returns")


def _mean_normal(
    kept: np.ndarray,
    depth: np.ndarray,
    x_rays: np.ndarray,
    y_rays: np.ndarray,
    count: int,
    config: GraspRegionConfig,
) -> Optional[np.ndarray]:
    """Mean camera-facing unit normal of the kept surface, or None if no normal could be formed.

    Large parts are sampled on a strided grid (the mean of thousands of
    normals barely changes), keeping the cost flat in the part's size.
    """
    stride = max(1, int(np.sqrt(count / config.max_normal_samples)))
    step = max(1, int(round(config.normal_step_px / stride)))
    z = np.where(kept[::stride, ::stride], depth[::stride, ::stride], np.float32(np.nan))
    normals = organised_normals(x_rays[::stride, ::stride] * z, y_rays[::stride, ::stride] * z, z, step)
    if normals.shape[0] == 0:
        return None
    mean = normals.astype(np.float64).mean(axis=0)
    length = np.linalg.norm(mean)
    return mean / length if length > 1e-9 else None
