"""Depth-camera artefact filters on organised (image-shaped) data.

Real RGB-D sensors return "flying pixels" on occlusion edges (depth mixed
between foreground and background), and learned masks bleed a pixel or two
over the part's silhouette onto whatever lies behind it. These filters work
on the image grid instead of a KD-tree: neighbours of a pixel are its image
neighbours, which is what a depth camera's geometry gives for free and keeps
the cost linear in the window size.

All functions but :func:`guided_filter` (a float map) return boolean masks of what
to keep; none modifies its inputs.
"""

from __future__ import annotations

import numpy as np

_MAX_DEPTH_BINS = 100_000


def erode_mask(mask: np.ndarray, radius_px: int) -> np.ndarray:
    """Remove a band of ``radius_px`` pixels (4-connected distance) along the mask border.

    Pixels outside the array count as background. Each step keeps a pixel
    only if its four neighbours are in the mask, done with shifted ANDs,
    several times cheaper than a generic morphology call on the small
    windows the grasp-region code passes in. The 4-connected distance matches
    :func:`readmit_border`, which grows back one 4-connected step per round.
    """
    out = mask.copy()
    for _ in range(max(int(radius_px), 0)):
        source = out.copy()
        out[1:, :] &= source[:-1, :]
        out[:-1, :] &= source[1:, :]
        out[:, 1:] &= source[:, :-1]
        out[:, :-1] &= source[:, 1:]
        out[0, :] = out[-1, :] = False
        out[:, 0] = out[:, -1] = False
    return out


def depth_tolerance(depth: np.ndarray, absolute_m: float, relative: float) -> np.ndarray:
    """Largest depth step between image neighbours that still counts as one surface.

    It has to cover sensor noise (which grows with range) and the step of a
    surface seen at a steep angle (which grows with range too), hence an
    absolute floor plus a part proportional to depth.
    """
    return absolute_m + relative * depth


