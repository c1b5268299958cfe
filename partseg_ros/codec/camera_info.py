"""sensor_msgs/CameraInfo fields <-> the camera model, with the checks the node applies.

Every reader of a CameraInfo ends in the one
:class:`partseg_ros.geometry.camera.CameraModel`: K and the distortion D for
raw images, P's left 3x3 for rectified ones. A CameraInfo that describes an
image of another size is refused (``size_mismatch``), never rescaled: a
camera_info from another stream or resolution means the pairing is wrong, and
rescaled intrinsics would give 3D points that look valid and are not.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any, Optional, Protocol, Sequence

import numpy as np

from partseg_ros.codec.errors import CodecError
from partseg_ros.codec.images import DecodeLimits
from partseg_ros.geometry.camera import CameraModel, InvalidIntrinsicsError, camera_model_from_camera_info
from partseg_ros.types import CameraIntrinsics

# Reasons carried by CameraInfoError (also the node's rejection counters).
CAMERA_INFO_INVALID = "camera_info_invalid"
SIZE_MISMATCH = "size_mismatch"

# The distortion model a CameraInfo without distortion names (five zero coefficients), as ROS drivers do.
DEFAULT_DISTORTION_MODEL = "plumb_bob"


class CameraInfoError(CodecError):
    """A CameraInfo that cannot describe the image; ``reason`` is a stable counter name."""


class CameraInfoFields(Protocol):
    """What a sensor_msgs/CameraInfo of rclpy or rosbags offers; nothing else is read."""

    height: int
    width: int
    distortion_model: str
    d: Any
    k: Any
    p: Any


def is_calibrated(msg: CameraInfoFields) -> bool:
    """False for the all-zero K that, by the CameraInfo convention, means an uncalibrated camera."""
    return bool(np.any(np.asarray(msg.k, dtype=np.float64) != 0))


def camera_from_info(msg: CameraInfoFields, rectified: bool = False, image_shape: Optional[tuple[int, int]] = None,
                     limits: Optional[DecodeLimits] = None) -> CameraModel:
    """The camera model of the image a CameraInfo describes, or CameraInfoError.

    ``rectified``: the image was rectified, so P applies and D does not.
    ``image_shape`` (height, width): the image the CameraInfo comes with; another
    size is refused. ``limits`` adds the focal-length plausibility range.
    """
    camera = _cached_camera(msg, rectified)
    intrinsics = camera.intrinsics
    if limits is not None and not all(
            limits.min_focal_length_px <= f <= limits.max_focal_length_px for f in (intrinsics.fx, intrinsics.fy)):
        raise CameraInfoError(
            CAMERA_INFO_INVALID,
            f"camera_info focal lengths fx={intrinsics.fx:g}, fy={intrinsics.fy:g} px are outside "
            f"limits.min/max_focal_length_px=[{limits.min_focal_length_px:g}, {limits.max_focal_length_px:g}]")
    if not (-intrinsics.width <= intrinsics.cx <= 2 * intrinsics.width
            and -intrinsics.height <= intrinsics.cy <= 2 * intrinsics.height):
        raise CameraInfoError(
            CAMERA_INFO_INVALID,
            f"camera_info principal point ({intrinsics.cx:g}, {intrinsics.cy:g}) is far outside the "
            f"{intrinsics.width}x{intrinsics.height} image")
    if image_shape is not None and (intrinsics.height, intrinsics.width) != tuple(image_shape):
        raise CameraInfoError(
            SIZE_MISMATCH,
            f"camera_info is for {intrinsics.width}x{intrinsics.height} but the image is "
            f"{image_shape[1]}x{image_shape[0]}")
    return camera


def _cached_camera(msg: CameraInfoFields, rectified: bool) -> CameraModel:
    """One CameraModel per distinct CameraInfo, so a distorted camera's ray map is built once, not per frame."""
    try:
        k = np.asarray(msg.k, dtype=np.float64).reshape(3, 3)
        p = np.asarray(msg.p, dtype=np.float64).reshape(3, 4)
        d = np.asarray(msg.d, dtype=np.float64).reshape(-1)
    except ValueError as exc:
        raise CameraInfoError(CAMERA_INFO_INVALID, f"camera_info unusable: K, P or D malformed ({exc})") from None
    model, width, height = str(msg.distortion_model), int(msg.width), int(msg.height)
    key = (k.tobytes(), p.tobytes(), d.tobytes(), model, width, height, bool(rectified))
    with _CAMERAS_LOCK:
        cached = _CAMERAS.get(key)
    if cached is not None:
        return cached
    try:
        if not (np.isfinite(k).all() and np.isfinite(p).all()):
            raise InvalidIntrinsicsError("camera_info K or P contains NaN/inf")
        camera = camera_model_from_camera_info(k.ravel(), p.ravel(), d, model, width, height, rectified=rectified)
    except ValueError as exc:  # InvalidIntrinsicsError among them
        raise CameraInfoError(CAMERA_INFO_INVALID, f"camera_info unusable: {exc}") from None
    with _CAMERAS_LOCK:
        if len(_CAMERAS) >= _CAMERAS_KEPT:
            _CAMERAS.pop(next(iter(_CAMERAS)))
        _CAMERAS[key] = camera
    return camera


# A camera_info rarely changes: a handful covers a node, a bag, or an evaluation over several bags.
_CAMERAS_KEPT = 8
_CAMERAS: dict[tuple, CameraModel] = {}
_CAMERAS_LOCK = threading.Lock()


@dataclass(frozen=True)
class CameraInfoValues:
    """The fields of a sensor_msgs/CameraInfo; builders of rclpy and rosbags messages copy them in."""

    height: int
    width: int
    distortion_model: str
    d: np.ndarray
    k: np.ndarray  # 9, row-major
    r: np.ndarray  # 9, row-major
    p: np.ndarray  # 12, row-major


def camera_info_fields(intrinsics: CameraIntrinsics, distortion_model: str = "",
                       distortion: Sequence[float] = ()) -> CameraInfoValues:
    """CameraInfo fields of a pinhole camera; without distortion (rectified or synthetic images) D is five zeros.

    P is K with a zero fourth column (a monocular camera). Raw images of a real
    camera keep their distortion model and coefficients, so whoever reads them
    undistorts exactly as the driver said. Not validated: tests build bad
    camera_infos with this on purpose.
    """
    k = intrinsics.matrix
    p = np.zeros((3, 4))
    p[:, :3] = k
    d = np.asarray(distortion, dtype=np.float64).reshape(-1) if len(distortion) else np.zeros(5)
    return CameraInfoValues(
        height=int(intrinsics.height), width=int(intrinsics.width),
        distortion_model=distortion_model or DEFAULT_DISTORTION_MODEL, d=d, k=k.reshape(-1),
        r=np.eye(3).reshape(-1), p=p.reshape(-1),
    )
