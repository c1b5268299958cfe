"""Object crops: the one place where a proposal in a camera frame becomes the model's input, and back.

Training (generated frames, true object masks) and inference (real frames,
geometric proposals) both call :func:`crop_inputs` and :func:`paste_crop`, so
the network never sees a crop made by other rules than the ones it was
trained on. Everything that would tie the model to one camera is normalised
away: the crop is square around the proposal and resampled to a fixed size
(so focal length and resolution drop out), depth enters as height above the
table and as relief around the object's median depth (so camera height and
tilt drop out), and the crop's true metric size is given separately as a
scalar (so a bread knife is still longer than a steak knife).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from partseg_ros.geometry.camera import CameraModel, as_camera_model
from partseg_ros.types import CameraIntrinsics

CHANNELS = ("red", "green", "blue", "height", "relief", "depth_valid", "proposal")
SCALARS = ("log_side", "median_depth")


@dataclass(frozen=True)
class CropSettings:
    """How crops are cut; saved with the model because the weights depend on it."""

    size: int = 96
    margin: float = 0.15  # extra context on each side, as a share of the proposal's longer box side
    min_side_px: int = 24  # tiny proposals are cropped at least this large (context for a far-away knob)
    height_scale: float = 10.0  # metres -> channel units (10 cm = 1)
    relief_scale: float = 5.0
    relief_clip: float = 2.0
    reference_side_m: float = 0.25


@dataclass(frozen=True)
class CropWindow:
    """A square window in image pixels; it may reach past the image border (padded there)."""

    x0: int
    y0: int
    side: int

    def contains_box(self) -> tuple[int, int, int, int]:
        return self.x0, self.y0, self.x0 + self.side, self.y0 + self.side

    def inside(self, height: int, width: int) -> tuple[int, int, int, int]:
        """(x0, y0, x1, y1): the part of the window that lies on an image of that size (empty when x1 <= x0)."""
        return (max(self.x0, 0), max(self.y0, 0),
                min(self.x0 + self.side, width), min(self.y0 + self.side, height))


def square_window(mask: np.ndarray, settings: CropSettings, jitter: np.ndarray | None = None) -> CropWindow:
    """The square crop around a proposal mask; ``jitter`` (dx, dy, scale) perturbs it for training."""
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        raise ValueError("cannot crop around an empty mask")
    y0, y1, x0, x1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    side = max(y1 - y0, x1 - x0) * (1.0 + 2.0 * settings.margin)
    cx, cy = (x0 + x1) / 2.0, (y0 + y1) / 2.0
    if jitter is not None:
        cx += jitter[0] * side
        cy += jitter[1] * side
        side *= jitter[2]
    side = max(int(round(side)), settings.min_side_px)
    return CropWindow(int(round(cx - side / 2.0)), int(round(cy - side / 2.0)), side)


def _window(image: np.ndarray, window: CropWindow, fill: float) -> np.ndarray:
    """The window's pixels, padded with ``fill`` where it leaves the image."""
    h, w = image.shape[:2]
    out = np.full((window.side, window.side) + image.shape[2:], fill, dtype=image.dtype)
    sx0, sy0, sx1, sy1 = window.inside(h, w)
    if sx1 > sx0 and sy1 > sy0:
        out[sy0 - window.y0:sy1 - window.y0, sx0 - window.x0:sx1 - window.x0] = image[sy0:sy1, sx0:sx1]
    return out


def _resample(patch: np.ndarray, size: int, smooth: bool) -> np.ndarray:
    """Nearest sampling to size x size, after a box filter over one output pixel's footprint when shrinking."""
    side = patch.shape[0]
    factor = side / size
    if smooth and factor > 1.5:
        k = int(round(factor))
        axes = (k, k) + (1,) * (patch.ndim - 2)
        patch = ndimage.uniform_filter(patch, size=axes, mode="nearest")
    idx = np.minimum(((np.arange(size) + 0.5) * factor).astype(np.int64), side - 1)
    return patch[idx][:, idx]


