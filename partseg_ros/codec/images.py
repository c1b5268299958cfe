"""sensor_msgs/Image fields <-> numpy, with the checks the node applies to every camera image.

Reads are zero-copy: a read-only strided view of the message's ``data``
buffer (``bytes``, ``array.array`` from rclpy, a numpy array from rosbags),
copied only to bring big-endian data into native byte order. Before the
view is made the declared sizes are checked against the data actually sent
and, when limits are given, against what a camera may plausibly send, so a
message declaring a huge step cannot make anyone allocate gigabytes.
Malformed input raises :class:`ImageFormatError` whose ``reason`` is a stable
name (the node counts rejections by it).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any, Optional, Protocol

import numpy as np

from partseg_ros.codec.errors import CodecError
from partseg_ros.geometry import depth as geometry_depth

# encoding -> (channels, dtype) for everything partseg reads or writes.
ENCODINGS: dict[str, tuple[int, np.dtype]] = {
    "rgb8": (3, np.dtype(np.uint8)),
    "bgr8": (3, np.dtype(np.uint8)),
    "rgba8": (4, np.dtype(np.uint8)),
    "bgra8": (4, np.dtype(np.uint8)),
    "mono8": (1, np.dtype(np.uint8)),
    "8UC1": (1, np.dtype(np.uint8)),
    "16UC1": (1, np.dtype(np.uint16)),
    "mono16": (1, np.dtype(np.uint16)),
    "32FC1": (1, np.dtype(np.float32)),
}
COLOR_ENCODINGS = ("rgb8", "bgr8", "rgba8", "bgra8", "mono8")
DEPTH_ENCODINGS = ("16UC1", "mono16", "32FC1")
LABEL_ENCODINGS = ("mono16", "16UC1")
MASK_ENCODINGS = ("mono8", "8UC1")

# Reasons carried by ImageFormatError (also the node's rejection counters).
BAD_ENCODING = "bad_encoding"
MALFORMED_IMAGE = "malformed_image"
IMAGE_TOO_LARGE = "image_too_large"  # declared or actual size beyond the limits
IMAGE_TOO_SMALL = "image_too_small"  # below the limits (a 1x1 "frame" is not a camera image)


class ImageFormatError(CodecError):
    """An image that cannot be read; ``reason`` is a stable counter name."""


class ImageFields(Protocol):
    """What a sensor_msgs/Image of rclpy or rosbags offers; nothing else is read."""

    height: int
    width: int
    encoding: str
    is_bigendian: Any
    step: int
    data: Any


@dataclass(frozen=True)
class DecodeLimits:
    """What a camera may plausibly send; anything beyond is refused before it is decoded.

    The node's parameters ``limits.*`` set these (its InputLimits extends this
    class); the defaults are the node's defaults, so the bag reader refuses
    what a node with default parameters refuses.
    """

    min_image_width: int = 16
    min_image_height: int = 16
    max_image_width: int = 8192
    max_image_height: int = 8192
    max_image_bytes: int = 134_217_728  # 128 MiB: declared step * height, and the data actually sent
    min_focal_length_px: float = 1.0
    max_focal_length_px: float = 100_000.0


def _row_layout(height: int, width: int, encoding: str, step: int, data_len: int) -> tuple[int, np.dtype, int]:
    """(channels, dtype, row bytes) of a known encoding, after checking the rows fit in the data."""
    channels, dtype = ENCODINGS[encoding]
    row_bytes = width * channels * dtype.itemsize
    if step < row_bytes:
        raise ImageFormatError(MALFORMED_IMAGE, f"step {step} is shorter than a row of {row_bytes} bytes")
    # The last row needs only its pixels, not the padding up to step.
    if data_len < step * (height - 1) + row_bytes:
        raise ImageFormatError(
            MALFORMED_IMAGE, f"data holds {data_len} bytes, {width}x{height} {encoding} with step {step} needs "
            f"{step * height}")
    return channels, dtype, row_bytes


def check_declared_size(height: int, width: int, encoding: str, step: int, data_len: int,
                        limits: DecodeLimits) -> None:
    """Refuse an image whose declared or actual size is absurd, before anything is allocated.

    Integers only, so cheap enough for every arriving message (the node runs it
    on the header it peeks at); the encoding itself is checked when the image is
    decoded, since an unknown encoding is not a size problem.
    """
    if height <= 0 or width <= 0:
        raise ImageFormatError(MALFORMED_IMAGE, f"empty image {width}x{height}")
    if width > limits.max_image_width or height > limits.max_image_height:
        raise ImageFormatError(
            IMAGE_TOO_LARGE, f"{width}x{height} exceeds limits.max_image_width/height="
            f"{limits.max_image_width}x{limits.max_image_height}")
    declared = int(step) * int(height)
    if declared > limits.max_image_bytes or data_len > limits.max_image_bytes:
        raise ImageFormatError(
            IMAGE_TOO_LARGE, f"step {step} x height {height} = {declared} bytes declared, {data_len} sent; "
            f"limit limits.max_image_bytes={limits.max_image_bytes}")
    if width < limits.min_image_width or height < limits.min_image_height:
        raise ImageFormatError(
            IMAGE_TOO_SMALL, f"{width}x{height} is below limits.min_image_width/height="
            f"{limits.min_image_width}x{limits.min_image_height}")
    if encoding in ENCODINGS:
        _row_layout(height, width, encoding, step, data_len)


def image_to_array(msg: ImageFields, allowed: Optional[tuple[str, ...]] = None,
                   limits: Optional[DecodeLimits] = None) -> np.ndarray:
    """A read-only HxW or HxWxC view of the message buffer (copied only to fix the byte order).

    ``allowed`` narrows the encodings (colour, depth, labels); ``limits`` adds
    the plausibility checks of :func:`check_declared_size`.
    """
    encoding = str(msg.encoding)
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    raw = np.frombuffer(msg.data, dtype=np.uint8)
    if limits is not None:
        check_declared_size(height, width, encoding, step, raw.size, limits)
    if encoding not in ENCODINGS or (allowed is not None and encoding not in allowed):
        accepted = ", ".join(allowed or tuple(ENCODINGS))
        raise ImageFormatError(BAD_ENCODING, f"unsupported encoding {encoding!r} (accepted: {accepted})")
    if height <= 0 or width <= 0:
        raise ImageFormatError(MALFORMED_IMAGE, f"empty image {width}x{height}")
    channels, dtype, row_bytes = _row_layout(height, width, encoding, step, raw.size)
    if step % dtype.itemsize:
        raise ImageFormatError(MALFORMED_IMAGE,
                               f"step {step} is not a multiple of the {dtype.itemsize}-byte pixel type")
    # Only the bytes the rows use are viewed: a strided view over step*(height-1) + row_bytes
    # bytes, never a padded copy. (Padding the last row up to ``step`` once turned a
    # 3-byte message declaring step 2**32-1 into a 4 GB allocation.)
    buffer = raw[: step * (height - 1) + row_bytes]
    rows = np.lib.stride_tricks.as_strided(buffer, shape=(height, row_bytes), strides=(step, 1), writeable=False)
    big_endian_data = bool(msg.is_bigendian)
    typed = rows.view(dtype.newbyteorder(">" if big_endian_data else "<")) if dtype.itemsize > 1 else rows
    array = typed.reshape(height, width, channels) if channels > 1 else typed.reshape(height, width)
    if dtype.itemsize > 1 and big_endian_data != (sys.byteorder == "big"):
        array = array.astype(dtype)  # native byte order for the maths downstream
    array.flags.writeable = False  # a view of the message: consumers must copy to modify
    return array


def color_to_rgb(msg: ImageFields, limits: Optional[DecodeLimits] = None) -> np.ndarray:
    """HxWx3 uint8 RGB from rgb8/bgr8/rgba8/bgra8/mono8 (a zero-copy view for rgb8)."""
    array = image_to_array(msg, COLOR_ENCODINGS, limits)
    encoding = msg.encoding
    if encoding == "rgb8":
        return array
    if encoding == "bgr8":
        return array[:, :, ::-1]
    if encoding == "rgba8":
        return array[:, :, :3]
    if encoding == "bgra8":
        return array[:, :, 2::-1]
    return np.repeat(array[:, :, None], 3, axis=2)  # mono8


def depth_to_metres(msg: ImageFields, scale_16uc1: float = 0.001, scale_32fc1: float = 1.0,
                    limits: Optional[DecodeLimits] = None) -> np.ndarray:
    """HxW float32 metres with NaN where the sensor gave nothing (0, NaN, inf or negative).

    16UC1/mono16 are integer units times ``scale_16uc1`` (millimetres: 0.001);
    32FC1 is metres already (REP-118), times ``scale_32fc1`` for streams that
    publish another unit.
    """
    values = image_to_array(msg, DEPTH_ENCODINGS, limits)
    if msg.encoding == "32FC1":
        metres = geometry_depth.depth_to_metres(values, 1.0)
        if scale_32fc1 != 1.0:
            metres *= np.float32(scale_32fc1)
        return metres
    return geometry_depth.depth_to_metres(values, scale_16uc1)


def labels_to_array(msg: ImageFields, limits: Optional[DecodeLimits] = None) -> np.ndarray:
    """HxW uint16 label ids (mono16/16UC1), in native byte order."""
    return image_to_array(msg, LABEL_ENCODINGS, limits)


def mask_to_bool(msg: ImageFields) -> np.ndarray:
    """Bool HxW from a mono8 (or 8UC1) mask image."""
    return image_to_array(msg, MASK_ENCODINGS) > 0


@dataclass(frozen=True)
class EncodedImage:
    """The fields of a sensor_msgs/Image holding an array; ``data`` is a flat uint8 view, not a copy.

    Builders of rclpy and rosbags messages copy ``data`` into the message in
    whatever form their message class stores fastest.
    """

    height: int
    width: int
    encoding: str
    is_bigendian: bool
    step: int
    data: np.ndarray


def encode_image(values: np.ndarray, encoding: str) -> EncodedImage:
    """Image fields for ``values`` (C order, this machine's byte order, flagged in ``is_bigendian``)."""
    if encoding not in ENCODINGS:
        raise ValueError(f"unsupported encoding {encoding!r} (accepted: {', '.join(ENCODINGS)})")
    channels, dtype = ENCODINGS[encoding]
    values = np.ascontiguousarray(values, dtype=dtype)
    expected_ndim = 2 if channels == 1 else 3
    if values.ndim != expected_ndim or (channels > 1 and values.shape[2] != channels):
        raise ValueError(f"array of shape {values.shape} does not fit encoding {encoding}")
    height, width = int(values.shape[0]), int(values.shape[1])
    return EncodedImage(height, width, encoding, sys.byteorder == "big", width * channels * dtype.itemsize,
                        values.reshape(-1).view(np.uint8))
