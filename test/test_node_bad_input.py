"""Bad input over real DDS: each case is logged, counted by reason, survived, and valid traffic goes on.

One node process serves the whole module. Every test sends its bad input,
waits for the rejection counter in /diagnostics to rise, checks the process
is alive, then sends a valid frame and waits for its results.
"""

import time

import numpy as np
import pytest

from sensor_msgs.msg import Image

from node_harness import BACKEND, NodeProcess, Probe, array_to_image, camera_info_msg, rendered_frame
from partseg.msg import PartSegmentation
from partseg_ros.scene.render import render_study_view
from partseg_ros.types import CameraIntrinsics

pytestmark = pytest.mark.slow

CAMERA_INFO_TIMEOUT_S = 1.5


@pytest.fixture(scope="module")
def view():
    return render_study_view("kitchen", view_index=0, seed=0)


@pytest.fixture(scope="module")
def instruction(view):
    return view.tasks[1].instruction  # any study task: these tests are about input handling, not answers


@pytest.fixture(scope="module")
def system(view, instruction):
    node = NodeProcess.node(
        "-p", "autostart:=true", "-p", f"backend:={BACKEND}", "-p", "device:=cpu",
        "-p", f"limits.camera_info_timeout_s:={CAMERA_INFO_TIMEOUT_S}", "-p", "limits.max_instruction_length:=200",
        "-p", "limits.future_tolerance_s:=1.0", "-p", "diagnostics.period_s:=0.2",
    )
    probe = Probe()
    try:
        probe.wait_connected(timeout=120)
        probe.send_instruction(instruction)
        yield node, probe
    finally:
        probe.close()
        code = node.stop()
        assert code == 0, f"node exited with {code}"


def valid_frame_goes_through(system, view, instruction=None):
    """Send camera_info first (so it is fresh), then a whole frame; wait for its results."""
    node, probe = system
    color, depth, info = rendered_frame(view)
    probe.send_frame(color, depth, info)  # refresh camera_info, may or may not pair
    time.sleep(0.3)
    header = probe.send_frame(*rendered_frame(view))
    seg, regions = probe.wait_results(header, timeout=120)
    assert seg.status in (PartSegmentation.STATUS_OK, PartSegmentation.STATUS_NO_TARGET)
    if instruction is not None:
        assert seg.instruction == instruction
    assert len(regions.regions) == len(seg.instances)
    return seg


def expect_rejection(system, reason, send):
    node, probe = system
    before = probe.counter(f"rejected.{reason}")
    send(probe)
    after = probe.wait_counter_increase(f"rejected.{reason}", before)
    assert after > before, f"rejected.{reason} did not rise; node log:\n{node.output()[-3000:]}"
    assert node.alive(), node.output()[-3000:]
    assert f"rejected ({reason}" in node.output() or reason.startswith("instruction_")


def test_baseline_frame_is_processed(system, view, instruction):
    valid_frame_goes_through(system, view, instruction)


@pytest.mark.parametrize("encoding", ["yuv422", "16UC1"])
def test_wrong_colour_encoding(system, view, encoding):
    def send(probe):
        color, depth, info = rendered_frame(view)
        if encoding == "16UC1":
            bad = array_to_image(np.zeros(view.rgb.shape[:2], np.uint16), "16UC1")
        else:
            bad = color
            bad.encoding = "yuv422"
            bad.step = view.rgb.shape[1] * 2
        probe.send_frame(bad, depth, info)

    expect_rejection(system, "bad_encoding", send)
    valid_frame_goes_through(system, view)


def test_wrong_depth_encoding(system, view):
    def send(probe):
        color, depth, info = rendered_frame(view)
        probe.send_frame(color, array_to_image(view.rgb, "rgb8"), info)

    expect_rejection(system, "bad_encoding", send)
    valid_frame_goes_through(system, view)


