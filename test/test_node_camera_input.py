"""Input as real cameras give it (issue 14), over real DDS on loopback.

Two partseg nodes run the default backend on one generated study view: ``partseg`` reads raw
images, ``partseg_c`` reads a jpeg/png CompressedImage and image_transport's compressedDepth.
Both get their relative input topics remapped the ROS way (``-r color/image_raw:=/rig/cam/...``,
no camera_namespace parameter), so every answer here also shows that remapped topics work.
Answers are fetched with ``~/ask``, the service that grounds an instruction on the next frame.
"""

import re
import sys
import time

import numpy as np
import pytest
from sensor_msgs.msg import CompressedImage
from std_msgs.msg import Header

from node_harness import (
    BACKEND,
    OPTICAL_FRAME,
    PARAMS_FILE,
    NodeProcess,
    Probe,
    array_to_image,
    camera_info_msg,
    depth_mm_msg,
)
from partseg.srv import AskParts
from partseg_ros.ros.compressed import encode_color, encode_depth
from partseg_ros.ros.conversions import image_to_mask
from partseg_ros.ros.sync import stamp_to_ns
from partseg_ros.scene.render import render_study_view

pytestmark = pytest.mark.slow

CAMERA_NS = "/rig/cam"  # where the "driver" publishes; neither node has it in its parameters
STALL_WARN_S = 1.0


def _remaps(namespace: str) -> list[str]:
    args = []
    for topic in ("color/image_raw", "aligned_depth_to_color/image_raw", "color/camera_info"):
        args += ["-r", f"{topic}:={namespace}/{topic}"]
    return args


def _node(name: str, *params: str) -> NodeProcess:
    args = [sys.executable, "-m", "partseg_ros.ros.node", "--ros-args", "--params-file", str(PARAMS_FILE),
            "-r", f"__node:={name}", *_remaps(CAMERA_NS), "-p", "autostart:=true", "-p", f"backend:={BACKEND}",
            "-p", "device:=cpu", "-p", "diagnostics.period_s:=0.25", "-p", f"sync.stall_warn_s:={STALL_WARN_S}"]
    for param in params:
        args += ["-p", param]
    return NodeProcess(args)


@pytest.fixture(scope="module")
def view():
    return render_study_view("kitchen", view_index=0, seed=0)


@pytest.fixture(scope="module")
def system():
    raw_node = _node("partseg")
    compressed_node = _node("partseg_c", "transport.color:=compressed", "transport.depth:=compressedDepth")
    probe = Probe(camera_ns=CAMERA_NS)
    node = probe.node
    qos = probe.color_pub.qos_profile
    probe.color_compressed_pub = node.create_publisher(CompressedImage, f"{CAMERA_NS}/color/image_raw/compressed", qos)
    probe.depth_compressed_pub = node.create_publisher(
        CompressedImage, f"{CAMERA_NS}/aligned_depth_to_color/image_raw/compressedDepth", qos)
    probe.ask_raw = node.create_client(AskParts, "/partseg/ask")
    probe.ask_compressed = node.create_client(AskParts, "/partseg_c/ask")
    try:
        probe.wait_connected(timeout=180)
        pubs = (probe.color_compressed_pub, probe.depth_compressed_pub)
        probe.wait_for(lambda: all(p.get_subscription_count() > 0 for p in pubs), 180, "compressed subscriptions")
        for client in (probe.ask_raw, probe.ask_compressed):
            assert client.wait_for_service(timeout_sec=180), f"{client.srv_name} not available"
        yield probe, raw_node, compressed_node
    finally:
        probe.close()
        nodes = (("raw", raw_node), ("compressed", compressed_node))
        logs = {name: process.output()[-3000:] for name, process in nodes}
        codes = {"raw": raw_node.stop(), "compressed": compressed_node.stop()}  # both stopped before asserting
        assert codes == {"raw": 0, "compressed": 0}, (codes, logs)


def _ask(probe: Probe, client, instruction: str, min_stamp_ns: int = 0, timeout_s: float = 20.0):
    request = AskParts.Request(instruction=instruction, min_stamp_ns=min_stamp_ns, timeout_s=timeout_s)
    return client.call_async(request)


def _result(probe: Probe, future, timeout: float = 60.0) -> AskParts.Response:
    probe.wait_for(future.done, timeout, "the ask response")
    return future.result()


