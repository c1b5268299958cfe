"""Write benchmark episodes into a rosbag2 (MCAP by default, sqlite3 on request).

Per frame, in this order and with one header stamp: camera_info, colour,
aligned depth (if any), SceneLabels. Then, one task after another, a
TaskGroundTruth and the instruction string, each with the frame's stamp in
its header (std_msgs/String has none: it refers to the frame received last).
Log times advance by ``task_interval_s`` per task so that, replayed at 1x, a
live node has time to answer one instruction before the next.

Annotations are validated when a frame is built and again when it is written
(:func:`validate_frame`): a wrong id or name would otherwise be written
without complaint and read back as "target hidden" or an empty oracle hint.
:func:`annotate_task` builds a :class:`TaskAnnotation` from names, resolving
the part ids itself. Frames of a real recording keep their own header stamps
(``stamp_ns``) and the camera's distortion (``distortion_model``, ``distortion``).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Optional, Sequence

import numpy as np

from partseg_ros.bags import messages as bag_messages
from partseg_ros.console import UsageError
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
DEFAULT_START_NS = 1_735_689_600 * bag_messages.NS


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


class AnnotationError(UsageError, ValueError):
    """A frame's annotation contradicts itself (ids, names, targets) or its depth is implausible.

    A mistake in the user's data, so the console commands report it in one line.
    """


@dataclass(frozen=True)
class AnnotationLimits:
    """Plausibility limits for the depth of an annotated frame.

    A median valid depth beyond ``max_median_depth_m`` is taken for
    millimetres passed as metres (a table-top camera sees 0.2-3 m; 600 "m"
    is 600 mm). Set it higher for outdoor or long-range recordings.
    """

    max_median_depth_m: float = 20.0


DEFAULT_LIMITS = AnnotationLimits()


@dataclass
class BenchmarkFrame:
    """One camera frame with labels and the tasks asked on it.

    ``stamp_ns`` (and ``depth_stamp_ns`` when the depth image has its own) keep
    a real recording's header stamps; None lets the writer number frames on its
    synthetic timeline. ``distortion_model``/``distortion`` are the camera's
    (sensor_msgs/CameraInfo ``distortion_model`` and ``d``); empty for
    rectified or synthetic images.
    """

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
    stamp_ns: Optional[int] = None
    depth_stamp_ns: Optional[int] = None
    distortion_model: str = ""
    distortion: tuple[float, ...] = ()
    limits: AnnotationLimits = field(default=DEFAULT_LIMITS, repr=False)

    def __post_init__(self) -> None:
        self.distortion = tuple(float(c) for c in self.distortion)
        validate_frame(self)


def validate_frame(frame: BenchmarkFrame) -> None:
    """Raise :class:`AnnotationError` naming the first thing wrong with a frame's annotation.

    Checked: shapes; ``background`` first in both name lists; part names are
    ``object/part`` with an object of ``object_names`` (when the frame has
    object-level labels) and no ``/`` in object names; no duplicate names; label
    images refer to existing names; depth neither negative nor obviously in
    millimetres; and every task: a targeted task has part ids, each id exists
    and names one of ``target_objects`` and one of ``target_parts``, each target
    object is in ``object_names`` and has at least one of the ids; a no-target
    task has no targets at all.
    """
    h, w = frame.rgb.shape[:2]
    for name in ("object_ids", "part_ids", "depth_m"):
        value = getattr(frame, name)
        if value is not None and value.shape != (h, w):
            raise AnnotationError(f"{name} shape {value.shape} does not match the {w}x{h} image")
    if frame.intrinsics is not None and (frame.intrinsics.width, frame.intrinsics.height) != (w, h):
        raise AnnotationError("intrinsics do not match the image size")
    if frame.distortion and frame.intrinsics is None:
        raise AnnotationError("distortion without intrinsics: give the camera's intrinsics too")
    if frame.distortion:
        from partseg_ros.geometry.camera import CameraModel

        CameraModel(frame.intrinsics, frame.distortion_model, frame.distortion)  # its own checks
    _check_names(frame)
    if int(frame.part_ids.max(initial=0)) >= len(frame.part_names):
        raise AnnotationError("part_ids refer past part_names")
    if int(frame.object_ids.max(initial=0)) >= len(frame.object_names):
        raise AnnotationError("object_ids refer past object_names")
    if frame.depth_m is not None:
        _check_depth(frame.depth_m, frame.limits)
    for task in frame.tasks:
        _check_task(frame, task)


def _check_names(frame: BenchmarkFrame) -> None:
    if not frame.object_names or frame.object_names[0] != BACKGROUND_NAME:
        raise AnnotationError('object_names[0] must be "background"')
    if not frame.part_names or frame.part_names[0] != BACKGROUND_NAME:
        raise AnnotationError('part_names[0] must be "background"')
    for kind, names in (("object_names", frame.object_names), ("part_names", frame.part_names)):
        seen = set()
        for name in names:
            if name in seen:
                raise AnnotationError(f"{kind} lists {name!r} twice: an id could not be told from the other")
            seen.add(name)
    for name in frame.object_names[1:]:
        if "/" in name or not name:
            raise AnnotationError(f"object name {name!r} must be non-empty and hold no '/' (parts are 'object/part')")
    objects = set(frame.object_names[1:])
    for name in frame.part_names[1:]:
        obj, sep, part = name.partition("/")
        if not sep or not obj or not part or "/" in part:
            raise AnnotationError(f"part name {name!r} must be 'object/part'")
        if objects and obj not in objects:
            raise AnnotationError(f"part name {name!r}: object {obj!r} is not in object_names")


def _check_depth(depth_m: np.ndarray, limits: AnnotationLimits) -> None:
    depth = np.asarray(depth_m, dtype=np.float64)
    valid = depth[np.isfinite(depth)]
    if valid.size and valid.min() < 0:
        raise AnnotationError(f"depth has negative values (min {valid.min():.3f}); "
                              "depth_m is metres, NaN or 0 = no return")
    positive = valid[valid > 0]
    if positive.size and float(np.median(positive)) > limits.max_median_depth_m:
        raise AnnotationError(
            f"median depth {float(np.median(positive)):.1f} m is implausible: depth_m must be metres "
            f"(divide millimetres by 1000); AnnotationLimits.max_median_depth_m is {limits.max_median_depth_m} m"
        )


def _check_task(frame: BenchmarkFrame, task: TaskAnnotation) -> None:
    where = f"task {task.task_id!r}"
    if not task.has_target:
        if task.target_parts or task.target_part_ids:
            raise AnnotationError(f"{where} has no target object but lists target parts or part ids")
        return
    if not task.target_part_ids:
        raise AnnotationError(f"{where} has a target but no target_part_ids (annotate_task resolves them from names)")
    if not task.target_parts:
        raise AnnotationError(f"{where} has a target but no target_parts")
    object_labels = len(frame.object_names) > 1  # converted 2D datasets have none
    for obj in task.target_objects:
        if ALTERNATIVE_SEPARATOR in obj or "/" in obj:
            raise AnnotationError(f"{where}: target object {obj!r} holds '{ALTERNATIVE_SEPARATOR}' or '/'")
        if object_labels and obj not in frame.object_names:
            raise AnnotationError(f"{where}: target object {obj!r} is not in object_names {frame.object_names[1:]}")
    covered = set()
    for part_id in task.target_part_ids:
        if not 0 < part_id < len(frame.part_names):
            raise AnnotationError(f"{where}: target part id {part_id} is not a part (part_names has "
                                  f"{len(frame.part_names)} entries, 0 = background)")
        obj, _, part = frame.part_names[part_id].partition("/")
        if obj not in task.target_objects or part not in task.target_parts:
            raise AnnotationError(f"{where}: target part id {part_id} is {frame.part_names[part_id]!r}, not a "
                                  f"{'/'.join(task.target_parts)} of {', '.join(task.target_objects)}")
        covered.add(obj)
    missing = [o for o in task.target_objects if o not in covered]
    if missing:
        raise AnnotationError(f"{where}: target object(s) {missing} have none of the target part ids")


def annotate_task(frame: BenchmarkFrame, task_id: str, instruction: str, target_objects: Sequence[str] = (),
                  target_parts: Sequence[str] = (), reason: str = "") -> TaskAnnotation:
    """A task whose part ids are looked up from the frame's names; the annotator writes names only.

    Every ``object/part`` of ``part_names`` with an object of ``target_objects``
    and a part of ``target_parts`` becomes a target id. Each target object must
    have at least one of the parts, so a typo fails here instead of reading
    back as a hidden target. ``target_objects=()`` makes a no-target task.
    """
    objects, parts = tuple(target_objects), tuple(target_parts)
    ids = part_ids_for(frame.part_names, objects, parts)
    for obj in objects:
        if not any(frame.part_names[i].partition("/")[0] == obj for i in ids):
            have = [n.partition("/")[2] for n in frame.part_names[1:] if n.partition("/")[0] == obj]
            raise AnnotationError(f"task {task_id!r}: {obj!r} has no part named {' or '.join(parts) or '(none)'} "
                                  f"in part_names (its parts: {have or 'none: is the object name right?'})")
    task = TaskAnnotation(task_id, instruction, objects, parts, ids, reason)
    _check_task(frame, task)
    return task


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
    """Context manager writing :class:`BenchmarkFrame` s to one bag, in time order.

    An existing ``path`` is an error unless ``overwrite`` is set; then it is
    replaced, but only if it is a bag (a folder holding metadata.yaml and bag
    files), so a mistyped path cannot delete anything else. When writing fails,
    the half-written bag is removed.
    """

    def __init__(self, path: Path, storage: str = "mcap", start_ns: int = DEFAULT_START_NS,
                 frame_interval_s: float = 0.5, task_interval_s: float = 0.5, overwrite: bool = False) -> None:
        from rosbags.rosbag2 import Writer

        self.path = Path(path)
        plugin = storage_plugin(storage)
        if self.path.exists():
            if not overwrite:
                raise FileExistsError(f"{self.path} exists already; pass overwrite=True (--overwrite) to replace it")
            _remove_bag(self.path)
        self._writer = Writer(self.path, version=9, storage_plugin=plugin)
        self._time_ns = int(start_ns)
        self._frame_step = int(frame_interval_s * bag_messages.NS)
        self._task_step = int(task_interval_s * bag_messages.NS)
        self._connections: dict = {}
        self._last_stamp: Optional[int] = None
        self.frames_written = 0
        self.tasks_written = 0

    def __enter__(self) -> "BenchmarkBagWriter":
        self._writer.open()
        store = typestore()
        for topic, msgtype in TOPIC_TYPES.items():
            self._connections[topic] = self._writer.add_connection(topic, msgtype, typestore=store)
        return self

    def __exit__(self, exc_type, *exc) -> None:
        self._writer.close()
        if exc_type is not None:
            shutil.rmtree(self.path, ignore_errors=True)  # a bag cut short is not a benchmark

    def _write(self, topic: str, msg, log_ns: int) -> None:
        data = typestore().serialize_cdr(msg, TOPIC_TYPES[topic])
        self._writer.write(self._connections[topic], log_ns, data)

    def write_frame(self, frame: BenchmarkFrame) -> int:
        """Write one frame and its tasks (validated again: tasks may have been added); returns its stamp (ns)."""
        validate_frame(frame)
        stamp = self._time_ns if frame.stamp_ns is None else int(frame.stamp_ns)
        if self._last_stamp is not None and stamp <= self._last_stamp:
            raise AnnotationError(f"frame stamp {stamp} ns is not after the previous frame's {self._last_stamp} ns: "
                                  "the reader finds frames by stamp")
        depth_stamp = stamp if frame.depth_stamp_ns is None else int(frame.depth_stamp_ns)
        fid = frame.frame_id
        # Distinct log times (1 us apart) pin the order of messages that share a stamp; a recording's
        # stamps may be closer together than the tasks' spacing, so log time never goes back.
        t = max(stamp, self._time_ns)
        if frame.intrinsics is not None:
            info = bag_messages.camera_info_msg(frame.intrinsics, stamp, fid, frame.distortion_model, frame.distortion)
            self._write(CAMERA_INFO_TOPIC, info, t)
        self._write(COLOR_TOPIC, bag_messages.color_msg(frame.rgb, stamp, fid), t + 1_000)
        if frame.depth_m is not None:
            self._write(DEPTH_TOPIC, bag_messages.depth_msg(frame.depth_m, depth_stamp, fid), t + 2_000)
        self._write(LABELS_TOPIC, bag_messages.scene_labels_msg(frame.object_ids, frame.part_ids, frame.object_names,
                                                     frame.part_names, stamp, fid), t + 3_000)
        t += self._task_step
        for task in frame.tasks:
            self._write(TASK_TOPIC, self._task_msg(frame, task, stamp), t)
            self._write(INSTRUCTION_TOPIC, bag_messages.string_msg(task.instruction), t + 1_000)
            t += self._task_step
            self.tasks_written += 1
        self._time_ns = t + self._frame_step
        self._last_stamp = stamp
        self.frames_written += 1
        return stamp

    @staticmethod
    def _task_msg(frame: BenchmarkFrame, task: TaskAnnotation, stamp: int):
        names = frame.object_names
        first_id = names.index(task.target_objects[0]) if task.target_objects and task.target_objects[0] in names else 0
        return bag_messages.task_ground_truth_msg(
            scene=frame.scene, task_id=task.task_id, instruction=task.instruction, has_target=task.has_target,
            target_object=ALTERNATIVE_SEPARATOR.join(task.target_objects),
            target_part=ALTERNATIVE_SEPARATOR.join(task.target_parts),
            target_object_id=first_id, target_part_ids=task.target_part_ids, reason=task.reason,
            stamp_ns=stamp, frame_id=frame.frame_id,
        )


BAG_FILE_SUFFIXES = (".mcap", ".db3", ".db3-shm", ".db3-wal", ".yaml", ".zstd")


def _remove_bag(path: Path) -> None:
    """Delete an existing bag for ``overwrite``; refuse anything that does not look like one."""
    if path.is_dir():
        entries = list(path.iterdir())
        looks_like_bag = (not entries or (path / "metadata.yaml").is_file()) and all(
            e.is_file() and e.name.endswith(BAG_FILE_SUFFIXES) for e in entries
        )
        if not looks_like_bag:
            raise FileExistsError(f"{path} exists and is not a rosbag2 bag; not overwriting it")
        shutil.rmtree(path)
    else:
        raise FileExistsError(f"{path} exists and is not a bag folder; not overwriting it")


def write_benchmark(path: Path, frames: Iterable[BenchmarkFrame], storage: str = "mcap",
                    start_ns: int = DEFAULT_START_NS, frame_interval_s: float = 0.5,
                    task_interval_s: float = 0.5, overwrite: bool = False) -> tuple[int, int]:
    """Write frames into a new bag at ``path`` (replacing a bag there with ``overwrite``); returns (frames, tasks)."""
    with BenchmarkBagWriter(path, storage, start_ns, frame_interval_s, task_interval_s, overwrite) as writer:
        for frame in frames:
            writer.write_frame(frame)
    return writer.frames_written, writer.tasks_written


def part_ids_for(part_names: Sequence[str], objects: Sequence[str], parts: Sequence[str]) -> tuple[int, ...]:
    """Label ids of every (object, part) pair present in ``part_names``."""
    wanted = {f"{o}/{p}" for o in objects for p in parts}
    return tuple(i for i, name in enumerate(part_names) if name in wanted)
