"""Geometric parts of one object: a skeleton-axis split into simple pieces.

ShapeGrasp-style: an object is cut into a few simple parts, each described
by attributes a person (or a language model) can reason about. Everything
happens in the table frame (z up):

* upright objects (taller than about half their length) are sliced along the
  vertical axis fitted through them; points far outside the local
  cross-section radius are *protrusions* (handles, spouts, triggers), grouped
  by 3D connectivity; the remaining core is split into layers where the
  radius profile (measured about each slice's own middle, so a thin stem
  stays thin) changes (bowl / stem / base of a glass, body / neck of a
  bottle) or where a piece of its own colour closes an end (the cork);
  neighbouring layers that one cone explains are joined again (a martini
  bowl is one part, not rings);
* lying objects are sliced along their main horizontal axis and split where
  the width, height or colour profile changes (blade / handle of a knife,
  blossom / stem of a flower); a clearly raised lump on top of a piece is
  split off as a top part (a knob, a tissue).

After the split, pieces below a minimum share merge into their neighbour,
except end layers clearly narrower or wider than the layer they end (a knob,
a glass's foot).

Profiles are split by exact 1D dynamic programming (least squares with a
per-split penalty), so the split points are reproducible and explainable.
A colour change without a change of shape is a surface layer (a label, a
printed band) and does not make a part, unless it closes off an end of the
object (see split_shape_then_colour).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple, Optional

import numpy as np

from partseg_ros.backends.shapegrasp.robust import percentile
from scipy import ndimage

from partseg_ros.backends.shapegrasp.colour import colour_histogram, dominant_colour
from partseg_ros.backends.shapegrasp.segmentation import ObjectCluster
from partseg_ros.geometry.principal_axes import principal_axes


@dataclass
class DecompositionConfig:
    bins: int = 64  # profile slices: fine enough that a 2 cm cork on a 30 cm bottle spans several
    upright_ratio: float = 0.55  # height / horizontal length above which an object stands upright
    split_penalty: float = 2.4  # cost of one more part in the profile split (in squared log units x bins)
    colour_weight: float = 2.5  # colour changes count as much as a e^(1/2.5) width change
    min_part_bins: int = 3
    max_parts: int = 4
    protrusion_bins: int = 32  # height slices for the body radius that protrusions are measured against
    protrusion_scale: float = 1.25
    protrusion_margin_m: float = 0.006
    min_part_share: float = 0.03
    voxel_m: float = 0.006
    shape_cut_share: float = 0.4  # share of the split penalty the size profile alone must pay for a kept cut
    end_colour_boost: float = 2.0  # colour weight multiplier in the joint split (short corks and caps need it)
    layer_colour_distance: float = 0.08  # opponent-colour distance below which two pieces share a colour
    min_end_part_share: float = 0.01  # a top/bottom layer this small is kept if its width differs clearly
    end_part_width_ratio: float = 1.8  # ...by this factor from the layer it ends (knob on a lid, foot of a glass)
    min_part_points: int = 15  # fewer points than this make no protrusion, lump or distinct end layer
    # profiles
    min_profile_size_m: float = 0.002  # sizes are floored here before their log (an empty or razor-thin slice)
    empty_bin_weight: float = 0.3  # weight of a profile slice without points (its values are copied from a neighbour)
    profile_trim_percent: float = 0.5  # the profile runs between these percentiles of the points along its axis
    lying_profile_pad_m: float = 0.004  # added to a lying object's widths and heights (a flat blade is not size 0)
    # the upright object's axis (fit_vertical_axis)
    axis_fit_iterations: int = 3
    axis_fit_min_scale_m: float = 0.003  # least residual scale of the down-weighting
    axis_fit_max_radius_spread: float = 1.5  # a circle wider than this many times the points' spread is not trusted
    # protrusions of upright objects
    core_radius_percentile: float = 70.0  # handles are a minority of each slice; lids lie inside
    core_radius_smoothing_bins: int = 5  # median filter over the coarse core radius profile
    protrusion_grow_scale: float = 1.06  # hysteresis: a protrusion grows back through points beyond this radius...
    protrusion_grow_margin_m: float = 0.003  # ...plus this margin
    top_protrusion_percentile: float = 20.0  # a protrusion whose points from this percentile up...
    top_object_percentile: float = 90.0  # ...lie above this percentile of the object's heights is on top
    layer_radius_percentile: float = 60.0  # radius of a slice about its own middle
    # raised lumps on lying pieces
    lump_level_percentile: float = 60.0  # the piece's top level
    lump_min_height_m: float = 0.015  # a lump rises at least this much above it...
    lump_height_ratio: float = 0.25  # ...and this share of the level
    lump_min_share: float = 0.05  # of the piece's surface: a lump covers more than this...
    lump_max_share: float = 0.6  # ...and less than this
    # extents and shapes
    object_extent_percentile: float = 98.0  # an object's height, length and width reach this percentile (from 100 - it)
    profile_extent_percentile: float = 95.0  # a lying slice's width and height; a protrusion's span
    extent_percentile: float = 97.0  # robust extents run from 100 - this to this percentile
    part_width_percentile: float = 90.0  # an upright layer's radius, a piece's horizontal spread
    lying_thickness_percentile: float = 95.0
    taper_end_percentile: float = 15.0  # the ends compared for the taper: below this and above 100 - this
    min_taper_points: int = 20  # fewer points: taper 1
    ring_min_length_m: float = 0.02  # a looped region this long is a ring (a handle)
    hole_min_pixels: int = 20  # regions smaller than this have no hole
    hole_min_area_px: int = 6  # enclosed background of at least this many pixels...
    hole_min_area_share: float = 0.06  # ...and this share of the region is a hole
    rod_elongation: float = 3.0  # length / width of a rod...
    rod_max_width_m: float = 0.035  # ...that is at most this wide
    cone_taper: tuple[float, float] = (0.55, 1.8)  # a taper outside this range is a cone
    plate_thickness_ratio: float = 0.3  # a lying piece thinner than this share of its width...
    plate_min_width_m: float = 0.015  # ...and at least this wide is a plate
    upright_plate_ratio: float = 0.25  # an upright layer shorter than this share of its width is a plate
    round_elongation: float = 1.35  # length / width below which a piece is round (sphere or cylinder)
    round_thickness_ratio: float = 0.6  # ...if its thickness is at least this share of its width
    # posture
    ambiguous_ratio_band: tuple[float, float] = (0.6, 1.4)  # of upright_ratio: either posture may be right
    ambiguous_min_height_m: float = 0.04  # flatter objects are read lying only


@dataclass
class GeometricPart:
    """One simple piece of an object with the attributes the reasoner matches on."""

    index: int
    point_idx: np.ndarray  # indices into the cluster's point arrays
    shape: str  # cylinder | box | ring | rod | sphere | plate | cone | blob
    position: str  # top | bottom | middle | side | end
    share: float  # share of the object's visible surface
    length_m: float
    width_m: float
    thickness_m: float
    protruding: bool
    colour: str
    colour_hist: np.ndarray
    centroid: np.ndarray  # table frame
    axis_span: tuple[float, float] = (0.0, 1.0)  # where along the object's main axis (0..1)
    adjacent: list[int] = field(default_factory=list)

    def describe(self) -> str:
        return (
            f"part {self.index}: {self.colour} {self.shape} at the {self.position}"
            f"{', protruding' if self.protruding else ''}, {self.share:.0%} of the object, "
            f"{self.length_m * 100:.1f} x {self.width_m * 100:.1f} x {self.thickness_m * 100:.1f} cm"
        )


@dataclass
class Decomposition:
    posture: str  # upright | lying
    height_m: float
    length_m: float  # longest horizontal extent
    width_m: float  # horizontal extent across it
    parts: list[GeometricPart]

    @property
    def longest_m(self) -> float:
        return max(self.height_m, self.length_m)

    @property
    def middle_extent_m(self) -> float:
        """Second-largest of length, width and height: the same whether the object stands or lies."""
        return float(sorted((self.height_m, self.length_m, self.width_m))[1])

    def describe(self) -> str:
        head = (f"{self.posture} object {self.length_m * 100:.1f} x {self.width_m * 100:.1f} cm, "
                f"{self.height_m * 100:.1f} cm tall, {len(self.parts)} part(s)")
        return "; ".join([head] + [p.describe() for p in self.parts])


class Piece(NamedTuple):
    """Points of the object on their way to becoming a part (before attributes are measured)."""

    point_idx: np.ndarray  # indices into the cluster's point arrays
    position: str  # top | bottom | middle | side | end; LAYER_POSITION_LATER for a layer until it is named
    protruding: bool  # a protrusion or raised lump, not a layer along the axis
    span: tuple[float, float]  # where along the object's main axis (0..1)


class HorizontalExtent(NamedTuple):
    """An object's size in the table frame: its height and its extents along and across its main horizontal axis."""

    centre_xy: np.ndarray  # median of the points' xy
    along: np.ndarray  # each point's coordinate along the main horizontal axis
    across: np.ndarray  # ...and across it
    height_m: float
    length_m: float  # longest horizontal extent
    width_m: float  # horizontal extent across it


