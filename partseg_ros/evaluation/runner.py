"""The in-process evaluation path: bag -> the node's pipeline (backend, grasp region) -> record.

Fast (no DDS, no serialisation), so it is the path for sweeps and for the
sharded runs; the live path in live.py reuses its scoring. Tasks are answered
by :class:`partseg_ros.pipeline.PartPipeline`, the code the node runs per
frame, so what is scored here is what the robot gets. Latency here is the
wall time of the backend plus the grasp-region computation, i.e. what the node
spends per task minus transport.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np

from partseg_ros.backends.base import PartGroundingBackend
from partseg_ros.evaluation.records import PATH_INPROCESS, PROTOCOLS, TaskRecord, sort_records
from partseg_ros.evaluation.scoring import Prediction, score_task
from partseg_ros.evaluation.tasks import EvalTask, bag_labels, iter_tasks
from partseg_ros.geometry.grasp_region import GraspRegion
from partseg_ros.pipeline import PartPipeline, PipelineResult
from partseg_ros.types import GroundingResult


@dataclass(frozen=True)
class EvaluationSettings:
    """Everything a worker needs to evaluate tasks the same way as every other worker."""

    backend: str
    backend_options: dict[str, Any] = field(default_factory=dict)
    protocols: tuple[str, ...] = PROTOCOLS
    overlays: bool = True
    grasp_options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        unknown = [p for p in self.protocols if p not in PROTOCOLS]
        if unknown or not self.protocols:
            raise ValueError(f"protocols must be a non-empty subset of {PROTOCOLS}, got {self.protocols}")


def grasp_centroid_of(
    result: GroundingResult, region: Optional[GraspRegion]
) -> tuple[Optional[tuple[float, float, float]], str]:
    """Centroid of the top-ranked instance's grasp region, and "ok" or why there is none.

    ``region`` is the pipeline's region of ``result.instances[0]``; the pipeline
    makes none when the task has no depth or no camera_info.
    """
    if not result.instances:
        return None, "no instance"
    if region is None:
        return None, "no depth"
    if not region.ok:
        return None, f"{region.status.name.lower()}: {region.status_reason}".rstrip(": ")
    centroid = np.asarray(region.centroid, dtype=np.float64).reshape(3)
    if not np.all(np.isfinite(centroid)):
        return None, "non-finite centroid"
    return (float(centroid[0]), float(centroid[1]), float(centroid[2])), "ok"


def prediction_from_run(run: PipelineResult, latency_ms: float) -> Prediction:
    """Reduce the pipeline's answer to what the scorer needs."""
    result = run.grounding
    centroid, status = grasp_centroid_of(result, run.regions[0] if run.regions else None)
    top = result.instances[0] if result.instances else None
    return Prediction(
        mask=run.union_mask(),
        num_instances=len(result.instances),
        object_label=(top.object_label if top else "") or result.object_label,
        part_label=(top.part_label if top else "") or result.part_label,
        grasp_centroid=centroid,
        grasp_status=status,
        latency_ms=latency_ms,
    )


class TaskEvaluator:
    """One loaded pipeline (the node's: backend, then grasp regions) answering tasks under each protocol."""

    def __init__(self, settings: EvaluationSettings) -> None:
        self.settings = settings
        self.pipeline = PartPipeline.build(settings.backend, settings.backend_options, settings.grasp_options)
        # Like the node's configure step: the first timed task must not pay for lazy initialisation.
        self.pipeline.load(warmup=True)

    @property
    def backend(self) -> PartGroundingBackend:
        return self.pipeline.backend

    @backend.setter
    def backend(self, backend: PartGroundingBackend) -> None:
        """Answer with another, already built backend (the tests swap in one that fails)."""
        self.pipeline.backend = backend

    def evaluate(self, task: EvalTask) -> list[TaskRecord]:
        records = []
        for protocol in self.settings.protocols:
            if not task.supports(protocol):
                continue
            request = task.request(protocol)
            start = time.perf_counter()
            try:
                # Only the top instance is scored, so only its region is computed.
                run = self.pipeline.run(request, max_regions=1)
                error = ""
            except Exception as exc:  # noqa: BLE001 - a failing task is scored as a failure, the run goes on
                empty = GroundingResult(instances=[], backend=self.settings.backend)
                run = PipelineResult(empty, [], image_shape=request.image_size)
                error = f"{type(exc).__name__}: {exc}"
            prediction = prediction_from_run(run, 0.0)
            # Latency covers the backend and the grasp region, as the node's per-frame work does.
            prediction.latency_ms = (time.perf_counter() - start) * 1000.0
            prediction.error = error
            records.append(
                score_task(task, prediction, protocol, self.settings.backend, PATH_INPROCESS, self.settings.overlays)
            )
        return records


def evaluate_inprocess(bags: list[Path], settings: EvaluationSettings, progress: bool = True) -> list[TaskRecord]:
    """Evaluate every task of every bag in this process, in a deterministic order."""
    from tqdm import tqdm

    from partseg_ros.bags.reader import count_tasks

    evaluator = TaskEvaluator(settings)
    labels = bag_labels(bags)
    records: list[TaskRecord] = []
    total = sum(count_tasks(bag) for bag in bags)
    with tqdm(total=total, desc=f"evaluating {settings.backend}", unit="task", disable=not progress) as bar:
        for bag in bags:
            for task in iter_tasks(bag, label=labels[bag]):
                records.extend(evaluator.evaluate(task))
                bar.update(1)
    return sort_records(records)
