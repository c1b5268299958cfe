"""The benchmark bag format: topic names, message types and the rosbags typestore.

A benchmark bag is a plain rosbag2 (MCAP or sqlite3) that a live partseg
node can be fed from, plus ground-truth topics in partseg's own messages.
docs/benchmark_format.md describes it for people annotating real recordings.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from rosbags.typesys import Stores, get_types_from_msg, get_typestore
from rosbags.typesys.store import Typestore

from partseg_ros.resources import package_share_subdir

COLOR_TOPIC = "/camera/color/image_raw"
DEPTH_TOPIC = "/camera/aligned_depth_to_color/image_raw"
CAMERA_INFO_TOPIC = "/camera/color/camera_info"
INSTRUCTION_TOPIC = "/partseg/instruction"
LABELS_TOPIC = "/partseg/ground_truth/labels"
TASK_TOPIC = "/partseg/ground_truth/task"
CLOCK_TOPIC = "/clock"

IMAGE_TYPE = "sensor_msgs/msg/Image"
CAMERA_INFO_TYPE = "sensor_msgs/msg/CameraInfo"
STRING_TYPE = "std_msgs/msg/String"
SCENE_LABELS_TYPE = "partseg/msg/SceneLabels"
TASK_GROUND_TRUTH_TYPE = "partseg/msg/TaskGroundTruth"
CLOCK_TYPE = "rosgraph_msgs/msg/Clock"

TOPIC_TYPES: dict[str, str] = {
    CAMERA_INFO_TOPIC: CAMERA_INFO_TYPE,
    COLOR_TOPIC: IMAGE_TYPE,
    DEPTH_TOPIC: IMAGE_TYPE,
    LABELS_TOPIC: SCENE_LABELS_TYPE,
    TASK_TOPIC: TASK_GROUND_TRUTH_TYPE,
    INSTRUCTION_TOPIC: STRING_TYPE,
}

COLOR_FRAME_ID = "camera_color_optical_frame"
COLOR_ENCODING = "rgb8"
DEPTH_ENCODING = "16UC1"  # millimetres, 0 = no return (RealSense convention)
LABEL_ENCODING = "mono16"
DEPTH_UNIT_M = 0.001
BACKGROUND_NAME = "background"
ALTERNATIVE_SEPARATOR = "|"  # target_object "a|b|c": any of a, b, c answers the task
STORAGE_CHOICES = ("mcap", "sqlite3")

PARTSEG_MESSAGES = ("PartInstance", "PartSegmentation", "GraspRegion", "GraspRegionArray", "SceneLabels",
                    "TaskGroundTruth")


def msg_dir() -> Path:
    """partseg's msg/ folder: the source tree, else share/partseg/msg of an installed package."""
    return package_share_subdir("msg", "TaskGroundTruth.msg")


@lru_cache(maxsize=1)
def typestore() -> Typestore:
    """A ROS 2 Kilted typestore with partseg's messages registered from their .msg text.

    Registering from the same .msg files rosidl builds from keeps the RIHS01
    type hashes in the bag equal to the live node's.
    """
    store = get_typestore(Stores.ROS2_KILTED)
    folder = msg_dir()
    types = {}
    for name in PARTSEG_MESSAGES:
        text = (folder / f"{name}.msg").read_text(encoding="utf-8")
        types.update(get_types_from_msg(text, f"partseg/msg/{name}"))
    store.register(types)
    return store


def storage_plugin(storage: str):
    """rosbags' StoragePlugin for "mcap" or "sqlite3"."""
    from rosbags.rosbag2 import StoragePlugin

    if storage not in STORAGE_CHOICES:
        raise ValueError(f"storage must be one of {STORAGE_CHOICES}, got {storage!r}")
    return StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
