"""Write benchmark episodes into a rosbag2 (MCAP by default, sqlite3 on request).

Per frame, in this order and with one header stamp: camera_info, colour,
aligned depth (if any), SceneLabels. Then, one task after another, a
TaskGroundTruth and the instruction string, each with the frame's stamp in
its header (std_msgs/String has none: it refers to the frame received last).
Log times advance by ``task_interval_s`` per task so that, replayed at 1x, a
live node has time to answer one instruction before the next.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Optional, Sequence

import numpy as np

from partseg_ros.bags import messages as M
from partseg_ros.bags.format import (
    ALTERNATIVE_SEPARATOR,
    BACKGROUND_NAME,
    CAMERA_INFO_TOPIC,
    COLOR_FRAME_ID,
    COLOR_TOPIC,
    DEPTH_TOPIC,
    INSTRUCTION_TOPIC,
    LABELS_TOPIC,
    TASK_TOPIC,
    TOPIC_TYPES,
    storage_plugin,
    typestore,
)
from partseg_ros.types import CameraIntrinsics

# A fixed epoch keeps generated bags byte-identical for a seed (2025-01-01T00:00:00Z).
DEFAULT_START_NS = 1_735_689_600 * M.NS


@dataclass
class TaskAnnotation:
    """Ground truth of one instruction on one frame; ids refer to the frame's label images."""

    task_id: str
    instruction: str
    target_objects: tuple[str, ...] = ()  # alternatives: any of them answers; empty = no target
    target_parts: tuple[str, ...] = ()
    target_part_ids: tuple[int, ...] = ()
    reason: str = ""

    @property
    def has_target(self) -> bool:
        return bool(self.target_objects)


@dataclass
class BenchmarkFrame:
    """One camera frame with labels and the tasks asked on it."""

    scene: str
    rgb: np.ndarray
    object_ids: np.ndarray
    part_ids: np.ndarray
    object_names: list[str]  # [0] = "background"
    part_names: list[str]  # [0] = "background", then "object/part"
    tasks: list[TaskAnnotation] = field(default_factory=list)
    depth_m: Optional[np.ndarray] = None
    intrinsics: Optional[CameraIntrinsics] = None
    frame_id: str = COLOR_FRAME_ID

    def __post_init__(self) -> None:
        h, w = self.rgb.shape[:2]
        for name in ("object_ids", "part_ids", "depth_m"):
            value = getattr(self, name)
            if value is not None and value.shape != (h, w):
                raise ValueError(f"{name} shape {value.shape} does not match the {w}x{h} image")
        if self.intrinsics is not None and (self.intrinsics.width, self.intrinsics.height) != (w, h):
            raise ValueError("intrinsics do not match the image size")
        if not self.object_names or self.object_names[0] != BACKGROUND_NAME:
            raise ValueError('object_names[0] must be "background"')
        if not self.part_names or self.part_names[0] != BACKGROUND_NAME:
            raise ValueError('part_names[0] must be "background"')
        if int(self.part_ids.max(initial=0)) >= len(self.part_names):
            raise ValueError("part_ids refer past part_names")
        if int(self.object_ids.max(initial=0)) >= len(self.object_names):
            raise ValueError("object_ids refer past object_names")


def frame_from_rendered_view(view) -> BenchmarkFrame:
    """A rendered synthetic view (partseg_ros.scene.render.RenderedView) as a bag frame."""
    tasks = [
        TaskAnnotation(t.task_id, t.instruction, tuple(t.targets), tuple(t.parts), tuple(t.target_part_ids), t.reason)
        for t in view.tasks
    ]
    return BenchmarkFrame(
        scene=view.scene, rgb=view.rgb, depth_m=view.depth_m, intrinsics=view.intrinsics,
        object_ids=view.object_ids, part_ids=view.part_ids, object_names=list(view.object_names),
        part_names=list(view.part_names), tasks=tasks,
    )


