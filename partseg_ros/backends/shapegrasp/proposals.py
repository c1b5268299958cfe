"""Object proposals from RGB-D: the table plane and the object clusters standing on it.

Shared by the geometric backend (which decomposes each cluster into parts)
and the learned one (which crops each cluster for its network), so both see
the same objects: geometry runs on every ``stride``-th pixel, thin structures
are kept by taking each block's highest pixel, and masks go back to full
resolution with table pixels removed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

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

    def full_resolution_masks(self, request: GroundingRequest, limit: Optional[int] = None) -> list[np.ndarray]:
        """Each cluster's mask on the request's full image, table pixels removed; with ``limit``, only the
        ``limit`` largest clusters, largest first (a per-frame cost cap for a backend that crops each one)."""
        clusters = self.clusters
        if limit is not None:
            clusters = sorted(clusters, key=lambda c: -len(c.pixels))[:limit]
        return [to_full_resolution(c.mask, request, self.plane, self.stride) for c in clusters]


def propose_objects(request: GroundingRequest, stride: int, config: SegmentationConfig,
                    lap: Callable[[str], object] = lambda _: None) -> Optional[ObjectProposals]:
    """The table and the objects on it, or None when no table plane is found.

    The one way every backend and the training data find objects, so the learned network is trained on the
    proposals it will be given. ``lap("table")`` is called once the plane is fitted (latency breakdowns).
    """
    plane, depth, rgb, camera, points = find_table(request, stride, config.min_height_m)
    lap("table")
    if plane is None:
        return None
    clusters = object_clusters(request, plane, points, rgb, stride, config)
    return ObjectProposals(plane, clusters, depth, rgb, camera, stride)


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


def depth_hole_proposals(request: GroundingRequest, height_m: np.ndarray, config: SegmentationConfig,
                         proposals: list[np.ndarray]) -> list[np.ndarray]:
    """Full-resolution masks for objects the depth sensor returned nothing from, the given proposals grown by them.

    Depth clustering cannot see an object without depth returns; such an
    object is still a hole in the table with its own colour. Holes that
    touch a proposal extend it (an object half lost to the sensor); the
    others become proposals of their own. Shadow bands and holes in the
    table itself are rejected by their colour, which is the table's; holes
    cut by the image border, or bounded by the floor past the table's edge,
    by what is unknown about them. Speckle dropouts on glass or a noisy edge
    can join a black object's hole to the sky or the far wall, which return
    nothing either; a hole too big or cut by the border is therefore split
    by an opening of ``hole_open_px`` and its pieces judged one by one (holes
    of a sensible size keep their thin parts, which an opening would erase).
    ``height_m`` is every pixel's height above the table (NaN without depth).
    Returns the grown proposals, then the new ones.
    """
    from scipy import ndimage

    valid = np.isfinite(height_m)
    h, w = valid.shape
    labels, count = ndimage.label(~valid)
    if count == 0:
        return list(proposals)
    sizes = np.bincount(labels.ravel(), minlength=count + 1)
    lo, hi = config.hole_min_share * h * w, config.hole_max_share * h * w
    first_piece = count + 1
    if config.hole_open_px:
        on_border = np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]])
        unbounded = np.union1d(np.flatnonzero(sizes > hi), on_border)
        spill = np.isin(labels, unbounded[unbounded > 0])
        pieces, piece_count = ndimage.label(ndimage.binary_opening(spill, iterations=config.hole_open_px))
        labels[spill] = 0
        labels[pieces > 0] = pieces[pieces > 0] + count
        count += piece_count
        sizes = np.bincount(labels.ravel(), minlength=count + 1)
    grown = [np.asarray(p, dtype=bool).copy() for p in proposals]
    extra = []
    r = config.hole_ring_px
    for index, box in enumerate(ndimage.find_objects(labels), start=1):
        if box is None or not lo <= sizes[index] <= hi:
            continue
        if box[0].start == 0 or box[1].start == 0 or box[0].stop == h or box[1].stop == w:
            continue
        window = (slice(max(box[0].start - r, 0), min(box[0].stop + r, h)),
                  slice(max(box[1].start - r, 0), min(box[1].stop + r, w)))
        hole = labels[window] == index
        if index >= first_piece:  # back to the piece's own edge, without the bridges the opening cut
            hole = ndimage.binary_dilation(hole, iterations=config.hole_open_px) & ~valid[window]
        ring = ndimage.binary_dilation(hole, iterations=r) & ~hole
        around = height_m[window][ring]
        seen = around[np.isfinite(around)]
        if seen.size < config.hole_ring_valid_share * around.size:
            continue
        on_or_over_table = (seen > -config.min_height_m) & (seen < config.max_height_m)
        if on_or_over_table.sum() < config.hole_ring_table_share * seen.size:
            continue
        with np.errstate(invalid="ignore"):
            table_ring = ring & (np.abs(height_m[window]) < config.min_height_m)
        if not table_ring.any():
            continue
        rgb = request.rgb[window].astype(np.float32) / 255.0
        step = np.linalg.norm(np.median(rgb[hole], axis=0) - np.median(rgb[table_ring], axis=0))
        if step < config.hole_colour_step:
            continue
        full = np.zeros((h, w), dtype=bool)
        full[window] = hole
        near = ndimage.binary_dilation(hole, iterations=2)
        joined = next((i for i, p in enumerate(grown) if (p[window] & near).any()), None)
        if joined is not None:
            grown[joined] |= full
        else:
            extra.append(full)
    return grown + extra


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
    return segment_objects(points, rgb, plane, config.for_image(*request.image_size))
