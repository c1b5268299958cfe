"""The node under the traffic a robot and its operators produce (issue 15), over real DDS.

Bags are replayed into the node with ``partseg_replay`` (a second process), as an
operator would: a 1-frame bag with 5 instructions gets 5 answers, a bag replayed
twice is answered twice, and the first frame after a camera pause is processed
when its camera_info comes just after it. A small real backend keeps it quick.
"""

import dataclasses
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from std_msgs.msg import Header

from node_harness import ROOT, NodeProcess, Probe, array_to_image, camera_info_msg
from partseg.msg import PartSegmentation
from partseg_ros.ros.bringup_spec import remapping_arguments
from partseg_ros.bags.writer import frame_from_rendered_view, write_benchmark
from partseg_ros.ros.dds_env import loopback_environment
from partseg_ros.ros.sync import stamp_to_ns
from partseg_ros.scene.render import render_study_view
from partseg_ros.types import CameraIntrinsics

pytestmark = pytest.mark.slow

CAMERA_INFO_TIMEOUT_S = 0.5
FRAME_INTERVAL_S = 0.5
TASK_INTERVAL_S = 0.5
RATE = 4.0  # replay speed: 125 ms between instructions, the backend needs microseconds


@pytest.fixture(scope="module")
def system():
    test_dir = str(ROOT / "test")
    node = NodeProcess(
        [sys.executable, "-m", "partseg_ros.ros.node", "--ros-args", "--params-file", str(ROOT / "config/partseg.yaml"),
         *remapping_arguments("/camera"),
         "-p", "autostart:=true", "-p", "backend:=traffic_backends:BrightestBlockBackend", "-p", "warmup:=false",
         "-p", f"limits.camera_info_timeout_s:={CAMERA_INFO_TIMEOUT_S}", "-p", "diagnostics.period_s:=0.2"],
        extra_env={"PYTHONPATH": os.pathsep.join(p for p in (test_dir, os.environ.get("PYTHONPATH", "")) if p)},
    )
    probe = Probe()
    try:
        probe.wait_connected(timeout=120)
        yield node, probe
    finally:
        probe.close()
        code = node.stop()
        assert code == 0, f"node exited with {code}"


@pytest.fixture(scope="module")
def views():
    return [render_study_view("kitchen", v, seed=2, num_views=3, width=160, height=120) for v in range(3)]


def _bag(path: Path, views, tasks_per_frame: int, start_s: int) -> list[tuple[int, str]]:
    """Write a bag; returns the (frame stamp ns, instruction) pairs it asks."""
    frames = []
    for k, view in enumerate(views):
        frame = frame_from_rendered_view(view)
        # Distinct texts, so a frame answered with the previous frame's instruction cannot pass for an asked pair.
        tasks = [dataclasses.replace(t, instruction=f"{t.instruction} ({k}.{i})") for i, t in
                 enumerate((frame.tasks * tasks_per_frame)[:tasks_per_frame])]
        frames.append(dataclasses.replace(frame, tasks=tasks))
    write_benchmark(path, frames, frame_interval_s=FRAME_INTERVAL_S, task_interval_s=TASK_INTERVAL_S,
                    start_ns=start_s * 1_000_000_000)
    from rosbags.rosbag2 import Reader

    from partseg_ros.bags.format import TASK_TOPIC
    from partseg_ros.bags.format import typestore

    asked = []
    with Reader(path) as reader:
        store = typestore()
        connections = [c for c in reader.connections if c.topic == TASK_TOPIC]
        for connection, _, raw in reader.messages(connections=connections):
            msg = store.deserialize_cdr(raw, connection.msgtype)
            asked.append((msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec, msg.instruction))
    return asked


