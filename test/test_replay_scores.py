"""``partseg_replay`` into the live node scores the same as the in-process evaluator (issue 15, item 4).

A small benchmark (two study scenes, one view each, 320x240) is generated with
``partseg_generate_benchmark``, scored in process, then replayed into a running
node with ``partseg_replay`` as an operator would. The node answers every
instruction on the latest frame, so each task of the bag gets an answer named by
its frame's stamp and its instruction; those answers are scored with the same
scorer, and per-task mask and grasp-point success, IoU and the chosen part must
equal the in-process records, and so must the grasp centroids. Before instructions were answered without a new
frame, a 1-frame bag's tasks got no answers at all.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from node_harness import NodeProcess, Probe
from partseg_ros.evaluation.records import PROTOCOL_FULL
from partseg_ros.evaluation.runner import EvaluationSettings, evaluate_inprocess
from partseg_ros.evaluation.scoring import score_task
from partseg_ros.evaluation.tasks import bag_labels, iter_tasks
from partseg_ros.ros.dds_env import loopback_environment
from partseg_ros.ros.evaluation_client import LiveTopics, prediction_from_messages
from partseg_ros.ros.sync import stamp_to_ns

pytestmark = pytest.mark.slow

SCENES = ("mugs", "flowers")
WIDTH, HEIGHT = 320, 240
BACKEND = "shapegrasp"  # deterministic: both paths must agree task by task


def _console(name: str) -> list[str]:
    script = Path(sys.executable).with_name(name)
    return [str(script)] if script.is_file() else [sys.executable, "-m", "partseg_ros.console", name]


@pytest.fixture(scope="module")
def bags(tmp_path_factory) -> list[Path]:
    out = tmp_path_factory.mktemp("replay_scores")
    done = subprocess.run(
        [*_console("partseg_generate_benchmark"), "--out", str(out), "--views", "1", "--scenes", *SCENES,
         "--width", str(WIDTH), "--height", str(HEIGHT)],
        capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    found = sorted(p for p in out.iterdir() if p.is_dir())
    assert [p.name for p in found] == sorted(SCENES), found
    return found


def _replay(bag: Path) -> None:
    topics = [LiveTopics.color, LiveTopics.depth, LiveTopics.camera_info, LiveTopics.instruction]
    done = subprocess.run(
        [*_console("partseg_replay"), str(bag), "--rate", "1.0", "--topics", *topics,
         "--wait-for-subscribers", *topics, "--wait-timeout", "60"],
        env=loopback_environment(int(os.environ["ROS_DOMAIN_ID"])), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr


def test_replay_into_the_node_scores_like_the_inprocess_evaluator(bags):
    settings = EvaluationSettings(backend=BACKEND, protocols=(PROTOCOL_FULL,), overlays=False)
    expected = {(r.bag, r.stamp_ns, r.instruction): r for r in evaluate_inprocess(bags, settings, progress=False)}
    assert any(r.mask_success for r in expected.values()), "the comparison needs some successes to mean anything"

    # config/partseg.yaml keeps grasp regions in the camera frame, which the grasp-point criterion needs.
    node = NodeProcess.node("-p", "autostart:=true", "-p", f"backend:={BACKEND}", "-p", "device:=cpu")
    probe = Probe()
    try:
        try:
            probe.wait_connected(timeout=120)
        except TimeoutError:
            raise AssertionError(node.output()[-3000:]) from None
        labels = bag_labels(bags)
        got = {}
        for bag in bags:
            tasks = list(iter_tasks(bag, label=labels[bag]))
            _replay(bag)

            def answers():
                with probe._lock:
                    segs = {(stamp_to_ns(m.header.stamp), m.instruction): m for m in probe.segmentations}
                    regions = {(stamp_to_ns(m.header.stamp), m.instruction): m for m in probe.grasp_regions}
                return segs, regions

            def all_answered(tasks: list = tasks) -> bool:  # this bag's tasks, bound now
                segs, regions = answers()
                return all((t.stamp_ns, t.instruction) in segs and (t.stamp_ns, t.instruction) in regions
                           for t in tasks)

            probe.wait_for(all_answered, 120, f"answers to the {len(tasks)} tasks of {bag.name}")
            segs, regions = answers()
            for task in tasks:
                key = (task.stamp_ns, task.instruction)
                prediction = prediction_from_messages(segs[key], regions[key], task.rgb.shape[:2],
                                                      segs[key].header.frame_id, float(segs[key].latency_ms))
                got[(task.bag, task.stamp_ns, task.instruction)] = score_task(
                    task, prediction, PROTOCOL_FULL, BACKEND, "replay", with_overlay=False)
    finally:
        probe.close()
        code = node.stop()
    assert code == 0
    assert set(got) == set(expected)
    for key, record in expected.items():
        replayed = got[key]
        assert (replayed.mask_success, replayed.grasp_point_success, replayed.predicted_object,
                replayed.predicted_part, replayed.num_instances) == (
            record.mask_success, record.grasp_point_success, record.predicted_object, record.predicted_part,
            record.num_instances), key
        assert replayed.iou == pytest.approx(record.iou, abs=1e-9), key
        assert (replayed.grasp_centroid is None) == (record.grasp_centroid is None), (key, replayed.grasp_status,
                                                                                    record.grasp_status)
        if record.grasp_centroid is not None:  # same geometry on the same pixels (float32 on the wire)
            assert replayed.grasp_centroid == pytest.approx(record.grasp_centroid, abs=1e-5), key
    mask = sum(r.mask_success for r in got.values())
    grasp = sum(r.grasp_point_success for r in got.values())
    print(f"{len(got)} tasks: mask {mask}, grasp point {grasp} on both paths")