class NeighbourLinks:
    """Depth agreement between 4-connected image neighbours of a window.

    ``consistent_right[i, j]`` says pixels (i, j) and (i, j+1) are both
    candidates and lie on one surface; ``inconsistent_*`` that both are
    candidates and a depth discontinuity separates them. Computing the links
    once lets several filters vote with them cheaply.
    """

    def __init__(self, depth: np.ndarray, candidates: np.ndarray, absolute_m: float, relative: float):
        self.candidates = candidates
        with np.errstate(invalid="ignore"):
            step_right = np.abs(depth[:, 1:] - depth[:, :-1])
            step_down = np.abs(depth[1:, :] - depth[:-1, :])
            near_right = np.fmin(depth[:, 1:], depth[:, :-1])
            near_down = np.fmin(depth[1:, :], depth[:-1, :])
            smooth_right = step_right <= depth_tolerance(near_right, absolute_m, relative)
            smooth_down = step_down <= depth_tolerance(near_down, absolute_m, relative)
        pair_right = candidates[:, 1:] & candidates[:, :-1]
        pair_down = candidates[1:, :] & candidates[:-1, :]
        self.consistent_right = pair_right & smooth_right
        self.consistent_down = pair_down & smooth_down
        self.inconsistent_right = pair_right & ~smooth_right
        self.inconsistent_down = pair_down & ~smooth_down

    def votes(self, voters: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per pixel: how many voter neighbours agree with its depth, and how many do not."""
        agree = np.zeros(voters.shape, dtype=np.int8)
        disagree = np.zeros(voters.shape, dtype=np.int8)
        for links, counts in ((self.consistent_right, agree), (self.inconsistent_right, disagree)):
            counts[:, :-1] += links & voters[:, 1:]
            counts[:, 1:] += links & voters[:, :-1]
        for links, counts in ((self.consistent_down, agree), (self.inconsistent_down, disagree)):
            counts[:-1, :] += links & voters[1:, :]
            counts[1:, :] += links & voters[:-1, :]
        return agree, disagree


def reject_depth_discontinuities(links: NeighbourLinks, pixels: np.ndarray) -> np.ndarray:
    """Keep pixels that agree with at least one candidate neighbour and with no fewer than disagree.

    A flying pixel sits between two surfaces and agrees with neither, so it
    is outvoted; a pixel on a smooth surface agrees with its neighbours.
    Isolated pixels (no agreeing neighbour) are dropped as well.
    """
    agree, disagree = links.votes(links.candidates)
    return pixels & (agree > 0) & (agree >= disagree)


def readmit_border(links: NeighbourLinks, core: np.ndarray, border: np.ndarray, rounds: int) -> np.ndarray:
    """Grow the trusted core back into the eroded border where depth continues smoothly.

    Erosion throws away the outermost pixels, which on a thin part (a stem a
    few pixels wide) shifts the centroid and shrinks the measured width. Each
    round re-admits border pixels with more agreeing than disagreeing
    neighbours among the pixels already admitted, so the true silhouette
    comes back while flying pixels and mask bleed (which disagree with the
    surface they touch) stay out.

    Only the border pixels are visited: their links to the four neighbours
    are gathered once, and each round only looks up which neighbours are
    admitted by now, which keeps the rounds cheap next to whole-window votes.
    """
    height, width = core.shape
    flat = np.flatnonzero(border & ~core)
    if flat.size == 0 or rounds <= 0:
        return core.copy()
    rows = flat // width
    cols = flat - rows * width
    padded = np.zeros((height + 2, width + 2), dtype=bool)
    padded[1:-1, 1:-1] = core
    admitted_flat = padded.ravel()
    here = (rows + 1) * (width + 2) + (cols + 1)
    # Per direction: this pixel's link states (fixed) and where its neighbour sits in `padded`.
    directions = []
    for consistent, inconsistent, link_index, offset in _border_links(links, rows, cols, width):
        directions.append((consistent.ravel()[link_index], inconsistent.ravel()[link_index], here + offset))
    pending = np.ones(rows.size, dtype=bool)
    for _ in range(int(rounds)):
        agree = np.zeros(rows.size, dtype=np.int8)
        disagree = np.zeros(rows.size, dtype=np.int8)
        for consistent, inconsistent, neighbour in directions:
            voter = admitted_flat[neighbour]
            agree += consistent & voter
            disagree += inconsistent & voter
        grown = pending & (agree > 0) & (agree >= disagree)
        if not grown.any():
            break
        admitted_flat[here[grown]] = True
        pending &= ~grown
    return padded[1:-1, 1:-1].copy()


def _border_links(links: NeighbourLinks, rows: np.ndarray, cols: np.ndarray, width: int):
    """For right, left, down, up: (consistent, inconsistent) link arrays padded with False,
    the flat index of each pixel's link in them, and the neighbour's offset in a 1-px padded image."""
    horizontal = [_pad_false(a, axis=1) for a in (links.consistent_right, links.inconsistent_right)]
    vertical = [_pad_false(a, axis=0) for a in (links.consistent_down, links.inconsistent_down)]
    padded_width = width + 2
    yield horizontal[0], horizontal[1], rows * (width + 1) + cols + 1, 1  # link (r, c)-(r, c+1)
    yield horizontal[0], horizontal[1], rows * (width + 1) + cols, -1  # link (r, c-1)-(r, c)
    yield vertical[0], vertical[1], (rows + 1) * width + cols, padded_width  # link (r, c)-(r+1, c)
    yield vertical[0], vertical[1], rows * width + cols, -padded_width  # link (r-1, c)-(r, c)


def _pad_false(links: np.ndarray, axis: int) -> np.ndarray:
    """One False row (axis 0) or column (axis 1) on both sides; np.pad's generality costs more than the copy."""
    shape = list(links.shape)
    shape[axis] += 2
    out = np.zeros(shape, dtype=bool)
    if axis == 0:
        out[1:-1] = links
    else:
        out[:, 1:-1] = links
    return out


def reject_depth_outliers(depth_values: np.ndarray, gap_m: float, sparse_fraction: float = 0.002) -> np.ndarray:
    """Statistical outlier removal along the viewing direction: keep the main depth cluster.

    Points come from mask pixels, so they cannot stray sideways; what goes
    wrong is depth: a clump of background inside the mask (seen through the
    hole of a mug handle, mask bleed) or stray returns far in front of or
    behind the part. The depth histogram (bins of ``gap_m / 2``) is split
    wherever two consecutive bins hold fewer than ``sparse_fraction`` of
    the points, i.e. at empty depth intervals of at least ``gap_m`` (always
    when longer than 1.5 ``gap_m``), and the most populated cluster wins.
    Unlike a z-score, this never trims a part that legitimately spans a
    long depth range (a handle seen end-on), however skewed its depths are.
    Returns the keep-mask over ``depth_values``.
    """
    count = depth_values.size
    if count == 0:
        return np.zeros(0, dtype=bool)
    nearest = float(depth_values.min())
    span = float(depth_values.max()) - nearest
    if span <= gap_m:
        return np.ones(count, dtype=bool)
    bin_m = gap_m / 2
    # Absurd far returns share one last bin instead of growing the histogram.
    bins = np.minimum((depth_values - nearest) * (1.0 / bin_m), _MAX_DEPTH_BINS).astype(np.intp)
    histogram = np.bincount(bins)
    dense = histogram >= max(1.0, sparse_fraction * count)
    sparse = ~dense
    # A cluster boundary is any run of two or more sparse bins.
    gap_start = sparse[:-1] & sparse[1:]
    cluster_of_bin = np.cumsum(np.concatenate([[0], gap_start & ~np.concatenate([[False], gap_start[:-1]])]))
    weights = np.bincount(cluster_of_bin, weights=np.where(dense, histogram, 0))
    best = int(np.argmax(weights))
    in_best = dense & (cluster_of_bin == best)
    first, last = np.flatnonzero(in_best)[[0, -1]]
    return (bins >= first) & (bins <= last)


def guided_filter(guide: np.ndarray, source: np.ndarray, radius_px: int, eps: float, subsample: int = 1) -> np.ndarray:
    """Edge-aware smoothing of ``source`` (H, W) that follows the edges of ``guide`` (H, W, C).

    A mask predicted on a coarse grid and upsampled bilinearly has soft
    edges that ignore the image: a thin handle comes out as a blur a grid
    cell wide, half of which falls on the table. The guided filter (He, Sun
    and Tang, 2010) fits, in every ``(2r+1)``-pixel window, the source as a
    linear function of the guide's channels and averages the fits, so the
    output's edges move onto the guide's edges while flat regions stay as
    they were; ``eps`` is the guide variance below which an edge is treated
    as noise. With ``subsample`` s > 1 the fits are made on a grid s times
    coarser and their coefficients upsampled before they meet the full-size
    guide (He and Sun's fast guided filter): the cost then stays bounded for
    a close-up object on an HD camera, and a source that is itself upsampled
    from a coarse grid loses nothing by it. Returns a float32 map the shape
    of ``source``.
    """
    from scipy import ndimage

    guide = np.asarray(guide)
    if guide.ndim == 2:
        guide = guide[:, :, None]
    source = np.asarray(source)
    if guide.shape[:2] != source.shape:
        raise ValueError(f"guide {guide.shape[:2]} and source {source.shape} differ in size")
    step = max(int(subsample), 1)
    # The fits in float64 (variances of nearly flat guides cancel); once subsampled, the full-size part in float32.
    small_guide = guide[::step, ::step].astype(np.float64)
    small_source = source[::step, ::step].astype(np.float64)
    size = 2 * max(int(round(radius_px / step)), 1) + 1

    def box(values: np.ndarray) -> np.ndarray:
        return ndimage.uniform_filter(values, size=size, mode="reflect")

    channels = guide.shape[2]
    mean_guide = np.stack([box(small_guide[:, :, c]) for c in range(channels)], axis=-1)
    mean_source = box(small_source)
    covariance = np.stack([box(small_guide[:, :, c] * small_source) for c in range(channels)], axis=-1)
    covariance -= mean_guide * mean_source[:, :, None]
    variance = np.empty(small_source.shape + (channels, channels))
    for i in range(channels):
        for j in range(i, channels):
            value = box(small_guide[:, :, i] * small_guide[:, :, j]) - mean_guide[:, :, i] * mean_guide[:, :, j]
            variance[:, :, i, j] = variance[:, :, j, i] = value
    variance += eps * np.eye(channels)
    slope = np.linalg.solve(variance, covariance[..., None])[..., 0]
    intercept = mean_source - np.einsum("hwc,hwc->hw", slope, mean_guide)
    coefficients = np.concatenate([slope, intercept[:, :, None]], axis=-1)
    coefficients = np.stack([box(coefficients[:, :, c]) for c in range(channels + 1)], axis=-1)
    if step > 1:
        coefficients = _upsampled(coefficients, step, source.shape)
    guide = guide.astype(coefficients.dtype)
    return (np.einsum("hwc,hwc->hw", coefficients[:, :, :channels], guide) + coefficients[:, :, channels]).astype(
        np.float32)


def _upsampled(grid: np.ndarray, step: int, shape: tuple[int, int]) -> np.ndarray:
    """Bilinear values at every full-size pixel of a (h, w, C) map sampled at every ``step``-th pixel.

    Separable: one small interpolation matrix per axis, so the cost is two matrix products per channel.
    """
    def weights(full: int, coarse: int) -> np.ndarray:
        position = np.minimum(np.arange(full) / step, coarse - 1)
        low = np.floor(position).astype(np.intp)
        high = np.minimum(low + 1, coarse - 1)
        frac = position - low
        matrix = np.zeros((full, coarse), dtype=np.float32)
        np.add.at(matrix, (np.arange(full), low), 1.0 - frac)
        np.add.at(matrix, (np.arange(full), high), frac)
        return matrix

    rows, cols = weights(shape[0], grid.shape[0]), weights(shape[1], grid.shape[1])
    grid = grid.astype(np.float32)
    return np.stack([rows @ grid[:, :, c] @ cols.T for c in range(grid.shape[2])], axis=-1)
