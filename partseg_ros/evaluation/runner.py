"""The in-process evaluation path: bag -> backend call -> grasp region -> record.

Fast (no DDS, no serialisation), so it is the path for sweeps and for the
sharded runs; the live path in live.py reuses its scoring. Latency here is
the wall time of ``backend.ground`` plus the grasp-region computation, i.e.
what the node spends per task minus transport.
"""

from __future__ import annotations

import importlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np

from partseg_ros.backends.base import PartGroundingBackend
from partseg_ros.backends.registry import create_backend
from partseg_ros.evaluation.records import PATH_INPROCESS, PROTOCOLS, TaskRecord, sort_records
from partseg_ros.evaluation.scoring import Prediction, score_task
from partseg_ros.evaluation.tasks import EvalTask, bag_labels, iter_tasks
from partseg_ros.types import CameraIntrinsics, GroundingResult


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


def top_grasp_centroid(
    result: GroundingResult,
    depth_m: Optional[np.ndarray],
    intrinsics: Optional[CameraIntrinsics],
    grasp_options: dict[str, Any],
) -> tuple[Optional[tuple[float, float, float]], str]:
    """Centroid of the grasp region of the top-ranked instance, and "ok" or why there is none.

    ``grasp_options`` are GraspRegionConfig fields; the node's geometry
    parameters must be passed here for the live and in-process paths to agree.
    """
    if not result.instances:
        return None, "no instance"
    if depth_m is None or intrinsics is None:
        return None, "no depth"
    from partseg_ros.geometry.grasp_region import GraspRegionConfig, compute_grasp_region

    region = compute_grasp_region(
        result.instances[0].mask, depth_m, intrinsics, config=GraspRegionConfig(**grasp_options)
    )
    if not region.ok:
        return None, f"{region.status.name.lower()}: {region.status_reason}".rstrip(": ")
    centroid = np.asarray(region.centroid, dtype=np.float64).reshape(3)
    if not np.all(np.isfinite(centroid)):
        return None, "non-finite centroid"
    return (float(centroid[0]), float(centroid[1]), float(centroid[2])), "ok"


def prediction_from_result(
    result: GroundingResult, task: EvalTask, latency_ms: float, grasp_options: dict[str, Any]
) -> Prediction:
    """Reduce a backend's GroundingResult to what the scorer needs."""
    h, w = task.rgb.shape[:2]
    centroid, status = top_grasp_centroid(result, task.depth_m, task.intrinsics, grasp_options)
    top = result.instances[0] if result.instances else None
    return Prediction(
        mask=result.union_mask((h, w)),
        num_instances=len(result.instances),
        object_label=(top.object_label if top else "") or result.object_label,
        part_label=(top.part_label if top else "") or result.part_label,
        grasp_centroid=centroid,
        grasp_status=status,
        latency_ms=latency_ms,
    )


def make_backend(name: str, options: dict[str, Any]) -> PartGroundingBackend:
    """A backend by registry name, or by ``package.module:ClassName`` for backends outside the registry."""
    if ":" not in name:
        return create_backend(name, **options)
    module_name, class_name = name.split(":", 1)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is None or not (module_name == exc.name or module_name.startswith(exc.name + ".")):
            raise  # the backend's module exists but lacks one of its own dependencies: a real failure
        raise ValueError(f"backend {name}: no module named {module_name!r} on the Python path") from None
    backend_class = getattr(module, class_name, None)
    if backend_class is None:
        raise ValueError(f"backend {name}: module {module_name!r} has no {class_name!r}")
    if not (isinstance(backend_class, type) and issubclass(backend_class, PartGroundingBackend)):
        raise ValueError(f"{name} is not a PartGroundingBackend subclass")
    return backend_class(**options)


class TaskEvaluator:
    """One loaded backend answering tasks under each configured protocol."""

    def __init__(self, settings: EvaluationSettings) -> None:
        self.settings = settings
        self.backend = make_backend(settings.backend, settings.backend_options)
        self.backend.load()
        # Like the node's configure step: the first timed task must not pay for
        # lazy initialisation (model warm-up, the geometry module's import).
        self.backend.warmup()
        import partseg_ros.geometry.grasp_region  # noqa: F401

    def evaluate(self, task: EvalTask) -> list[TaskRecord]:
        records = []
        for protocol in self.settings.protocols:
            if not task.supports(protocol):
                continue
            request = task.request(protocol)
            start = time.perf_counter()
            try:
                result = self.backend.ground(request)
                error = ""
            except Exception as exc:  # noqa: BLE001 - a failing task is scored as a failure, the run goes on
                result, error = (
                    GroundingResult(instances=[], backend=self.settings.backend),
                    f"{type(exc).__name__}: {exc}",
                )
            prediction = prediction_from_result(result, task, 0.0, self.settings.grasp_options)
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
