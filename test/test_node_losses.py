"""Losses the node can observe are counted (issue 15, item 6), over real DDS with the default best-effort QoS.

* A colour message whose CDR is broken (a data length running past the buffer),
  published raw: a typed subscription would drop it inside the middleware; the
  node's raw subscription counts it as ``rejected.deserialization_failed``.
* A burst of 640x480 images faster than loopback shared memory carries them:
  Fast DDS reports the samples it lost, and every image sent is either received
  (``frames_in``) or counted in ``dropped.lost.color``. With a history deep
  enough to hold the burst, losses are DDS's own; with the default depth 5 the
  subscription's history overwrites unread samples without any report.
"""

import os
import sys
import time

import numpy as np
import pytest
from rclpy.serialization import serialize_message

from node_harness import ROOT, NodeProcess, Probe, array_to_image, camera_info_msg
from partseg_ros.ros.bringup_spec import remapping_arguments
from partseg_ros.types import CameraIntrinsics

pytestmark = pytest.mark.slow

BURST = 300
TRAILER = 5  # sent slowly after the burst: DDS sees a loss as a gap before a later sample
HISTORY = 1000  # qos.sensor_depth: the whole burst fits, so nothing is overwritten unreported


@pytest.fixture(scope="module")
def system():
    test_dir = str(ROOT / "test")
    node = NodeProcess(
        [sys.executable, "-m", "partseg_ros.ros.node", "--ros-args", "--params-file", str(ROOT / "config/partseg.yaml"),
         *remapping_arguments("/camera"),
         "-p", "autostart:=true", "-p", "backend:=traffic_backends:BrightestBlockBackend", "-p", "warmup:=false",
         "-p", f"qos.sensor_depth:={HISTORY}", "-p", "diagnostics.period_s:=0.2"],
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


def _frame(h: int = 48, w: int = 64):
    rgb = np.random.default_rng(0).integers(0, 255, (h, w, 3), dtype=np.uint8)
    return (array_to_image(rgb, "rgb8"), array_to_image(np.full((h, w), 700, np.uint16), "16UC1"),
            camera_info_msg(CameraIntrinsics(60.0, 60.0, w / 2, h / 2, w, h)))


def test_colour_with_a_broken_cdr_length_is_counted(system):
    node, probe = system
    probe.send_instruction("pick up the block")
    before = probe.counter("rejected.deserialization_failed")
    colour, depth, info = _frame()
    colour.header.stamp = probe.stamp()
    raw = bytearray(serialize_message(colour))
    at = len(raw) - len(colour.data) - 4  # the pixel sequence's uint32 length
    raw[at:at + 4] = (len(colour.data) + 1_000_000).to_bytes(4, "little")
    probe.color_pub.publish(bytes(raw))
    after = probe.wait_counter_increase("rejected.deserialization_failed", before)
    assert after == before + 1, node.output()[-2000:]
    assert "rejected (deserialization_failed" in node.output()
    # and the node goes on
    header = probe.send_frame(*_frame())
    probe.wait_results(header, timeout=30)
    assert node.alive()


def test_every_image_of_a_burst_is_received_or_counted_lost(system):
    node, probe = system
    big = array_to_image(np.random.default_rng(1).integers(0, 255, (480, 640, 3), dtype=np.uint8), "rgb8")
    values = probe.fresh_diagnostics()
    received_before, lost_before = int(values["frames_in"]), int(values.get("dropped.lost.color", "0"))
    for index in range(BURST + TRAILER):  # colour only: nothing pairs, the node only peeks and counts
        big.header.stamp = probe.stamp()
        probe.color_pub.publish(big)
        if index >= BURST:
            time.sleep(0.05)
    deadline = time.monotonic() + 20
    while True:
        values = probe.fresh_diagnostics()
        received = int(values["frames_in"]) - received_before
        lost = int(values.get("dropped.lost.color", "0")) - lost_before
        if received + lost >= BURST + TRAILER or time.monotonic() > deadline:
            break
    print(f"{BURST + TRAILER} sent: {received} received, {lost} reported lost by DDS")
    assert received + lost == BURST + TRAILER, f"{BURST + TRAILER - received - lost} images vanished without a count"
    assert node.alive()