# ----------------------------------------------------------------- profile split


def split_profile(features: np.ndarray, weights: np.ndarray, penalty: float, min_len: int,
                  max_parts: int) -> list[tuple[int, int]]:
    """Optimal piecewise-constant segmentation of a (B, d) profile; [(start, end)) bin ranges."""
    b = len(features)
    if b == 0:
        return []
    w = weights[:, None]
    cw = np.concatenate([[0.0], np.cumsum(weights)])
    cs = np.vstack([np.zeros((1, features.shape[1])), np.cumsum(features * w, axis=0)])
    cq = np.concatenate([[0.0], np.cumsum((features**2 * w).sum(axis=1))])
    # cost[i, j]: squared error of one constant piece over bins [i, j), for all pairs at once.
    n = cw[None, :] - cw[:, None]
    s = cs[None, :, :] - cs[:, None, :]
    with np.errstate(divide="ignore", invalid="ignore"):
        cost = cq[None, :] - cq[:, None] - np.where(n > 0, (s**2).sum(axis=2) / n, 0.0)
    i_idx, j_idx = np.meshgrid(np.arange(b + 1), np.arange(b + 1), indexing="ij")
    cost = np.where(j_idx - i_idx >= min_len, cost, np.inf)

    best = np.full((max_parts + 1, b + 1), np.inf)
    back = np.zeros((max_parts + 1, b + 1), dtype=int)
    best[0, 0] = 0.0
    for k in range(1, max_parts + 1):
        total = best[k - 1][:, None] + cost
        back[k] = np.argmin(total, axis=0)
        best[k] = total[back[k], np.arange(b + 1)]
    totals = [best[k, b] + penalty * (k - 1) for k in range(1, max_parts + 1)]
    k = int(np.argmin(totals)) + 1
    if not np.isfinite(totals[k - 1]):
        return [(0, b)]
    cuts, j = [], b
    for level in range(k, 0, -1):
        i = back[level, j]
        cuts.append((i, j))
        j = i
    return cuts[::-1]