def _publish(probe: Probe, view, stamp, color=True, compressed=None, depth_raw=None, depth_compressed=None,
             info=True) -> Header:
    """One frame under ``stamp``: camera_info, raw and/or compressed depth and colour."""
    header = Header(stamp=stamp, frame_id=OPTICAL_FRAME)
    if info:
        message = camera_info_msg(view.intrinsics)
        message.header = header
        probe.info_pub.publish(message)
    if depth_raw is not None:
        depth_raw.header = header
        probe.depth_pub.publish(depth_raw)
    if depth_compressed is not None:
        fmt, data = depth_compressed
        probe.depth_compressed_pub.publish(CompressedImage(header=header, format=fmt, data=data))
    if color:
        message = array_to_image(view.rgb, "rgb8")
        message.header = header
        probe.color_pub.publish(message)
    if compressed is not None:
        fmt, data = compressed
        probe.color_compressed_pub.publish(CompressedImage(header=header, format=fmt, data=data))
    return header


def _mask(response) -> np.ndarray:
    masks = [image_to_mask(i.mask) for i in response.segmentation.instances]
    return np.logical_or.reduce(masks) if masks else None


def _task(view):
    return next(t for t in view.tasks if t.target_part_ids)


def test_compressed_colour_and_depth_give_the_raw_result(system, view):
    """png colour + compressedDepth 16UC1 decode to the raw pixels: the same parts, masks and grasp regions."""
    probe, _, _ = system
    task = _task(view)
    depth = depth_mm_msg(view.depth_m)
    millimetres = np.frombuffer(depth.data, dtype=np.uint16).reshape(view.depth_m.shape)
    stamp = probe.stamp()
    stamp_ns = stamp_to_ns(stamp)
    raw_future = _ask(probe, probe.ask_raw, task.instruction, stamp_ns)
    compressed_future = _ask(probe, probe.ask_compressed, task.instruction, stamp_ns)
    header = _publish(probe, view, stamp, compressed=encode_color(view.rgb, "png"), depth_raw=depth,
                      depth_compressed=encode_depth(millimetres, "16UC1"))
    raw, compressed = _result(probe, raw_future), _result(probe, compressed_future)
    assert raw.success and compressed.success, (raw.message, compressed.message)
    for response in (raw, compressed):
        assert response.segmentation.header.stamp == header.stamp
    assert raw.segmentation.instances, "the study task has a target: the raw stream must find it"
    assert [(i.object_label, i.part_label) for i in compressed.segmentation.instances] == [
        (i.object_label, i.part_label) for i in raw.segmentation.instances]
    assert np.array_equal(_mask(raw), _mask(compressed))
    for a, b in zip(raw.grasp_regions.regions, compressed.grasp_regions.regions):
        pa, pb = a.centroid_pose.position, b.centroid_pose.position
        assert np.allclose([pa.x, pa.y, pa.z], [pb.x, pb.y, pb.z], atol=1e-6)
        assert len(a.grasp_poses) == len(b.grasp_poses)

    # jpeg colour (lossy) and 32FC1 metres as quantised inverse depth: the same part, nearly the same mask.
    stamp = probe.stamp()
    future = _ask(probe, probe.ask_compressed, task.instruction, stamp_to_ns(stamp))
    _publish(probe, view, stamp, color=False, compressed=encode_color(view.rgb, "jpeg", quality=95),
             depth_compressed=encode_depth(view.depth_m, "32FC1"))
    lossy = _result(probe, future)
    assert lossy.success, lossy.message
    assert lossy.segmentation.instances[0].part_label == raw.segmentation.instances[0].part_label
    a, b = _mask(raw), _mask(lossy)
    assert (a & b).sum() / (a | b).sum() >= 0.8


def test_ask_answers_on_a_frame_published_after_the_call(system, view):
    probe, _, _ = system
    task = _task(view)
    depth = depth_mm_msg(view.depth_m)
    before = _publish(probe, view, probe.stamp(), depth_raw=depth)  # a frame the answer must not use
    time.sleep(0.3)
    future = _ask(probe, probe.ask_raw, task.instruction)  # no stamp: the next frame completed after the call
    time.sleep(0.5)  # the request reaches the node before the frame below is published
    assert not future.done(), "answered without a new frame"
    after = _publish(probe, view, probe.stamp(), depth_raw=depth_mm_msg(view.depth_m))
    response = _result(probe, future)
    assert response.success, response.message
    assert response.segmentation.header.stamp == after.stamp != before.stamp
    assert response.grasp_regions.header.stamp == after.stamp
    assert response.segmentation.instruction == task.instruction
    # No frame at all: a clear failure when the timeout ends, not a hang.
    started = time.monotonic()
    empty = _result(probe, _ask(probe, probe.ask_raw, task.instruction, timeout_s=0.5))
    assert not empty.success and empty.message.startswith("ask_timeout")
    assert time.monotonic() - started < 10.0


