"""The perception node's own cost per 640x480 RGB-D frame, and DDS latency on loopback.

Two measurements:

1. Over DDS (the real thing): the node runs as its own process with the
   configured backend; this script publishes rendered 640x480 rgb8 + 16UC1
   frames with camera_info, one at a time (lock-step, so the model never
   competes with the next frame's decoding), and reads the node's
   diagnostics: ``overhead`` is everything the node does per frame except the
   backend forward (decode, checks, pairing, grasp-region projection, message
   building, publishing); ``transport`` is camera publish -> node callback.
   The result's way back (node publish -> this process) is measured here.
2. In process, the same functions the node calls, timed one by one on the
   same frame and the backend's real answer, to show where the time goes.

Compressed input (issue 14) is measured separately: the node reads
CompressedImage jpeg colour (quality 90) and compressedDepth PNG depth
(transport.color:=compressed, transport.depth:=compressedDepth); its overhead
then includes decoding them, which the raw path does not pay.

Run:  python benchmarks/bench_node_overhead.py [--frames 30] [--backend shapegrasp]
Target: overhead median <= 5 ms on the development machine.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from partseg_ros.ros.bringup_spec import remapping_arguments  # noqa: E402
from partseg_ros.ros.dds_env import apply_loopback_environment, loopback_environment  # noqa: E402
from node_streams import start_camera_streams  # noqa: E402  (benchmarks/, the script's own folder)


def render_frame(scene: str, view: int, seed: int):
    from partseg_ros.scene.render import render_study_view

    return render_study_view(scene, view_index=view, seed=seed)


def frame_messages(view):
    from partseg_ros.ros.conversions import array_to_image
    from sensor_msgs.msg import CameraInfo

    k = view.intrinsics
    info = CameraInfo(width=k.width, height=k.height, distortion_model="plumb_bob", d=[0.0] * 5)
    info.k = [k.fx, 0.0, k.cx, 0.0, k.fy, k.cy, 0.0, 0.0, 1.0]
    info.p = [k.fx, 0.0, k.cx, 0.0, 0.0, k.fy, k.cy, 0.0, 0.0, 0.0, 1.0, 0.0]
    millimetres = np.where(np.isfinite(view.depth_m), np.round(view.depth_m * 1000), 0).astype(np.uint16)
    return array_to_image(view.rgb, "rgb8"), array_to_image(millimetres, "16UC1"), info


def compressed_messages(view):
    """(colour, depth) CompressedImages as a driver's image_transport publishes them: jpeg 90, compressedDepth png."""
    from sensor_msgs.msg import CompressedImage

    from partseg_ros.ros.compressed import encode_color, encode_depth

    millimetres = np.where(np.isfinite(view.depth_m), np.round(view.depth_m * 1000), 0).astype(np.uint16)
    color_format, color_data = encode_color(view.rgb, "jpeg", quality=90)
    depth_format, depth_data = encode_depth(millimetres, "16UC1")
    return (CompressedImage(format=color_format, data=color_data),
            CompressedImage(format=depth_format, data=depth_data))


