"""``partseg_evaluate`` with its live path: the real node, over real DDS, scored with the same code.

The evaluator (:mod:`partseg_ros.evaluation`) asks a
:class:`~partseg_ros.evaluation.answering.TaskAnswerer` for answers and never
imports ROS; this module is where the ROS side is plugged in. ``main`` is the
``partseg_evaluate`` command: the evaluator's own command, handed
:class:`LiveAnswerer` for ``--path live``. rclpy is imported only when the live
path starts, so the in-process path loads no ROS.

:class:`LiveAnswerer` runs the partseg node as its own process with the
loopback DDS environment and the configured backend, and answers each task
through :class:`~partseg_ros.ros.evaluation_client.LiveClient`, which replays
the task's recorded frame into the node and asks ``~/ask`` for its answer.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional, Sequence

from partseg_ros.evaluation import cli
from partseg_ros.evaluation.answering import AnsweringError, LiveSettings, check_protocols
from partseg_ros.evaluation.node_params import DEFAULT_PARAMS_FILE
from partseg_ros.evaluation.records import PATH_LIVE
from partseg_ros.evaluation.runner import EvaluationSettings
from partseg_ros.evaluation.scoring import Prediction
from partseg_ros.evaluation.tasks import EvalTask
from partseg_ros.resources import config_dir
from partseg_ros.ros.dds_env import loopback_environment

if TYPE_CHECKING:  # evaluation_client imports rclpy: only the live path loads it
    from partseg_ros.ros import evaluation_client


def node_command(params_file: Path, settings: EvaluationSettings,
                 topics: "evaluation_client.LiveTopics") -> list[str]:
    """The node's command line: its console script, the params file, then -p overrides.

    The overrides pin what the evaluation depends on: the backend and its
    options, the grasp-region settings the in-process path also uses, the
    topics the client talks on, grasp regions in the optical frame of the
    image they come from (the criterion projects them through that camera,
    whatever frame id the recording uses), and autostart (no lifecycle manager here).
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
        "frames.target_frame": "",
    }
    overrides.update({f"backend_options.{k}": v for k, v in settings.backend_options.items()})
    overrides.update({f"grasp.{k}": v for k, v in settings.grasp_options.items()})
    args: list[str] = []
    for name, value in overrides.items():
        args += ["-p", f"{name}:={_param_literal(value)}"]
    return launcher + ["--ros-args", "--params-file", str(params_file), *args]


def _param_literal(value: Any) -> str:
    """A -p value as rcl's YAML reading takes it (an empty string must be quoted, or it reads as null)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value == "":
        return '""'
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
            raise AnsweringError(f"the partseg node exited with code {self.process.returncode}:\n{self.log_tail()}")

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


class LiveAnswerer:
    """The live path's task answerer: a node of its own plus the client that asks it.

    Use as a context manager: the node is stopped and the environment restored on exit.
    Refuses protocols and files it cannot use before anything starts.
    """

    path = PATH_LIVE

    def __init__(self, settings: EvaluationSettings, live: LiveSettings = LiveSettings()) -> None:
        from partseg_ros.ros.evaluation_client import LiveClient  # rclpy: the live path starts here

        self.protocols: tuple[str, ...] = LiveClient.protocols  # what the client can ask the node
        check_protocols(self.protocols, tuple(settings.protocols), self.path)
        params_file = Path(live.params_file) if live.params_file else config_dir() / DEFAULT_PARAMS_FILE
        if not params_file.is_file():
            raise AnsweringError(f"node parameters file {params_file} not found")
        self.settings, self.live, self.params_file = settings, live, params_file
        self._node: Optional[NodeProcess] = None
        self._client: Optional["evaluation_client.LiveClient"] = None
        self._saved_env: dict[str, Optional[str]] = {}

    def __enter__(self) -> "LiveAnswerer":
        domain_id = self.live.domain_id if self.live.domain_id is not None else random.randint(100, 199)
        # Both the node and this process's client talk DDS: both get the loopback environment.
        env = loopback_environment(domain_id)
        self._saved_env = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        try:
            from partseg_ros.ros.evaluation_client import LiveClient, LiveTimeout, LiveTopics

            topics = LiveTopics()
            self._node = NodeProcess(node_command(self.params_file, self.settings, topics), env)
            self._client = LiveClient(topics, self.live.task_timeout_s)
            try:
                self._client.wait_for_node(self.live.startup_timeout_s)
            except LiveTimeout as exc:
                self._node.check_alive()
                raise AnsweringError(f"{exc}\nnode log:\n{self._node.log_tail()}") from exc
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def answer(self, task: EvalTask, protocol: str) -> Prediction:
        from partseg_ros.ros.evaluation_client import LiveTimeout

        if self._node is None or self._client is None:
            raise AnsweringError("the live answerer is not running: use it as a context manager")
        self._node.check_alive()
        try:
            return self._client.answer(task, protocol)
        except LiveTimeout as exc:
            raise AnsweringError(f"{exc}\nnode log:\n{self._node.log_tail()}") from exc

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


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``partseg_evaluate``: the evaluator's command with the live path available."""
    return cli.main(argv, live_answerer=LiveAnswerer)


if __name__ == "__main__":
    from partseg_ros.console import run

    sys.exit(run("partseg_evaluate"))