def test_depth_at_half_resolution_is_registered_to_colour(system, view):
    probe, _, _ = system
    task = _task(view)
    full_stamp = probe.stamp()
    future = _ask(probe, probe.ask_raw, task.instruction, stamp_to_ns(full_stamp))
    _publish(probe, view, full_stamp, depth_raw=depth_mm_msg(view.depth_m))
    full = _result(probe, future)
    time.sleep(0.1)
    half_stamp = probe.stamp()
    future = _ask(probe, probe.ask_raw, task.instruction, stamp_to_ns(half_stamp))
    _publish(probe, view, half_stamp, depth_raw=depth_mm_msg(view.depth_m[::2, ::2]))  # 320x240 for 640x480
    half = _result(probe, future)
    assert full.success and half.success, (full.message, half.message)
    assert half.segmentation.instances[0].part_label == full.segmentation.instances[0].part_label
    a = full.grasp_regions.regions[0].centroid_pose.position
    b = half.grasp_regions.regions[0].centroid_pose.position
    assert np.linalg.norm([a.x - b.x, a.y - b.y, a.z - b.z]) < 0.01


def test_metres_in_16uc1_warn_once_and_give_no_output(system, view):
    """A driver publishing 16UC1 in metres: one warning naming depth.scale, counted rejections, no answer."""
    probe, raw_node, _ = system
    task = _task(view)
    metres = np.where(np.isfinite(view.depth_m), np.round(view.depth_m), 0).astype(np.uint16)
    before = probe.counter("rejected.depth_units")
    headers = []
    for _ in range(3):
        stamp = probe.stamp()
        future = _ask(probe, probe.ask_raw, task.instruction, stamp_to_ns(stamp))
        headers.append(_publish(probe, view, stamp, depth_raw=array_to_image(metres, "16UC1")))
        response = _result(probe, future)
        assert not response.success and response.message.startswith("depth_units"), response.message
        assert "depth.scale:=1" in response.message
        time.sleep(0.1)
    assert probe.wait_counter_increase("rejected.depth_units", before + 2) >= before + 3
    log = raw_node.output()
    assert log.count("rejected (depth_units") == 1, "one warning, then counted"
    assert "depth.scale:=1" in log
    time.sleep(0.5)
    assert all(probe.results_for(h) == (None, None) for h in headers), "no silent wrong output on the topics"


def test_a_stalled_synchroniser_says_which_stream_and_what_to_change(system, view):
    probe, raw_node, _ = system
    depth = depth_mm_msg(view.depth_m)
    deadline = time.monotonic() + STALL_WARN_S * 3
    while time.monotonic() < deadline and "no synchronised frame" not in raw_node.output():
        stamp = probe.stamp()
        _publish(probe, view, stamp, depth_raw=None)  # colour + camera_info now
        late = probe.stamp(-0.04)  # depth stamped 40 ms earlier than colour: beyond the 15 ms slop
        depth.header = Header(stamp=late, frame_id=OPTICAL_FRAME)
        probe.depth_pub.publish(depth)
        time.sleep(0.1)
    log = raw_node.output()
    line = next((ln for ln in log.splitlines() if "no synchronised frame" in ln), "")
    found = re.search(r"depth: arrives, but its stamps are (-\d+\.\d) ms from colour's; raise sync\.slop_s", line)
    assert found and -60 < float(found.group(1)) < -25, log[-3000:]
    # camera_info shares colour's stamps, but when the warning is written the colour image of the newest
    # camera_info may still be on its way (a loaded machine), so its offset is then read against the previous
    # frame; what must hold is that camera_info is not blamed as missing or silent.
    assert "camera_info: nothing received" not in line and "camera_info: last message" not in line, line


def test_ask_with_a_stamp_takes_a_frame_that_came_before_the_request(system, view):
    """What the evaluator relies on: with min_stamp_ns, request and frame may arrive in either order."""
    probe, _, _ = system
    task = _task(view)
    header = _publish(probe, view, probe.stamp(), depth_raw=depth_mm_msg(view.depth_m))
    time.sleep(0.3)  # the frame is in the node before the request
    response = _result(probe, _ask(probe, probe.ask_raw, task.instruction, stamp_to_ns(header.stamp)))
    assert response.success and response.segmentation.header.stamp == header.stamp, response.message