def _opponent(rgb: np.ndarray) -> np.ndarray:
    x = rgb.astype(np.float64) / 255.0
    return np.stack([x[:, 0] - x[:, 1], 0.5 * (x[:, 0] + x[:, 1]) - x[:, 2], 0.5 * x.mean(axis=1)], axis=1)


def _binned(coord: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Bin index of each coordinate (values outside the edges go to the end bins)."""
    return np.clip(np.searchsorted(edges, coord, side="right") - 1, 0, len(edges) - 2)


def _fill_empty(profile: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Copy the nearest non-empty bin into empty ones (occlusion gaps)."""
    full = counts > 0
    if full.all() or not full.any():
        return profile
    idx = np.where(full, np.arange(len(counts)), 0)
    np.maximum.accumulate(idx, out=idx)
    first = np.argmax(full)
    idx[:first] = first
    return profile[idx]


def _bin_stat(values: np.ndarray, bins: np.ndarray, n_bins: int, q: float) -> np.ndarray:
    """Per-bin q-th percentile (nearest rank), all bins in one sort; 0 for empty bins."""
    out = np.zeros(n_bins)
    if len(values) == 0:
        return out
    order = np.lexsort((values, bins))
    sorted_bins = bins[order]
    counts = np.bincount(bins, minlength=n_bins)
    starts = np.searchsorted(sorted_bins, np.arange(n_bins))
    present = counts > 0
    rank = starts + np.floor(q / 100.0 * (counts - 1) + 0.5).astype(int)
    out[present] = values[order][rank[present]]
    return out


# ----------------------------------------------------------------- helpers


def fit_vertical_axis(xy: np.ndarray, config: Optional[DecompositionConfig] = None) -> tuple[np.ndarray, float]:
    """Centre and radius of a circle through horizontal points (algebraic fit, outliers down-weighted)."""
    config = config or DecompositionConfig()
    weights = np.ones(len(xy))
    centre, radius = np.median(xy, axis=0), float(np.median(np.linalg.norm(xy - np.median(xy, axis=0), axis=1)))
    for _ in range(config.axis_fit_iterations):
        a = np.column_stack([xy, np.ones(len(xy))]) * weights[:, None]
        rhs = (xy**2).sum(axis=1) * weights
        try:
            sol, *_ = np.linalg.lstsq(a, rhs, rcond=None)
        except np.linalg.LinAlgError:
            break
        c = sol[:2] / 2.0
        r2 = sol[2] + c @ c
        if r2 <= 0 or not np.all(np.isfinite(c)):
            break
        centre, radius = c, float(np.sqrt(r2))
        residual = np.abs(np.linalg.norm(xy - centre, axis=1) - radius)
        scale = max(np.median(residual) * 3.0, config.axis_fit_min_scale_m)
        weights = 1.0 / (1.0 + (residual / scale) ** 2)
    # A one-sided view of a thin object can give a huge circle; fall back to the centroid then.
    spread = float(np.ptp(xy, axis=0).max()) if len(xy) else 0.0
    if radius > spread * config.axis_fit_max_radius_spread or np.linalg.norm(centre - np.median(xy, axis=0)) > spread:
        centre = np.median(xy, axis=0)
        radius = float(np.median(np.linalg.norm(xy - centre, axis=1)))
    return centre, radius


def _components_3d(points: np.ndarray, voxel: float) -> np.ndarray:
    """Connected-component label (from 0) of each point on a voxel grid (26-connectivity)."""
    if len(points) == 0:
        return np.zeros(0, dtype=int)
    keys = np.floor((points - points.min(axis=0)) / voxel).astype(np.int64)
    dims = keys.max(axis=0) + 3
    grid = np.zeros(tuple(int(d) for d in dims), dtype=bool)
    grid[keys[:, 0] + 1, keys[:, 1] + 1, keys[:, 2] + 1] = True
    labels, _ = ndimage.label(grid, structure=np.ones((3, 3, 3), bool))
    return labels[keys[:, 0] + 1, keys[:, 1] + 1, keys[:, 2] + 1] - 1


def _extents(points: np.ndarray, config: DecompositionConfig) -> tuple[np.ndarray, np.ndarray]:
    """Robust extents (largest first) along the principal axes, and those axes (rows).

    Robust (percentiles, not extremes) so that a few stray points from a
    neighbour do not make a part longer than it is; ordered by that extent,
    not by variance, since a hollow part spreads its points unlike its size.
    """
    if len(points) < 3:
        return np.zeros(3), np.eye(3)
    points = points[:: max(1, len(points) // 1500)]
    centre = points.mean(axis=0)
    axes = principal_axes(points[:: max(1, len(points) // 2000)], centre=centre).axes.T
    proj = (points - centre) @ axes.T
    ext = (percentile(proj, config.extent_percentile, axis=0)
           - percentile(proj, 100.0 - config.extent_percentile, axis=0))
    order = np.argsort(-ext)
    return ext[order], axes[order]


def _has_hole(pixels: np.ndarray, config: DecompositionConfig) -> bool:
    """Whether an image region encloses background (a handle seen as a loop)."""
    if len(pixels) < config.hole_min_pixels:
        return False
    r0, c0 = pixels.min(axis=0)
    grid = np.zeros(tuple(pixels.max(axis=0) - pixels.min(axis=0) + 3), dtype=bool)
    grid[pixels[:, 0] - r0 + 1, pixels[:, 1] - c0 + 1] = True
    grid = ndimage.binary_closing(grid, structure=np.ones((3, 3), bool))
    filled = ndimage.binary_fill_holes(grid)
    return (filled.sum() - grid.sum()) > max(config.hole_min_area_px, config.hole_min_area_share * grid.sum())


def classify_shape(points: np.ndarray, pixels: np.ndarray, width: float, thickness: float, length: float,
                   taper: float, upright_layer: bool, config: Optional[DecompositionConfig] = None) -> str:
    """Shape word from extents, taper and topology: the words the knowledge base's part signatures use."""
    c = config or DecompositionConfig()
    if _has_hole(pixels, c) and length > c.ring_min_length_m:
        return "ring"
    ext, _ = _extents(points, c)
    e1 = max(length, ext[0])
    w = max(width, 1e-4)
    if e1 >= c.rod_elongation * w and w < c.rod_max_width_m:
        return "rod"
    if taper < c.cone_taper[0] or taper > c.cone_taper[1]:
        return "cone"
    if not upright_layer and thickness < c.plate_thickness_ratio * w and w > c.plate_min_width_m:
        return "plate"
    if upright_layer and length < c.upright_plate_ratio * w:
        return "plate"
    if e1 < c.round_elongation * w and thickness > c.round_thickness_ratio * w:
        return "sphere" if not upright_layer else "cylinder"
    if upright_layer or e1 >= c.round_elongation * w:
        return "cylinder" if (upright_layer or thickness > c.round_thickness_ratio * w) else "box"
    return "blob"


# ----------------------------------------------------------------- decomposition


def _profile_features(values: list[np.ndarray], rgb: np.ndarray, bins: np.ndarray, n_bins: int,
                      config: DecompositionConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-bin (log sizes, weighted mean opponent colour) features and bin weights.

    Returns the geometric columns, the colour columns (already scaled by
    ``colour_weight``) and the weights separately so the split can treat a
    colour change differently from a shape change."""
    counts = np.bincount(bins, minlength=n_bins).astype(np.float64)
    geometry = [np.log(np.maximum(_fill_empty(v, counts), config.min_profile_size_m)) for v in values]
    colour = _opponent(rgb)
    columns = []
    for d in range(colour.shape[1]):
        sums = np.bincount(bins, weights=colour[:, d], minlength=n_bins)
        mean = np.where(counts > 0, sums / np.maximum(counts, 1), 0.0)
        columns.append(_fill_empty(mean, counts) * config.colour_weight)
    weights = np.where(counts > 0, 1.0, config.empty_bin_weight)
    return np.stack(geometry, axis=1), np.stack(columns, axis=1), weights


def _piece_cost(features: np.ndarray, weights: np.ndarray) -> float:
    """Weighted squared error of fitting one constant to a run of profile bins."""
    w = weights[:, None]
    total = float(weights.sum()) or 1.0
    return float((features**2 * w).sum() - ((features * w).sum(axis=0) ** 2).sum() / total)


def split_shape_then_colour(geometry: np.ndarray, colour: np.ndarray, weights: np.ndarray,
                            config: "DecompositionConfig") -> list[tuple[int, int]]:
    """Profile split in which a colour change alone makes a part only at an end of the object.

    The profile is first split on size and colour together, so cuts fall where
    the colour shows the boundary most sharply. A cut is then kept only if the
    size profile alone pays a good share of it (the part changes width or height there),
    or if it cuts off an end piece with a colour of its own that reaches the
    very end (a cork, a cap, a lid). Other colour-only cuts separate *surface
    layers*, such as a label between two stretches of the body's own colour,
    and are undone, so the label stays part of the body.
    """
    n_bins = len(geometry)
    both = np.hstack([geometry, colour * config.end_colour_boost])
    pieces = split_profile(both, weights, config.split_penalty, config.min_part_bins, config.max_parts + 2)
    if len(pieces) == 1:
        return pieces
    means = [np.average(colour[a:b], axis=0, weights=weights[a:b]) / max(config.colour_weight, 1e-6)
             for a, b in pieces]

    def shape_cut(k: int) -> bool:
        """Whether the size profile alone justifies the cut between pieces k and k + 1."""
        (a, m), (_, b) = pieces[k], pieces[k + 1]
        gain = _piece_cost(geometry[a:b], weights[a:b]) - _piece_cost(geometry[a:m], weights[a:m]) \
            - _piece_cost(geometry[m:b], weights[m:b])
        return gain > config.shape_cut_share * config.split_penalty

    def closes_end(k: int, end_bin: int) -> bool:
        """A short end piece whose colour, up to the very end, is found nowhere else (a cap, not a patch)."""
        if pieces[k][1] - pieces[k][0] > n_bins // 2:  # the larger side is the body the end piece closes
            return False
        others = [means[j] for j in range(len(pieces)) if j != k]
        tip = colour[end_bin] / max(config.colour_weight, 1e-6)
        return all(min(np.linalg.norm(c - m) for m in others) >= config.layer_colour_distance
                   for c in (means[k], tip))

    keep = [shape_cut(k) for k in range(len(pieces) - 1)]
    if not keep[0] and closes_end(0, 0):
        keep[0] = True
    if not keep[-1] and closes_end(len(pieces) - 1, n_bins - 1):
        keep[-1] = True
    result, start = [], pieces[0][0]
    for k, cut in enumerate(keep):
        if cut:
            result.append((start, pieces[k][1]))
            start = pieces[k + 1][0]
    result.append((start, pieces[-1][1]))
    return result


def ambiguous_posture(cluster: ObjectCluster, config: Optional[DecompositionConfig] = None) -> bool:
    """Whether the object could be read either way (a teapot's spout makes it long; a lying bottle is tall)."""
    config = config or DecompositionConfig()
    extent = horizontal_extent(cluster.points_table, config)
    ratio = extent.height_m / max(extent.length_m, 1e-3)
    low, high = config.ambiguous_ratio_band
    return low * config.upright_ratio <= ratio <= high * config.upright_ratio and \
        extent.height_m > config.ambiguous_min_height_m


def horizontal_extent(pts: np.ndarray, config: Optional[DecompositionConfig] = None) -> HorizontalExtent:
    """Height, and robust extents along and across the main horizontal axis, of table-frame points.

    One definition of an object's size, used both to choose its posture and
    to describe it, so the two never disagree.
    """
    high = (config or DecompositionConfig()).object_extent_percentile
    low = 100.0 - high
    xy = pts[:, :2]
    centre_xy = np.median(xy, axis=0)
    major = principal_axes(xy).major if len(xy) > 2 else np.array([1.0, 0.0])
    minor = np.array([-major[1], major[0]])
    along = (xy - centre_xy) @ major
    across = (xy - centre_xy) @ minor
    length = float(percentile(along, high) - percentile(along, low))
    width = float(percentile(across, high) - percentile(across, low))
    return HorizontalExtent(centre_xy, along, across, float(percentile(pts[:, 2], high)), length, width)


def decompose(cluster: ObjectCluster, config: Optional[DecompositionConfig] = None,
              posture: Optional[str] = None) -> Decomposition:
    """Split an object cluster into simple geometric parts with attributes.

    ``posture`` ("upright"/"lying") forces the reading; by default it follows
    the height-to-length ratio.
    """
    config = config or DecompositionConfig()
    pts = cluster.points_table
    extent = horizontal_extent(pts, config)
    height, length, width = extent.height_m, extent.length_m, extent.width_m
    # Surface weight of each point: a pixel covers depth^2 / f^2 of surface, so near and far count alike.
    area = cluster.points_camera[:, 2] ** 2
    upright = height >= config.upright_ratio * max(length, 1e-3) if posture is None else posture == "upright"
    if upright:
        pieces, axis_centre = _upright_pieces(pts, cluster, config)
    else:
        pieces, axis_centre = _lying_pieces(pts, extent.along, extent.across, cluster, config), extent.centre_xy

    total_area = float(area.sum()) or 1.0
    # Tiny pieces go back to the neighbouring part with the most points nearby.
    pieces = _absorb_small(pieces, pts, area, total_area, config, upright)
    pieces = _order_positions(pieces, upright)
    parts = [_measure_part(index, piece, pts, cluster, area, total_area, upright, axis_centre, config)
             for index, piece in enumerate(pieces)]
    for part, adjacent in zip(parts, part_adjacency(parts, cluster)):
        part.adjacent = adjacent
    return Decomposition("upright" if upright else "lying", height, length, width, parts)


def _measure_part(index: int, piece: Piece, pts: np.ndarray, cluster: ObjectCluster, area: np.ndarray,
                  total_area: float, upright: bool, axis_centre: np.ndarray,
                  config: DecompositionConfig) -> GeometricPart:
    """The attributes of one piece: sizes, shape word, colour, share of the object's surface."""
    idx = piece.point_idx
    p = pts[idx]
    hist = colour_histogram(cluster.rgb[idx])
    ext, axes = _extents(p, config)
    if upright and not piece.protruding:
        radial = np.linalg.norm(p[:, :2] - axis_centre, axis=1)
        part_width = float(2 * percentile(radial, config.part_width_percentile)) if len(radial) else 0.0
        part_length = float(np.ptp(p[:, 2])) if len(p) else 0.0
        part_thickness = part_width
    else:
        part_length = float(ext[0])
        part_width = float(ext[1])
        part_thickness = float(percentile(p[:, 2], config.lying_thickness_percentile)) if not upright else float(ext[2])
    taper = _taper(p, axes[0], config) if len(p) > config.min_taper_points else 1.0
    shape = classify_shape(p, cluster.pixels[idx], part_width, part_thickness, part_length, taper,
                           upright and not piece.protruding, config)
    return GeometricPart(
        index=index,
        point_idx=idx,
        shape=shape,
        position=piece.position,
        share=float(area[idx].sum() / total_area),
        length_m=part_length,
        width_m=part_width,
        thickness_m=part_thickness,
        protruding=piece.protruding,
        colour=dominant_colour(hist),
        colour_hist=hist,
        centroid=p.mean(axis=0) if len(p) else np.zeros(3),
        axis_span=piece.span,
    )


def _taper(points: np.ndarray, axis: np.ndarray, config: DecompositionConfig) -> float:
    """Width at the low end over width at the high end along an axis (1 = constant)."""
    points = points[:: max(1, len(points) // 800)]
    t = (points - points.mean(axis=0)) @ axis
    lo, hi = percentile(t, config.taper_end_percentile), percentile(t, 100.0 - config.taper_end_percentile)
    a, b = points[t <= lo], points[t >= hi]
    if len(a) < 5 or len(b) < 5:
        return 1.0

    def spread(q: np.ndarray) -> float:
        r = q - q.mean(axis=0)
        r -= np.outer(r @ axis, axis)
        return float(percentile(np.linalg.norm(r, axis=1), config.part_width_percentile)) + 1e-3

    return spread(a) / spread(b)


def _linear_fit_cost(radius: np.ndarray, weights: np.ndarray, floor: float) -> float:
    """Weighted squared log error of the best straight radius line through a run of slices (a cone)."""
    z = np.arange(len(radius), dtype=np.float64)
    w = np.sqrt(weights)
    slope, offset = np.linalg.lstsq(np.column_stack([z, np.ones_like(z)]) * w[:, None], radius * w, rcond=None)[0]
    fitted = np.maximum(slope * z + offset, floor)
    return float((weights * (np.log(fitted) - np.log(np.maximum(radius, floor))) ** 2).sum())


def merge_cone_layers(segments: list[tuple[int, int]], radius: np.ndarray, colour: np.ndarray, weights: np.ndarray,
                      config: DecompositionConfig) -> list[tuple[int, int]]:
    """Neighbouring layers of one colour that one cone explains join again.

    The profile split fits a constant width per layer, so a conical part (a
    martini bowl, a funnel) is cut into rings of growing width. Two such
    layers are one part when a single straight radius line through both fits
    their slices about as well as the two constants did (within one split
    penalty); a stem under the bowl does not lie on the bowl's line.
    """
    segments = list(segments)
    filled = np.maximum(radius, config.min_profile_size_m)
    k = 0
    while k < len(segments) - 1:
        (a, m), (_, b) = segments[k], segments[k + 1]
        mean_a = np.average(colour[a:m], axis=0, weights=weights[a:m])
        mean_b = np.average(colour[m:b], axis=0, weights=weights[m:b])
        same_colour = np.linalg.norm(mean_a - mean_b) / max(config.colour_weight, 1e-6) < config.layer_colour_distance
        log_r = np.log(filled)
        constant = _piece_cost(log_r[a:m, None], weights[a:m]) + _piece_cost(log_r[m:b, None], weights[m:b])
        if same_colour and _linear_fit_cost(filled[a:b], weights[a:b], config.min_profile_size_m) \
                <= constant + config.split_penalty:
            segments[k:k + 2] = [(a, b)]
        else:
            k += 1
    return segments


def _slice_radius(points: np.ndarray, bins: np.ndarray, n_bins: int, config: DecompositionConfig) -> np.ndarray:
    """Per-slice radius measured about each slice's own middle, not the object's fitted axis.

    One fitted axis is off-centre for parts of another width (the circle fit
    follows a glass's bowl, so its stem reads a centimetre wide); a slice's
    own middle keeps a thin stem thin and a flat foot wide.
    """
    cx = _bin_stat(points[:, 0], bins, n_bins, 50)
    cy = _bin_stat(points[:, 1], bins, n_bins, 50)
    dist = np.hypot(points[:, 0] - cx[bins], points[:, 1] - cy[bins])
    return _bin_stat(dist, bins, n_bins, config.layer_radius_percentile)


# Layers (pieces along the axis) are named top / bottom / end / middle by _order_positions once small pieces are
# merged away; until then they carry this placeholder. Protrusions and raised lumps carry their own position.
LAYER_POSITION_LATER = ""


def _upright_pieces(pts: np.ndarray, cluster: ObjectCluster,
                    config: DecompositionConfig) -> tuple[list[Piece], np.ndarray]:
    """Protrusions, then layers of the core along the vertical axis; and that axis' centre (xy)."""
    z = pts[:, 2]
    centre, _ = fit_vertical_axis(pts[:, :2], config)
    radial = np.linalg.norm(pts[:, :2] - centre, axis=1)
    z_lo = float(min(percentile(z, config.profile_trim_percent), 0.0))
    z_hi = float(percentile(z, 100.0 - config.profile_trim_percent)) + 1e-4
    edges = np.linspace(z_lo, z_hi, config.bins + 1)
    bins = _binned(z, edges)
    # The core radius is taken over coarser slices than the profile: a handle must stay a minority of each.
    coarse_bins = _binned(z, np.linspace(z_lo, z_hi, config.protrusion_bins + 1))
    core_r = _bin_stat(radial, coarse_bins, config.protrusion_bins, config.core_radius_percentile)
    counts = np.bincount(coarse_bins, minlength=config.protrusion_bins)
    core_r = _fill_empty(core_r, counts)
    core_r = ndimage.median_filter(core_r, size=config.core_radius_smoothing_bins, mode="nearest")
    strong = radial > core_r[coarse_bins] * config.protrusion_scale + config.protrusion_margin_m
    # Hysteresis: a protrusion grows back to where it leaves the body, through points just outside the core.
    weak = radial > core_r[coarse_bins] * config.protrusion_grow_scale + config.protrusion_grow_margin_m

    pieces: list[Piece] = []
    core = np.ones(len(pts), dtype=bool)
    if strong.any():
        out_idx = np.flatnonzero(weak)
        labels = _components_3d(pts[out_idx], config.voxel_m)
        seeded = np.unique(labels[strong[out_idx]])
        keep = np.isin(labels, seeded)
        out_idx, labels = out_idx[keep], labels[keep]
        core[out_idx] = False
        area = cluster.points_camera[:, 2] ** 2
        total = float(area.sum())
        for label in np.unique(labels):
            member = out_idx[labels == label]
            if area[member].sum() / total >= config.min_part_share and len(member) >= config.min_part_points:
                zc = z[member]
                top = config.profile_extent_percentile
                span = (float((percentile(zc, 100.0 - top) - z_lo) / (z_hi - z_lo)),
                        float((percentile(zc, top) - z_lo) / (z_hi - z_lo)))
                on_top = percentile(zc, config.top_protrusion_percentile) > percentile(z, config.top_object_percentile)
                pieces.append(Piece(member, "top" if on_top else "side", True, span))
            else:
                core[member] = True
    core_idx = np.flatnonzero(core)
    if len(core_idx) == 0:
        return pieces, centre
    cbins = bins[core_idx]
    r_profile = _slice_radius(pts[core_idx], cbins, config.bins, config)
    geometry, colour, weights = _profile_features([r_profile], cluster.rgb[core_idx], cbins, config.bins, config)
    segments = split_shape_then_colour(geometry, colour, weights, config)
    segments = merge_cone_layers(segments, r_profile, colour, weights, config)
    for s, e in segments:
        member = core_idx[(cbins >= s) & (cbins < e)]
        if len(member):
            pieces.append(Piece(member, LAYER_POSITION_LATER, False, (s / config.bins, e / config.bins)))
    return pieces, centre


def _lying_pieces(pts: np.ndarray, along: np.ndarray, across: np.ndarray, cluster: ObjectCluster,
                  config: DecompositionConfig) -> list[Piece]:
    """Layers along the main horizontal axis, each with a raised lump on top split off as its own piece."""
    z = pts[:, 2]
    a_lo = float(percentile(along, config.profile_trim_percent))
    a_hi = float(percentile(along, 100.0 - config.profile_trim_percent)) + 1e-4
    edges = np.linspace(a_lo, a_hi, config.bins + 1)
    bins = _binned(along, edges)
    top = config.profile_extent_percentile
    width = _bin_stat(across, bins, config.bins, top) - _bin_stat(across, bins, config.bins, 100.0 - top)
    height = _bin_stat(z, bins, config.bins, top)
    pad = config.lying_profile_pad_m
    geometry, colour, weights = _profile_features([width + pad, height + pad], cluster.rgb, bins, config.bins, config)
    segments = split_shape_then_colour(geometry, colour, weights, config)
    pieces: list[Piece] = []
    layers = [((bins >= s) & (bins < e), (s / config.bins, e / config.bins)) for s, e in segments]
    layers = [(np.flatnonzero(m), span) for m, span in layers if m.any()]
    for member, span in layers:
        # A raised lump on top of a piece (knob, tissue, lid handle) becomes its own top part.
        zm = z[member]
        top_level = percentile(zm, config.lump_level_percentile)
        lump = zm > top_level + max(config.lump_min_height_m, config.lump_height_ratio * top_level)
        area = cluster.points_camera[member, 2] ** 2
        share = area[lump].sum() / area.sum()
        if lump.sum() >= config.min_part_points and config.lump_min_share < share < config.lump_max_share:
            pieces.append(Piece(member[~lump], LAYER_POSITION_LATER, False, span))
            pieces.append(Piece(member[lump], "top", True, span))
        else:
            pieces.append(Piece(member, LAYER_POSITION_LATER, False, span))
    return pieces


def _horizontal_spread(points: np.ndarray, config: DecompositionConfig) -> float:
    """Robust horizontal diameter of a set of points (twice a high percentile of the distance from their middle)."""
    xy = points[:, :2]
    radii = np.linalg.norm(xy - np.median(xy, axis=0), axis=1)
    return 2.0 * float(percentile(radii, config.part_width_percentile)) + 1e-3


def _layers_bottom_up(pieces: list[Piece]) -> list[int]:
    """Indices of the layers (not protrusions) in order along the axis."""
    return sorted((k for k, piece in enumerate(pieces) if not piece.protruding), key=lambda k: pieces[k].span[0])


def _distinct_end_layers(pieces: list[Piece], pts: np.ndarray, area: np.ndarray, total_area: float,
                         config: DecompositionConfig) -> set[int]:
    """Indices of small top/bottom layers that are much narrower or wider than the layer they end.

    A knob on a lid, a cork in a neck or the foot of a glass can be a small
    share of what the camera sees and still be a part: an end layer whose
    width differs clearly from its neighbour's is not noise.
    """
    layers = _layers_bottom_up(pieces)
    keep: set[int] = set()
    if len(layers) < 2:
        return keep
    for end, neighbour in ((layers[0], layers[1]), (layers[-1], layers[-2])):
        member = pieces[end].point_idx
        if len(member) < config.min_part_points or area[member].sum() / total_area < config.min_end_part_share:
            continue
        ratio = _horizontal_spread(pts[member], config) / _horizontal_spread(pts[pieces[neighbour].point_idx], config)
        if max(ratio, 1.0 / ratio) >= config.end_part_width_ratio:
            keep.add(end)
    return keep


def _absorb_small(pieces: list[Piece], pts: np.ndarray, area: np.ndarray, total_area: float,
                  config: DecompositionConfig, upright: bool) -> list[Piece]:
    """Merge pieces below the minimum share into the nearest remaining piece (distinct end layers stay)."""
    kept = _distinct_end_layers(pieces, pts, area, total_area, config) if upright else set()
    is_big = [k in kept or area[piece.point_idx].sum() / total_area >= config.min_part_share
              for k, piece in enumerate(pieces)]
    big = [piece for piece, b in zip(pieces, is_big) if b]
    small = [piece for piece, b in zip(pieces, is_big) if not b]
    if not big:
        if not pieces:
            return []
        return [Piece(np.concatenate([piece.point_idx for piece in pieces]), "middle", False, (0.0, 1.0))]
    for piece in small:
        centroid = pts[piece.point_idx].mean(axis=0)
        nearest = int(np.argmin([np.linalg.norm(pts[b.point_idx].mean(axis=0) - centroid) for b in big]))
        target = big[nearest]
        span = target.span
        if not target.protruding and not piece.protruding:  # a merged layer widens the span it covers
            span = (min(span[0], piece.span[0]), max(span[1], piece.span[1]))
        big[nearest] = target._replace(point_idx=np.concatenate([target.point_idx, piece.point_idx]), span=span)
    return big


def _order_positions(pieces: list[Piece], upright: bool) -> list[Piece]:
    """Position words of the pieces along the axis, given after small pieces were merged away.

    A base ring too small to keep is merged into the piece above it; that piece
    is then the lowest one and must say "bottom" (not the "middle" it had
    while the ring was below it). Protrusions keep their own positions.
    """
    layers = _layers_bottom_up(pieces)
    ends = ("bottom", "top") if upright else ("end", "end")
    out = list(pieces)
    for rank, k in enumerate(layers):
        if len(layers) == 1:
            position = "middle"
        elif rank == 0:
            position = ends[0]
        elif rank == len(layers) - 1:
            position = ends[1]
        else:
            position = "middle"
        out[k] = pieces[k]._replace(position=position)
    return out


def part_adjacency(parts: list[GeometricPart], cluster: ObjectCluster) -> list[list[int]]:
    """For each part, the indices of the parts whose pixels touch it (4-neighbours in the image, one pixel gap allowed).

    The knowledge base's signatures say which parts meet (a handle meets the
    body, a cap meets the neck); this is what they are matched against.
    """
    if len(parts) < 2:
        return [[] for _ in parts]
    r0, c0 = cluster.pixels.min(axis=0)
    shape = tuple(cluster.pixels.max(axis=0) - cluster.pixels.min(axis=0) + 1)
    label = np.full(shape, -1, dtype=np.int32)
    for part in parts:
        px = cluster.pixels[part.point_idx]
        label[px[:, 0] - r0, px[:, 1] - c0] = part.index
    pairs: set[tuple[int, int]] = set()
    for step in (1, 2):
        for a, b in ((label[step:, :], label[:-step, :]), (label[:, step:], label[:, :-step])):
            touching = (a >= 0) & (b >= 0) & (a != b)
            pairs.update(zip(a[touching].tolist(), b[touching].tolist()))
    return [sorted({b for a, b in pairs if a == part.index} | {a for a, b in pairs if b == part.index})
            for part in parts]
