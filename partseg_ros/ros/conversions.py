"""sensor_msgs <-> numpy: images, depth, camera_info and point clouds.

ROS 2 cv_bridge and sensor_msgs_py are not on PyPI, and cv_bridge would cost
a copy anyway: reads here are zero-copy ``np.frombuffer`` views of the message
buffer; writes hand the generated uint8[] setters an ``array.array('B')``
filled with one memcpy (assigning a numpy array iterates element by element,
~60x slower, see the workplace notes). Malformed input raises
:class:`ImageFormatError` carrying a short reason the node counts.
"""

from __future__ import annotations

import array
import sys
import threading
from typing import Optional

import numpy as np
from sensor_msgs.msg import CameraInfo, Image, PointCloud2, PointField
from std_msgs.msg import Header

from partseg_ros.geometry import depth as geometry_depth
from partseg_ros.geometry.camera import CameraModel, InvalidIntrinsicsError, camera_model_from_camera_info
from partseg_ros.types import CameraIntrinsics

# encoding -> (channels, dtype) for everything the node reads or writes.
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

# Reasons carried by ImageFormatError (also the node's rejection counters).
BAD_ENCODING = "bad_encoding"
MALFORMED_IMAGE = "malformed_image"


class ImageFormatError(ValueError):
    """An image the node cannot read; ``reason`` is a stable counter name."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def image_to_array(msg: Image, allowed: Optional[tuple[str, ...]] = None) -> np.ndarray:
    """A read-only HxW or HxWxC view of the message buffer (copies only to fix byte order)."""
    encoding = msg.encoding
    if encoding not in ENCODINGS or (allowed is not None and encoding not in allowed):
        accepted = ", ".join(allowed or tuple(ENCODINGS))
        raise ImageFormatError(BAD_ENCODING, f"unsupported encoding {encoding!r} (accepted: {accepted})")
    channels, dtype = ENCODINGS[encoding]
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    row_bytes = width * channels * dtype.itemsize
    if height <= 0 or width <= 0:
        raise ImageFormatError(MALFORMED_IMAGE, f"empty image {width}x{height}")
    if step < row_bytes:
        raise ImageFormatError(MALFORMED_IMAGE, f"step {step} is shorter than a row of {row_bytes} bytes")
    if step % dtype.itemsize:
        raise ImageFormatError(MALFORMED_IMAGE, f"step {step} is not a multiple of the {dtype.itemsize}-byte pixel type")
    size = len(msg.data)
    if size < step * (height - 1) + row_bytes:
        raise ImageFormatError(
            MALFORMED_IMAGE, f"data holds {size} bytes, {width}x{height} {encoding} with step {step} needs {step * height}"
        )
    # Only the bytes the rows use are viewed: a strided view over step*(height-1) + row_bytes
    # bytes, never a padded copy. (Padding the last row up to ``step`` once turned a
    # 3-byte message declaring step 2**32-1 into a 4 GB allocation.)
    buffer = np.frombuffer(msg.data, dtype=np.uint8, count=step * (height - 1) + row_bytes)
    rows = np.lib.stride_tricks.as_strided(buffer, shape=(height, row_bytes), strides=(step, 1), writeable=False)
    big_endian_data = bool(msg.is_bigendian)
    typed = rows.view(dtype.newbyteorder(">" if big_endian_data else "<")) if dtype.itemsize > 1 else rows
    array = typed.reshape(height, width, channels) if channels > 1 else typed.reshape(height, width)
    if dtype.itemsize > 1 and big_endian_data != (sys.byteorder == "big"):
        array = array.astype(dtype)  # native byte order for the maths downstream
    array.flags.writeable = False  # a view of the message: consumers must copy to modify
    return array


def color_to_rgb(msg: Image) -> np.ndarray:
    """HxWx3 uint8 RGB from rgb8/bgr8/rgba8/bgra8/mono8 (a zero-copy view for rgb8)."""
    array = image_to_array(msg, COLOR_ENCODINGS)
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


def depth_to_metres(msg: Image, scale_16uc1: float = 0.001) -> np.ndarray:
    """HxW float32 metres with NaN where the sensor gave nothing (0, NaN, inf or negative).

    16UC1/mono16 are integer units times ``scale_16uc1`` (millimetres: 0.001);
    32FC1 is metres already (REP-118).
    """
    return geometry_depth.depth_to_metres(image_to_array(msg, DEPTH_ENCODINGS), scale_16uc1)


def uint8_field(array_like: np.ndarray) -> array.array:
    """A uint8[] message field holding one copy of the array's bytes.

    The generated setters store uint8[] as ``array.array('B')``: handing them
    one directly skips the intermediate ``bytes`` that ``tobytes()`` makes.
    """
    out = array.array("B")
    out.frombytes(np.ascontiguousarray(array_like).reshape(-1).view(np.uint8))
    return out


def array_to_image(values: np.ndarray, encoding: str, header: Optional[Header] = None) -> Image:
    """An Image message holding a copy of ``values`` (C order, native little-endian)."""
    channels, dtype = ENCODINGS[encoding]
    values = np.ascontiguousarray(values, dtype=dtype)
    expected_ndim = 2 if channels == 1 else 3
    if values.ndim != expected_ndim or (channels > 1 and values.shape[2] != channels):
        raise ValueError(f"array of shape {values.shape} does not fit encoding {encoding}")
    msg = Image()
    if header is not None:
        msg.header = header
    msg.height, msg.width = int(values.shape[0]), int(values.shape[1])
    msg.encoding = encoding
    msg.is_bigendian = sys.byteorder == "big"
    msg.step = msg.width * channels * dtype.itemsize
    msg.data = uint8_field(values)
    return msg


def mask_to_image(mask: np.ndarray, header: Optional[Header] = None) -> Image:
    """mono8, 255 on the mask and 0 elsewhere (the Isaac ROS / vision_msgs convention)."""
    mask = np.ascontiguousarray(mask, dtype=bool)
    if mask.ndim != 2:
        raise ValueError(f"a mask is HxW, got shape {mask.shape}")
    msg = Image()
    if header is not None:
        msg.header = header
    msg.height, msg.width = int(mask.shape[0]), int(mask.shape[1])
    msg.encoding = "mono8"
    msg.step = msg.width
    msg.data = uint8_field(np.multiply(mask.view(np.uint8), np.uint8(255)))
    return msg


def image_to_mask(msg: Image) -> np.ndarray:
    """Bool HxW from a mono8 (or 8UC1) mask image."""
    return image_to_array(msg, ("mono8", "8UC1")) > 0


def intrinsics_to_camera_info(intrinsics: CameraIntrinsics, header: Optional[Header] = None) -> CameraInfo:
    """CameraInfo of an undistorted pinhole image (K = P, zero plumb_bob D): what a
    publisher of synthetic or already-rectified frames sends beside them."""
    k = intrinsics
    msg = CameraInfo()
    if header is not None:
        msg.header = header
    msg.width, msg.height = int(k.width), int(k.height)
    msg.distortion_model = "plumb_bob"
    msg.d = [0.0] * 5
    msg.k = [k.fx, 0.0, k.cx, 0.0, k.fy, k.cy, 0.0, 0.0, 1.0]
    msg.r = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
    msg.p = [k.fx, 0.0, k.cx, 0.0, 0.0, k.fy, k.cy, 0.0, 0.0, 0.0, 1.0, 0.0]
    return msg


def camera_info_matrices(msg: CameraInfo) -> tuple[np.ndarray, np.ndarray, np.ndarray, str]:
    """(K 3x3, P 3x4, D, distortion model) as float64 arrays."""
    k = np.asarray(msg.k, dtype=np.float64).reshape(3, 3)
    p = np.asarray(msg.p, dtype=np.float64).reshape(3, 4)
    d = np.asarray(msg.d, dtype=np.float64)
    return k, p, d, str(msg.distortion_model)


def camera_info_to_camera_model(msg: CameraInfo, rectified: bool = False) -> CameraModel:
    """The camera model of the image a camera_info describes.

    Raw images use K and the distortion D; rectified images (``image_rect*``)
    use P's left 3x3 (geometry.camera decides). Raises ValueError
    (InvalidIntrinsicsError) on unusable info such as an all-zero K.
    """
    k, p, d, model = camera_info_matrices(msg)
    key = (k.tobytes(), p.tobytes(), d.tobytes(), model, int(msg.width), int(msg.height), bool(rectified))
    with _CAMERA_MODELS_LOCK:
        cached = _CAMERA_MODELS.get(key)
    if cached is not None:
        return cached
    if not (np.isfinite(k).all() and np.isfinite(p).all()):
        raise InvalidIntrinsicsError("camera_info K or P contains NaN/inf")
    camera = camera_model_from_camera_info(k.ravel(), p.ravel(), d, model, key[4], key[5], rectified=rectified)
    with _CAMERA_MODELS_LOCK:
        if len(_CAMERA_MODELS) >= 8:  # a camera_info rarely changes; keep a handful
            _CAMERA_MODELS.pop(next(iter(_CAMERA_MODELS)))
        _CAMERA_MODELS[key] = camera
    return camera


# One CameraModel per distinct camera_info, so a distorted camera's ray map is
# computed once, not per frame (CameraModel caches it).
_CAMERA_MODELS: dict[tuple, CameraModel] = {}
_CAMERA_MODELS_LOCK = threading.Lock()


def point_cloud2(points: np.ndarray, header: Header, colors: Optional[np.ndarray] = None) -> PointCloud2:
    """An unordered PointCloud2 with float32 x, y, z (+ rgb packed in a float32, PCL style).

    ``colors`` are Nx3 uint8 RGB. Built by hand with a structured array so the
    whole cloud is one ``tobytes`` call.
    """
    points = np.asarray(points, dtype=np.float32).reshape(-1, 3)
    fields = [
        PointField(name="x", offset=0, datatype=PointField.FLOAT32, count=1),
        PointField(name="y", offset=4, datatype=PointField.FLOAT32, count=1),
        PointField(name="z", offset=8, datatype=PointField.FLOAT32, count=1),
    ]
    if colors is not None:
        colors = np.asarray(colors, dtype=np.uint8).reshape(-1, 3)
        if len(colors) != len(points):
            raise ValueError(f"{len(colors)} colours for {len(points)} points")
        fields.append(PointField(name="rgb", offset=12, datatype=PointField.FLOAT32, count=1))
        record = np.empty(len(points), dtype=[("xyz", np.float32, 3), ("rgb", np.uint32)])
        record["xyz"] = points
        c = colors.astype(np.uint32)
        record["rgb"] = (c[:, 0] << 16) | (c[:, 1] << 8) | c[:, 2]
        data = uint8_field(record)
        point_step = 16
    else:
        data = uint8_field(points)
        point_step = 12
    msg = PointCloud2()
    msg.header = header
    msg.height, msg.width = 1, len(points)
    msg.fields = fields
    msg.is_bigendian = sys.byteorder == "big"
    msg.point_step = point_step
    msg.row_step = point_step * len(points)
    msg.is_dense = bool(np.isfinite(points).all())
    msg.data = data
    return msg


def point_cloud2_to_arrays(msg: PointCloud2) -> tuple[np.ndarray, Optional[np.ndarray]]:
    """(Nx3 float32 points, Nx3 uint8 colours or None) from a cloud with float32 x, y, z (+ rgb)."""
    offsets = {f.name: f.offset for f in msg.fields}
    if not {"x", "y", "z"} <= offsets.keys():
        raise ValueError("point cloud has no x, y, z fields")
    count = int(msg.width) * int(msg.height)
    raw = np.frombuffer(msg.data, dtype=np.uint8, count=count * msg.point_step).reshape(count, msg.point_step)
    points = np.stack([raw[:, offsets[a] : offsets[a] + 4].copy().view(np.float32)[:, 0] for a in "xyz"], axis=1)
    colors = None
    if "rgb" in offsets:
        packed = raw[:, offsets["rgb"] : offsets["rgb"] + 4].copy().view(np.uint32)[:, 0]
        colors = np.stack([(packed >> 16) & 255, (packed >> 8) & 255, packed & 255], axis=1).astype(np.uint8)
    return points, colors
