"""Input checks: every bad message becomes a :class:`Rejection` with a counter name.

The node and the service decode frames only through here, so both refuse the
same things with the same words. A rejection is never fatal: the caller logs
it, counts it and carries on with the next message.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
from sensor_msgs.msg import CameraInfo, Image

from partseg_ros.geometry.camera import CameraModel
from partseg_ros.ros.conversions import (
    BAD_ENCODING,
    DEPTH_ENCODINGS,
    ENCODINGS,
    MALFORMED_IMAGE,
    ImageFormatError,
    camera_info_to_camera_model,
    color_to_rgb,
    depth_to_metres,
    image_to_array,
)
from partseg_ros.ros.sync import FUTURE_STAMP, OUT_OF_ORDER
from partseg_ros.types import CameraIntrinsics

# Rejection reasons (the node's "rejected.<reason>" counters).
SIZE_MISMATCH = "size_mismatch"
CAMERA_INFO_MISSING = "camera_info_missing"
CAMERA_INFO_INVALID = "camera_info_invalid"
DEPTH_ALL_INVALID = "depth_all_invalid"
DEPTH_NONFINITE = "depth_nonfinite"
INSTRUCTION_EMPTY = "instruction_empty"
INSTRUCTION_TOO_LONG = "instruction_too_long"
IMAGE_TOO_LARGE = "image_too_large"  # declared or actual size beyond limits.max_image_*
IMAGE_TOO_SMALL = "image_too_small"  # below limits.min_image_* (a 1x1 "frame" is not a camera image)
REASONS = (
    IMAGE_TOO_LARGE,
    IMAGE_TOO_SMALL,
    BAD_ENCODING,
    MALFORMED_IMAGE,
    SIZE_MISMATCH,
    CAMERA_INFO_MISSING,
    CAMERA_INFO_INVALID,
    DEPTH_ALL_INVALID,
    DEPTH_NONFINITE,
    INSTRUCTION_EMPTY,
    INSTRUCTION_TOO_LONG,
    OUT_OF_ORDER,
    FUTURE_STAMP,
)


class Rejection(Exception):
    """Input the node refuses; ``reason`` is the counter, the message says what and why."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class InputLimits:
    depth_scale: float = 0.001  # metres per 16UC1 unit
    depth_min_m: float = 0.05
    depth_max_m: float = 10.0
    # 32FC1 may mark missing returns with NaN/inf (REP-118); more than this
    # fraction of non-finite pixels means the depth stream is broken.
    max_nonfinite_fraction: float = 0.8
    max_instruction_length: int = 300
    rectified: bool = False  # images are rectified: use camera_info P instead of K
    # Sanity limits checked on the declared sizes before anything is allocated or reshaped.
    min_image_width: int = 16
    min_image_height: int = 16
    max_image_width: int = 8192
    max_image_height: int = 8192
    max_image_bytes: int = 134_217_728  # 128 MiB: declared step * height, and the data actually sent
    min_focal_length_px: float = 1.0
    max_focal_length_px: float = 100_000.0


@dataclass
class DecodedFrame:
    """A validated frame, ready for a backend."""

    rgb: np.ndarray  # HxWx3 uint8, read-only view when the input was rgb8
    depth_m: Optional[np.ndarray]  # HxW float32 metres, NaN = invalid
    camera: Optional[CameraModel]  # intrinsics + remaining distortion of rgb and depth
    frame_id: str

    @property
    def intrinsics(self) -> Optional[CameraIntrinsics]:
        return None if self.camera is None else self.camera.intrinsics


def check_instruction(text: str, limits: InputLimits) -> str:
    """The stripped instruction, or Rejection for an empty or absurdly long one."""
    cleaned = " ".join(str(text).split())  # collapse whitespace and control characters like \n, \t
    if not cleaned:
        raise Rejection(INSTRUCTION_EMPTY, "empty instruction")
    if len(cleaned) > limits.max_instruction_length:
        raise Rejection(
            INSTRUCTION_TOO_LONG,
            f"instruction of {len(cleaned)} characters exceeds limits.max_instruction_length={limits.max_instruction_length}",
        )
    return cleaned


def check_image_size(
    what: str, height: int, width: int, encoding: str, step: int, data_len: int, limits: InputLimits
) -> None:
    """Refuse an image whose declared or actual size is absurd, before anything is allocated.

    Cheap (integers only), so the node runs it on every arriving message; the full
    consistency check (step against the row, data against step x height) follows in
    :func:`partseg_ros.ros.conversions.image_to_array` for the frame that is decoded.
    """
    if height <= 0 or width <= 0:
        raise Rejection(MALFORMED_IMAGE, f"{what}: empty image {width}x{height}")
    if width > limits.max_image_width or height > limits.max_image_height:
        raise Rejection(
            IMAGE_TOO_LARGE, f"{what}: {width}x{height} exceeds limits.max_image_width/height="
            f"{limits.max_image_width}x{limits.max_image_height}")
    declared = int(step) * int(height)
    if declared > limits.max_image_bytes or data_len > limits.max_image_bytes:
        raise Rejection(
            IMAGE_TOO_LARGE, f"{what}: step {step} x height {height} = {declared} bytes declared, "
            f"{data_len} sent; limit limits.max_image_bytes={limits.max_image_bytes}")
    if width < limits.min_image_width or height < limits.min_image_height:
        raise Rejection(
            IMAGE_TOO_SMALL, f"{what}: {width}x{height} is below limits.min_image_width/height="
            f"{limits.min_image_width}x{limits.min_image_height}")
    if encoding in ENCODINGS:
        channels, dtype = ENCODINGS[encoding]
        row_bytes = width * channels * dtype.itemsize
        if step < row_bytes:
            raise Rejection(MALFORMED_IMAGE, f"{what}: step {step} is shorter than a row of {row_bytes} bytes")
        if data_len < step * (height - 1) + row_bytes:
            raise Rejection(
                MALFORMED_IMAGE, f"{what}: data holds {data_len} bytes, {width}x{height} {encoding} "
                f"with step {step} needs {step * height}")


