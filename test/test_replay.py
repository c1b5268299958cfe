"""partseg_replay delivers every message of a bag over DDS, in order."""

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from partseg_ros.bags.format import (
    COLOR_TOPIC,
    INSTRUCTION_TOPIC,
    TASK_TOPIC,
    TOPIC_TYPES,
)
from partseg_ros.bags.writer import frame_from_rendered_view, write_benchmark
from partseg_ros.ros.dds_env import loopback_environment
from partseg_ros.ros.replay import message_class
from partseg_ros.scene.render import render_study_view

rclpy = pytest.importorskip("rclpy")


@pytest.fixture(scope="module")
def bag(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("replay") / "flowers"
    views = [render_study_view("flowers", v, seed=1, num_views=2, width=160, height=120) for v in range(2)]
    write_benchmark(path, [frame_from_rendered_view(v) for v in views], task_interval_s=0.2, frame_interval_s=0.2)
    return path


def _expected(bag: Path) -> list[tuple[str, int]]:
    from rosbags.rosbag2 import Reader

    with Reader(bag) as reader:
        return [(c.topic, t) for c, t, _ in reader.messages()]


class Recorder:
    """Raw subscriptions on every benchmark topic, recording arrival order."""

    def __init__(self, node, prefix: str, extra_topics=()):
        from rclpy.qos import QoSProfile, ReliabilityPolicy

        qos = QoSProfile(depth=1000, reliability=ReliabilityPolicy.RELIABLE)
        self.received: list[tuple[str, bytes]] = []
        # Each test listens under its own prefix (the replay remaps to it), so endpoints
        # left over from an earlier test can never count as this test's subscriber.
        self.prefix = prefix
        self.subs = [
            node.create_subscription(message_class(msgtype), prefix + topic, self._callback(topic), qos, raw=True)
            for topic, msgtype in TOPIC_TYPES.items()
        ] + [node.create_subscription(message_class(msgtype), topic, self._callback(topic), qos, raw=True)
             for topic, msgtype in extra_topics]

    def remap_args(self) -> list[str]:
        return ["--ros-args", *(a for t in TOPIC_TYPES for a in ("-r", f"{t}:={self.prefix}{t}"))]

    def _callback(self, topic):
        return lambda raw: self.received.append((topic, raw))


def _run_replay(bag: Path, *extra: str, timeout: float = 60.0) -> subprocess.Popen:
    env = loopback_environment(int(os.environ["ROS_DOMAIN_ID"]))
    cmd = [sys.executable, "-m", "partseg_ros.ros.replay", str(bag), "--wait-for-subscribers", "--wait-timeout", "20",
           *extra]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _spin_until_done(node, proc: subprocess.Popen, recorder: Recorder, expected: int, timeout: float = 60.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rclpy.spin_once(node, timeout_sec=0.05)
        if proc.poll() is not None:
            break
    for _ in range(40):  # drain what is still in flight
        rclpy.spin_once(node, timeout_sec=0.05)
    try:
        out, _ = proc.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
    return out


@pytest.fixture
def node():
    rclpy.init()
    n = rclpy.create_node("replay_test_recorder")
    yield n
    n.destroy_node()
    rclpy.shutdown()


def _check_order(bag: Path, recorder: Recorder) -> None:
    from rclpy.serialization import deserialize_message

    expected = _expected(bag)
    got_topics = [t for t, _ in recorder.received]
    assert sorted(got_topics) == sorted(t for t, _ in expected)
    # Per topic, messages arrive in the recorded order (checked on header stamps and task ids).
    for topic, msgtype in TOPIC_TYPES.items():
        msgs = [deserialize_message(raw, message_class(msgtype)) for t, raw in recorder.received if t == topic]
        if topic == INSTRUCTION_TOPIC:
            continue
        stamps = [m.header.stamp.sec * 10**9 + m.header.stamp.nanosec for m in msgs]
        assert stamps == sorted(stamps), topic
    tasks = [deserialize_message(raw, message_class(TOPIC_TYPES[TASK_TOPIC])) for t, raw in recorder.received
             if t == TASK_TOPIC]
    instructions = [deserialize_message(raw, message_class(TOPIC_TYPES[INSTRUCTION_TOPIC])).data
                    for t, raw in recorder.received if t == INSTRUCTION_TOPIC]
    assert [t.task_id for t in tasks] == ["flowers_01", "flowers_02"] * 2
    assert instructions == [t.instruction for t in tasks]
    color = [deserialize_message(raw, message_class(TOPIC_TYPES[COLOR_TOPIC])) for t, raw in recorder.received
             if t == COLOR_TOPIC]
    assert color[0].encoding == "rgb8" and np.frombuffer(color[0].data, np.uint8).size == 160 * 120 * 3


def test_replay_as_fast_as_possible_delivers_everything_in_order(bag: Path, node):
    recorder = Recorder(node, "/fast")
    expected = len(_expected(bag))
    proc = _run_replay(bag, "--rate", "0", *recorder.remap_args())
    out = _spin_until_done(node, proc, recorder, expected)
    assert proc.returncode == 0, out
    assert f"published {expected} messages" in out
    assert len(recorder.received) == expected, out
    _check_order(bag, recorder)


def test_replay_at_rate_keeps_timing_and_publishes_clock(bag: Path, node):
    from rclpy.serialization import deserialize_message
    from rosgraph_msgs.msg import Clock

    recorder = Recorder(node, "/timed", extra_topics=[("/clock", "rosgraph_msgs/msg/Clock")])
    expected = _expected(bag)
    duration_s = (expected[-1][1] - expected[0][1]) / 1e9
    proc = _run_replay(bag, "--rate", "4", "--clock", "--clock-hz", "50", *recorder.remap_args())
    out = _spin_until_done(node, proc, recorder, len(expected) + 1)
    assert proc.returncode == 0, out
    wall = float(re.search(r"in ([0-9.]+) s", out).group(1))
    assert wall >= duration_s / 4 * 0.95
    clocks = [deserialize_message(raw, Clock).clock for t, raw in recorder.received if t == "/clock"]
    recorder.received = [(t, raw) for t, raw in recorder.received if t != "/clock"]
    assert len(recorder.received) == len(expected)
    _check_order(bag, recorder)
    # /clock carries the bag's time, never goes back, and covers the whole bag.
    clock_ns = [c.sec * 10**9 + c.nanosec for c in clocks]
    assert len(clock_ns) > len(expected)  # ticks between messages too
    assert clock_ns == sorted(clock_ns)
    assert clock_ns[0] == expected[0][1] and clock_ns[-1] == expected[-1][1]


def test_replay_rejects_unknown_topics(bag: Path):
    env = loopback_environment(int(os.environ["ROS_DOMAIN_ID"]))
    proc = subprocess.run([sys.executable, "-m", "partseg_ros.ros.replay", str(bag), "--topics", "/nope"],
                          env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "/nope" in proc.stderr



def test_loop_repeats_until_interrupted(bag: Path, node):
    import signal

    recorder = Recorder(node, "/looped")
    per_pass = len(_expected(bag))
    proc = _run_replay(bag, "--rate", "0", "--loop", *recorder.remap_args())
    deadline = time.monotonic() + 60
    while len(recorder.received) < 2 * per_pass + 1 and time.monotonic() < deadline and proc.poll() is None:
        rclpy.spin_once(node, timeout_sec=0.05)
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, out
    assert "interrupted" in out
    assert len(recorder.received) > 2 * per_pass
    first_pass = [t for t, _ in recorder.received[:per_pass]]
    second_pass = [t for t, _ in recorder.received[per_pass:2 * per_pass]]
    assert sorted(first_pass) == sorted(second_pass)
