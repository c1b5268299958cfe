"""Camera models built from CameraInfo fields, and pixel -> viewing-ray maps.

The grasp-region code never works with K or P directly: it asks a
:class:`CameraModel` for the normalised ray ``(x/z, y/z)`` of each pixel, so a
point is simply ``depth * (x_n, y_n, 1)`` in the REP-103 optical frame
(x right, y down, z forward). Which matrix describes the image depends on
whether it was rectified (sensor_msgs/CameraInfo conventions):

* rectified images (``image_rect``, most registered depth streams): P's left
  3x3 block, no distortion. P's fourth column (a stereo baseline) is not
  applied: points stay in this camera's own rectified optical frame.
* raw images: K plus the distortion model D. Pixel coordinates are
  undistorted by inverting the distortion model numerically (Newton's method),
  once per camera, into a cached ray map. OpenCV's undistortPoints was
  measured against it (benchmarks/bench_undistortion.py): with its default
  five steps it is 0.08 px off in a wide-angle lens's corners; iterated to
  convergence it is as exact (1e-9 px), and once its answer gets the checks
  below (it reports no failure) it saves 50-90 ms of a 640x480 map built once
  per camera, which does not pay for OpenCV as a new binary dependency.

Every pixel-to-ray in partseg goes through this model (the backends get it in
``GroundingRequest.camera``), so segmentation and grasp regions agree on
where a pixel lies in 3D.

Supported distortion models: ``plumb_bob`` (k1 k2 p1 p2 k3), ``rational_polynomial``
(k1 k2 p1 p2 k3 k4 k5 k6) and ``equidistant`` (fisheye k1..k4). Anything else
with non-zero coefficients is rejected with :class:`InvalidIntrinsicsError`
rather than silently treated as a pinhole.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Optional, Sequence

import numpy as np

from partseg_ros.types import CameraIntrinsics

PLUMB_BOB = "plumb_bob"
RATIONAL_POLYNOMIAL = "rational_polynomial"
EQUIDISTANT = "equidistant"
_COEFFICIENT_COUNTS = {PLUMB_BOB: 5, RATIONAL_POLYNOMIAL: 8, EQUIDISTANT: 4}

# Newton inversion of the distortion: residual in normalised image units.
# 1e-10 is about 1e-7 px for a 600 px focal length.
_UNDISTORT_TOLERANCE = 1e-10
_UNDISTORT_MAX_ITERATIONS = 30


class InvalidIntrinsicsError(ValueError):
    """The camera description cannot be used to lift pixels into 3D."""


def validate_intrinsics(intrinsics: CameraIntrinsics) -> None:
    """Raise InvalidIntrinsicsError when focal lengths, centre or size are unusable."""
    values = (intrinsics.fx, intrinsics.fy, intrinsics.cx, intrinsics.cy)
    if not all(np.isfinite(values)):
        raise InvalidIntrinsicsError(f"non-finite intrinsics {values}")
    if intrinsics.fx <= 0 or intrinsics.fy <= 0:
        raise InvalidIntrinsicsError(
            f"focal lengths must be positive, got fx={intrinsics.fx} fy={intrinsics.fy} "
            "(an all-zero CameraInfo means the camera is uncalibrated)"
        )
    if intrinsics.width <= 0 or intrinsics.height <= 0:
        raise InvalidIntrinsicsError(f"image size must be positive, got {intrinsics.width}x{intrinsics.height}")


def distort_normalized(x: np.ndarray, y: np.ndarray, model: str,
                       coefficients: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """Apply a ROS/OpenCV distortion model to ideal normalised coordinates."""
    d = np.zeros(_COEFFICIENT_COUNTS[model])
    d[: min(len(coefficients), d.size)] = np.asarray(coefficients, dtype=np.float64)[: d.size]
    if model == EQUIDISTANT:
        k1, k2, k3, k4 = d
        r = np.hypot(x, y)
        theta = np.arctan(r)
        t2 = theta * theta
        theta_d = theta * (1.0 + t2 * (k1 + t2 * (k2 + t2 * (k3 + t2 * k4))))
        scale = np.where(r > 1e-12, theta_d / np.maximum(r, 1e-12), 1.0)
        return x * scale, y * scale
    k1, k2, p1, p2, k3 = d[:5]
    r2 = x * x + y * y
    radial = 1.0 + r2 * (k1 + r2 * (k2 + r2 * k3))
    if model == RATIONAL_POLYNOMIAL:
        k4, k5, k6 = d[5:8]
        radial = radial / (1.0 + r2 * (k4 + r2 * (k5 + r2 * k6)))
    xy = x * y
    xd = x * radial + 2.0 * p1 * xy + p2 * (r2 + 2.0 * x * x)
    yd = y * radial + p1 * (r2 + 2.0 * y * y) + 2.0 * p2 * xy
    return xd, yd


def undistort_normalized(
    xd: np.ndarray, yd: np.ndarray, model: str, coefficients: Sequence[float]
) -> tuple[np.ndarray, np.ndarray]:
    """Invert :func:`distort_normalized` by Newton's method; NaN where it does not converge.

    The Jacobian is taken by central differences, which keeps one solver for
    every model. Points where the distortion fold-over makes the inverse
    ambiguous (Jacobian determinant <= 0) are returned as NaN: those pixels
    cannot be trusted and are treated like missing depth. So are roots on the
    far side of the optical axis (a radial factor below zero, which a strong
    barrel polynomial reaches past its fold with a positive determinant): a
    lens does not mirror a ray through the image centre.
    """
    xd = np.asarray(xd, dtype=np.float64)
    yd = np.asarray(yd, dtype=np.float64)
    x, y = xd.copy(), yd.copy()
    step = 1e-6
    det = np.ones_like(x)
    for _ in range(_UNDISTORT_MAX_ITERATIONS):
        fx, fy = distort_normalized(x, y, model, coefficients)
        rx, ry = fx - xd, fy - yd
        if np.all(np.abs(rx) + np.abs(ry) < _UNDISTORT_TOLERANCE):
            break
        xpx, ypx = distort_normalized(x + step, y, model, coefficients)
        xmx, ymx = distort_normalized(x - step, y, model, coefficients)
        xpy, ypy = distort_normalized(x, y + step, model, coefficients)
        xmy, ymy = distort_normalized(x, y - step, model, coefficients)
        a, c = (xpx - xmx) / (2 * step), (ypx - ymx) / (2 * step)  # d(xd, yd)/dx
        b, d = (xpy - xmy) / (2 * step), (ypy - ymy) / (2 * step)  # d(xd, yd)/dy
        det = a * d - b * c
        safe = np.where(np.abs(det) > 1e-12, det, np.nan)
        x = x - (d * rx - b * ry) / safe
        y = y - (a * ry - c * rx) / safe
    fx, fy = distort_normalized(x, y, model, coefficients)
    mirrored = ~(x * xd + y * yd >= 0.0)
    bad = ~((np.abs(fx - xd) + np.abs(fy - yd)) < 1e-8) | ~(det > 0) | mirrored
    x[bad] = np.nan
    y[bad] = np.nan
    return x, y


@dataclass(frozen=True)
class CameraModel:
    """Intrinsics of the depth image plus the distortion still present in it.

    ``distortion`` is empty (or all zero) for rectified / undistorted images.
    The ray map of a distorted camera is computed on first use and cached,
    so build one CameraModel per CameraInfo and keep it.
    """

    intrinsics: CameraIntrinsics
    distortion_model: str = ""
    distortion: tuple[float, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        validate_intrinsics(self.intrinsics)
        coefficients = tuple(float(c) for c in self.distortion)
        object.__setattr__(self, "distortion", coefficients)
        if not any(coefficients):
            return
        if not all(np.isfinite(coefficients)):
            raise InvalidIntrinsicsError(f"non-finite distortion coefficients {coefficients}")
        expected = _COEFFICIENT_COUNTS.get(self.distortion_model)
        if expected is None:
            raise InvalidIntrinsicsError(
                f"distortion model {self.distortion_model!r} with non-zero coefficients is not supported; "
                f"use a rectified image or one of {sorted(_COEFFICIENT_COUNTS)}"
            )
        if any(coefficients[expected:]):
            raise InvalidIntrinsicsError(
                f"{self.distortion_model} takes {expected} coefficients; the extra non-zero ones "
                f"{coefficients[expected:]} (thin prism / tilt terms) are not supported"
            )

    @property
    def is_distorted(self) -> bool:
        return any(self.distortion)

    @property
    def shape(self) -> tuple[int, int]:
        """(height, width) of the images this camera describes."""
        return self.intrinsics.height, self.intrinsics.width

    def strided(self, stride: int) -> "CameraModel":
        """The camera of the grid of every ``stride``-th pixel: grid pixel (i, j) is image pixel (stride*i, stride*j).

        Distortion acts on normalised coordinates, so dividing K by the stride
        and keeping D describes the grid exactly; the grid's own (smaller) ray
        map is then all a backend working on it needs. Kept per stride, so a
        camera reused across frames builds each grid's ray map once.
        """
        stride = int(stride)
        if stride < 1:
            raise ValueError(f"stride must be at least 1, got {stride}")
        if stride == 1:
            return self
        grids = self._strided_cameras
        if stride not in grids:
            k = self.intrinsics
            height, width = -(-k.height // stride), -(-k.width // stride)  # rows/columns of image[::stride, ::stride]
            grid_k = CameraIntrinsics(k.fx / stride, k.fy / stride, k.cx / stride, k.cy / stride, width, height)
            grids[stride] = CameraModel(grid_k, self.distortion_model, self.distortion)
        return grids[stride]

    @cached_property
    def _strided_cameras(self) -> dict[int, "CameraModel"]:
        return {}

    def backproject(self, depth_m: np.ndarray) -> np.ndarray:
        """(H, W, 3) float32 optical-frame points of a z-depth image; NaN depth gives NaN points.

        ``depth_m`` covers this camera's image from its top-left corner: the
        whole image, or its first H rows and W columns (a backend that keeps
        whole blocks only drops a ragged edge). A pixel whose distortion
        cannot be inverted gets an all-NaN point, like missing depth, since
        callers judge validity by z.
        """
        h, w = depth_m.shape
        if h > self.intrinsics.height or w > self.intrinsics.width:
            raise ValueError(
                f"depth is {w}x{h} but the camera describes {self.intrinsics.width}x{self.intrinsics.height} images"
            )
        x_rays, y_rays = self.normalized_rays(slice(0, h), slice(0, w))
        z = depth_m.astype(np.float32, copy=False)
        if self.is_distorted:
            z = np.where(np.isfinite(x_rays) & np.isfinite(y_rays), z, np.float32(np.nan))
        return np.stack([x_rays * z, y_rays * z, z], axis=-1)

    def pixel_rays(self, u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(x/z, y/z) of the pixels in columns ``u`` and rows ``v`` (integer arrays inside the image).

        For scattered pixels (a mask's), where a window would be wasteful. A
        pinhole camera computes the rays in float64; a distorted one reads
        them from its ray map (float32, NaN where the distortion has no inverse).
        """
        u, v = np.asarray(u), np.asarray(v)
        if not (np.issubdtype(u.dtype, np.integer) and np.issubdtype(v.dtype, np.integer)):
            raise TypeError(f"pixel_rays takes integer pixel indices, got {u.dtype} and {v.dtype}")
        if self.is_distorted:
            x_map, y_map = self._distorted_ray_map
            return x_map[v, u], y_map[v, u]
        k = self.intrinsics
        return (u - k.cx) / k.fx, (v - k.cy) / k.fy

    def focal_length_at(self, u: float, v: float) -> float:
        """Horizontal pixels per unit of normalised ray near pixel (u, v): the scale that turns pixels into metres.

        fx for a pinhole camera; a distorted one magnifies differently across
        the image (a barrel lens less towards the corners), so its scale is
        taken from the ray map around the pixel, clamped into the image.
        """
        k = self.intrinsics
        if not self.is_distorted:
            return k.fx
        row = int(np.clip(round(v), 0, k.height - 1))
        left, right = (int(np.clip(round(u) + step, 0, k.width - 1)) for step in (-1, 1))
        x_map, _ = self._distorted_ray_map
        span = float(x_map[row, right]) - float(x_map[row, left])
        if not np.isfinite(span) or span <= 0.0:
            return k.fx  # no usable rays here (fold-over): fall back to the nominal scale
        return (right - left) / span

    def normalized_rays(self, rows: slice, cols: slice) -> tuple[np.ndarray, np.ndarray]:
        """(x/z, y/z) of the pixel centres in an image window, broadcastable to its shape.

        Pixel (u, v) has its centre at (u, v) in the K/P convention, as in
        OpenCV and image_geometry. NaN marks pixels whose distortion could not
        be inverted.
        """
        if self.is_distorted:
            x_map, y_map = self._distorted_ray_map
            return x_map[rows, cols], y_map[rows, cols]
        k = self.intrinsics
        u = np.arange(cols.start or 0, k.width if cols.stop is None else cols.stop, dtype=np.float32)
        v = np.arange(rows.start or 0, k.height if rows.stop is None else rows.stop, dtype=np.float32)
        return ((u - k.cx) / k.fx)[None, :], ((v - k.cy) / k.fy)[:, None]

    @cached_property
    def _distorted_ray_map(self) -> tuple[np.ndarray, np.ndarray]:
        k = self.intrinsics
        u, v = np.meshgrid(np.arange(k.width, dtype=np.float64), np.arange(k.height, dtype=np.float64))
        x, y = undistort_normalized((u - k.cx) / k.fx, (v - k.cy) / k.fy, self.distortion_model, self.distortion)
        return x.astype(np.float32), y.astype(np.float32)

    def project(self, points: np.ndarray) -> np.ndarray:
        """Pixel coordinates (u, v) of (N, 3) optical-frame points, distortion applied."""
        points = np.asarray(points, dtype=np.float64)
        x, y = points[:, 0] / points[:, 2], points[:, 1] / points[:, 2]
        if self.is_distorted:
            x, y = distort_normalized(x, y, self.distortion_model, self.distortion)
        k = self.intrinsics
        return np.stack([k.fx * x + k.cx, k.fy * y + k.cy], axis=1)


