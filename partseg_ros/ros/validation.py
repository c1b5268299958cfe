"""Input checks: every bad message becomes a :class:`Rejection` with a counter name.

The node and the service decode frames only through here, so both refuse the
same things with the same words. A rejection is never fatal: the caller logs
it, counts it and carries on with the next message. How an Image or a
CameraInfo is decoded and what makes one unreadable is the codec's
(:mod:`partseg_ros.codec`, shared with the bag reader); this module turns its
errors into rejections and adds the node's own depth and instruction policies.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
from sensor_msgs.msg import CameraInfo, Image

from partseg_ros.codec.camera_info import (
    CAMERA_INFO_INVALID,
    SIZE_MISMATCH,
    CameraInfoError,
    camera_from_info,
)
from partseg_ros.codec.images import (
    BAD_ENCODING,
    DEPTH_ENCODINGS,
    IMAGE_TOO_LARGE,
    IMAGE_TOO_SMALL,
    MALFORMED_IMAGE,
    DecodeLimits,
    ImageFormatError,
    check_declared_size,
    color_to_rgb,
    image_to_array,
)
from partseg_ros.geometry import depth as geometry_depth
from partseg_ros.geometry.camera import CameraModel
from partseg_ros.ros.sync import FUTURE_STAMP, OUT_OF_ORDER
from partseg_ros.types import CameraIntrinsics

# Rejection reasons (the node's "rejected.<reason>" counters); the codec's own
# (bad_encoding, malformed_image, image_too_large/small, size_mismatch,
# camera_info_invalid) are imported above and listed with these.
CAMERA_INFO_MISSING = "camera_info_missing"
DEPTH_ALL_INVALID = "depth_all_invalid"
DEPTH_NONFINITE = "depth_nonfinite"
INSTRUCTION_EMPTY = "instruction_empty"
INSTRUCTION_TOO_LONG = "instruction_too_long"
DEPTH_UNITS = "depth_units"  # median depth implausible for the scale: 16UC1 in metres, 32FC1 in millimetres
REASONS = (
    DEPTH_UNITS,
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
class InputLimits(DecodeLimits):
    """The node's input rules: the codec's size and focal-length limits plus its own depth and text policies."""

    depth_scale: float = 0.001  # metres per 16UC1 unit
    depth_float_scale: float = 1.0  # metres per 32FC1 unit (REP 118: metres)
    # A frame's median valid depth outside this range (after the scale) means the units are wrong.
    depth_units_check: bool = True
    plausible_median_min_m: float = 0.1
    plausible_median_max_m: float = 30.0
    depth_min_m: float = 0.05
    depth_max_m: float = 10.0
    # 32FC1 may mark missing returns with NaN/inf (REP-118); more than this
    # fraction of non-finite pixels means the depth stream is broken.
    max_nonfinite_fraction: float = 0.8
    max_instruction_length: int = 300
    rectified: bool = False  # images are rectified: use camera_info P instead of K


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
            f"instruction of {len(cleaned)} characters exceeds "
            f"limits.max_instruction_length={limits.max_instruction_length}",
        )
    return cleaned


def check_image_size(
    what: str, height: int, width: int, encoding: str, step: int, data_len: int, limits: InputLimits
) -> None:
    """Refuse an image whose declared or actual size is absurd, before anything is allocated.

    Integers only, so the node runs it on every arriving message's peeked header;
    the rules are the codec's (:func:`partseg_ros.codec.images.check_declared_size`).
    """
    try:
        check_declared_size(height, width, encoding, step, data_len, limits)
    except ImageFormatError as exc:
        raise Rejection(exc.reason, f"{what}: {exc}") from None


def decode_color(msg: Image, limits: Optional[InputLimits] = None) -> np.ndarray:
    try:
        return color_to_rgb(msg, limits)
    except ImageFormatError as exc:
        raise Rejection(exc.reason, f"colour image: {exc}") from None


def decode_depth(msg: Image, limits: InputLimits, shape: tuple[int, int]) -> np.ndarray:
    try:
        raw = image_to_array(msg, DEPTH_ENCODINGS, limits)
    except ImageFormatError as exc:
        raise Rejection(exc.reason, f"depth image: {exc}") from None
    return decode_depth_array(raw, msg.encoding, limits, shape)


def register_to_color(depth: np.ndarray, shape: tuple[int, int], tolerance: float = 0.01) -> np.ndarray:
    """Depth of the colour camera at another resolution, resampled onto the colour pixel grid.

    An aligned depth stream (same optical frame and field of view as colour, e.g.
    RealSense depth at 424x240 aligned to 848x480 colour) differs from colour only in
    pixel size: its intrinsics are colour's scaled by (Wd/Wc, Hd/Hc). Each colour pixel
    centre maps to ((u + 0.5) Wd/Wc, (v + 0.5) Hd/Hc) in depth pixels and takes that
    depth pixel's value (nearest neighbour, never an average across a depth edge, so no
    flying points). Different aspect ratios mean a different field of view: refused.
    """
    height, width = shape
    dh, dw = depth.shape
    sx, sy = dw / width, dh / height
    if abs(sx - sy) > tolerance * max(sx, sy):
        raise Rejection(
            SIZE_MISMATCH, f"depth is {dw}x{dh} but colour is {width}x{height}: different aspect ratios, so not "
            "the colour camera's field of view; subscribe to depth aligned to the colour camera")
    cols = np.minimum(((np.arange(width) + 0.5) * sx).astype(np.intp), dw - 1)
    rows = np.minimum(((np.arange(height) + 0.5) * sy).astype(np.intp), dh - 1)
    return depth[rows[:, None], cols[None, :]]


def check_depth_units(depth_m: np.ndarray, encoding: str, limits: InputLimits) -> None:
    """Refuse depth whose median is implausible for a camera: wrong units, not a bad frame.

    A 16UC1 stream in metres read as millimetres puts everything within a few
    millimetres of the lens; a 32FC1 stream in millimetres read as metres puts it
    hundreds of metres away. Either would give grasp regions that look valid and are
    wrong, so the frame is refused and the message names the parameter to set.
    A 1/64 subsample keeps it cheap.
    """
    if not limits.depth_units_check:
        return
    sample = depth_m[::8, ::8]
    valid = sample[np.isfinite(sample) & (sample > 0)]
    if valid.size == 0:
        return
    median = float(np.median(valid))
    if limits.plausible_median_min_m <= median <= limits.plausible_median_max_m:
        return
    integer = encoding != "32FC1"
    parameter = "depth.scale" if integer else "depth.float_scale"
    current = limits.depth_scale if integer else limits.depth_float_scale
    # The power of ten that brings the median into the plausible range is what the user means.
    suggestion = current
    for factor in (1000.0, 0.001, 100.0, 0.01, 10.0, 0.1):
        if limits.plausible_median_min_m <= median * factor <= limits.plausible_median_max_m:
            suggestion = current * factor
            break
    looks = "metres" if integer and median < limits.plausible_median_min_m else (
        "millimetres" if not integer and median > limits.plausible_median_max_m else "wrong units")
    raise Rejection(
        DEPTH_UNITS,
        f"{encoding} depth has median {median:.4g} m with {parameter}={current:g}, outside "
        f"depth.plausible_median_min/max_m=[{limits.plausible_median_min_m:g}, {limits.plausible_median_max_m:g}]: "
        f"the values look like {looks}; set {parameter}:={suggestion:g} (or depth.units_check:=false)")


def decode_depth_array(raw: np.ndarray, encoding: str, limits: InputLimits, shape: tuple[int, int]) -> np.ndarray:
    """Depth values as the stream sent them (16UC1 units or 32FC1) -> HxW float32 metres on the colour grid."""
    if encoding == "32FC1":
        nonfinite = float(np.count_nonzero(~np.isfinite(raw))) / raw.size
        if nonfinite > limits.max_nonfinite_fraction:
            raise Rejection(
                DEPTH_NONFINITE,
                f"depth image is {nonfinite:.0%} NaN/inf (limit depth.max_nonfinite_fraction="
                f"{limits.max_nonfinite_fraction:.0%})",
            )
        depth = geometry_depth.depth_to_metres(raw, 1.0)
        if limits.depth_float_scale != 1.0:
            depth *= np.float32(limits.depth_float_scale)
    else:
        depth = geometry_depth.depth_to_metres(raw, limits.depth_scale)
    check_depth_units(depth, encoding, limits)
    if depth.shape != shape:
        depth = register_to_color(depth, shape)
    with np.errstate(invalid="ignore"):
        depth[(depth < limits.depth_min_m) | (depth > limits.depth_max_m)] = np.nan
    if not np.isfinite(depth).any():
        raise Rejection(
            DEPTH_ALL_INVALID,
            f"no depth pixel within [{limits.depth_min_m}, {limits.depth_max_m}] m "
            f"({encoding}, scale {limits.depth_scale} m/unit for integer depth)",
        )
    return depth


def decode_camera(msg: Optional[CameraInfo], limits: InputLimits, shape: tuple[int, int]) -> CameraModel:
    if msg is None:
        raise Rejection(CAMERA_INFO_MISSING, "no camera_info received for this frame")
    try:
        return camera_from_info(msg, rectified=limits.rectified, image_shape=shape, limits=limits)
    except CameraInfoError as exc:
        raise Rejection(exc.reason, str(exc)) from None


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


def decode_frame_arrays(
    rgb: np.ndarray, depth: Optional[tuple[np.ndarray, str]], camera_info: CameraInfo, limits: InputLimits,
    frame_id: str,
) -> DecodedFrame:
    """The compressed path's twin of :func:`decode_frame`: already decoded pixels, the same checks."""
    shape = rgb.shape[:2]
    if shape[1] < limits.min_image_width or shape[0] < limits.min_image_height:
        raise Rejection(IMAGE_TOO_SMALL, f"colour image: {shape[1]}x{shape[0]} is below limits.min_image_width/height")
    camera = decode_camera(camera_info, limits, shape)
    depth_m = decode_depth_array(depth[0], depth[1], limits, shape) if depth is not None else None
    return DecodedFrame(rgb=rgb, depth_m=depth_m, camera=camera, frame_id=frame_id)

