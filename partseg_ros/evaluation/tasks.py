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
from typing import Any, Iterator, Optional

import numpy as np

from partseg_ros.evaluation.records import PROTOCOL_FULL, PROTOCOL_ORACLE_OBJECT
from partseg_ros.types import CameraIntrinsics, GroundingRequest


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
    intrinsics: Optional[CameraIntrinsics]  # None when the bag has no camera_info
    target_part_mask: np.ndarray  # every acceptable target part together
    target_object_mask: np.ndarray  # the object given as the oracle hint
    stamp_ns: int  # the frame's header stamp in the bag, to find it again
    # When several objects answer the task ("pick up the mug" with two mugs),
    # one part mask per acceptable object; the prediction is scored against the best.
    alternative_part_masks: tuple[np.ndarray, ...] = ()
    # False when the bag has no object-level labels (converted 2D datasets):
    # there is no oracle object to give, so the oracle_object protocol skips the task.
    object_mask_known: bool = True

    def __post_init__(self) -> None:
        if not self.alternative_part_masks:
            self.alternative_part_masks = (self.target_part_mask,)

    def supports(self, protocol: str) -> bool:
        """Whether the task can be asked under ``protocol`` (oracle_object needs object labels)."""
        return protocol != PROTOCOL_ORACLE_OBJECT or self.object_mask_known or not self.has_target

    def request(self, protocol: str) -> GroundingRequest:
        """The backend's input under a protocol.

        ``full``: image, depth and instruction only. ``oracle_object``: the
        target object's mask is added as ``object_mask_hint`` (ShapeGrasp's
        oracle-object setting), so only the part choice is tested. When several
        objects answer the task the hint covers all of them (any is right). A
        no-target task has no object to give, so its hint is an empty mask.
        """
        if protocol == PROTOCOL_FULL:
            hint = None
        elif protocol == PROTOCOL_ORACLE_OBJECT:
            hint = self.target_object_mask.copy()
        else:
            raise ValueError(f"unknown protocol {protocol!r}")
        return GroundingRequest(
            rgb=self.rgb,
            instruction=self.instruction,
            depth_m=self.depth_m,
            intrinsics=self.intrinsics,
            object_mask_hint=hint,
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
        object_mask_known=bool(task.object_labels_known),
    )


def bag_label(bag_path: Path) -> str:
    """The name a bag goes by in records and reports (its folder or file name)."""
    return Path(bag_path).name


def iter_tasks(bag_path: Path, stride: int = 1, offset: int = 0) -> Iterator[EvalTask]:
    """Tasks of one bag in bag order; with ``stride``/``offset`` only every stride-th one (for shards)."""
    from partseg_ros.bags.reader import read_benchmark

    label = bag_label(bag_path)
    for index, sample in enumerate(read_benchmark(Path(bag_path))):
        if index % stride == offset:
            yield task_from_sample(sample, label, index)
