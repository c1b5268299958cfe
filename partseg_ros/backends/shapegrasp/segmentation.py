"""Objects on the table: points above the plane, split at depth jumps.

Foreground is every pixel standing clearly above the table plane, plus pixels
just above it whose colour differs from the table's (a knife lying flat is
only millimetres tall, within the depth noise). Foreground pixels are
labelled as connected components on the organised image after cutting the
links across depth discontinuities, so objects that touch in the image but
not in space come apart. Everything is whole-image numpy/scipy work.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from partseg_ros.backends.shapegrasp.robust import percentile
from scipy import ndimage

from partseg_ros.backends.shapegrasp.colour import colour_histogram
from partseg_ros.backends.shapegrasp.table import TablePlane


@dataclass
class SegmentationConfig:
    min_height_m: float = 0.008  # clearly above the table
    flat_height_m: float = -0.001  # lowest height a flat object (blade, paper) may read at
    max_height_m: float = 0.6  # ignore things hanging over the table (arms, lamps)
    table_margin_m: float = 0.04  # objects must stand within the table's extent plus this
    colour_sigmas: float = 6.0  # flat objects differ from the table colour by this many table spreads
    min_chroma_step: float = 0.025  # and by at least this much chromaticity
    brightness_step: float = 0.3  # or are this much brighter than the table nearby
    brightness_window: int = 41  # pixels (of the processed grid) over which the table's brightness is averaged
    depth_jump_rel: float = 0.025  # neighbours further apart than this fraction of depth are not linked
    depth_jump_abs_m: float = 0.008
    min_pixels: int = 60
    min_extent_m: float = 0.015
    touch_distance_m: float = 0.015  # pieces closer than this in 3D are one object
    stacked_share: float = 0.45  # a piece standing this much inside another's top-view box is part of it
    stacked_distance_m: float = 0.1  # ...if it is also this close to it in 3D


@dataclass
class ObjectCluster:
    """One object candidate: its pixels and points."""

    index: int
    mask: np.ndarray  # HxW bool
    pixels: np.ndarray  # (N, 2) row, col of pixels with valid depth
    points_camera: np.ndarray  # (N, 3)
    points_table: np.ndarray  # (N, 3) table frame, z = height
    rgb: np.ndarray  # (N, 3) uint8
    _colour_hist: Optional[np.ndarray] = field(default=None, repr=False)

    @property
    def colour_hist(self) -> np.ndarray:
        """Share of each of COLOUR_WORDS among the object's pixels (computed on first use)."""
        if self._colour_hist is None:
            self._colour_hist = colour_histogram(self.rgb)
        return self._colour_hist

    @property
    def height_m(self) -> float:
        return float(percentile(self.points_table[:, 2], 97)) if len(self.points_table) else 0.0


