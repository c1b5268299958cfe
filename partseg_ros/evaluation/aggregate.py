"""Turn per-task records into the numbers of the report, once, for any path.

Which tasks each metric runs over (see docs/evaluation.md):
* part-selection success (mask and grasp-point criteria), gIoU, cIoU, P@50,
  P@50:95, micro/macro-gIoU: tasks that have a target, as in the study and in
  InstructPart, where every instruction has a target;
* ``giou_all``: every task, no-target ones counting 1 when answered empty
  (InstructSAM's overall gIoU);
* no-target accuracy and false-empty rate: InstructSAM's no-target subset and
  its mirror image on targeted tasks;
* latency and throughput: every task.
Targeted tasks whose target part is not visible in the view are counted
(``num_target_not_visible``) and left out of every score.
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any, Callable, Hashable, Iterable

from partseg_ros.evaluation import metrics
from partseg_ros.evaluation.records import PROTOCOLS, TaskRecord


def summarize(records: list[TaskRecord]) -> dict[str, Any]:
    """All metrics of a set of records (one protocol, one backend)."""
    scored = [r for r in records if r.target_visible or not r.has_target]
    targeted = [r for r in scored if r.has_target]
    ious = [r.iou for r in targeted]
    latencies = [r.latency_ms for r in records]
    summary: dict[str, Any] = {
        "num_tasks": len(records),
        "num_targeted": len(targeted),
        "num_no_target": sum(1 for r in records if not r.has_target),
        "num_target_not_visible": len(records) - len(scored),
        "num_errors": sum(1 for r in records if r.error),
        "part_selection_mask": metrics.success_rate([r.mask_success for r in targeted]),
        "part_selection_grasp_point": metrics.success_rate([r.grasp_point_success for r in targeted]),
        "giou": metrics.giou(ious),
        "ciou": metrics.ciou([r.intersection for r in targeted], [r.union for r in targeted]),
        "p50": metrics.precision_at_50(ious),
        "p50_95": metrics.precision_50_95(ious),
        "micro_giou": metrics.micro_giou(ious),
        "macro_giou": metrics.macro_giou(ious, [r.image_key for r in targeted]),
        "class_balanced_giou": metrics.class_balanced_giou(ious, [r.target_part for r in targeted]),
        "giou_all": metrics.giou([r.iou for r in scored]),
        "no_target_accuracy": metrics.no_target_accuracy(
            [r.prediction_empty for r in scored], [r.has_target for r in scored]
        ),
        "false_empty_rate": metrics.false_empty_rate(
            [r.prediction_empty for r in scored], [r.has_target for r in scored]
        ),
        "throughput_tasks_per_s": metrics.serial_throughput(latencies),
    }
    summary.update({f"latency_{k}": v for k, v in metrics.latency_percentiles(latencies).items()})
    return summary


def _group(records: Iterable[TaskRecord], key: Callable[[TaskRecord], Hashable]) -> dict[Hashable, list[TaskRecord]]:
    groups: dict[Hashable, list[TaskRecord]] = defaultdict(list)
    for record in records:
        groups[key(record)].append(record)
    return dict(groups)


def per_task_rows(records: list[TaskRecord]) -> list[dict[str, Any]]:
    """One row per (bag, scene, task), its views pooled: what the study tabulates per task."""
    rows = []
    for (bag, scene, task_id), group in sorted(_group(records, lambda r: (r.bag, r.scene, r.task_id)).items()):
        first = group[0]
        scored = [r for r in group if r.target_visible or not r.has_target]
        rows.append(
            {
                "bag": bag,
                "scene": scene,
                "task_id": task_id,
                "instruction": first.instruction,
                "has_target": first.has_target,
                "views_target_hidden": sum(1 for r in group if r.has_target and not r.target_visible),
                "target": f"{first.target_object}/{first.target_part}" if first.has_target else "(none)",
                "predicted": sorted(
                    {f"{r.predicted_object}/{r.predicted_part}" if not r.prediction_empty else "(empty)" for r in group}
                ),
                "num_views": len(group),
                "mean_iou": metrics.giou([r.iou for r in scored]),
                "mask_success": metrics.success_rate([r.mask_success for r in scored]),
                "grasp_point_success": metrics.success_rate([r.grasp_point_success for r in scored]),
                "latency_p50_ms": metrics.latency_percentiles([r.latency_ms for r in group])["p50_ms"],
                "errors": sorted({r.error for r in group if r.error}),
            }
        )
    return rows


def build_summary(records: list[TaskRecord]) -> dict[str, Any]:
    """Per protocol: the overall block, a block per scene and the per-task rows."""
    out: dict[str, Any] = {}
    by_protocol = _group(records, lambda r: r.protocol)
    for protocol in [p for p in PROTOCOLS if p in by_protocol] + sorted(set(by_protocol) - set(PROTOCOLS)):
        group = by_protocol[protocol]
        out[protocol] = {
            "overall": summarize(group),
            "per_scene": {
                scene if bag == scene else f"{bag}/{scene}": summarize(scene_records)
                for (bag, scene), scene_records in sorted(_group(group, lambda r: (r.bag, r.scene)).items())
            },
            "per_task": per_task_rows(group),
        }
    return out


def json_safe(value: Any) -> Any:
    """NaN and inf become None so the JSON stays standard."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value
