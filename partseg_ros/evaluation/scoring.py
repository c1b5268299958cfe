"""Score one prediction against one task's ground truth.

Both evaluation paths reduce what came back (a GroundingResult in process,
PartSegmentation + GraspRegionArray messages over DDS) to a
:class:`Prediction` and call :func:`score_task`, so they share every metric.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from partseg_ros.evaluation import metrics
from partseg_ros.evaluation.overlays import overlay_image, png_thumbnail
from partseg_ros.evaluation.records import TaskRecord
from partseg_ros.evaluation.tasks import EvalTask


@dataclass
class Prediction:
    """A system's answer to one task, independent of how it was obtained.

    ``mask`` is the union of all predicted instances (the semantic-level
    answer the IoU metrics score, as in InstructPart and InstructSAM's gIoU).
    ``grasp_centroid`` is the centroid of the grasp region of the top-ranked
    instance, in the camera optical frame; None with ``grasp_status`` saying
    why when no region could be made (no instance, no depth, too few points).
    """

    mask: np.ndarray
    num_instances: int
    object_label: str
    part_label: str
    grasp_centroid: Optional[tuple[float, float, float]]
    grasp_status: str
    latency_ms: float
    error: str = ""


def best_alternative_counts(pred: np.ndarray, alternatives: tuple[np.ndarray, ...]) -> tuple[int, int]:
    """(intersection, union) against the acceptable target that fits the prediction best (first on ties).

    Any one of several acceptable objects answers a task, so the prediction is
    not penalised for leaving out the others. Alternatives with no visible pixel are skipped.
    """
    # A target hidden in this view cannot be the one meant; an empty mask would
    # also hand an empty prediction a perfect IoU. Score against the visible ones.
    visible = [m for m in alternatives if m.any()] or list(alternatives)
    best: Optional[tuple[int, int]] = None
    best_iou = -1.0
    for mask in visible:
        counts = metrics.intersection_and_union(pred, mask)
        value = metrics.iou_from_counts(*counts)
        if value > best_iou:
            best, best_iou = counts, value
    assert best is not None, "a task has at least one target mask (empty for no-target tasks)"
    return best


def score_task(
    task: EvalTask, prediction: Prediction, protocol: str, backend: str, path: str, with_overlay: bool = True
) -> TaskRecord:
    """The :class:`TaskRecord` of one prediction: counts, IoU, both success criteria, latency."""
    inter, union = best_alternative_counts(prediction.mask, task.alternative_part_masks)
    sample_iou = metrics.iou_from_counts(inter, union)
    grasp_pixel = None
    # The task's camera keeps the recorded distortion, as the one that built the grasp region did.
    if prediction.grasp_centroid is not None and task.camera is not None:
        grasp_pixel = metrics.project_point(prediction.grasp_centroid, task.camera)
    if task.has_target:
        # On any acceptable target's part: the union of the alternatives.
        grasp_success = task.camera is not None and metrics.grasp_point_on_part(
            prediction.grasp_centroid, task.camera, task.target_part_mask
        )
    else:
        # Nothing to grasp is the right answer: success means no grasp region was offered.
        grasp_success = prediction.grasp_centroid is None and prediction.num_instances == 0
    overlay = None
    if with_overlay:
        overlay = png_thumbnail(overlay_image(task.rgb, task.target_part_mask, prediction.mask, grasp_pixel))
    return TaskRecord(
        bag=task.bag,
        sample_index=task.sample_index,
        stamp_ns=task.stamp_ns,
        scene=task.scene,
        view=task.view,
        task_id=task.task_id,
        instruction=task.instruction,
        has_target=task.has_target,
        target_object=task.target_object,
        target_part=task.target_part,
        target_visible=bool(task.target_part_mask.any()),
        protocol=protocol,
        backend=backend,
        path=path,
        prediction_empty=not bool(prediction.mask.any()),
        num_instances=int(prediction.num_instances),
        predicted_object=prediction.object_label,
        predicted_part=prediction.part_label,
        intersection=inter,
        union=union,
        iou=float(sample_iou),
        mask_success=metrics.mask_selection_success(sample_iou),
        grasp_point_success=bool(grasp_success),
        grasp_status=prediction.grasp_status,
        grasp_centroid=(
            None if prediction.grasp_centroid is None else tuple(float(v) for v in prediction.grasp_centroid)
        ),
        grasp_pixel=grasp_pixel,
        latency_ms=float(prediction.latency_ms),
        error=prediction.error,
        overlay_png=overlay,
    )