def decode_color(msg: Image, limits: Optional[InputLimits] = None) -> np.ndarray:
    if limits is not None:
        check_image_size("colour image", msg.height, msg.width, msg.encoding, msg.step, len(msg.data), limits)
    try:
        return color_to_rgb(msg)
    except ImageFormatError as exc:
        raise Rejection(exc.reason, f"colour image: {exc}") from None


def decode_depth(msg: Image, limits: InputLimits, shape: tuple[int, int]) -> np.ndarray:
    check_image_size("depth image", msg.height, msg.width, msg.encoding, msg.step, len(msg.data), limits)
    try:
        if msg.encoding == "32FC1":
            raw = image_to_array(msg, DEPTH_ENCODINGS)
            nonfinite = float(np.count_nonzero(~np.isfinite(raw))) / raw.size
            if nonfinite > limits.max_nonfinite_fraction:
                raise Rejection(
                    DEPTH_NONFINITE,
                    f"depth image is {nonfinite:.0%} NaN/inf (limit depth.max_nonfinite_fraction="
                    f"{limits.max_nonfinite_fraction:.0%})",
                )
        depth = depth_to_metres(msg, limits.depth_scale)
    except ImageFormatError as exc:
        raise Rejection(exc.reason, f"depth image: {exc}") from None
    if depth.shape != shape:
        raise Rejection(
            SIZE_MISMATCH, f"depth is {depth.shape[1]}x{depth.shape[0]} but colour is {shape[1]}x{shape[0]}; "
            "subscribe to depth aligned to the colour camera"
        )
    with np.errstate(invalid="ignore"):
        depth[(depth < limits.depth_min_m) | (depth > limits.depth_max_m)] = np.nan
    if not np.isfinite(depth).any():
        raise Rejection(
            DEPTH_ALL_INVALID,
            f"no depth pixel within [{limits.depth_min_m}, {limits.depth_max_m}] m "
            f"({msg.encoding}, scale {limits.depth_scale} m/unit for integer depth)",
        )
    return depth


def decode_camera(msg: Optional[CameraInfo], limits: InputLimits, shape: tuple[int, int]) -> CameraModel:
    if msg is None:
        raise Rejection(CAMERA_INFO_MISSING, "no camera_info received for this frame")
    try:
        camera = camera_info_to_camera_model(msg, rectified=limits.rectified)
    except ValueError as exc:
        raise Rejection(CAMERA_INFO_INVALID, f"camera_info unusable: {exc}") from None
    intrinsics = camera.intrinsics
    focal = (intrinsics.fx, intrinsics.fy)
    if not all(limits.min_focal_length_px <= f <= limits.max_focal_length_px for f in focal):
        raise Rejection(
            CAMERA_INFO_INVALID,
            f"camera_info focal lengths fx={intrinsics.fx:g}, fy={intrinsics.fy:g} px are outside "
            f"limits.min/max_focal_length_px=[{limits.min_focal_length_px:g}, {limits.max_focal_length_px:g}]")
    if not (-intrinsics.width <= intrinsics.cx <= 2 * intrinsics.width
            and -intrinsics.height <= intrinsics.cy <= 2 * intrinsics.height):
        raise Rejection(
            CAMERA_INFO_INVALID,
            f"camera_info principal point ({intrinsics.cx:g}, {intrinsics.cy:g}) is far outside the "
            f"{intrinsics.width}x{intrinsics.height} image")
    if (intrinsics.height, intrinsics.width) != shape:
        raise Rejection(
            SIZE_MISMATCH,
            f"camera_info is for {intrinsics.width}x{intrinsics.height} but the image is {shape[1]}x{shape[0]}",
        )
    return camera


def decode_frame(
    color: Image, depth: Optional[Image], camera_info: Optional[CameraInfo], limits: InputLimits,
    require_camera_info: bool = True,
) -> DecodedFrame:
    """Colour (+ aligned depth, + camera_info) -> DecodedFrame, or Rejection."""
    rgb = decode_color(color, limits)
    shape = rgb.shape[:2]
    camera = None
    if camera_info is not None or require_camera_info:
        camera = decode_camera(camera_info, limits, shape)
    depth_m = decode_depth(depth, limits, shape) if depth is not None else None
    return DecodedFrame(rgb=rgb, depth_m=depth_m, camera=camera, frame_id=color.header.frame_id)

