"""Object proposals from RGB-D: the table plane and the object clusters standing on it.

Shared by the geometric backend (which decomposes each cluster into parts)
and the learned one (which crops each cluster for its network), so both see
the same objects: geometry runs on every ``stride``-th pixel, thin structures
are kept by taking each block's highest pixel, and masks go back to full
resolution with table pixels removed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from partseg_ros.backends.shapegrasp.segmentation import (
    ObjectCluster,
    SegmentationConfig,
    cluster_from_mask,
    segment_objects,
)
from partseg_ros.backends.shapegrasp.table import TablePlane, backproject, fit_table_plane
from partseg_ros.geometry.camera import CameraModel
from partseg_ros.types import GroundingRequest


@dataclass
class ObjectProposals:
    """Clusters on the subsampled grid (``depth``, ``rgb``, ``camera`` describe it) and the table under them."""

    plane: TablePlane
    clusters: list[ObjectCluster]
    depth: np.ndarray
    rgb: np.ndarray
    camera: CameraModel
    stride: int


def subsample(request: GroundingRequest, stride: int) -> tuple[np.ndarray, np.ndarray, CameraModel]:
    """Every stride-th pixel, with the camera of that pixel grid (pixel (i, j) is full-res (s*i, s*j))."""
    depth = request.depth_m[::stride, ::stride]
    rgb = request.rgb[::stride, ::stride]
    return depth, rgb, request.camera.strided(stride)


def keep_thin_structures(depth_s: np.ndarray, rgb_s: np.ndarray, request: GroundingRequest, plane: TablePlane,
                         stride: int, min_height_m: float) -> tuple[np.ndarray, np.ndarray]:
    """Subsampled depth/colour where each block shows its highest point above the table.

    Plain subsampling keeps one pixel per stride x stride block and loses
    anything thinner than the stride (a glass stem, a lollipop stick); taking
    the block's pixel that stands highest above the table keeps them.
    """
    full_h, full_w = request.image_size
    h, w = full_h // stride, full_w // stride  # whole blocks only; a ragged last row/column keeps its sample
    full_depth = request.depth_m[: h * stride, : w * stride]
    points = backproject(full_depth, request.camera)
    with np.errstate(invalid="ignore"):
        height = points @ plane.normal + plane.offset
    height = np.where(np.isfinite(height), height, -np.inf)  # no depth, or no ray (a distortion fold-over)
    blocks = height.reshape(h, stride, w, stride).transpose(0, 2, 1, 3).reshape(h, w, stride * stride)
    best = np.argmax(blocks, axis=2)
    best_height = np.take_along_axis(blocks, best[..., None], axis=2)[..., 0]
    replace = (best_height > min_height_m) & ~(np.nan_to_num(blocks[..., 0], neginf=-1.0) > min_height_m)
    if not replace.any():
        return depth_s, rgb_s
    rows, cols = np.nonzero(replace)
    dr, dc = np.divmod(best[rows, cols], stride)
    depth_s, rgb_s = depth_s.copy(), rgb_s.copy()
    # The replacing pixel is up to stride-1 pixels off the sample position: a sub-block shift, kept for its depth.
    depth_s[rows, cols] = request.depth_m[rows * stride + dr, cols * stride + dc]
    rgb_s[rows, cols] = request.rgb[rows * stride + dr, cols * stride + dc]
    return depth_s, rgb_s


def to_full_resolution(mask: np.ndarray, request: GroundingRequest, plane: TablePlane, stride: int) -> np.ndarray:
    """Nearest-neighbour upsampling, then full-resolution pixels that lie on the table plane are dropped."""
    h, w = request.image_size
    if stride == 1:
        return mask
    full = np.repeat(np.repeat(mask, stride, axis=0), stride, axis=1)[:h, :w]
    if full.shape != (h, w):
        full = np.pad(full, ((0, h - full.shape[0]), (0, w - full.shape[1])))
    rows, cols = np.nonzero(full)
    z = request.depth_m[rows, cols]
    x_rays, y_rays = request.camera.pixel_rays(cols, rows)
    points = np.stack([x_rays * z, y_rays * z, z], axis=1)
    with np.errstate(invalid="ignore"):
        on_table = np.isfinite(z) & (plane.height(points) < 0.003)
    full[rows[on_table], cols[on_table]] = False
    return full


def find_table(request: GroundingRequest, stride: int, min_height_m: float
               ) -> tuple[Optional[TablePlane], np.ndarray, np.ndarray, CameraModel, np.ndarray]:
    """(plane or None, subsampled depth, rgb, grid camera, points) with thin structures kept when a plane exists."""
    depth, rgb, grid_camera = subsample(request, stride)
    points = backproject(depth, grid_camera)
    plane = fit_table_plane(points)
    if plane is not None and stride > 1:
        depth, rgb = keep_thin_structures(depth, rgb, request, plane, stride, min_height_m)
        points = backproject(depth, grid_camera)
    return plane, depth, rgb, grid_camera, points


def object_clusters(request: GroundingRequest, plane: TablePlane, points: np.ndarray, rgb: np.ndarray,
                    stride: int, config: SegmentationConfig) -> list[ObjectCluster]:
    """The objects on the table, or one cluster per object the caller's hints mark.

    Under the oracle-object protocol each acceptable object comes as its own
    mask (``GroundingRequest.object_mask_hints``); they stay separate clusters
    so the backend chooses among them as among segmented objects, instead of
    decomposing two mugs as one object. Hints with too few valid points are dropped.
    """
    if request.object_mask_hints is not None:
        clusters = []
        for hint in request.object_mask_hints:
            cluster = cluster_from_mask(hint[::stride, ::stride], points, rgb, plane, index=len(clusters))
            if cluster is not None:
                clusters.append(cluster)
        return clusters
    return segment_objects(points, rgb, plane, config)
