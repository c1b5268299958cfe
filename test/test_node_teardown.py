"""Lifecycle cleanup while frames stream in never kills the node process (issue 15, item 2).

rclpy's executor may be building a wait set from entities (subscriptions and
their QoS event handlers, publishers' event handlers) that a transition
destroys at that moment; ``event_handler.add_to_wait_set`` then raises
InvalidHandle from ``executor.spin()``. The node keeps its entities for its
whole life and its spin loop survives the error.

A 1 kHz diagnostics timer makes the executor rebuild its wait set constantly,
which widens the race window the way heavy traffic does.
"""

import os
import threading
import time

import numpy as np
import pytest
from lifecycle_msgs.msg import Transition

from node_harness import ROOT, NodeProcess, Probe, array_to_image, camera_info_msg
from partseg_ros.ros.bringup_spec import remapping_arguments
from partseg_ros.types import CameraIntrinsics

pytestmark = pytest.mark.slow

CYCLES = int(os.environ.get("PARTSEG_TEARDOWN_CYCLES", "100"))
SIZE = (24, 32)


def small_frame():
    h, w = SIZE
    rgb = np.random.default_rng(0).integers(0, 255, (h, w, 3), dtype=np.uint8)
    return (array_to_image(rgb, "rgb8"), array_to_image(np.full((h, w), 700, np.uint16), "16UC1"),
            camera_info_msg(CameraIntrinsics(30.0, 30.0, w / 2, h / 2, w, h)))


def stream(probe: Probe, stop: threading.Event, hz: float = 30.0) -> None:
    """Publish until stopped; a publish refused under load ("cannot publish data") is retried, not fatal, so the
    camera does not fall silent and leave the node with nothing to answer."""
    while not stop.is_set():
        try:
            probe.send_frame(*small_frame())
        except Exception:  # noqa: BLE001 - the context may go down at the end
            if stop.is_set():
                return
        time.sleep(1.0 / hz)


def test_cleanup_under_a_30hz_stream_100_times():
    test_dir = str(ROOT / "test")
    node = NodeProcess(
        [*_node_command()],
        extra_env={"PYTHONPATH": os.pathsep.join(p for p in (test_dir, os.environ.get("PYTHONPATH", "")) if p)},
    )
    probe = Probe()
    stop = threading.Event()
    streamer = threading.Thread(target=stream, args=(probe, stop), daemon=True)
    try:
        _run_cycles(node, probe, stop, streamer)
    except Exception:
        print(node.output()[-4000:])
        raise
    finally:
        stop.set()
        if streamer.ident is not None:  # a failure before the stream started must still stop the node
            streamer.join(timeout=2.0)
        probe.close()
        code = node.stop()
    assert code == 0, f"node exited with {code}"


def _run_cycles(node, probe, stop, streamer) -> None:
    if True:
        assert probe.lifecycle_state() == "unconfigured"
        probe.send_instruction("pick up the block")
        streamer.start()
        started = time.monotonic()
        for cycle in range(CYCLES):
            assert probe.transition(Transition.TRANSITION_CONFIGURE), f"configure #{cycle}\n{node.output()[-2000:]}"
            assert probe.transition(Transition.TRANSITION_ACTIVATE), f"activate #{cycle}"
            time.sleep(0.01)
            assert probe.transition(Transition.TRANSITION_DEACTIVATE), f"deactivate #{cycle}"
            assert probe.transition(Transition.TRANSITION_CLEANUP), f"cleanup #{cycle}"
            assert node.alive(), f"node died in cycle {cycle}:\n{node.output()[-3000:]}"
        elapsed = time.monotonic() - started
        # Still serving after the cycles: configure, activate, and a frame gets its answer.
        assert probe.transition(Transition.TRANSITION_CONFIGURE)
        assert probe.transition(Transition.TRANSITION_ACTIVATE)
        # Cleanup clears the instruction (a reconfigured node starts from a clean slate), so the operator says it
        # again; the first one only survived the cycles when discovery happened to deliver it after the last cleanup.
        probe.send_instruction("pick up the block")
        probe.wait_for(lambda: len(probe.segmentations) > 0, 30.0, "a result after the cycles")
        assert node.alive()
        assert "Traceback" not in node.output(), node.output()[-3000:]
        print(f"{CYCLES} cycles in {elapsed:.1f} s")


def _node_command() -> list[str]:
    import sys

    from node_harness import PARAMS_FILE

    return [sys.executable, "-m", "partseg_ros.ros.node", "--ros-args", "--params-file", str(PARAMS_FILE),
    *remapping_arguments("/camera"),
            "-p", "backend:=traffic_backends:BrightestBlockBackend", "-p", "warmup:=false",
            "-p", "diagnostics.period_s:=0.001", "-p", "limits.min_image_width:=8",
            "-p", "limits.min_image_height:=8"]
