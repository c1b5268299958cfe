"""Read benchmark bags back as (frame, task, ground-truth masks) samples.

One :class:`BenchmarkSample` per TaskGroundTruth message, joined with the
colour image, depth, camera_info and SceneLabels whose header stamp equals
the task's. Depth and camera_info may be missing (e.g. converted 2D
datasets): the sample then has ``depth_m``/``intrinsics`` None. Real
recordings whose depth stamps differ slightly from colour are matched to the
nearest depth frame within ``depth_tolerance_s``.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Optional

import numpy as np

from partseg_ros.bags import messages as M
from partseg_ros.bags.format import (
    ALTERNATIVE_SEPARATOR,
    CAMERA_INFO_TOPIC,
    COLOR_TOPIC,
    DEPTH_TOPIC,
    LABELS_TOPIC,
    TASK_TOPIC,
    typestore,
)
from partseg_ros.types import CameraIntrinsics


@dataclass(frozen=True)
class TargetAlternative:
    """One object that answers the task and the label ids of its target parts."""

    object_name: str
    object_id: int  # 0 when the bag has no object-level label for it
    part_ids: tuple[int, ...]


@dataclass
class TaskSample:
    """The task asked on a frame and its ground truth as masks."""

    task_id: str
    instruction: str
    has_target: bool
    target_object: str  # "a|b" when several objects answer the task
    target_part: str
    reason: str
    target_object_id: int
    target_part_ids: tuple[int, ...]
    alternatives: list[TargetAlternative]
    target_part_mask: np.ndarray  # HxW bool, union over alternatives; all False without a target
    target_object_mask: np.ndarray  # HxW bool, union of the target objects; all False when unknown
    object_labels_known: bool  # False when the bag carries no object-level labels (converted 2D datasets)

    def alternative_part_masks(self, part_ids_image: np.ndarray) -> list[np.ndarray]:
        """One mask per alternative object (score "success" against any of them)."""
        return [np.isin(part_ids_image, np.asarray(a.part_ids, dtype=np.uint16)) for a in self.alternatives]


@dataclass
class BenchmarkSample:
    """A frame of a benchmark bag with one task on it."""

    scene: str
    view: str  # "<scene>/view<k>" (k counts the scene's frames in the bag)
    view_index: int
    stamp: int  # header stamp, ns
    frame_id: str
    rgb: np.ndarray  # HxWx3 uint8
    depth_m: Optional[np.ndarray]  # HxW float32 metres, NaN = invalid; None when the bag has no depth
    intrinsics: Optional[CameraIntrinsics]  # None when the bag has no camera_info
    object_ids: np.ndarray  # HxW uint16
    part_ids: np.ndarray  # HxW uint16
    object_names: list[str]  # index = id, [0] = "background"
    part_names: list[str]  # index = id, "object/part"
    task: TaskSample


class _Frame:
    __slots__ = ("color", "labels", "depth", "info")

    def __init__(self) -> None:
        self.color = self.labels = self.depth = self.info = None


def read_benchmark(bag_path: Path, depth_tolerance_s: float = 0.05, keep_frames: int = 16) -> Iterator[BenchmarkSample]:
    """Iterate a benchmark bag's samples in bag order (one per TaskGroundTruth)."""
    from rosbags.rosbag2 import Reader

    store = typestore()
    frames: OrderedDict[int, _Frame] = OrderedDict()
    depths: OrderedDict[int, Any] = OrderedDict()
    latest_info = None
    view_counts: dict[str, dict[int, int]] = {}
    tolerance_ns = int(depth_tolerance_s * M.NS)

    def frame_at(stamp: int) -> _Frame:
        if stamp not in frames:
            frames[stamp] = _Frame()
            while len(frames) > keep_frames:
                frames.popitem(last=False)
        return frames[stamp]

    bag_path = Path(bag_path)
    with Reader(bag_path.parent if bag_path.is_file() else bag_path) as reader:
        wanted = [c for c in reader.connections if c.topic in (COLOR_TOPIC, DEPTH_TOPIC, CAMERA_INFO_TOPIC,
                                                              LABELS_TOPIC, TASK_TOPIC)]
        for connection, _, raw in reader.messages(connections=wanted):
            msg = store.deserialize_cdr(raw, connection.msgtype)
            topic = connection.topic
            if topic == CAMERA_INFO_TOPIC:
                latest_info = msg
                frame_at(M.stamp_to_ns(msg.header.stamp)).info = msg
            elif topic == COLOR_TOPIC:
                frame_at(M.stamp_to_ns(msg.header.stamp)).color = msg
            elif topic == DEPTH_TOPIC:
                stamp = M.stamp_to_ns(msg.header.stamp)
                depths[stamp] = msg
                while len(depths) > keep_frames:
                    depths.popitem(last=False)
            elif topic == LABELS_TOPIC:
                frame_at(M.stamp_to_ns(msg.header.stamp)).labels = msg
            elif topic == TASK_TOPIC:
                stamp = M.stamp_to_ns(msg.header.stamp)
                frame = frames.get(stamp)
                if frame is None or frame.color is None or frame.labels is None:
                    raise ValueError(f"{bag_path}: task {msg.task_id!r} at {stamp} ns has no colour image or "
                                     "SceneLabels with the same stamp")
                scene_views = view_counts.setdefault(msg.scene, {})
                view_index = scene_views.setdefault(stamp, len(scene_views))
                depth = _nearest(depths, stamp, tolerance_ns)
                info = frame.info if frame.info is not None else latest_info
                yield _sample(msg, frame, depth, info, stamp, view_index)