def _chromaticity(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Shadow-invariant chromaticity (r, g shares of the sum) and brightness of each pixel."""
    x = rgb.astype(np.float32) + 1.0
    total = x.sum(axis=-1)
    return x[..., :2] / total[..., None], total / (3.0 * 256.0)


def local_table_brightness(bright: np.ndarray, table_like: np.ndarray, window: int) -> np.ndarray:
    """Brightness of the table around each pixel (normalised box average over table pixels only).

    Lighting falls off across a table: one global brightness makes the lit
    far side "brighter than the table" and turns it into a flat object, so
    brightness is compared with the table's own brightness nearby.
    """
    weight = table_like.astype(np.float32)
    total = ndimage.uniform_filter(bright.astype(np.float32) * weight, size=window, mode="nearest")
    count = ndimage.uniform_filter(weight, size=window, mode="nearest")
    global_level = float(np.median(bright[table_like])) if table_like.any() else float(np.median(bright))
    with np.errstate(invalid="ignore", divide="ignore"):
        local = np.where(count > 0.05, total / np.maximum(count, 1e-6), global_level)
    return local


def flat_object_pixels(rgb: np.ndarray, near_plane: np.ndarray, table_like: np.ndarray, config: "SegmentationConfig") -> np.ndarray:
    """Pixels near the plane whose colour is not the table's.

    The table's chromaticity spread is measured on its own inliers, so a
    wood-grain table tolerates its grain; chromaticity ignores shadows, and
    only pixels *brighter* than the table count by brightness (shadows are
    darker, never brighter).
    """
    chroma, bright = _chromaticity(rgb)
    step = max(1, int(table_like.sum()) // 5000)
    table_chroma = chroma[table_like][::step]
    centre = np.median(table_chroma, axis=0)
    spread = np.median(np.abs(table_chroma - centre), axis=0) * 1.4826 + 1e-3
    z = np.abs(chroma - centre) / spread
    different = (z.max(axis=-1) > config.colour_sigmas) & (np.abs(chroma - centre).max(axis=-1) > config.min_chroma_step)
    table_bright = local_table_brightness(bright, table_like, config.brightness_window)
    brighter = bright > table_bright * (1.0 + config.brightness_step)
    darker = bright < table_bright * (1.0 - 2.5 * config.brightness_step)  # much darker than any soft shadow
    return near_plane & (different | brighter | darker)


def depth_edges(depth: np.ndarray, rel: float, abs_m: float, among: Optional[np.ndarray] = None) -> np.ndarray:
    """Pixels with a 4-neighbour whose depth differs by more than max(abs, rel * depth).

    With ``among``, only jumps between two pixels of that mask count (a thin
    stem standing out of the table is not an edge of the foreground).
    """
    z = np.where(np.isfinite(depth), depth, np.inf)
    tol = np.maximum(abs_m, rel * np.where(np.isfinite(depth), depth, 0.0))
    edges = np.zeros(depth.shape, dtype=bool)
    with np.errstate(invalid="ignore"):
        dx = np.abs(np.diff(z, axis=1))
        dy = np.abs(np.diff(z, axis=0))
    jx = dx > np.minimum(tol[:, 1:], tol[:, :-1])
    jy = dy > np.minimum(tol[1:, :], tol[:-1, :])
    if among is not None:
        jx &= among[:, 1:] & among[:, :-1]
        jy &= among[1:, :] & among[:-1, :]
    # Mark the nearer pixel of each jump only: the far side belongs to whatever is behind.
    nearer_right = z[:, 1:] < z[:, :-1]
    edges[:, 1:] |= jx & nearer_right
    edges[:, :-1] |= jx & ~nearer_right
    nearer_down = z[1:, :] < z[:-1, :]
    edges[1:, :] |= jy & nearer_down
    edges[:-1, :] |= jy & ~nearer_down
    return edges


def table_region(table_xy_all: np.ndarray, height: np.ndarray, margin: float) -> tuple[np.ndarray, np.ndarray]:
    """Bounds (min xy, max xy) of the table top in the table frame, from its inlier points."""
    with np.errstate(invalid="ignore"):
        inliers = np.isfinite(height) & (np.abs(height) < 0.006)
    table_xy = table_xy_all[inliers][:: max(1, int(inliers.sum()) // 20000)]
    if len(table_xy) < 20:
        return np.full(2, -np.inf), np.full(2, np.inf)
    lo, hi = percentile(table_xy, 0.5, axis=0), percentile(table_xy, 99.5, axis=0)
    return lo - margin, hi + margin


def segment_objects(
    points: np.ndarray,
    rgb: np.ndarray,
    plane: TablePlane,
    config: Optional[SegmentationConfig] = None,
) -> list[ObjectCluster]:
    """Object clusters standing on the table, largest first."""
    config = config or SegmentationConfig()
    depth = points[..., 2]
    valid = np.isfinite(depth)
    # Table-frame coordinates of every valid pixel, computed once (z is the height above the plane).
    table_coords = np.full(points.shape, np.nan, dtype=np.float32)
    table_coords[valid] = plane.to_table_frame(points[valid])
    height = table_coords[..., 2]
    with np.errstate(invalid="ignore"):
        tall = valid & (height > config.min_height_m) & (height < config.max_height_m)
        near_plane = valid & (height > config.flat_height_m) & (height <= config.min_height_m)
        table_like = valid & (np.abs(height) < 0.004)

    # Flat objects: near the plane but not table-coloured.
    if near_plane.any() and table_like.sum() > 50:
        flat = flat_object_pixels(rgb, near_plane, table_like, config)
        # A lone off-colour pixel is table texture; flat objects are blobs.
        flat &= ndimage.uniform_filter(flat.astype(np.float32), size=3) > 0.3
        foreground = tall | flat
    else:
        foreground = tall

    lo, hi = table_region(table_coords[..., :2], height, config.table_margin_m)
    if np.isfinite(lo).all():
        xy = table_coords[..., :2]
        with np.errstate(invalid="ignore"):
            foreground &= (xy[..., 0] > lo[0]) & (xy[..., 0] < hi[0]) & (xy[..., 1] > lo[1]) & (xy[..., 1] < hi[1])

    edges = depth_edges(depth, config.depth_jump_rel, config.depth_jump_abs_m, among=foreground)
    core = foreground & ~edges
    labels, count = ndimage.label(core)
    if count == 0:
        return []
    # Edge pixels of the foreground join the adjacent component (the nearer side of the jump is theirs).
    border = foreground & edges
    if border.any():
        grown = ndimage.grey_dilation(labels, size=(3, 3))
        labels = np.where(border & (labels == 0), grown, labels)

    sizes = np.bincount(labels.ravel(), minlength=count + 1)
    clusters: list[ObjectCluster] = []
    objects = ndimage.find_objects(labels)
    for label in np.argsort(-sizes[1:]) + 1:
        if sizes[label] < config.min_pixels:
            break
        window = objects[label - 1]
        local = labels[window] == label
        rows, cols = np.nonzero(local)
        rows += window[0].start
        cols += window[1].start
        keep = valid[rows, cols]
        rows, cols = rows[keep], cols[keep]
        cam = points[rows, cols].astype(np.float64)
        table_pts = table_coords[rows, cols].astype(np.float64)
        extent = np.ptp(table_pts, axis=0) if len(table_pts) else np.zeros(3)
        if len(cam) < config.min_pixels or max(extent) < config.min_extent_m:
            continue
        mask = np.zeros(depth.shape, dtype=bool)
        mask[window] = local
        clusters.append(
            ObjectCluster(
                index=len(clusters),
                mask=mask,
                pixels=np.stack([rows, cols], axis=1),
                points_camera=cam,
                points_table=table_pts,
                rgb=rgb[rows, cols],
            )
        )
    return merge_object_pieces(clusters, config)


def _top_view_box(points: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Oriented rectangle of a piece seen from above: centre, axes (2x2 rows), low and high extents."""
    xy = points[:, :2]
    centre = np.median(xy, axis=0)
    cov = np.cov((xy - centre).T) if len(xy) > 2 else np.eye(2)
    _, vecs = np.linalg.eigh(cov)
    proj = (xy - centre) @ vecs
    return centre, vecs, percentile(proj, 2, axis=0), percentile(proj, 98, axis=0)


def _inside_share(points: np.ndarray, box) -> float:
    centre, vecs, lo, hi = box
    proj = (points[:, :2] - centre) @ vecs
    return float(np.all((proj >= lo) & (proj <= hi), axis=1).mean()) if len(points) else 0.0


def _stacked(a: np.ndarray, b: np.ndarray, box_a, box_b, share: float) -> bool:
    """Objects on a table do not share floor space: a piece mostly inside another's top-view box is one object with it
    (a glass's stem under its bowl, a mug's inside seen over the rim)."""
    return _inside_share(a, box_b) >= share or _inside_share(b, box_a) >= share


def merge_object_pieces(clusters: list[ObjectCluster], config: SegmentationConfig) -> list[ObjectCluster]:
    """Join pieces of one object that depth jumps cut apart.

    A mug's inside seen over its rim, or a handle in front of its body, is cut
    off by a depth jump but touches the rest in 3D (wall thickness apart);
    separate objects on a table stand apart. Pieces closer than
    ``touch_distance_m`` are therefore one object. (Objects that really touch
    are merged too: a known limit of geometry-only segmentation.)
    """
    from scipy.spatial import cKDTree

    if len(clusters) < 2:
        return clusters
    n = len(clusters)
    parent = list(range(n))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    reach = max(config.touch_distance_m, config.stacked_distance_m)
    lows = [c.points_table.min(axis=0) - reach for c in clusters]
    highs = [c.points_table.max(axis=0) + reach for c in clusters]
    boxes = [_top_view_box(c.points_table) for c in clusters]
    samples = [c.points_table[:: max(1, len(c.points_table) // 4000)] for c in clusters]
    trees: dict[int, object] = {}
    for i in range(n):
        for j in range(i + 1, n):
            if np.any(lows[i] > highs[j]) or np.any(lows[j] > highs[i]) or find(i) == find(j):
                continue
            if i not in trees:
                trees[i] = cKDTree(samples[i])
            distance, _ = trees[i].query(samples[j], k=1, distance_upper_bound=reach)
            touching = (distance < config.touch_distance_m).sum() >= 3
            near = np.isfinite(distance).any()
            if touching or (near and _stacked(samples[i], samples[j], boxes[i], boxes[j], config.stacked_share)):
                parent[find(j)] = find(i)
    groups: dict[int, list[int]] = {}
    for i in range(n):
        groups.setdefault(find(i), []).append(i)
    sizes = [len(c.points_table) for c in clusters]
    merged = []
    for members in sorted(groups.values(), key=lambda m: -sum(sizes[k] for k in m)):
        parts = [clusters[k] for k in members]
        merged.append(
            ObjectCluster(
                index=len(merged),
                mask=np.logical_or.reduce([c.mask for c in parts]),
                pixels=np.concatenate([c.pixels for c in parts]),
                points_camera=np.concatenate([c.points_camera for c in parts]),
                points_table=np.concatenate([c.points_table for c in parts]),
                rgb=np.concatenate([c.rgb for c in parts]),
            )
        )
    return merged


def cluster_from_mask(
    mask: np.ndarray, points: np.ndarray, rgb: np.ndarray, plane: TablePlane, index: int = 0
) -> Optional[ObjectCluster]:
    """An object given by a mask (the oracle-object protocol)."""
    rows, cols = np.nonzero(mask & np.isfinite(points[..., 2]))
    if len(rows) < 10:
        return None
    cam = points[rows, cols].astype(np.float64)
    return ObjectCluster(index, mask.copy(), np.stack([rows, cols], axis=1), cam, plane.to_table_frame(cam), rgb[rows, cols])