def test_malformed_image(system, view):
    def send(probe):
        color, depth, info = rendered_frame(view)
        color.data = bytes(color.data)[: len(color.data) // 2]  # step * height promises twice as much
        probe.send_frame(color, depth, info)

    expect_rejection(system, "malformed_image", send)
    valid_frame_goes_through(system, view)


def _peak_rss_mb(pid: int) -> float:
    """The process's high-water mark of resident memory (VmHWM), MB."""
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024.0
    raise RuntimeError("no VmHWM")


def test_amplification_image_is_refused_before_allocating(system, view):
    """A 1x1 rgb8 image declaring step 2**32-1 with 3 bytes: refused, peak memory stays put (issue 15)."""
    node, probe = system
    valid_frame_goes_through(system, view)
    baseline = _peak_rss_mb(node.process.pid)

    def send(probe):
        _, depth, info = rendered_frame(view)
        probe.send_frame(Image(height=1, width=1, encoding="rgb8", step=2**32 - 1, data=bytes(3)), depth, info)

    expect_rejection(system, "image_too_large", send)
    valid_frame_goes_through(system, view)
    assert _peak_rss_mb(node.process.pid) <= baseline + 300.0


@pytest.mark.parametrize("case,reason", [("one_pixel", "image_too_small"), ("huge_k", "camera_info_invalid")])
def test_sanity_limits_over_dds(system, view, case, reason):
    def send(probe):
        if case == "one_pixel":
            probe.send_frame(array_to_image(np.zeros((1, 1, 3), np.uint8), "rgb8"),
                             array_to_image(np.full((1, 1), 700, np.uint16), "16UC1"),
                             camera_info_msg(CameraIntrinsics(1.0, 1.0, 0.5, 0.5, 1, 1)))
        else:
            color, depth, info = rendered_frame(view)
            info.k = [1e308, 0.0, info.k[2], 0.0, 1e308, info.k[5], 0.0, 0.0, 1.0]
            info.p = [1e308, 0.0, info.k[2], 0.0, 0.0, 1e308, info.k[5], 0.0, 0.0, 0.0, 1.0, 0.0]
            probe.send_frame(color, depth, info)

    expect_rejection(system, reason, send)
    valid_frame_goes_through(system, view)


def test_colour_depth_size_mismatch(system, view):
    """Depth of another aspect ratio (another field of view) is refused; half resolution is registered (issue 14)."""
    def send(probe):
        color, depth, info = rendered_frame(view)
        other = array_to_image(np.full((view.rgb.shape[0] // 2, view.rgb.shape[1] // 3), 700, np.uint16), "16UC1")
        probe.send_frame(color, other, info)

    expect_rejection(system, "size_mismatch", send)
    valid_frame_goes_through(system, view)


def test_zero_camera_info(system, view):
    def send(probe):
        color, depth, info = rendered_frame(view)
        info.k = [0.0] * 9
        info.p = [0.0] * 12
        probe.send_frame(color, depth, info)

    expect_rejection(system, "camera_info_invalid", send)
    valid_frame_goes_through(system, view)


def test_missing_camera_info(system, view):
    def send(probe):
        time.sleep(CAMERA_INFO_TIMEOUT_S + 0.5)  # let the last camera_info go stale
        color, depth, _ = rendered_frame(view)
        probe.send_frame(color, depth, None)

    expect_rejection(system, "camera_info_missing", send)
    valid_frame_goes_through(system, view)


def test_all_invalid_depth(system, view):
    def send(probe):
        color, _, info = rendered_frame(view)
        probe.send_frame(color, array_to_image(np.zeros(view.rgb.shape[:2], np.uint16), "16UC1"), info)

    expect_rejection(system, "depth_all_invalid", send)
    valid_frame_goes_through(system, view)


def test_nan_and_inf_depth(system, view):
    def send(probe):
        color, _, info = rendered_frame(view)
        values = np.full(view.rgb.shape[:2], np.nan, np.float32)
        values[::3] = np.inf
        values[1::3] = -np.inf
        probe.send_frame(color, array_to_image(values, "32FC1"), info)

    expect_rejection(system, "depth_nonfinite", send)
    valid_frame_goes_through(system, view)


def test_32fc1_depth_with_holes_is_processed(system, view):
    """NaN holes are normal in 32FC1 (REP-118): not a rejection."""
    node, probe = system
    color, _, info = rendered_frame(view)
    probe.send_frame(color, _, info)
    time.sleep(0.3)
    color, _, info = rendered_frame(view)
    header = probe.send_frame(color, array_to_image(view.depth_m.astype(np.float32), "32FC1"), info)
    seg, regions = probe.wait_results(header, timeout=120)
    assert seg.status != PartSegmentation.STATUS_ERROR


def test_too_long_instruction_keeps_the_previous_one(system, view, instruction):
    expect_rejection(system, "instruction_too_long", lambda probe: probe.send_instruction("pick up " * 60))
    valid_frame_goes_through(system, view, instruction)


def test_empty_instruction_clears_and_a_new_one_resumes(system, view, instruction):
    node, probe = system
    expect_rejection(system, "instruction_empty", lambda probe: probe.send_instruction("   "))
    before = probe.counter("dropped.no_instruction")
    probe.send_frame(*rendered_frame(view))
    time.sleep(0.3)
    header = probe.send_frame(*rendered_frame(view))
    assert probe.wait_counter_increase("dropped.no_instruction", before) > before
    time.sleep(1.0)
    assert probe.results_for(header) == (None, None), "a frame was processed with no active instruction"
    probe.send_instruction(instruction)
    time.sleep(0.5)
    valid_frame_goes_through(system, view, instruction)


def test_out_of_order_stamps(system, view):
    node, probe = system
    header = probe.send_frame(*rendered_frame(view))
    probe.wait_results(header, timeout=120)

    def send(probe):
        # 0.3 s back is jitter (below sync.reset_jump_back_s): refused, not a new time line.
        earlier = header.stamp
        if earlier.nanosec >= 300_000_000:
            earlier.nanosec -= 300_000_000
        else:
            earlier.sec, earlier.nanosec = earlier.sec - 1, earlier.nanosec + 700_000_000
        probe.send_frame(*rendered_frame(view), stamp=earlier)

    expect_rejection(system, "out_of_order", send)
    valid_frame_goes_through(system, view)


def test_future_stamps(system, view):
    expect_rejection(system, "future_stamp",
                     lambda probe: probe.send_frame(*rendered_frame(view), stamp=probe.stamp(offset_s=30.0)))
    valid_frame_goes_through(system, view)


def test_no_exception_escaped_and_node_still_alive(system):
    node, probe = system
    values = probe.fresh_diagnostics()
    assert node.alive()
    assert int(values.get("rejected.internal_error", "0")) == 0, node.output()[-3000:]
    assert values["state"] == "active"
    assert "Traceback" not in node.output()