def _nearest(depths: OrderedDict, stamp: int, tolerance_ns: int) -> Any:
    if stamp in depths:
        return depths[stamp]
    best = min(depths, key=lambda s: abs(s - stamp), default=None)
    if best is not None and abs(best - stamp) <= tolerance_ns:
        return depths[best]
    return None


def _sample(task: Any, frame: _Frame, depth_msg: Any, info_msg: Any, stamp: int, view_index: int) -> BenchmarkSample:
    rgb = M.decode_color(frame.color)
    h, w = rgb.shape[:2]
    object_ids = M.decode_labels(frame.labels.object_ids)
    part_ids = M.decode_labels(frame.labels.part_ids)
    if object_ids.shape != (h, w) or part_ids.shape != (h, w):
        raise ValueError(f"task {task.task_id!r}: label images do not match the {w}x{h} colour image")
    object_names = list(frame.labels.object_names)
    part_names = list(frame.labels.part_names)
    depth = M.decode_depth_m(depth_msg) if depth_msg is not None else None
    if depth is not None and depth.shape != (h, w):
        raise ValueError(f"task {task.task_id!r}: depth is not aligned to the colour image")
    intrinsics = M.decode_camera_info(info_msg) if info_msg is not None else None
    if intrinsics is not None and (intrinsics.width, intrinsics.height) != (w, h):
        intrinsics = intrinsics.scaled(w, h)

    target_part_ids = tuple(int(i) for i in np.asarray(task.target_part_ids).ravel())
    alternatives = _alternatives(task, object_names, part_names, target_part_ids)
    part_mask = np.isin(part_ids, np.asarray(target_part_ids, dtype=np.uint16)) if task.has_target else np.zeros((h, w), bool)
    object_id_list = [a.object_id for a in alternatives if a.object_id > 0]
    object_mask = np.isin(object_ids, np.asarray(object_id_list, dtype=np.uint16)) if task.has_target else np.zeros((h, w), bool)
    sample_task = TaskSample(
        task_id=task.task_id, instruction=task.instruction, has_target=bool(task.has_target),
        target_object=task.target_object, target_part=task.target_part, reason=task.reason,
        target_object_id=int(task.target_object_id), target_part_ids=target_part_ids, alternatives=alternatives,
        target_part_mask=part_mask, target_object_mask=object_mask, object_labels_known=len(object_names) > 1,
    )
    return BenchmarkSample(
        scene=task.scene, view=f"{task.scene}/view{view_index}", view_index=view_index, stamp=stamp,
        frame_id=frame.color.header.frame_id, rgb=rgb, depth_m=depth, intrinsics=intrinsics,
        object_ids=object_ids, part_ids=part_ids, object_names=object_names, part_names=part_names, task=sample_task,
    )


def _alternatives(task: Any, object_names: list[str], part_names: list[str],
                  target_part_ids: tuple[int, ...]) -> list[TargetAlternative]:
    """Split the target part ids by the object their "object/part" name belongs to."""
    if not task.has_target:
        return []
    objects = [o for o in task.target_object.split(ALTERNATIVE_SEPARATOR) if o]
    out = []
    for name in objects:
        ids = tuple(i for i in target_part_ids if i < len(part_names) and part_names[i].split("/", 1)[0] == name)
        object_id = object_names.index(name) if name in object_names else 0
        out.append(TargetAlternative(name, object_id, ids))
    claimed = {i for a in out for i in a.part_ids}
    rest = tuple(i for i in target_part_ids if i not in claimed)
    if rest:  # part names that do not follow "object/part": keep them as one more alternative
        out.append(TargetAlternative(task.target_object, int(task.target_object_id), rest))
    return out


def bag_paths(folder: Path) -> list[Path]:
    """The rosbag2 bags (folders with metadata.yaml) under ``folder``, sorted by name."""
    folder = Path(folder)
    if (folder / "metadata.yaml").is_file():
        return [folder]
    return sorted(p.parent for p in folder.glob("*/metadata.yaml"))