def height_above_plane(depth_m: np.ndarray, camera: CameraModel | CameraIntrinsics, normal: np.ndarray,
                       offset: float) -> np.ndarray:
    """Signed height of every pixel's 3D point above the plane n.p + d = 0 (NaN without depth or ray).

    Training renders are pinhole and pass their intrinsics; a real camera's
    distortion must go through the same rays the proposals were found with.
    """
    h, w = depth_m.shape
    x_rays, y_rays = as_camera_model(camera).normalized_rays(slice(0, h), slice(0, w))
    n = np.asarray(normal, dtype=np.float32)
    return depth_m * (n[0] * x_rays + n[1] * y_rays + n[2]) + np.float32(offset)


def window_focal_px(camera: CameraModel | CameraIntrinsics, window: CropWindow) -> float:
    """The pixel scale :func:`crop_inputs` turns the crop's side into metres with, taken at the crop's centre.

    One rule for training and inference: fx on the pinhole training renders,
    the lens's own local scale on a distorted camera (smaller towards a
    barrel lens's corners), so an object keeps its metric size wherever it sits.
    """
    centre = window.side / 2.0 - 0.5
    return as_camera_model(camera).focal_length_at(window.x0 + centre, window.y0 + centre)


def crop_inputs(rgb: np.ndarray, depth_m: np.ndarray, height_m: np.ndarray, proposal: np.ndarray,
                window: CropWindow, focal_px: float, settings: CropSettings) -> tuple[np.ndarray, np.ndarray]:
    """(channels (7, S, S) float32, scalars (2,) float32) for one proposal; see :data:`CHANNELS`."""
    s = settings.size
    rgb_c = _resample(_window(rgb, window, 0).astype(np.float32) / 255.0, s, smooth=True)
    depth_c = _resample(_window(depth_m.astype(np.float32), window, np.nan), s, smooth=False)
    height_c = _resample(_window(height_m.astype(np.float32), window, np.nan), s, smooth=False)
    proposal_c = _resample(_window(proposal.astype(np.float32), window, 0.0), s, smooth=False)
    valid = np.isfinite(depth_c)
    own = proposal & np.isfinite(depth_m)
    median = float(np.median(depth_m[own])) if own.any() else (float(np.nanmedian(depth_c)) if valid.any() else 1.0)
    channels = np.zeros((len(CHANNELS), s, s), dtype=np.float32)
    channels[0:3] = ((rgb_c - 0.5) / 0.25).transpose(2, 0, 1)
    channels[3] = np.where(valid, np.clip(np.nan_to_num(height_c) * settings.height_scale, -1.0, 4.0), 0.0)
    channels[4] = np.where(valid, np.clip((np.nan_to_num(depth_c) - median) * settings.relief_scale,
                                          -settings.relief_clip, settings.relief_clip), 0.0)
    channels[5] = valid
    channels[6] = proposal_c
    side_m = window.side * median / max(focal_px, 1e-6)
    scalars = np.array([np.log(max(side_m, 1e-3) / settings.reference_side_m), median - 0.8], dtype=np.float32)
    return channels, scalars


def crop_labels(labels: np.ndarray, window: CropWindow, size: int) -> np.ndarray:
    """An integer label image cut and resampled (nearest) exactly like the inputs."""
    return _resample(_window(labels, window, 0), size, smooth=False)


def paste_crop(crop: np.ndarray, window: CropWindow, image_size: tuple[int, int]) -> np.ndarray:
    """A crop-frame float map (any square size) resampled bilinearly onto the full image (0 outside the window)."""
    h, w = image_size
    out = np.zeros((h, w), dtype=np.float32)
    sx0, sy0, sx1, sy1 = window.inside(h, w)
    if sx1 <= sx0 or sy1 <= sy0:
        return out
    scale = crop.shape[0] / window.side
    ys = (np.arange(sy0, sy1) - window.y0 + 0.5) * scale - 0.5
    xs = (np.arange(sx0, sx1) - window.x0 + 0.5) * scale - 0.5
    grid_y, grid_x = np.meshgrid(ys, xs, indexing="ij")
    out[sy0:sy1, sx0:sx1] = ndimage.map_coordinates(crop.astype(np.float32), [grid_y, grid_x], order=1, mode="nearest")
    return out