def camera_model_from_camera_info(
    k: Sequence[float],
    p: Sequence[float],
    d: Optional[Sequence[float]],
    distortion_model: str,
    width: int,
    height: int,
    rectified: bool,
) -> CameraModel:
    """CameraModel for an image described by CameraInfo fields (k: 9 values, p: 12).

    ``rectified`` says whether the image the masks and depth live in has been
    rectified: then P applies and distortion is ignored; otherwise K and D.
    An all-zero P on a rectified image falls back to K when D is zero, since
    some drivers leave P empty for distortion-free cameras.
    """
    k_matrix = np.asarray(k, dtype=np.float64).reshape(3, 3)
    p_matrix = np.asarray(p, dtype=np.float64).reshape(3, 4) if p is not None and len(p) else np.zeros((3, 4))
    coefficients = tuple(float(c) for c in (d if d is not None else ()))
    if rectified:
        if not p_matrix[:, :3].any():
            if any(coefficients):
                raise InvalidIntrinsicsError("rectified image but CameraInfo.P is all zero and D is not")
            return CameraModel(CameraIntrinsics.from_matrix(k_matrix, width, height))
        return CameraModel(CameraIntrinsics.from_matrix(p_matrix[:, :3], width, height))
    return CameraModel(CameraIntrinsics.from_matrix(k_matrix, width, height), distortion_model, coefficients)


def as_camera_model(camera: CameraModel | CameraIntrinsics) -> CameraModel:
    """Accept plain pinhole intrinsics wherever a CameraModel is expected."""
    if isinstance(camera, CameraModel):
        return camera
    if isinstance(camera, CameraIntrinsics):
        return CameraModel(camera)
    raise TypeError(f"expected CameraModel or CameraIntrinsics, got {type(camera).__name__}")
