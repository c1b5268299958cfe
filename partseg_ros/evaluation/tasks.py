"""One evaluation task as the evaluator sees it, read from a benchmark bag.

The bag reader (partseg_ros.bags.reader) yields one sample per task and
frame; this module turns it into an :class:`EvalTask` holding exactly what the
protocols and the scorer need, and builds the backend request of each protocol.
Keeping this adapter in one place means the rest of the evaluator does not
depend on the reader's field layout.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Optional, Sequence

import numpy as np

from partseg_ros.evaluation.records import PROTOCOL_FULL, PROTOCOL_ORACLE_OBJECT
from partseg_ros.geometry.camera import CameraModel, as_camera_model
from partseg_ros.types import CameraIntrinsics, GroundingRequest

if TYPE_CHECKING:  # the reader (and rosbags) load only when a bag is read
    from partseg_ros.bags.reader import RecordedFrame


@dataclass
class EvalTask:
    """A frame, an instruction and its ground truth."""

    bag: str
    sample_index: int
    scene: str
    view: str
    task_id: str
    instruction: str
    has_target: bool
    target_object: str
    target_part: str
    rgb: np.ndarray
    depth_m: Optional[np.ndarray]
    intrinsics: Optional[CameraIntrinsics]  # None when the bag has no camera_info (K of ``camera``)
    target_part_mask: np.ndarray  # every acceptable target part together
    target_object_mask: np.ndarray  # the object given as the oracle hint
    stamp_ns: int  # the frame's header stamp in the bag, to find it again
    # When several objects answer the task ("pick up the mug" with two mugs),
    # one part mask per acceptable object; the prediction is scored against the best.
    alternative_part_masks: tuple[np.ndarray, ...] = ()
    # One object mask per acceptable object, in the order of alternative_part_masks: the
    # oracle-object protocol gives them to the backend as separate hints.
    alternative_object_masks: tuple[np.ndarray, ...] = ()
    # False when the bag has no object-level labels (converted 2D datasets):
    # there is no oracle object to give, so the oracle_object protocol skips the task.
    object_mask_known: bool = True
    # The camera with the distortion still in the image (K and D as recorded); given only
    # ``intrinsics``, a distortion-free one. Both are filled in and agree.
    camera: Optional[CameraModel] = None
    # The frame's colour, depth and camera_info as the bag holds them: what a path that
    # feeds a running node sends it (None for tasks not read from a bag).
    recorded: Optional["RecordedFrame"] = None

    def __post_init__(self) -> None:
        if self.camera is None and self.intrinsics is not None:
            self.camera = as_camera_model(self.intrinsics)
        elif self.camera is not None:
            if self.intrinsics is None:
                self.intrinsics = self.camera.intrinsics
            elif self.intrinsics != self.camera.intrinsics:
                raise ValueError(f"intrinsics {self.intrinsics} disagree with the camera's {self.camera.intrinsics}")
        if not self.alternative_part_masks:
            self.alternative_part_masks = (self.target_part_mask,)
        if not self.alternative_object_masks:
            self.alternative_object_masks = (self.target_object_mask,)

    def supports(self, protocol: str) -> bool:
        """Whether the task can be asked under ``protocol`` (oracle_object needs object labels)."""
        return protocol != PROTOCOL_ORACLE_OBJECT or self.object_mask_known or not self.has_target

    def request(self, protocol: str) -> GroundingRequest:
        """The backend's input under a protocol.

        ``full``: image, depth and instruction only. ``oracle_object``: the
        target object's mask is added (ShapeGrasp's oracle-object setting), so
        only the part choice is tested. When several objects answer the task
        ("pick up the mug" with two mugs), each is given as its own mask in
        ``object_mask_hints`` and the answer is scored against the best of them;
        given as one union mask, a backend would ground them as one object.
        Objects with no visible pixel are left out (they cannot be the one
        meant), so a no-target task gets an empty tuple: oracle, nothing to give.
        """
        if protocol == PROTOCOL_FULL:
            hints = None
        elif protocol == PROTOCOL_ORACLE_OBJECT:
            hints = tuple(m.copy() for m in self.alternative_object_masks if m.any()) if self.has_target else ()
        else:
            raise ValueError(f"unknown protocol {protocol!r}")
        return GroundingRequest(
            rgb=self.rgb,
            instruction=self.instruction,
            depth_m=self.depth_m,
            camera=self.camera,  # with the recorded distortion, as the node's requests carry it
            object_mask_hints=hints,
        )


def task_from_sample(sample: Any, bag: str, sample_index: int) -> EvalTask:
    """Adapt one ``BenchmarkSample`` of ``partseg_ros.bags.reader.read_benchmark`` to an :class:`EvalTask`."""
    task = sample.task
    h, w = sample.rgb.shape[:2]
    part_mask = np.asarray(task.target_part_mask, dtype=bool)
    object_mask = np.asarray(task.target_object_mask, dtype=bool)
    if part_mask.shape != (h, w) or object_mask.shape != (h, w):
        raise ValueError(f"{bag}#{sample_index}: ground-truth masks do not match the {w}x{h} image")
    alternatives = tuple(task.alternative_part_masks(sample.part_ids)) if task.has_target else ()
    object_alternatives = tuple(task.alternative_object_masks(sample.object_ids)) if task.has_target else ()
    return EvalTask(
        bag=bag,
        sample_index=sample_index,
        scene=str(sample.scene),
        view=str(sample.view),
        task_id=str(task.task_id),
        instruction=str(task.instruction),
        has_target=bool(task.has_target),
        target_object=str(task.target_object),
        target_part=str(task.target_part),
        rgb=np.ascontiguousarray(sample.rgb, dtype=np.uint8),
        depth_m=None if sample.depth_m is None else np.asarray(sample.depth_m, dtype=np.float32),
        intrinsics=sample.intrinsics,
        target_part_mask=part_mask,
        target_object_mask=object_mask,
        stamp_ns=int(sample.stamp),
        alternative_part_masks=alternatives,
        alternative_object_masks=object_alternatives,
        object_mask_known=bool(task.object_labels_known),
        camera=sample.camera,
        recorded=sample.recorded,
    )


def bag_label(bag_path: Path) -> str:
    """The name a lone bag goes by in records and reports (its folder or file name)."""
    return Path(bag_path).name


def bag_labels(bags: Sequence[Path]) -> dict[Path, str]:
    """A unique name per bag for records and reports: the folder name, with parent folders where names collide.

    Two study runs both holding a ``martinis`` bag must not share one row in
    the report or collide on (bag, sample_index): they become
    ``run_a/martinis`` and ``run_b/martinis``, while bags with unique names
    keep their plain name.
    """
    paths = [Path(b).resolve() for b in bags]
    if len(set(paths)) != len(paths):
        raise ValueError("the same bag is listed twice")
    depth = {p: 1 for p in paths}
    while True:
        labels = {p: "/".join(p.parts[-depth[p]:]) for p in paths}
        clashes: dict[str, list[Path]] = {}
        for p, label in labels.items():
            clashes.setdefault(label, []).append(p)
        grown = False
        for group in clashes.values():
            if len(group) > 1:
                for p in group:
                    if depth[p] < len(p.parts):
                        depth[p] += 1
                        grown = True
        if not grown:
            return {Path(b): labels[Path(b).resolve()] for b in bags}


def iter_tasks(bag_path: Path, stride: int = 1, offset: int = 0, label: Optional[str] = None) -> Iterator[EvalTask]:
    """Tasks of one bag in bag order; with ``stride``/``offset`` only every stride-th one (for shards).

    The selection happens before decoding (the reader skips the other tasks'
    images). ``label`` is the bag's name in the records (see :func:`bag_labels`;
    default: its folder name).
    """
    from partseg_ros.bags.reader import read_benchmark

    if stride < 1 or not 0 <= offset < stride:
        raise ValueError(f"need stride >= 1 and 0 <= offset < stride, got stride {stride}, offset {offset}")
    label = label if label is not None else bag_label(bag_path)
    for sample in read_benchmark(Path(bag_path), select=lambda index: index % stride == offset):
        yield task_from_sample(sample, label, sample.index)
