"""SIGINT or SIGTERM with a service call in flight: the call is answered, the exit is clean (issue 15, item 7).

Before e27a3b6, teardown destroyed the service while its callback was still
running on an executor thread; rclpy's ``send_response`` then failed with
InvalidHandle, the executor task kept that exception until garbage collection
printed ``The following exception was never retrieved``, and the caller never
got an answer. Now the node's entities live until ``destroy_node``, which
``main`` calls only after ``executor.shutdown()`` has waited for in-flight
callbacks, so the call is answered. This test fails on e27a3b6^.
"""

import os
import signal
import sys
import time

import numpy as np
import pytest

from node_harness import PARAMS_FILE, ROOT, NodeProcess, Probe, array_to_image, camera_info_msg
from partseg.srv import SegmentParts
from partseg_ros.ros.bringup_spec import remapping_arguments
from partseg_ros.types import CameraIntrinsics

pytestmark = pytest.mark.slow

BACKEND_DELAY_MS = 1500.0  # the service call is certainly in the backend when the signal comes


def _request() -> SegmentParts.Request:
    h, w = 48, 64
    request = SegmentParts.Request()
    request.instruction = "pick up the block"
    request.color = array_to_image(np.random.default_rng(0).integers(0, 255, (h, w, 3), dtype=np.uint8), "rgb8")
    request.depth = array_to_image(np.full((h, w), 700, np.uint16), "16UC1")
    request.camera_info = camera_info_msg(CameraIntrinsics(60.0, 60.0, w / 2, h / 2, w, h))
    return request


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_signal_with_a_service_call_in_flight(signum):
    test_dir = str(ROOT / "test")
    node = NodeProcess(
        [sys.executable, "-m", "partseg_ros.ros.node", "--ros-args", "--params-file", str(PARAMS_FILE),
         *remapping_arguments("/camera"),
         "-p", "autostart:=true", "-p", "backend:=traffic_backends:BrightestBlockBackend", "-p", "warmup:=false",
         "-p", f"backend_options.delay_ms:={BACKEND_DELAY_MS}"],
        extra_env={"PYTHONPATH": os.pathsep.join(p for p in (test_dir, os.environ.get("PYTHONPATH", "")) if p)},
    )
    probe = Probe()
    try:
        assert probe.segment_parts.wait_for_service(timeout_sec=120), node.output()
        probe.wait_for(lambda: probe.lifecycle_state() == "active", 60, "active node")
        future = probe.segment_parts.call_async(_request())
        time.sleep(BACKEND_DELAY_MS / 3000.0)  # the callback is now inside the backend
        assert not future.done()
        node.process.send_signal(signum)
        node.process.wait(timeout=30)
        output = node.output()
        assert "never retrieved" not in output, output[-3000:]
        assert "Traceback" not in output, output[-3000:]
        assert node.process.returncode == 0, output[-3000:]
        # The call that was in flight got its answer before the node went away.
        probe.wait_for(future.done, 5.0, "the in-flight service response")
        response = future.result()
        assert response.success, response.message
    finally:
        probe.close()
        node.stop()
