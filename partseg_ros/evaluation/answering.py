"""What the evaluator needs from whoever answers its tasks, and the loop that scores their answers.

The evaluator knows tasks, predictions and scores; it does not know how an
answer is produced. Anything that can turn an :class:`EvalTask` into a
:class:`Prediction` is a :class:`TaskAnswerer`: the DDS client that asks a
running partseg node (``partseg_ros.ros.evaluation_client``) is one. The
dependency points from the ROS layer to this interface, never back, so the
evaluator runs, and is tested, without ROS installed; the command that wires
the live answerer in is ``partseg_ros.ros.live_evaluation``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, ContextManager, Optional, Protocol, runtime_checkable

from partseg_ros.evaluation.records import TaskRecord, sort_records
from partseg_ros.evaluation.scoring import Prediction, score_task
from partseg_ros.evaluation.tasks import EvalTask, bag_labels, iter_tasks

if TYPE_CHECKING:  # the runner loads the backend registry: only for the type
    from partseg_ros.evaluation.runner import EvaluationSettings


class AnsweringError(RuntimeError):
    """The answerer cannot run or cannot take a task (its node did not start, a task it cannot ask, ...).

    A usage problem, not a crash: the command reports it in one line and exits with 2.
    """


@runtime_checkable
class TaskAnswerer(Protocol):
    """Answers evaluation tasks one at a time.

    ``path`` names the answerer in every record (``live``); ``protocols`` are
    the protocols it can answer (a node fed over topics gets no object mask, so
    no ``oracle_object``). ``answer`` may raise :class:`AnsweringError`.
    """

    path: str
    protocols: tuple[str, ...]

    def answer(self, task: EvalTask, protocol: str) -> Prediction:
        ...


@dataclass(frozen=True)
class LiveSettings:
    """How the evaluator runs a node of its own for the live path (``--path live``)."""

    params_file: Optional[Path] = None  # the node's parameters; default: the package's config/partseg.yaml
    task_timeout_s: float = 120.0
    startup_timeout_s: float = 120.0
    domain_id: Optional[int] = None  # ROS_DOMAIN_ID of the node and the client; None: a random one


# What the live path needs: given the run's settings, a context manager that starts an
# answerer (and whatever it talks to) and stops it on exit.
LiveAnswererFactory = Callable[["EvaluationSettings", LiveSettings], ContextManager[TaskAnswerer]]


def check_protocols(answerer_protocols: tuple[str, ...], protocols: tuple[str, ...], path: str) -> None:
    """Refuse, before anything starts, protocols the answerer cannot answer."""
    missing = [p for p in protocols if p not in answerer_protocols]
    if missing:
        raise AnsweringError(
            f"the {path} path answers {', '.join(answerer_protocols)} only, not {', '.join(missing)}: "
            f"pass --protocol {answerer_protocols[0]}, or use the in-process path for {', '.join(missing)}")


def evaluate_answers(answerer: TaskAnswerer, bags: list[Path], settings: "EvaluationSettings",
                     progress: bool = True) -> list[TaskRecord]:
    """Score the answerer's answer to every task of every bag, in bag order, under each configured protocol."""
    from tqdm import tqdm

    from partseg_ros.bags.reader import count_tasks

    check_protocols(answerer.protocols, tuple(settings.protocols), answerer.path)
    records: list[TaskRecord] = []
    labels = bag_labels(bags)
    total = sum(count_tasks(bag) for bag in bags)
    with tqdm(total=total, desc=f"evaluating {settings.backend} {answerer.path}", unit="task",
              disable=not progress) as bar:
        for bag in bags:
            for task in iter_tasks(bag, label=labels[bag]):
                for protocol in settings.protocols:
                    if task.supports(protocol):
                        prediction = answerer.answer(task, protocol)
                        records.append(score_task(task, prediction, protocol, settings.backend, answerer.path,
                                                  settings.overlays))
                bar.update(1)
    return sort_records(records)
