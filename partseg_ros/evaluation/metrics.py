"""Metric definitions of the part-selection evaluation, as pure numpy functions.

Every function here works on plain arrays or lists of numbers so that the
in-process path, the sharded path and the live (DDS) path all score with the
same code. The definitions follow the papers the project reproduces:

* InstructPart (sec. 4.1): gIoU, cIoU, P@50, P@50:95;
* Partonomy / PLUM (sec. 4): micro- and macro-gIoU;
* InstructSAM (Inst2Seg no-target subset): the gIoU of no-target samples, which
  reduces to the fraction of no-target instructions answered with an empty mask;
* InstructPart appendix I (the ShapeGrasp / LERF-TOGO study): part-selection
  success, here with a mask criterion and a grasp-point criterion.

Undefined values (a mean over nothing) are NaN, never a made-up 0 or 1.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Hashable, Iterable, Optional, Sequence

import numpy as np

from partseg_ros.geometry.camera import CameraModel, as_camera_model
from partseg_ros.types import CameraIntrinsics

# COCO-style thresholds 0.50, 0.55, ..., 0.95, built from integers so that no
# threshold is off by a floating-point ulp.
PRECISION_THRESHOLDS: tuple[float, ...] = tuple(t / 100.0 for t in range(50, 100, 5))
# Tolerance for "IoU >= threshold": an IoU of exactly 0.55 computed as 11/20 must pass 0.55.
_THRESHOLD_EPS = 1e-9


def _as_bool_mask(mask: np.ndarray) -> np.ndarray:
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"masks must be HxW, got shape {mask.shape}")
    return mask.astype(bool, copy=False)


def intersection_and_union(pred: np.ndarray, target: np.ndarray) -> tuple[int, int]:
    """Pixel counts |pred AND target| and |pred OR target| of two HxW masks."""
    pred, target = _as_bool_mask(pred), _as_bool_mask(target)
    if pred.shape != target.shape:
        raise ValueError(f"mask shapes differ: prediction {pred.shape}, target {target.shape}")
    return int(np.count_nonzero(pred & target)), int(np.count_nonzero(pred | target))


def iou_from_counts(intersection: int, union: int) -> float:
    """IoU = intersection / union; an empty prediction on an empty target (union 0) scores 1.

    The empty/empty convention is InstructPart's and InstructSAM's: saying
    "nothing" when there is nothing is a perfect answer.
    """
    if union < 0 or intersection < 0 or intersection > union:
        raise ValueError(f"invalid counts: intersection {intersection}, union {union}")
    return 1.0 if union == 0 else intersection / union


def iou(pred: np.ndarray, target: np.ndarray) -> float:
    """Intersection over union of two HxW masks (1.0 when both are empty)."""
    return iou_from_counts(*intersection_and_union(pred, target))


def _mean(values: Iterable[float]) -> float:
    arr = np.asarray(list(values), dtype=np.float64)
    return float(arr.mean()) if arr.size else float("nan")


def giou(ious: Sequence[float]) -> float:
    """gIoU: the mean of per-sample IoUs (InstructPart sec. 4.1, after LISA).

    Every sample weighs the same, whatever the size of its part.
    """
    return _mean(ious)


def ciou(intersections: Sequence[int], unions: Sequence[int]) -> float:
    """cIoU: cumulative intersection over cumulative union across all samples.

    Large parts weigh more than small ones, so cIoU differs from gIoU whenever
    IoU correlates with part size. Empty/empty samples add nothing to either
    sum; NaN when every union is empty.
    """
    inter = np.asarray(intersections, dtype=np.float64)
    union = np.asarray(unions, dtype=np.float64)
    if inter.shape != union.shape:
        raise ValueError("intersections and unions must have the same length")
    total = union.sum()
    return float(inter.sum() / total) if total > 0 else float("nan")


def precision_at(ious: Sequence[float], threshold: float) -> float:
    """P@t: the fraction of samples whose IoU is at least ``threshold``."""
    arr = np.asarray(ious, dtype=np.float64)
    return float(np.mean(arr >= threshold - _THRESHOLD_EPS)) if arr.size else float("nan")


def precision_at_50(ious: Sequence[float]) -> float:
    """P@50: a prediction is a true positive when its IoU is at least 0.5."""
    return precision_at(ious, 0.5)


def precision_50_95(ious: Sequence[float]) -> float:
    """P@50:95: P@t averaged over t = 0.50, 0.55, ..., 0.95 (COCO-style, InstructPart sec. 4.1)."""
    if len(ious) == 0:
        return float("nan")
    return float(np.mean([precision_at(ious, t) for t in PRECISION_THRESHOLDS]))


def micro_giou(ious: Sequence[float]) -> float:
    """Partonomy micro-gIoU: part IoUs averaged over every part annotation in the dataset.

    Common parts dominate it, since each annotation counts once.
    """
    return _mean(ious)


def grouped_mean(values: Sequence[float], keys: Sequence[Hashable]) -> float:
    """Mean over groups of the mean within each group (each group weighs the same)."""
    if len(values) != len(keys):
        raise ValueError("values and keys must have the same length")
    groups: dict[Hashable, list[float]] = defaultdict(list)
    for value, key in zip(values, keys):
        groups[key].append(float(value))
    return _mean(_mean(v) for v in groups.values())


def macro_giou(ious: Sequence[float], image_keys: Sequence[Hashable]) -> float:
    """Partonomy macro-gIoU: average the part IoUs within each image, then average the images.

    An image with many annotated parts counts as much as an image with one, so
    the score is less driven by the most frequent parts.
    """
    return grouped_mean(ious, image_keys)


def class_balanced_giou(ious: Sequence[float], part_classes: Sequence[Hashable]) -> float:
    """Mean over part classes (e.g. "handle", "blade") of the mean IoU within the class."""
    return grouped_mean(ious, part_classes)


def no_target_accuracy(prediction_empty: Sequence[bool], has_target: Sequence[bool]) -> float:
    """InstructSAM's no-target score: the fraction of no-target tasks answered with an empty mask.

    This equals the gIoU over the no-target subset, since each such sample has
    IoU 1 when the prediction is empty and 0 otherwise. NaN without no-target tasks.
    """
    empty = np.asarray(prediction_empty, dtype=bool)
    targeted = np.asarray(has_target, dtype=bool)
    if empty.shape != targeted.shape:
        raise ValueError("prediction_empty and has_target must have the same length")
    subset = empty[~targeted]
    return float(subset.mean()) if subset.size else float("nan")


def false_empty_rate(prediction_empty: Sequence[bool], has_target: Sequence[bool]) -> float:
    """The fraction of tasks that do have a target but got an empty prediction (over-refusal)."""
    empty = np.asarray(prediction_empty, dtype=bool)
    targeted = np.asarray(has_target, dtype=bool)
    if empty.shape != targeted.shape:
        raise ValueError("prediction_empty and has_target must have the same length")
    subset = empty[targeted]
    return float(subset.mean()) if subset.size else float("nan")


def mask_selection_success(sample_iou: float, threshold: float = 0.5) -> bool:
    """Mask criterion of part selection: IoU with the target part at least ``threshold``."""
    return bool(sample_iou >= threshold - _THRESHOLD_EPS)


def project_point(point_xyz: Sequence[float], camera: CameraModel | CameraIntrinsics) -> Optional[tuple[int, int]]:
    """Pixel (column, row) a camera-optical-frame point projects to, or None.

    Through the one camera model, so on a raw, distorted image the point lands
    where the lens puts it, in the image the ground-truth masks were drawn on.
    None when the point is not finite, is behind the camera or falls outside the image.
    """
    x, y, z = (float(v) for v in point_xyz)
    if not (np.isfinite(x) and np.isfinite(y) and np.isfinite(z)) or z <= 0.0:
        return None
    camera = as_camera_model(camera)
    u, v = camera.project(np.array([[x, y, z]]))[0]
    col, row = int(np.floor(u + 0.5)), int(np.floor(v + 0.5))
    height, width = camera.shape
    if not (0 <= col < width and 0 <= row < height):
        return None
    return col, row


def grasp_point_on_part(
    centroid_xyz: Optional[Sequence[float]], camera: CameraModel | CameraIntrinsics, target_part_mask: np.ndarray
) -> bool:
    """Grasp-point criterion of part selection: the grasp region's centroid projects onto the target part.

    A missing centroid (no grasp region could be built) fails the criterion: a
    robot would have had nothing to grasp.
    """
    if centroid_xyz is None:
        return False
    camera = as_camera_model(camera)
    mask = _as_bool_mask(target_part_mask)
    if mask.shape != camera.shape:
        raise ValueError(f"target mask {mask.shape} does not match intrinsics {camera.shape}")
    pixel = project_point(centroid_xyz, camera)
    return pixel is not None and bool(mask[pixel[1], pixel[0]])


def success_rate(flags: Sequence[bool]) -> float:
    """Fraction of True flags; NaN for an empty list."""
    return _mean(np.asarray(flags, dtype=bool).astype(np.float64))


def latency_percentiles(latencies_ms: Sequence[float]) -> dict[str, float]:
    """p50, p95 and mean of per-task latencies in milliseconds (linear-interpolated percentiles)."""
    arr = np.asarray(latencies_ms, dtype=np.float64)
    if arr.size == 0:
        return {"p50_ms": float("nan"), "p95_ms": float("nan"), "mean_ms": float("nan")}
    return {
        "p50_ms": float(np.percentile(arr, 50)),
        "p95_ms": float(np.percentile(arr, 95)),
        "mean_ms": float(arr.mean()),
    }


def serial_throughput(latencies_ms: Sequence[float]) -> float:
    """Tasks per second of one stream that answers tasks back to back: count / total latency."""
    arr = np.asarray(latencies_ms, dtype=np.float64)
    total_s = arr.sum() / 1000.0
    return float(arr.size / total_s) if arr.size and total_s > 0 else float("nan")
