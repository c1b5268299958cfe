"""Spread an evaluation over local worker processes or a Ray cluster.

The unit of work is a :class:`Shard`: every ``stride``-th task of one bag,
selected before decoding, so N shards of a bag share its decoding instead of
each decoding all of it.
Both engines run the same :func:`run_shard` in workers that load the backend
once, and return per-task records; the caller sorts and aggregates them once,
so there is no second code path for the metrics.
"""

from __future__ import annotations

import multiprocessing
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Optional

from partseg_ros.evaluation.records import TaskRecord, sort_records
from partseg_ros.evaluation.runner import EvaluationSettings, TaskEvaluator
from partseg_ros.evaluation.tasks import bag_labels, iter_tasks

# More shards than workers keeps workers busy when shards take unequal time
# and gives the progress bar something to count.
SHARDS_PER_WORKER = 4


@dataclass(frozen=True)
class Shard:
    """Every ``stride``-th task of one bag from ``offset`` on; ``label`` names the bag in the records."""

    bag: str
    stride: int
    offset: int
    label: str = ""
    num_tasks: int = 0  # how many tasks the shard holds (for the progress bar)


def make_shards(bags: list[Path], num_workers: int, task_counts: Optional[dict[Path, int]] = None) -> list[Shard]:
    """Shards covering every task of every bag exactly once, each bag under its unique label.

    With ``task_counts`` (tasks per bag) no shard is empty and each knows its size.
    """
    stride = max(1, num_workers * SHARDS_PER_WORKER)
    labels = bag_labels([Path(b) for b in bags])
    shards = []
    for bag in bags:
        count = None if task_counts is None else task_counts[bag]
        for offset in range(stride if count is None else min(stride, count)):
            size = 0 if count is None else len(range(offset, count, stride))
            shards.append(Shard(str(bag), stride, offset, labels[Path(bag)], size))
    return shards


def run_shard(evaluator: TaskEvaluator, shard: Shard) -> list[TaskRecord]:
    """Every task of one shard, scored by an already loaded evaluator (other tasks are not decoded)."""
    records: list[TaskRecord] = []
    for task in iter_tasks(Path(shard.bag), stride=shard.stride, offset=shard.offset, label=shard.label or None):
        records.extend(evaluator.evaluate(task))
    return records


def plan_shards(bags: list[Path], num_workers: int) -> tuple[list[Shard], int]:
    """(shards, total number of tasks), counted from the bags' metadata."""
    from partseg_ros.bags.reader import count_tasks

    counts = {bag: count_tasks(bag) for bag in bags}
    return make_shards(bags, num_workers, counts), sum(counts.values())


# -- local processes --------------------------------------------------------

_WORKER_EVALUATOR: Optional[TaskEvaluator] = None


def _init_worker(settings: EvaluationSettings, threads: int) -> None:
    global _WORKER_EVALUATOR
    # N workers each using every core would oversubscribe the CPU: share the cores out
    # before the backend imports torch/BLAS (a value the user set is kept).
    for variable in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ.setdefault(variable, str(threads))
    _WORKER_EVALUATOR = TaskEvaluator(settings)


def _run_shard_in_worker(shard: Shard) -> tuple[Shard, list[TaskRecord]]:
    assert _WORKER_EVALUATOR is not None, "worker was not initialised"
    return shard, run_shard(_WORKER_EVALUATOR, shard)


def evaluate_local(
    bags: list[Path], settings: EvaluationSettings, num_workers: int, progress: bool = True
) -> list[TaskRecord]:
    """Evaluate with ``num_workers`` spawned processes, each loading the backend once."""
    from tqdm import tqdm

    if num_workers < 1:
        raise ValueError("num_workers must be at least 1")
    shards, total = plan_shards(bags, num_workers)
    records: list[TaskRecord] = []
    # spawn, not fork: backends hold torch threads and file handles that do not survive a fork.
    context = multiprocessing.get_context("spawn")
    threads = max(1, (os.cpu_count() or 1) // num_workers)
    with context.Pool(num_workers, initializer=_init_worker, initargs=(settings, threads)) as pool:
        with tqdm(
            total=total,
            desc=f"evaluating {settings.backend} ({num_workers} workers)",
            unit="task",
            disable=not progress,
        ) as bar:
            for shard, shard_records in pool.imap_unordered(_run_shard_in_worker, shards):
                records.extend(shard_records)
                bar.update(shard.num_tasks)
    return sort_records(records)


# -- Ray ----------------------------------------------------------------------


class RayUnavailableError(ImportError):
    """Raised when --ray is asked for but the optional ray package is missing."""


def _import_ray() -> Any:
    try:
        import ray
    except ImportError as exc:
        raise RayUnavailableError(
            "evaluating on a Ray cluster needs the optional 'ray' package: "
            "pip install 'partseg-ros[ray]' (or pip install ray) on this machine and on every cluster node"
        ) from exc
    return ray


class _ShardWorker:
    """Body of the Ray actor: one loaded evaluator per actor, many shards."""

    def __init__(self, settings: EvaluationSettings) -> None:
        self.evaluator = TaskEvaluator(settings)

    def run(self, shard: Shard) -> list[TaskRecord]:
        return run_shard(self.evaluator, shard)


def _ray_results(ray: Any, actors: list[Any], shards: list[Shard]) -> Iterator[tuple[Shard, list[TaskRecord]]]:
    """Round-robin shards over actors and yield (shard, records) as they complete."""
    pending = {actors[i % len(actors)].run.remote(shard): shard for i, shard in enumerate(shards)}
    while pending:
        done, _ = ray.wait(list(pending), num_returns=1)
        yield pending.pop(done[0]), ray.get(done[0])


def evaluate_ray(
    bags: list[Path], settings: EvaluationSettings, address: str, num_workers: int, progress: bool = True
) -> list[TaskRecord]:
    """Evaluate on the Ray cluster at ``address`` with ``num_workers`` actors.

    Bag paths must be readable at the same path on every node (shared storage).
    """
    from tqdm import tqdm

    ray = _import_ray()
    if not ray.is_initialized():
        ray.init(address=address)
    actor_class = ray.remote(_ShardWorker)
    actors = [actor_class.remote(settings) for _ in range(max(1, num_workers))]
    shards, total = plan_shards(bags, max(1, num_workers))
    records: list[TaskRecord] = []
    with tqdm(total=total, desc=f"evaluating {settings.backend} on Ray", unit="task", disable=not progress) as bar:
        for shard, shard_records in _ray_results(ray, actors, shards):
            records.extend(shard_records)
            bar.update(shard.num_tasks)
    for actor in actors:
        ray.kill(actor)
    return sort_records(records)