def _replay(bag: Path) -> None:
    env = loopback_environment(int(os.environ["ROS_DOMAIN_ID"]))
    topics = ["/camera/color/image_raw", "/camera/aligned_depth_to_color/image_raw", "/camera/color/camera_info",
              "/partseg/instruction"]
    out = subprocess.run([sys.executable, "-m", "partseg_ros.ros.replay", str(bag), "--rate", str(RATE),
                          "--topics", *topics, "--wait-for-subscribers", *topics, "--wait-timeout", "20"],
                         env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr


def _answers(probe: Probe, asked: list[tuple[int, str]]) -> list[tuple[int, str]]:
    with probe._lock:
        got = [(stamp_to_ns(m.header.stamp), m.instruction) for m in probe.segmentations]
    return [pair for pair in got if pair in set(asked)]


def _wait_answers(probe, asked, expected, timeout=20.0):
    try:
        probe.wait_for(lambda: len(_answers(probe, asked)) >= expected, timeout, f"{expected} answers")
    except TimeoutError:
        pass
    return _answers(probe, asked)


def test_one_frame_bag_with_5_instructions_gets_5_answers(system, views, tmp_path):
    node, probe = system
    asked = _bag(tmp_path / "one_frame", views[:1], tasks_per_frame=5, start_s=1_735_689_600)
    assert len(asked) == 5
    _replay(tmp_path / "one_frame")
    answers = _wait_answers(probe, asked, 5)
    assert sorted(answers) == sorted(asked), f"answered {answers}\n{node.output()[-2000:]}"


def test_bag_replayed_twice_is_answered_twice(system, views, tmp_path):
    node, probe = system
    asked = _bag(tmp_path / "three_frames", views, tasks_per_frame=2, start_s=1_735_689_700)
    for replay_pass in (1, 2):
        _replay(tmp_path / "three_frames")
        answers = _wait_answers(probe, asked, len(asked) * replay_pass)
        for pair in asked:
            assert answers.count(pair) == replay_pass, (
                f"pass {replay_pass}: {pair} answered {answers.count(pair)} times\n{node.output()[-2000:]}")
    assert "synchroniser and stamp checks reset" in node.output()


def _small(seed: int):
    h, w = 48, 64
    rgb = np.random.default_rng(seed).integers(0, 255, (h, w, 3), dtype=np.uint8)
    return (array_to_image(rgb, "rgb8"), array_to_image(np.full((h, w), 700, np.uint16), "16UC1"),
            camera_info_msg(CameraIntrinsics(60.0, 60.0, w / 2, h / 2, w, h)))


def test_first_frame_after_a_camera_pause_is_processed(system):
    """After a pause longer than camera_info_timeout_s, colour arrives before its camera_info."""
    node, probe = system
    probe.send_instruction("pick up the block")
    header = probe.send_frame(*_small(0))
    probe.wait_results(header, timeout=30)
    for attempt in range(4):
        time.sleep(CAMERA_INFO_TIMEOUT_S + 0.3)  # the camera pauses
        color, depth, info = _small(attempt + 1)
        header = Header(stamp=probe.stamp(), frame_id="camera_color_optical_frame")
        color.header = depth.header = info.header = header
        probe.color_pub.publish(color)  # colour first, its camera_info just after
        time.sleep(0.02)
        probe.info_pub.publish(info)
        probe.depth_pub.publish(depth)
        seg, _ = probe.wait_results(header, timeout=10)
        assert seg.status == PartSegmentation.STATUS_OK


def test_two_one_frame_bags_on_the_same_timeline_are_answered_on_their_own_frames(system, views, tmp_path):
    """Generated bags all start at the same stamp: the second bag's frame repeats the first one's stamp.

    It used to be refused as a duplicate (out_of_order) and its instructions were answered on
    the first bag's image, under the same stamp, so nobody could tell.
    """
    from traffic_backends import BrightestBlockBackend
    from partseg_ros.ros.conversions import image_to_mask
    from partseg_ros.types import GroundingRequest

    node, probe = system
    expected = [BrightestBlockBackend().ground(GroundingRequest(rgb=v.rgb, instruction="x")).instances[0].mask
                for v in views[:2]]
    assert not np.array_equal(*expected), "the two views must give different answers"
    for index, view in enumerate(views[:2]):
        asked = _bag(tmp_path / f"bag{index}", [view], tasks_per_frame=2, start_s=1_735_689_800)
        with probe._lock:
            seen = len(probe.segmentations)
        _replay(tmp_path / f"bag{index}")
        def both_answered(seen: int = seen, asked: frozenset = frozenset(asked)) -> bool:
            return sum((stamp_to_ns(m.header.stamp), m.instruction) in asked
                       for m in probe.segmentations[seen:]) >= 2

        probe.wait_for(both_answered, 20, f"answers to bag {index}")
        with probe._lock:
            answers = [m for m in probe.segmentations[seen:] if (stamp_to_ns(m.header.stamp), m.instruction)
                       in set(asked)]
        for answer in answers:
            assert np.array_equal(image_to_mask(answer.instances[0].mask), expected[index]), (
                f"bag {index} answered on another frame\n{node.output()[-2000:]}")
    assert "repeated after a silence" in node.output()
