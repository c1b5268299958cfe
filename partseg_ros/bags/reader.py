"""Read benchmark bags back as (frame, task, ground-truth masks) samples.

One :class:`BenchmarkSample` per TaskGroundTruth message, joined with the
colour image, depth, camera_info and SceneLabels whose header stamp equals
the task's. Depth and camera_info may be missing (e.g. converted 2D
datasets): the sample then has ``depth_m``/``camera`` None. Real
recordings whose depth stamps differ slightly from colour are matched to the
nearest depth frame within ``depth_tolerance_s``. Images and camera_info are
decoded by the node's codec (:mod:`partseg_ros.codec`); each sample also keeps
its frame's colour, depth and camera_info as the bag holds them
(:class:`RecordedFrame`), so the live evaluator can send the node exactly
those messages.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import numpy as np

from partseg_ros.bags import messages as bag_messages
from partseg_ros.bags.format import (
    ALTERNATIVE_SEPARATOR,
    CAMERA_INFO_TOPIC,
    COLOR_TOPIC,
    DEPTH_TOPIC,
    LABELS_TOPIC,
    TASK_TOPIC,
    typestore,
)
from partseg_ros.geometry.camera import CameraModel
from partseg_ros.types import CameraIntrinsics


@dataclass(frozen=True)
class RecordedMessage:
    """One message as the bag holds it: its type, its header stamp and its serialized (CDR) bytes."""

    msgtype: str
    stamp_ns: int
    data: bytes


@dataclass(frozen=True)
class RecordedFrame:
    """A frame's camera messages as recorded, undecoded: what a camera driver sent the node.

    Replaying these (not arrays decoded from them) into the node exercises what a
    real recording exercises: its depth encoding and units, its distortion, its
    step and byte order.
    """

    color: RecordedMessage
    depth: Optional[RecordedMessage]
    camera_info: Optional[RecordedMessage]


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

    def alternative_object_masks(self, object_ids_image: np.ndarray) -> list[np.ndarray]:
        """One object mask per alternative, in the order of :meth:`alternative_part_masks`.

        The oracle-object protocol hands these to the backend separately: their
        union would be grounded as one object (two mugs as one two-handled mug).
        An alternative without an object-level label (id 0) gets an empty mask.
        """
        return [object_ids_image == a.object_id if a.object_id > 0 else np.zeros(object_ids_image.shape, bool)
                for a in self.alternatives]


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
    camera: Optional[CameraModel]  # K and D as recorded; None when the bag has no (calibrated) camera_info
    object_ids: np.ndarray  # HxW uint16
    part_ids: np.ndarray  # HxW uint16
    object_names: list[str]  # index = id, [0] = "background"
    part_names: list[str]  # index = id, "object/part"
    task: TaskSample
    index: int = 0  # position of the task's TaskGroundTruth among the bag's tasks (0-based)
    recorded: Optional[RecordedFrame] = None  # the frame's camera messages as the bag holds them

    @property
    def intrinsics(self) -> Optional[CameraIntrinsics]:
        return None if self.camera is None else self.camera.intrinsics


class _Frame:
    """The messages sharing one header stamp, kept as serialised bytes until a selected task needs them."""

    __slots__ = ("color", "labels", "info")

    def __init__(self) -> None:
        self.color = self.labels = self.info = None


class _Raw:
    """A serialised message and its type: deserialised only when a selected task reads it."""

    __slots__ = ("data", "msgtype", "stamp_ns", "_msg")

    def __init__(self, data: bytes, msgtype: str, stamp_ns: int) -> None:
        self.data, self.msgtype, self.stamp_ns, self._msg = data, msgtype, stamp_ns, None

    def decode(self) -> Any:
        if self._msg is None:  # several tasks on one frame share the deserialised message
            self._msg = typestore().deserialize_cdr(self.data, self.msgtype)
        return self._msg

    def recorded(self) -> RecordedMessage:
        return RecordedMessage(self.msgtype, self.stamp_ns, self.data)


def header_stamp_ns(raw: bytes, msgtype: str) -> int:
    """The header stamp of a serialised message whose first field is a std_msgs/Header.

    Read straight from the CDR bytes (4-byte encapsulation, then int32 sec and
    uint32 nanosec), so frames no selected task uses are never deserialised:
    an image costs a copy of its pixels to deserialise.
    """
    kind = bytes(raw[:2])
    if kind in (b"\x00\x01", b"\x00\x00") and len(raw) >= 12:
        order = "<" if kind == b"\x00\x01" else ">"
        sec = int(np.frombuffer(raw, dtype=f"{order}i4", count=1, offset=4)[0])
        nanosec = int(np.frombuffer(raw, dtype=f"{order}u4", count=1, offset=8)[0])
        return sec * bag_messages.NS + nanosec
    return bag_messages.stamp_to_ns(typestore().deserialize_cdr(raw, msgtype).header.stamp)


def read_benchmark(bag_path: Path, depth_tolerance_s: float = 0.05, keep_frames: int = 16,
                   select: Optional[Callable[[int], bool]] = None) -> Iterator[BenchmarkSample]:
    """Iterate a benchmark bag's samples in bag order (one per TaskGroundTruth).

    ``select(task_index)`` picks which tasks to return (index = position of the
    TaskGroundTruth in the bag, kept in ``BenchmarkSample.index``). Tasks not
    selected are never decoded, so shards of one bag split the decoding
    instead of each repeating all of it.
    """
    from rosbags.rosbag2 import Reader

    store = typestore()
    frames: OrderedDict[int, _Frame] = OrderedDict()
    depths: OrderedDict[int, _Raw] = OrderedDict()
    latest_info: Optional[_Raw] = None
    view_counts: dict[str, dict[int, int]] = {}
    tolerance_ns = int(depth_tolerance_s * bag_messages.NS)
    task_index = -1

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
            topic = connection.topic
            if topic == TASK_TOPIC:
                msg = store.deserialize_cdr(raw, connection.msgtype)
                task_index += 1
                stamp = bag_messages.stamp_to_ns(msg.header.stamp)
                frame = frames.get(stamp)
                if frame is None or frame.color is None or frame.labels is None:
                    raise ValueError(f"{bag_path}: task {msg.task_id!r} at {stamp} ns has no colour image or "
                                     "SceneLabels with the same stamp")
                scene_views = view_counts.setdefault(msg.scene, {})
                view_index = scene_views.setdefault(stamp, len(scene_views))
                if select is not None and not select(task_index):
                    continue
                depth = _nearest(depths, stamp, tolerance_ns)
                info = frame.info if frame.info is not None else latest_info
                recorded = RecordedFrame(frame.color.recorded(), None if depth is None else depth.recorded(),
                                         None if info is None else info.recorded())
                yield _sample(msg, frame.color.decode(), frame.labels.decode(),
                              None if depth is None else depth.decode(), None if info is None else info.decode(),
                              stamp, view_index, task_index, recorded)
                continue
            stamp = header_stamp_ns(raw, connection.msgtype)
            item = _Raw(raw, connection.msgtype, stamp)
            if topic == CAMERA_INFO_TOPIC:
                latest_info = item
                frame_at(stamp).info = item
            elif topic == COLOR_TOPIC:
                frame_at(stamp).color = item
            elif topic == DEPTH_TOPIC:
                depths[stamp] = item
                while len(depths) > keep_frames:
                    depths.popitem(last=False)
            elif topic == LABELS_TOPIC:
                frame_at(stamp).labels = item


def _nearest(depths: OrderedDict, stamp: int, tolerance_ns: int) -> Any:
    if stamp in depths:
        return depths[stamp]
    best = min(depths, key=lambda s: abs(s - stamp), default=None)
    if best is not None and abs(best - stamp) <= tolerance_ns:
        return depths[best]
    return None


def _sample(task: Any, color_msg: Any, labels_msg: Any, depth_msg: Any, info_msg: Any, stamp: int,
            view_index: int, index: int, recorded: RecordedFrame) -> BenchmarkSample:
    rgb = bag_messages.decode_color(color_msg)
    h, w = rgb.shape[:2]
    object_ids = bag_messages.decode_labels(labels_msg.object_ids)
    part_ids = bag_messages.decode_labels(labels_msg.part_ids)
    if object_ids.shape != (h, w) or part_ids.shape != (h, w):
        raise ValueError(f"task {task.task_id!r}: label images do not match the {w}x{h} colour image")
    object_names = list(labels_msg.object_names)
    part_names = list(labels_msg.part_names)
    depth = bag_messages.decode_depth_m(depth_msg) if depth_msg is not None else None
    if depth is not None and depth.shape != (h, w):
        raise ValueError(f"task {task.task_id!r}: depth is not aligned to the colour image")
    try:
        camera = bag_messages.decode_camera(info_msg, (h, w)) if info_msg is not None else None
    except ValueError as exc:  # the node would refuse this frame: say which task and why
        raise ValueError(f"task {task.task_id!r}: {exc}") from None

    target_part_ids = tuple(int(i) for i in np.asarray(task.target_part_ids).ravel())
    alternatives = _alternatives(task, object_names, part_names, target_part_ids)
    if task.has_target:
        part_mask = np.isin(part_ids, np.asarray(target_part_ids, dtype=np.uint16))
    else:
        part_mask = np.zeros((h, w), bool)
    object_id_list = [a.object_id for a in alternatives if a.object_id > 0]
    if task.has_target:
        object_mask = np.isin(object_ids, np.asarray(object_id_list, dtype=np.uint16))
    else:
        object_mask = np.zeros((h, w), bool)
    sample_task = TaskSample(
        task_id=task.task_id, instruction=task.instruction, has_target=bool(task.has_target),
        target_object=task.target_object, target_part=task.target_part, reason=task.reason,
        target_object_id=int(task.target_object_id), target_part_ids=target_part_ids, alternatives=alternatives,
        target_part_mask=part_mask, target_object_mask=object_mask, object_labels_known=len(object_names) > 1,
    )
    return BenchmarkSample(
        scene=task.scene, view=f"{task.scene}/view{view_index}", view_index=view_index, stamp=stamp,
        frame_id=color_msg.header.frame_id, rgb=rgb, depth_m=depth, camera=camera,
        object_ids=object_ids, part_ids=part_ids, object_names=object_names, part_names=part_names, task=sample_task,
        index=index, recorded=recorded,
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


def count_tasks(bag_path: Path) -> int:
    """How many tasks (TaskGroundTruth messages) a bag holds, from its metadata: nothing is decoded.

    Progress bars and shard planning use it to know the total up front.
    """
    from rosbags.rosbag2 import Reader

    bag_path = Path(bag_path)
    with Reader(bag_path.parent if bag_path.is_file() else bag_path) as reader:
        return sum(c.msgcount for c in reader.connections if c.topic == TASK_TOPIC)


def bag_paths(folder: Path) -> list[Path]:
    """The rosbag2 bags (folders with metadata.yaml) under ``folder``, sorted by name."""
    folder = Path(folder)
    if (folder / "metadata.yaml").is_file():
        return [folder]
    return sorted(p.parent for p in folder.glob("*/metadata.yaml"))