class BenchmarkBagWriter:
    """Context manager writing :class:`BenchmarkFrame` s to one bag, in time order."""

    def __init__(self, path: Path, storage: str = "mcap", start_ns: int = DEFAULT_START_NS,
                 frame_interval_s: float = 0.5, task_interval_s: float = 0.5) -> None:
        from rosbags.rosbag2 import Writer

        self.path = Path(path)
        self._writer = Writer(self.path, version=9, storage_plugin=storage_plugin(storage))
        self._time_ns = int(start_ns)
        self._frame_step = int(frame_interval_s * M.NS)
        self._task_step = int(task_interval_s * M.NS)
        self._connections: dict = {}
        self.frames_written = 0
        self.tasks_written = 0

    def __enter__(self) -> "BenchmarkBagWriter":
        self._writer.open()
        store = typestore()
        for topic, msgtype in TOPIC_TYPES.items():
            self._connections[topic] = self._writer.add_connection(topic, msgtype, typestore=store)
        return self

    def __exit__(self, *exc) -> None:
        self._writer.close()

    def _write(self, topic: str, msg, log_ns: int) -> None:
        data = typestore().serialize_cdr(msg, TOPIC_TYPES[topic])
        self._writer.write(self._connections[topic], log_ns, data)

    def write_frame(self, frame: BenchmarkFrame) -> int:
        """Write one frame and its tasks; returns the frame's stamp (ns)."""
        stamp = self._time_ns
        fid = frame.frame_id
        # Distinct log times (1 us apart) pin the order of messages that share a stamp.
        t = stamp
        if frame.intrinsics is not None:
            self._write(CAMERA_INFO_TOPIC, M.camera_info_msg(frame.intrinsics, stamp, fid), t)
        self._write(COLOR_TOPIC, M.color_msg(frame.rgb, stamp, fid), t + 1_000)
        if frame.depth_m is not None:
            self._write(DEPTH_TOPIC, M.depth_msg(frame.depth_m, stamp, fid), t + 2_000)
        self._write(LABELS_TOPIC, M.scene_labels_msg(frame.object_ids, frame.part_ids, frame.object_names,
                                                     frame.part_names, stamp, fid), t + 3_000)
        t += self._task_step
        for task in frame.tasks:
            self._write(TASK_TOPIC, self._task_msg(frame, task, stamp), t)
            self._write(INSTRUCTION_TOPIC, M.string_msg(task.instruction), t + 1_000)
            t += self._task_step
            self.tasks_written += 1
        self._time_ns = t + self._frame_step
        self.frames_written += 1
        return stamp

    @staticmethod
    def _task_msg(frame: BenchmarkFrame, task: TaskAnnotation, stamp: int):
        names = frame.object_names
        first_id = names.index(task.target_objects[0]) if task.target_objects and task.target_objects[0] in names else 0
        return M.task_ground_truth_msg(
            scene=frame.scene, task_id=task.task_id, instruction=task.instruction, has_target=task.has_target,
            target_object=ALTERNATIVE_SEPARATOR.join(task.target_objects),
            target_part=ALTERNATIVE_SEPARATOR.join(task.target_parts),
            target_object_id=first_id, target_part_ids=task.target_part_ids, reason=task.reason,
            stamp_ns=stamp, frame_id=frame.frame_id,
        )


def write_benchmark(path: Path, frames: Iterable[BenchmarkFrame], storage: str = "mcap",
                    start_ns: int = DEFAULT_START_NS, frame_interval_s: float = 0.5,
                    task_interval_s: float = 0.5) -> tuple[int, int]:
    """Write frames into a new bag at ``path``; returns (frames, tasks) written."""
    with BenchmarkBagWriter(path, storage, start_ns, frame_interval_s, task_interval_s) as writer:
        for frame in frames:
            writer.write_frame(frame)
    return writer.frames_written, writer.tasks_written


def part_ids_for(part_names: Sequence[str], objects: Sequence[str], parts: Sequence[str]) -> tuple[int, ...]:
    """Label ids of every (object, part) pair present in ``part_names``."""
    wanted = {f"{o}/{p}" for o in objects for p in parts}
    return tuple(i for i, name in enumerate(part_names) if name in wanted)
