"""The live evaluation path: the real node, over real DDS, scored with the same code.

The partseg node runs as its own process with the loopback DDS environment
(partseg_ros.ros.dds_env) and the configured backend; a client
(partseg_ros/ros/evaluation_client.py) asks the node's ``~/ask`` service with each task's
instruction and the stamp of the frame it then publishes from the bag, and gets the
answer for exactly that frame as the response: no frame is dropped by the node's
latest-frame policy, no answer is matched by guesswork, and nothing sleeps or retries. Answers become
:class:`Prediction` objects and go through :func:`score_task`, exactly like
the in-process path, so a deterministic backend scores identically on both.

Only the ``full`` protocol can run live: the node's inputs carry no object mask.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

from partseg_ros.evaluation.node_params import DEFAULT_PARAMS_FILE
from partseg_ros.evaluation.records import PATH_LIVE, PROTOCOL_FULL, TaskRecord, sort_records
from partseg_ros.evaluation.runner import EvaluationSettings
from partseg_ros.evaluation.scoring import score_task
from partseg_ros.evaluation.tasks import EvalTask, bag_labels, iter_tasks
from partseg_ros.ros.dds_env import config_dir, loopback_environment

if TYPE_CHECKING:  # evaluation_client imports rclpy: only the live path loads it
    from partseg_ros.ros.evaluation_client import LiveTopics


class LiveEvaluationError(RuntimeError):
    """The live path could not run (node failed to start, unsupported protocol, ...)."""


@dataclass(frozen=True)
class LiveSettings:
    params_file: Optional[Path] = None
    task_timeout_s: float = 120.0
    startup_timeout_s: float = 120.0
    domain_id: Optional[int] = None


def node_command(params_file: Path, settings: EvaluationSettings, topics: "LiveTopics") -> list[str]:
    """The node's command line: its console script, the params file, then -p overrides.

    The overrides pin what the evaluation depends on: the backend and its
    options, the grasp-region settings the in-process path also uses, the
    topics the client talks on, and autostart (no lifecycle manager here).
    """
    script = Path(sys.executable).with_name("partseg_node")
    launcher = [str(script)] if script.is_file() else [sys.executable, "-m", "partseg_ros.ros.node"]
    overrides = {
        "autostart": True,
        "backend": settings.backend,
        "topics.color": topics.color,
        "topics.depth": topics.depth,
        "topics.camera_info": topics.camera_info,
        "topics.instruction": topics.instruction,
        "frames.target_frame": topics.frame_id,  # grasp regions in the camera frame: the criterion projects them
    }
    overrides.update({f"backend_options.{k}": v for k, v in settings.backend_options.items()})
    overrides.update({f"grasp.{k}": v for k, v in settings.grasp_options.items()})
    args: list[str] = []
    for name, value in overrides.items():
        args += ["-p", f"{name}:={_param_literal(value)}"]
    return launcher + ["--ros-args", "--params-file", str(params_file), *args]


def _param_literal(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


class NodeProcess:
    """The partseg node as a child process; its output goes to a log file shown on failure."""

    def __init__(self, command: list[str], env: dict[str, str]) -> None:
        self._log_dir = Path(tempfile.mkdtemp(prefix="partseg_eval_node_"))
        self.log_path = self._log_dir / "node.log"
        self._log = open(self.log_path, "wb")
        self.process = subprocess.Popen(
            command, env=env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True
        )

    def check_alive(self) -> None:
        if self.process.poll() is not None:
            raise LiveEvaluationError(
                f"the partseg node exited with code {self.process.returncode}:\n{self.log_tail()}"
            )

    def log_tail(self, chars: int = 4000) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")[-chars:]

    def stop(self, timeout_s: float = 10.0) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)  # rclpy shuts down cleanly on SIGINT
            try:
                self.process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=timeout_s)
        self._log.close()
        shutil.rmtree(self._log_dir, ignore_errors=True)


class LiveSession:
    """A running node plus a connected client; ``evaluate(task)`` scores one task through them.

    Use as a context manager: the node is stopped and the environment restored on exit.
    """

    def __init__(self, settings: EvaluationSettings, live: LiveSettings = LiveSettings()) -> None:
        if tuple(settings.protocols) != (PROTOCOL_FULL,):
            raise LiveEvaluationError(
                "the live path runs the 'full' protocol only: the node's topics carry no object mask for "
                "'oracle_object' (use --protocol full, or the in-process path for oracle_object)"
            )
        params_file = Path(live.params_file) if live.params_file else config_dir() / DEFAULT_PARAMS_FILE
        if not params_file.is_file():
            raise LiveEvaluationError(f"node parameters file {params_file} not found")
        self.settings, self.live, self.params_file = settings, live, params_file
        self._node: Optional[NodeProcess] = None
        self._client: Any = None
        self._saved_env: dict[str, Optional[str]] = {}

    def __enter__(self) -> "LiveSession":
        domain_id = self.live.domain_id if self.live.domain_id is not None else random.randint(100, 199)
        # Both the node and this process's client talk DDS: both get the loopback environment.
        env = loopback_environment(domain_id)
        self._saved_env = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        try:
            from partseg_ros.ros.evaluation_client import LiveClient, LiveTimeout, LiveTopics

            topics = LiveTopics()
            self._node = NodeProcess(node_command(self.params_file, self.settings, topics), env)
            self._client = LiveClient(topics)
            try:
                self._client.wait_for_node(self.live.startup_timeout_s)
            except LiveTimeout as exc:
                self._node.check_alive()
                raise LiveEvaluationError(f"{exc}\nnode log:\n{self._node.log_tail()}") from exc
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def evaluate(self, task: EvalTask) -> TaskRecord:
        from partseg_ros.ros.evaluation_client import LiveTimeout

        assert self._node is not None and self._client is not None, "use LiveSession as a context manager"
        self._node.check_alive()
        if task.intrinsics is None or task.depth_m is None:
            raise LiveEvaluationError(
                f"{task.bag}: task {task.task_id} has no camera_info or no depth; the live path feeds the node "
                "RGB-D frames (use the in-process path for 2D-only bags)"
            )
        try:
            prediction = self._client.ask(task, self.live.task_timeout_s)
        except LiveTimeout as exc:
            raise LiveEvaluationError(f"{exc}\nnode log:\n{self._node.log_tail()}") from exc
        return score_task(task, prediction, PROTOCOL_FULL, self.settings.backend, PATH_LIVE, self.settings.overlays)

    def __exit__(self, *exc_info: Any) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
        if self._node is not None:
            self._node.stop()
            self._node = None
        for key, value in self._saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        self._saved_env = {}


def evaluate_live(
    bags: list[Path], settings: EvaluationSettings, live: LiveSettings = LiveSettings(), progress: bool = True
) -> list[TaskRecord]:
    """Score every task of every bag through a freshly started node."""
    from tqdm import tqdm

    from partseg_ros.bags.reader import count_tasks

    records: list[TaskRecord] = []
    labels = bag_labels(bags)
    total = sum(count_tasks(bag) for bag in bags)
    with LiveSession(settings, live) as session:
        with tqdm(total=total, desc=f"evaluating {settings.backend} live", unit="task", disable=not progress) as bar:
            for bag in bags:
                for task in iter_tasks(bag, label=labels[bag]):
                    records.append(session.evaluate(task))
                    bar.update(1)
    return sort_records(records)