def over_dds(args, view, instruction: str, visuals: bool, compressed: bool = False) -> dict[str, float]:
    """Lock-step frames through a node process; with ``visuals`` also listen to mask, debug image, markers;
    with ``compressed`` the camera streams are jpeg CompressedImage + compressedDepth."""
    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image
    from std_msgs.msg import Header, String

    from partseg.msg import PartSegmentation
    from partseg_ros.ros.node import diagnostics_to_dict

    log = tempfile.NamedTemporaryFile("w+", prefix="partseg_bench_", suffix=".log", delete=False)
    node = subprocess.Popen(
        [sys.executable, "-m", "partseg_ros.ros.node", "--ros-args", "--params-file",
         str(ROOT / "config" / "partseg.yaml"),
         *remapping_arguments("/camera"), "-p", "autostart:=true", "-p", f"backend:={args.backend}",
         "-p", "device:=cpu", "-p", "diagnostics.period_s:=0.5",
         *(["-p", "transport.color:=compressed", "-p", "transport.depth:=compressedDepth"] if compressed else [])],
        env=loopback_environment(base=os.environ), stdout=log, stderr=subprocess.STDOUT, cwd=ROOT,
    )
    rclpy.init()
    probe = rclpy.create_node("partseg_bench_probe")
    results: dict = {}
    back_ms: list[float] = []
    diagnostics: list[dict] = []

    def on_result(msg: PartSegmentation) -> None:
        arrival = probe.get_clock().now().nanoseconds
        stamp = msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec
        back_ms.append((arrival - stamp) / 1e6 - msg.latency_ms)
        results[(msg.header.stamp.sec, msg.header.stamp.nanosec)] = msg

    reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
    probe.create_subscription(PartSegmentation, "/partseg/segmentation", on_result, reliable)
    # A planner listens to the results; RViz adds the views for people, which the node only builds
    # when someone listens.
    from partseg.msg import GraspRegionArray
    from visualization_msgs.msg import MarkerArray

    received = {"grasp_regions": 0, "mask": 0, "debug_image": 0, "markers": 0}

    def count(key):
        def callback(_msg) -> None:
            received[key] += 1
        return callback

    outputs = [("grasp_regions", GraspRegionArray)]
    if visuals:
        outputs += [("mask", Image), ("debug_image", Image), ("markers", MarkerArray)]
    for key, msg_type in outputs:
        probe.create_subscription(msg_type, f"/partseg/{key}", count(key), reliable)
    probe.create_subscription(DiagnosticArray, "/diagnostics",
                              lambda m: diagnostics.append(diagnostics_to_dict(m) or {}), reliable)
    streams = start_camera_streams(probe, "/camera", compressed)  # where the node's camera topics are remapped to
    try:
        streams.wait_for_node(node, Path(log.name), lambda: probe.count_publishers("/partseg/markers") > 0)
        streams.instruction.publish(String(data=instruction))
        time.sleep(0.5)
        color, depth, info = frame_messages(view)
        if compressed:
            color, depth = compressed_messages(view)
        sent = answered = 0
        for _ in range(args.frames + 1):  # frame 0 warms up and may race the first camera_info
            header = Header(stamp=probe.get_clock().now().to_msg(), frame_id="camera_color_optical_frame")
            color.header = depth.header = info.header = header
            streams.publish_frame(color, depth, info)
            sent += 1
            key = (header.stamp.sec, header.stamp.nanosec)
            wait_until = time.monotonic() + 30
            while key not in results and time.monotonic() < wait_until:
                time.sleep(0.002)
            answered += key in results
            time.sleep(0.05)  # let the node go idle between frames
        count = len(diagnostics)
        while len(diagnostics) < count + 2:
            time.sleep(0.05)
        values = diagnostics[-1]
    finally:
        streams.close()
        probe.destroy_node()
        rclpy.shutdown()
        node.send_signal(signal.SIGINT)
        node.wait(timeout=30)
        os.unlink(log.name)
    figures = {k: float(v) for k, v in values.items() if k.endswith("_ms")}
    figures["result_back_p50_ms"] = float(np.percentile(back_ms[1:], 50))
    figures["result_back_p95_ms"] = float(np.percentile(back_ms[1:], 95))
    figures["frames_sent"], figures["frames_answered"] = sent, answered
    figures["outputs_received"] = dict(received)
    return figures


