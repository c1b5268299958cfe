"""numpy <-> rosbags message conversion for the benchmark topics (no rclpy).

Builders take numpy arrays and return rosbags message objects of the
typestore in :mod:`partseg_ros.bags.format`; decoders do the reverse and
accept the encodings a real RGB-D driver publishes (rgb8/bgr8/rgba8/bgra8/
mono8 colour; 16UC1/mono16 millimetres or 32FC1 metres depth).
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
from partseg_ros.types import CameraIntrinsics

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
    """sensor_msgs/Image from an HxW or HxWxC array (little-endian data)."""
    array = np.ascontiguousarray(array)
    if array.dtype.byteorder == ">":
        array = array.astype(array.dtype.newbyteorder("<"))
    h, w = array.shape[:2]
    step = w * (array.shape[2] if array.ndim == 3 else 1) * array.dtype.itemsize
    return _cls(IMAGE_TYPE)(
        header=header(stamp_ns, frame_id), height=h, width=w, encoding=encoding, is_bigendian=0, step=step,
        data=np.frombuffer(array.tobytes(), dtype=np.uint8),
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
    k = intrinsics.matrix
    p = np.zeros((3, 4))
    p[:, :3] = k
    d = np.asarray(distortion, dtype=np.float64) if len(distortion) else np.zeros(5)
    RegionOfInterest = _cls("sensor_msgs/msg/RegionOfInterest")
    return _cls(CAMERA_INFO_TYPE)(
        header=header(stamp_ns, frame_id), height=intrinsics.height, width=intrinsics.width,
        distortion_model=distortion_model or "plumb_bob", d=d, k=k.ravel(), r=np.eye(3).ravel(), p=p.ravel(),
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


def _image_array(msg: Any) -> np.ndarray:
    data = np.asarray(msg.data, dtype=np.uint8)
    return data.reshape(msg.height, msg.step)


def decode_color(msg: Any) -> np.ndarray:
    """HxWx3 uint8 RGB from any common colour encoding."""
    enc = msg.encoding.lower()
    channels = {"rgb8": 3, "bgr8": 3, "rgba8": 4, "bgra8": 4, "mono8": 1, "8uc3": 3, "8uc1": 1}.get(enc)
    if channels is None:
        raise ValueError(f"unsupported colour encoding {msg.encoding!r}")
    rows = _image_array(msg)[:, : msg.width * channels]
    img = rows.reshape(msg.height, msg.width, channels)
    if channels == 1:
        return np.repeat(img, 3, axis=2).copy()
    if enc in ("bgr8", "bgra8"):
        img = img[..., 2::-1]
    return np.ascontiguousarray(img[..., :3])


def _uint16_image(msg: Any) -> np.ndarray:
    rows = _image_array(msg)[:, : msg.width * 2]
    dtype = ">u2" if msg.is_bigendian else "<u2"
    return np.ascontiguousarray(rows).view(dtype).reshape(msg.height, msg.width).astype(np.uint16)


def decode_depth_m(msg: Any, unit_m: float = DEPTH_UNIT_M) -> np.ndarray:
    """HxW float32 metres, NaN where the sensor gave nothing (0 or non-finite)."""
    enc = msg.encoding.lower()
    if enc in ("16uc1", "mono16"):
        raw = _uint16_image(msg).astype(np.float32)
        return np.where(raw > 0, raw * np.float32(unit_m), np.nan).astype(np.float32)
    if enc == "32fc1":
        rows = _image_array(msg)[:, : msg.width * 4]
        dtype = ">f4" if msg.is_bigendian else "<f4"
        depth = np.ascontiguousarray(rows).view(dtype).reshape(msg.height, msg.width).astype(np.float32)
        return np.where(np.isfinite(depth) & (depth > 0), depth, np.nan).astype(np.float32)
    raise ValueError(f"unsupported depth encoding {msg.encoding!r}")


def decode_labels(msg: Any) -> np.ndarray:
    """HxW uint16 label image (mono16/16UC1)."""
    return _uint16_image(msg)


def decode_camera_info(msg: Any) -> Optional[CameraIntrinsics]:
    """Intrinsics from K; None when the message carries none (K all zero)."""
    k = np.asarray(msg.k, dtype=np.float64).reshape(3, 3)
    if k[0, 0] <= 0 or k[1, 1] <= 0:
        return None
    return CameraIntrinsics.from_matrix(k, int(msg.width), int(msg.height))
