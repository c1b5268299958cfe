"""Objects on the table: points above the plane, split at depth jumps, pieces regrouped.

Foreground is every pixel standing clearly above the table plane, plus pixels
just above it whose colour differs from the table's (a knife lying flat is
only millimetres tall, within the depth noise), plus low pixels that connect
to either (hysteresis: a lollipop stick lying on the table). Foreground
pixels are labelled as connected components on the organised image after
cutting the links across depth discontinuities, so objects that touch in the
image but not in space come apart; the pixels on a jump go to the piece on
their own side of it (nearest in depth), lest the object behind borrow the
front one's rim and seem to touch it in 3D. The pieces are then regrouped into
objects (``merge_object_pieces``): pieces touching in 3D, standing over one
another's footprint, or lined up across a small gap after a thin part, join;
pieces that meet along an occlusion border (deep depth jump plus a colour
change, along most of the border's length) stay apart. Everything is whole-image numpy/scipy work.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Optional

import numpy as np

from partseg_ros.backends.shapegrasp.robust import percentile
from scipy import ndimage

from partseg_ros.backends.shapegrasp.colour import colour_histogram
from partseg_ros.backends.shapegrasp.table import TablePlane
from partseg_ros.geometry.principal_axes import principal_axes


@dataclass
class SegmentationConfig:
    min_height_m: float = 0.008  # clearly above the table
    low_height_m: float = 0.004  # above the table's own noise band: kept where a run of such pixels leaves an object
    low_reach_px: int = 3  # ...and reaches this many pixels beyond it (a part lying there, not a rim around its base)
    flat_height_m: float = -0.001  # lowest height a flat object (blade, paper) may read at
    max_height_m: float = 0.6  # ignore things hanging over the table (arms, lamps)
    table_margin_m: float = 0.04  # objects must stand within the table's extent plus this
    colour_sigmas: float = 6.0  # flat objects differ from the table colour by this many table spreads
    min_chroma_step: float = 0.025  # and by at least this much chromaticity
    brightness_step: float = 0.3  # or are this much brighter than the table nearby
    brightness_window: int = 41  # pixels (of the processed grid) over which the table's brightness is averaged
    depth_jump_rel: float = 0.025  # neighbours further apart than this fraction of depth are not linked
    depth_jump_abs_m: float = 0.008
    min_pixels: int = 60  # cells of the processed grid a cluster needs (fewer is noise), for images this large:
    min_pixels_image_px: int = 640 * 480  # a smaller image sees the same object in proportionally fewer pixels
    min_extent_m: float = 0.015
    touch_distance_m: float = 0.015  # pieces closer than this in 3D are one object
    stacked_share: float = 0.45  # a piece standing this much over/under another's top-view footprint is part of it
    stacked_distance_m: float = 0.1  # ...if it is also this close to it in 3D
    footprint_cell_m: float = 0.01  # cell of the top-view occupancy grid used for that test
    continuation_gap_m: float = 0.03  # a thin piece whose axis runs into another piece within this gap joins it
    thin_elongation: float = 5.0  # length / width of a piece that counts as thin for that
    thin_max_width_m: float = 0.03  # ...and its width at most this (a handle or a stem, not a slim box)
    continuation_axis_m: float = 0.004  # least half-width of the corridor along its axis
    continuation_height_m: float = 0.01  # and the two sides of the gap are at the same height within this
    border_width_px: int = 3  # pixels either side of the image border shared by two pieces
    min_border_px: int = 12  # fewer shared border pixels than this is no common border
    occlusion_chroma_step: float = 0.09  # a colour change this strong across a depth jump...
    occlusion_jump_m: float = 0.05  # ...of at least this much separates two objects
    occlusion_brightness_step: float = 0.4  # log brightness ratio that separates them across twice that jump
    occlusion_border_share: float = 0.5  # ...where this share of the shared border shows it
    # Objects that return no depth at all (black plastic on an IR sensor, some glass): a hole in the depth image
    # bounded by table, of object size and of another colour than the table, is proposed from colour alone.
    hole_min_share: float = 0.0004  # of the image's pixels
    hole_max_share: float = 0.05
    hole_open_px: int = 1  # opening that cuts speckle bridges between holes (0: holes as the sensor left them)
    hole_ring_px: int = 4  # width of the ring around a hole its surroundings are judged on
    hole_ring_valid_share: float = 0.5  # the ring must be mostly measured...
    hole_ring_table_share: float = 0.6  # ...mostly table or objects on it (not the floor past the table edge)...
    hole_colour_step: float = 0.12  # ...and the hole's median colour this far (RGB, 0-1) from the ring's table

    def for_image(self, height: int, width: int) -> "SegmentationConfig":
        """The settings for an image of that size: below ``min_pixels_image_px`` the cluster-size floor shrinks with
        the image's area (a 424x240 camera sees a 4 cm box in a third of the pixels), above it stays as it was set,
        since the learned backend was trained on proposals cut with it at 640x480 and up."""
        share = min(1.0, height * width / max(self.min_pixels_image_px, 1))
        return replace(self, min_pixels=max(1, round(self.min_pixels * share)))


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


def flat_object_pixels(rgb: np.ndarray, near_plane: np.ndarray, table_like: np.ndarray,
                       config: "SegmentationConfig") -> np.ndarray:
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
    different = ((z.max(axis=-1) > config.colour_sigmas)
                 & (np.abs(chroma - centre).max(axis=-1) > config.min_chroma_step))
    table_bright = local_table_brightness(bright, table_like, config.brightness_window)
    brighter = bright > table_bright * (1.0 + config.brightness_step)
    darker = bright < table_bright * (1.0 - 2.5 * config.brightness_step)  # much darker than any soft shadow
    return near_plane & (different | brighter | darker)


def attached_low_pixels(foreground: np.ndarray, low: np.ndarray, reach_px: int = 3) -> np.ndarray:
    """Low pixels (a few millimetres up) that run out of the foreground: hysteresis on height.

    A lollipop stick or a spoon's neck lying on the table stands only a few
    millimetres high, within reach of the depth noise, so a single height
    threshold either loses it or lets table noise in. Table noise that high
    is sparse and scattered; a thin part lying on the table forms a run of
    such pixels that starts at its object and leads away from it. A run is
    therefore kept when it has no lone pixels, touches the confident
    foreground and reaches more than ``reach_px`` pixels beyond it; a rim of
    low pixels hugging an object's base (mixed pixels, a bevel) is not a part
    and would only widen the object's foot.
    """
    low = low & (ndimage.uniform_filter(low.astype(np.float32), size=3) > 0.3)
    if not low.any():
        return low
    runs, count = ndimage.label(low, structure=np.ones((3, 3), dtype=bool))
    touching = np.bincount(runs[low & ndimage.binary_dilation(foreground)], minlength=count + 1) > 0
    beyond = low & ~ndimage.binary_dilation(foreground, iterations=reach_px)
    reaching = np.bincount(runs[beyond], minlength=count + 1) >= reach_px
    keep = touching & reaching
    keep[0] = False
    return keep[runs]


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


def join_nearest_in_depth(labels: np.ndarray, pixels: np.ndarray, depth: np.ndarray) -> np.ndarray:
    """Give each of ``pixels`` the label of its 8-neighbour closest in depth.

    A pixel on the near side of a depth jump has neighbours on both sides;
    taking any neighbour's label (the largest, say) can hand it to the object
    behind, which then seems to touch the one in front in 3D and is merged
    with it. The neighbour nearest in depth is on the pixel's own surface.
    """
    rows, cols = np.nonzero(pixels)
    height, width = labels.shape
    best_label = np.zeros(len(rows), dtype=labels.dtype)
    best_gap = np.full(len(rows), np.inf)
    own = depth[rows, cols]
    for dr in (-1, 0, 1):
        for dc in (-1, 0, 1):
            if dr == 0 and dc == 0:
                continue
            r = np.clip(rows + dr, 0, height - 1)
            c = np.clip(cols + dc, 0, width - 1)
            label = labels[r, c]
            gap = np.abs(depth[r, c] - own)
            better = (label > 0) & (gap < best_gap)
            best_label[better] = label[better]
            best_gap[better] = gap[better]
    out = labels.copy()
    out[rows, cols] = best_label
    return out


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
    with np.errstate(invalid="ignore"):
        low = valid & (height > config.low_height_m) & (height <= config.min_height_m) & ~foreground
    foreground |= attached_low_pixels(foreground, low, config.low_reach_px)

    edges = depth_edges(depth, config.depth_jump_rel, config.depth_jump_abs_m, among=foreground)
    core = foreground & ~edges
    labels, count = ndimage.label(core)
    if count == 0:
        return []
    # Edge pixels of the foreground join the adjacent component on their own side of the jump.
    border = foreground & edges & (labels == 0)
    if border.any():
        labels = join_nearest_in_depth(labels, border, depth)

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
    return merge_object_pieces(clusters, config, rgb, depth)


@dataclass
class TopViewFootprint:
    """Floor space a piece covers seen from above: an occupancy grid of its table-frame xy.

    Small gaps between occupied cells are closed, enclosed holes filled (the
    unseen inside of a bowl still belongs to its footprint) and the grid grown
    by one cell (its own quantisation), but unlike a bounding box it keeps the
    piece's shape, so the floor beside a long diagonal tool is not counted as
    its footprint.
    """

    origin: np.ndarray  # xy of cell (0, 0)
    cell_m: float
    occupied: np.ndarray  # 2D bool grid

    @classmethod
    def of(cls, points_table: np.ndarray, cell_m: float) -> "TopViewFootprint":
        origin = points_table[:, :2].min(axis=0) - 2 * cell_m
        cells = np.floor((points_table[:, :2] - origin) / cell_m).astype(int)
        grid = np.zeros(cells.max(axis=0) + 3, dtype=bool)
        grid[cells[:, 0], cells[:, 1]] = True
        grid = ndimage.binary_dilation(ndimage.binary_fill_holes(ndimage.binary_closing(grid)))
        return cls(origin, cell_m, grid)

    def share_inside(self, points_table: np.ndarray) -> float:
        """Share of the points whose xy falls on this footprint."""
        if not len(points_table):
            return 0.0
        cells = np.floor((points_table[:, :2] - self.origin) / self.cell_m).astype(int)
        inside = np.all((cells >= 0) & (cells < self.occupied.shape), axis=1)
        hits = np.zeros(len(cells), dtype=bool)
        hits[inside] = self.occupied[cells[inside, 0], cells[inside, 1]]
        return float(hits.mean())


def _stacked(a: np.ndarray, b: np.ndarray, footprint_a: TopViewFootprint, footprint_b: TopViewFootprint,
             share: float) -> bool:
    """Objects on a table do not share floor space: a piece mostly over or under another's footprint is one object
    with it (a glass's stem under its bowl, a mug's inside seen over the rim)."""
    return footprint_b.share_inside(a) >= share or footprint_a.share_inside(b) >= share


@dataclass
class ThinAxis:
    """The axis of a thin elongated piece seen from above, and the height at each of its two ends."""

    centre: np.ndarray
    axis: np.ndarray
    normal: np.ndarray
    ends: tuple[float, float]  # low and high end along the axis
    end_heights: tuple[float, float]
    width: float

    @classmethod
    def of(cls, points_table: np.ndarray, config: SegmentationConfig) -> Optional["ThinAxis"]:
        """None unless the piece is thin: at most ``thin_max_width_m`` wide and ``thin_elongation`` times longer."""
        if len(points_table) < 5:
            return None
        xy = points_table[:, :2]
        pca = principal_axes(xy)
        centre, axis, normal = pca.centre, pca.major, pca.minor
        along = (xy - centre) @ axis
        across = (xy - centre) @ normal
        lo, hi = float(percentile(along, 2)), float(percentile(along, 98))
        width = max(float(percentile(across, 95) - percentile(across, 5)), 0.005)
        if width > config.thin_max_width_m or hi - lo < config.thin_elongation * width:
            return None
        heights = points_table[:, 2]
        low_height = float(np.median(heights[along < lo + width]))
        high_height = float(np.median(heights[along > hi - width]))
        return cls(centre, axis, normal, (lo, hi), (low_height, high_height), width)


def continues_into(thin: ThinAxis, other: np.ndarray, config: SegmentationConfig) -> bool:
    """Good continuation: the thin piece's axis, prolonged past one of its ends, runs into the other piece.

    Thin necks (a spoon's between handle and bowl, a knife's at its bolster)
    are only a few pixels wide and millimetres high, so depth noise cuts them
    and leaves a small gap; the parts either side still line up on the thin
    piece's axis, at the height where it ends. Objects merely lying near
    each other rarely sit on that line, within the piece's own width of it.
    """
    if not len(other):
        return False
    rel = other[:, :2] - thin.centre
    other_along = rel @ thin.axis
    on_axis = np.abs(rel @ thin.normal) < max(thin.width / 2, config.continuation_axis_m)
    overlap = config.continuation_axis_m  # the gap may close to a slight overlap
    for sign, end, end_height in ((-1.0, thin.ends[0], thin.end_heights[0]), (1.0, thin.ends[1], thin.end_heights[1])):
        beyond = sign * (other_along - end)
        hits = on_axis & (beyond > -overlap) & (beyond < config.continuation_gap_m)
        if hits.sum() >= 3 and abs(float(np.median(other[hits, 2])) - end_height) < config.continuation_height_m:
            return True
    return False


def occlusion_boundary(a: ObjectCluster, b: ObjectCluster, rgb: np.ndarray, depth: np.ndarray,
                       config: SegmentationConfig) -> bool:
    """Whether the image border between two pieces is one object occluding another.

    Where one object stands in front of another their image regions meet
    along a depth jump as deep as the gap between them, and the colour
    changes there (two objects, two materials). Self-occlusion within one
    object (a mug's rim over its inside) jumps only across the object and
    usually keeps its colour; a multi-coloured object's parts join with a
    small jump. Both cues are therefore required. Brightness alone is weaker
    evidence (shading changes it across one curved surface: a mug's inside
    is darker than its outside), so it needs twice the jump. The cues are
    read pixel by pixel across the border and the border counts as an
    occlusion where most of its length shows them.
    """
    r = config.border_width_px
    lo = np.maximum(a.pixels.min(axis=0), b.pixels.min(axis=0)) - r
    hi = np.minimum(a.pixels.max(axis=0), b.pixels.max(axis=0)) + r + 1
    if np.any(hi <= lo):
        return False
    lo = np.maximum(lo, 0)
    window = (slice(lo[0], hi[0]), slice(lo[1], hi[1]))
    in_a, in_b = a.mask[window], b.mask[window]
    band_a = in_a & ndimage.binary_dilation(in_b, iterations=r)
    band_b = in_b & ndimage.binary_dilation(in_a, iterations=r)
    if band_a.sum() < config.min_border_px or band_b.sum() < config.min_border_px:
        return False
    chroma, bright = _chromaticity(rgb[window])
    z = depth[window]
    occluding = []
    # Each border pixel is compared with the nearest pixel of the other piece (both ways round): locally,
    # so a border that is half white against white (two white caps) and half purple against green still
    # shows its colour change, which medians over the two whole bands would average away.
    for band, other in ((band_a, in_b), (band_b, in_a)):
        _, (near_r, near_c) = ndimage.distance_transform_edt(~other, return_indices=True)
        rows, cols = np.nonzero(band)
        pair_r, pair_c = near_r[rows, cols], near_c[rows, cols]
        colour_step = np.abs(chroma[rows, cols] - chroma[pair_r, pair_c]).max(axis=-1)
        brightness_step = np.abs(np.log(bright[rows, cols] / bright[pair_r, pair_c]))
        with np.errstate(invalid="ignore"):
            jump = np.abs(z[rows, cols] - z[pair_r, pair_c])
            occluding.append(
                ((colour_step > config.occlusion_chroma_step) & (jump > config.occlusion_jump_m))
                | ((brightness_step > config.occlusion_brightness_step) & (jump > 2 * config.occlusion_jump_m))
            )
    return bool(np.concatenate(occluding).mean() >= config.occlusion_border_share)


def merge_object_pieces(clusters: list[ObjectCluster], config: SegmentationConfig,
                        rgb: Optional[np.ndarray] = None, depth: Optional[np.ndarray] = None) -> list[ObjectCluster]:
    """Join pieces of one object that depth jumps (or depth noise) cut apart.

    A mug's inside seen over its rim, or a handle in front of its body, is cut
    off by a depth jump but touches the rest in 3D (wall thickness apart);
    separate objects on a table stand apart. Pieces closer than
    ``touch_distance_m`` are therefore one object, and so are pieces over one
    another's top-view footprint (a glass's foot under its bowl) and pieces
    lined up across a small gap after a thin part (``continues_into``). With
    the image (``rgb``, ``depth``), pieces meeting along an occlusion border
    are kept apart whatever else holds (``occlusion_boundary``): objects that
    touch but differ in colour. Same-coloured objects that really touch are
    still merged, a known limit.
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components
    from scipy.spatial import cKDTree

    if len(clusters) < 2:
        return clusters
    n = len(clusters)
    joins: list[tuple[int, int]] = []
    component = np.arange(n)  # object of each piece so far; pairs already in one object are not tested again

    def join(i: int, j: int) -> None:
        joins.append((i, j))
        rows, cols = zip(*joins)
        graph = coo_matrix((np.ones(len(joins)), (rows, cols)), shape=(n, n))
        component[:] = connected_components(graph, directed=False)[1]

    reach = max(config.touch_distance_m, config.stacked_distance_m)
    lows = [c.points_table.min(axis=0) - reach for c in clusters]
    highs = [c.points_table.max(axis=0) + reach for c in clusters]
    samples = [c.points_table[:: max(1, len(c.points_table) // 4000)] for c in clusters]
    footprints: dict[int, TopViewFootprint] = {}
    thin_axes: dict[int, Optional[ThinAxis]] = {}

    def footprint(i: int) -> TopViewFootprint:
        if i not in footprints:
            footprints[i] = TopViewFootprint.of(samples[i], config.footprint_cell_m)
        return footprints[i]

    def continues(i: int, j: int) -> bool:
        if i not in thin_axes:
            thin_axes[i] = ThinAxis.of(samples[i], config)
        return thin_axes[i] is not None and continues_into(thin_axes[i], samples[j], config)

    trees: dict[int, object] = {}
    for i in range(n):
        for j in range(i + 1, n):
            if np.any(lows[i] > highs[j]) or np.any(lows[j] > highs[i]) or component[i] == component[j]:
                continue
            if i not in trees:
                trees[i] = cKDTree(samples[i])
            distance, _ = trees[i].query(samples[j], k=1, distance_upper_bound=reach)
            touching = (distance < config.touch_distance_m).sum() >= 3
            near = np.isfinite(distance).any()
            joined = touching or (near and (
                _stacked(samples[i], samples[j], footprint(i), footprint(j), config.stacked_share)
                or continues(i, j) or continues(j, i)))
            if not joined:
                continue
            if (rgb is not None and depth is not None
                    and occlusion_boundary(clusters[i], clusters[j], rgb, depth, config)):
                continue
            join(i, j)
    groups: dict[int, list[int]] = {}
    for i in range(n):
        groups.setdefault(int(component[i]), []).append(i)
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
    return ObjectCluster(index, mask.copy(), np.stack([rows, cols], axis=1), cam, plane.to_table_frame(cam),
                         rgb[rows, cols])