def in_process(args, view, instruction: str, repeats: int = 30) -> dict[str, float]:
    from rclpy.serialization import serialize_message
    from std_msgs.msg import Header

    from partseg_ros.backends.registry import create_backend
    from partseg_ros.geometry.grasp_region import compute_grasp_region
    from partseg_ros.ros import messages
    from partseg_ros.ros.conversions import array_to_image, mask_to_image
    from partseg_ros.ros.overlay import debug_overlay
    from partseg_ros.ros.sync import ApproximateTimeSync
    from partseg_ros.ros.validation import InputLimits, decode_frame
    from partseg_ros.types import GroundingRequest

    color, depth, info = frame_messages(view)
    decoded = decode_frame(color, depth, info, InputLimits())
    backend = create_backend(args.backend, device="cpu")
    backend.load()
    result = backend.ground(GroundingRequest(decoded.rgb, instruction, decoded.depth_m, decoded.intrinsics))
    header = Header(frame_id="camera_color_optical_frame")
    region = None

    def pairing():
        sync = ApproximateTimeSync(["color", "camera_info", "depth"], 15_000_000, 10)
        for stream, msg in (("camera_info", info), ("depth", depth), ("color", color)):
            sync.add(stream, 1_000, msg)

    def grasp():
        nonlocal region
        region = [compute_grasp_region(i.mask, decoded.depth_m, decoded.camera, rgb=decoded.rgb)
                  for i in result.instances]

    from partseg_ros.ros.compressed import decode_compressed_color, decode_compressed_depth

    jpeg, png_depth = compressed_messages(view)
    stages = {
        "decode + checks": lambda: decode_frame(color, depth, info, InputLimits()),
        "compressed: jpeg colour decode": lambda: decode_compressed_color(jpeg.format, jpeg.data, 8192, 8192),
        "compressed: compressedDepth decode": lambda: decode_compressed_depth(
            png_depth.format, png_depth.data, 8192, 8192),
        "pairing": pairing,
        "grasp region geometry": grasp,
    }
    grasp()
    seg = messages.segmentation_msg(result, header, instruction)
    regions = messages.grasp_region_array_msg(
        header, instruction, [messages.grasp_region_msg(r, header, i, "o", "p") for i, r in enumerate(region)])
    overlay = debug_overlay(decoded.rgb, result.instances)
    stages.update({
        "result messages": lambda: (messages.segmentation_msg(result, header, instruction), [
            messages.grasp_region_msg(r, header, i, "o", "p") for i, r in enumerate(region)]),
        "union mask image": lambda: mask_to_image(result.union_mask(decoded.rgb.shape[:2]), header),
        "debug overlay image": lambda: array_to_image(debug_overlay(decoded.rgb, result.instances), "rgb8", header),
        "markers": lambda: messages.markers_msg(regions),
        "serialisation (publish)": lambda: [serialize_message(m) for m in (
            seg, regions, array_to_image(overlay, "rgb8", header), messages.markers_msg(regions))],
    })
    out = {}
    for name, stage in stages.items():
        stage()
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            stage()
            times.append((time.perf_counter() - start) * 1e3)
        out[name] = float(np.median(times))
    out["mask pixels"] = int(sum(i.mask.sum() for i in result.instances))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=30)
    parser.add_argument("--backend", default="shapegrasp")
    parser.add_argument("--scene", default="kitchen")
    parser.add_argument("--view", type=int, default=0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--task", type=int, default=1, help="index of the scene's study task to ask")
    parser.add_argument("--skip-dds", action="store_true")
    args = parser.parse_args()
    apply_loopback_environment(int(os.environ.get("ROS_DOMAIN_ID", np.random.default_rng().integers(100, 200))))

    view = render_frame(args.scene, args.view, args.seed)
    instruction = view.tasks[args.task].instruction
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    print(f"machine: {os.cpu_count()} CPUs, load average {load} (figures scale with contention)")
    print(f"frame: {args.scene} view {args.view} seed {args.seed}, 640x480 rgb8 + 16UC1, "
          f"instruction {instruction!r}, backend {args.backend}")
    stages = in_process(args, view, instruction)
    print(f"\nin process, median of 30 (mask of {stages.pop('mask pixels')} px):")
    for name, ms in stages.items():
        print(f"  {name:36s} {ms:7.2f} ms")
    raw_sum = sum(v for k, v in stages.items() if not k.startswith("compressed"))
    print(f"  {'sum (raw input)':36s} {raw_sum:7.2f} ms")
    if args.skip_dds:
        return 0
    for visuals, compressed, title in (
            (False, False, "a planner listening to segmentation + grasp_regions"),
            (True, False, "plus RViz: mask, debug_image and markers too"),
            (False, True, "COMPRESSED input (jpeg 90 colour + compressedDepth png), a planner listening")):
        figures = over_dds(args, view, instruction, visuals, compressed)
        print(f"\nover DDS on loopback, node as its own process, {title} "
              f"({figures['frames_answered']}/{figures['frames_sent']} frames answered):")
        print(f"  outputs received: {figures['outputs_received']}")
        print(f"  node overhead per frame (all but the backend forward): "
              f"p50 {figures['overhead_p50_ms']:.2f} ms, p95 {figures['overhead_p95_ms']:.2f} ms  "
              + ("(includes decoding the compressed images)" if compressed else "(target p50 <= 5 ms)"))
        stages = {k[len("stage."):-len("_p50_ms")]: v for k, v in figures.items() if k.startswith("stage.")}
        print("    of which (p50): " + ", ".join(f"{name} {ms:.2f} ms" for name, ms in stages.items()))
        print(f"  DDS camera -> node (publish -> callback):  p50 {figures['transport_p50_ms']:.2f} ms, "
              f"p95 {figures['transport_p95_ms']:.2f} ms")
        print(f"  DDS node -> planner (result publish -> receive): p50 {figures['result_back_p50_ms']:.2f} ms, "
              f"p95 {figures['result_back_p95_ms']:.2f} ms")
        print(f"  backend forward p50 {figures['inference_p50_ms']:.1f} ms; stamp -> result published "
              f"p50 {figures['latency_p50_ms']:.1f} ms, p95 {figures['latency_p95_ms']:.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
