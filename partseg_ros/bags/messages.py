"""numpy <-> rosbags message conversion for the benchmark topics (no rclpy).

Builders take numpy arrays and return rosbags message objects of the
typestore in :mod:`partseg_ros.bags.format`; decoders do the reverse and
accept the encodings a real RGB-D driver publishes (rgb8/bgr8/rgba8/bgra8/
mono8 colour; 16UC1/mono16 millimetres or 32FC1 metres depth). Both go
through the codec the node uses (:mod:`partseg_ros.codec`), so a bag read
here means what the same bag replayed into the node means: same encodings,
size limits, step and byte-order rules, the distortion kept, and a
camera_info of the wrong size refused.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

import numpy as np

from partseg_ros.bags.format import (
    CAMERA_INFO_TYPE,
    COLOR_ENCODING,
    DEPTH_ENCODING,
    DEPTH_UNIT_M,
    IMAGE_TYPE,
    LABEL_ENCODING,
    SCENE_LABELS_TYPE,
    STRING_TYPE,
    TASK_GROUND_TRUTH_TYPE,
    typestore,
)
from partseg_ros.codec.camera_info import camera_from_info, camera_info_fields, is_calibrated
from partseg_ros.codec.images import DecodeLimits, color_to_rgb, depth_to_metres, encode_image, labels_to_array
from partseg_ros.geometry.camera import CameraModel
from partseg_ros.types import CameraIntrinsics

# A bag is read with the limits of a node with default parameters: what it would refuse, the reader refuses.
READ_LIMITS = DecodeLimits()

NS = 1_000_000_000


def _cls(name: str) -> Any:
    return typestore().types[name]


def header(stamp_ns: int, frame_id: str) -> Any:
    Time = _cls("builtin_interfaces/msg/Time")
    Header = _cls("std_msgs/msg/Header")
    return Header(stamp=Time(sec=int(stamp_ns // NS), nanosec=int(stamp_ns % NS)), frame_id=frame_id)


def stamp_to_ns(stamp: Any) -> int:
    return int(stamp.sec) * NS + int(stamp.nanosec)


def image_msg(array: np.ndarray, encoding: str, stamp_ns: int, frame_id: str) -> Any:
    """sensor_msgs/Image holding a copy of an HxW or HxWxC array."""
    encoded = encode_image(array, encoding)
    return _cls(IMAGE_TYPE)(
        header=header(stamp_ns, frame_id), height=encoded.height, width=encoded.width, encoding=encoded.encoding,
        is_bigendian=int(encoded.is_bigendian), step=encoded.step, data=encoded.data.copy(),
    )


def color_msg(rgb: np.ndarray, stamp_ns: int, frame_id: str) -> Any:
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"colour must be HxWx3 uint8, got {rgb.shape} {rgb.dtype}")
    return image_msg(rgb, COLOR_ENCODING, stamp_ns, frame_id)


def depth_msg(depth_m: np.ndarray, stamp_ns: int, frame_id: str) -> Any:
    """16UC1 millimetres, 0 where the depth is NaN or out of the uint16 range."""
    mm = np.round(np.asarray(depth_m, dtype=np.float64) / DEPTH_UNIT_M)
    mm = np.where(np.isfinite(mm) & (mm > 0) & (mm < 65535), mm, 0).astype(np.uint16)
    return image_msg(mm, DEPTH_ENCODING, stamp_ns, frame_id)


def camera_info_msg(intrinsics: CameraIntrinsics, stamp_ns: int, frame_id: str, distortion_model: str = "",
                    distortion: Sequence[float] = ()) -> Any:
    """camera_info of a pinhole camera; without distortion (rectified / synthetic images) D is five zeros.

    A real recording's raw images keep their distortion model and coefficients,
    so whoever reads the bag back can undistort exactly as the driver said.
    """
    fields = camera_info_fields(intrinsics, distortion_model, distortion)
    RegionOfInterest = _cls("sensor_msgs/msg/RegionOfInterest")
    return _cls(CAMERA_INFO_TYPE)(
        header=header(stamp_ns, frame_id), height=fields.height, width=fields.width,
        distortion_model=fields.distortion_model, d=fields.d, k=fields.k, r=fields.r, p=fields.p,
        binning_x=0, binning_y=0,
        roi=RegionOfInterest(x_offset=0, y_offset=0, height=0, width=0, do_rectify=False),
    )


def string_msg(text: str) -> Any:
    return _cls(STRING_TYPE)(data=text)


def scene_labels_msg(object_ids: np.ndarray, part_ids: np.ndarray, object_names: Sequence[str],
                     part_names: Sequence[str], stamp_ns: int, frame_id: str) -> Any:
    return _cls(SCENE_LABELS_TYPE)(
        header=header(stamp_ns, frame_id),
        object_ids=image_msg(np.asarray(object_ids, dtype=np.uint16), LABEL_ENCODING, stamp_ns, frame_id),
        part_ids=image_msg(np.asarray(part_ids, dtype=np.uint16), LABEL_ENCODING, stamp_ns, frame_id),
        object_names=list(object_names),
        part_names=list(part_names),
    )


def task_ground_truth_msg(*, scene: str, task_id: str, instruction: str, has_target: bool, target_object: str,
                          target_part: str, target_object_id: int, target_part_ids: Sequence[int], reason: str,
                          stamp_ns: int, frame_id: str) -> Any:
    return _cls(TASK_GROUND_TRUTH_TYPE)(
        header=header(stamp_ns, frame_id), scene=scene, task_id=task_id, instruction=instruction,
        has_target=bool(has_target), target_object=target_object, target_part=target_part,
        target_object_id=int(target_object_id), target_part_ids=np.asarray(target_part_ids, dtype=np.uint16),
        reason=reason,
    )


# ----------------------------------------------------------------- decoding


def decode_color(msg: Any) -> np.ndarray:
    """HxWx3 uint8 RGB (a read-only view for rgb8) from any colour encoding the node takes."""
    return color_to_rgb(msg, READ_LIMITS)


def decode_depth_m(msg: Any, unit_m: float = DEPTH_UNIT_M) -> np.ndarray:
    """HxW float32 metres, NaN where the sensor gave nothing; 16UC1/mono16 in ``unit_m``, 32FC1 in metres."""
    return depth_to_metres(msg, unit_m, limits=READ_LIMITS)


def decode_labels(msg: Any) -> np.ndarray:
    """HxW uint16 label image (mono16/16UC1)."""
    return labels_to_array(msg, READ_LIMITS)


def decode_camera(msg: Any, image_shape: tuple[int, int]) -> Optional[CameraModel]:
    """The camera model (K and D, as recorded) of the (height, width) image the camera_info comes with.

    None when K is all zero, the CameraInfo convention for an uncalibrated
    camera: the frame is read as 2D only. Any other unusable camera_info, or
    one for an image of another size, raises
    :class:`partseg_ros.codec.camera_info.CameraInfoError` (a ValueError).
    """
    if not is_calibrated(msg):
        return None
    return camera_from_info(msg, image_shape=image_shape, limits=READ_LIMITS)
