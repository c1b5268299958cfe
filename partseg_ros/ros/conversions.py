"""rclpy sensor_msgs <-> numpy: images, depth, camera_info and point clouds.

The rules (encodings, sizes, step, byte order, depth units, CameraInfo ->
camera model) are the codec's (:mod:`partseg_ros.codec`), shared with the bag
reader; this module adds only what is particular to rclpy messages. ROS 2
cv_bridge and sensor_msgs_py are not on PyPI, and cv_bridge would cost a copy
anyway: reads are zero-copy views of the message buffer; writes hand the
generated uint8[] setters an ``array.array('B')`` filled with one memcpy
(assigning a numpy array iterates element by element, ~60x slower, see the
workplace notes).
"""

from __future__ import annotations

import array
import sys
from typing import Optional

import numpy as np
from sensor_msgs.msg import CameraInfo, Image, PointCloud2, PointField
from std_msgs.msg import Header

from partseg_ros.codec.camera_info import camera_from_info, camera_info_fields
from partseg_ros.codec.images import (
    BAD_ENCODING,
    DEPTH_ENCODINGS,
    MALFORMED_IMAGE,
    ImageFormatError,
    color_to_rgb,
    encode_image,
    image_to_array,
)
from partseg_ros.codec.images import depth_to_metres as _codec_depth_to_metres
from partseg_ros.codec.images import mask_to_bool
from partseg_ros.geometry.camera import CameraModel
from partseg_ros.types import CameraIntrinsics

# The codec's names the node's modules have always taken from here, plus the rclpy builders.
__all__ = [
    "BAD_ENCODING",
    "DEPTH_ENCODINGS",
    "MALFORMED_IMAGE",
    "ImageFormatError",
    "array_to_image",
    "camera_info_to_camera_model",
    "color_to_rgb",
    "depth_to_metres",
    "image_to_array",
    "image_to_mask",
    "intrinsics_to_camera_info",
    "mask_to_image",
    "point_cloud2",
    "point_cloud2_to_arrays",
    "uint8_field",
]


def depth_to_metres(msg: Image, scale_16uc1: float = 0.001) -> np.ndarray:
    """HxW float32 metres with NaN where the sensor gave nothing (16UC1 units x scale, 32FC1 metres)."""
    return _codec_depth_to_metres(msg, scale_16uc1)


def uint8_field(array_like: np.ndarray) -> array.array:
    """A uint8[] message field holding one copy of the array's bytes.

    The generated setters store uint8[] as ``array.array('B')``: handing them
    one directly skips the intermediate ``bytes`` that ``tobytes()`` makes.
    """
    out = array.array("B")
    out.frombytes(np.ascontiguousarray(array_like).reshape(-1).view(np.uint8))
    return out


def array_to_image(values: np.ndarray, encoding: str, header: Optional[Header] = None) -> Image:
    """An Image message holding a copy of ``values`` (C order, this machine's byte order)."""
    encoded = encode_image(values, encoding)
    msg = Image()
    if header is not None:
        msg.header = header
    msg.height, msg.width = encoded.height, encoded.width
    msg.encoding = encoded.encoding
    msg.is_bigendian = encoded.is_bigendian
    msg.step = encoded.step
    msg.data = uint8_field(encoded.data)
    return msg


def mask_to_image(mask: np.ndarray, header: Optional[Header] = None) -> Image:
    """mono8, 255 on the mask and 0 elsewhere (the Isaac ROS / vision_msgs convention)."""
    mask = np.ascontiguousarray(mask, dtype=bool)
    if mask.ndim != 2:
        raise ValueError(f"a mask is HxW, got shape {mask.shape}")
    return array_to_image(np.multiply(mask.view(np.uint8), np.uint8(255)), "mono8", header)


def image_to_mask(msg: Image) -> np.ndarray:
    """Bool HxW from a mono8 (or 8UC1) mask image."""
    return mask_to_bool(msg)


def intrinsics_to_camera_info(intrinsics: CameraIntrinsics, header: Optional[Header] = None) -> CameraInfo:
    """CameraInfo of an undistorted pinhole image (K = P, zero plumb_bob D): what a
    publisher of synthetic or already-rectified frames sends beside them."""
    fields = camera_info_fields(intrinsics)
    msg = CameraInfo()
    if header is not None:
        msg.header = header
    msg.width, msg.height = fields.width, fields.height
    msg.distortion_model = fields.distortion_model
    msg.d = fields.d.tolist()
    msg.k = fields.k.tolist()
    msg.r = fields.r.tolist()
    msg.p = fields.p.tolist()
    return msg


def camera_info_to_camera_model(msg: CameraInfo, rectified: bool = False) -> CameraModel:
    """The camera model of the image a camera_info describes (one per distinct camera_info, cached).

    Raw images use K and the distortion D; rectified images (``image_rect*``)
    use P's left 3x3. Raises ValueError (the codec's CameraInfoError) on
    unusable info such as an all-zero K.
    """
    return camera_from_info(msg, rectified=rectified)


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
