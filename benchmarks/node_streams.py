"""The camera side of the node benchmarks, written once.

``bench_node_overhead`` (lock-step frames) and ``bench_node_soak`` (a 30 Hz
camera) both stand in for a camera driver and an operator: a probe node
publishes colour, depth, camera_info and the instruction to the node under
test and spins its own subscriptions on a thread. They differ in how often
they publish, not in what or on which topics, so the topics and QoS live here.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path
from subprocess import Popen
from typing import Any, Callable


@dataclass
class CameraStreams:
    """The probe's publishers and the thread spinning its subscriptions."""

    color: Any
    depth: Any
    info: Any
    instruction: Any
    executor: Any
    spinner: threading.Thread

    def publish_frame(self, color: Any, depth: Any, info: Any) -> None:
        """camera_info and depth first: the node pairs a frame when its colour image arrives."""
        self.info.publish(info)
        self.depth.publish(depth)
        self.color.publish(color)

    def wait_for_node(self, node: Popen, log: Path, ready: Callable[[], bool], timeout_s: float = 180.0) -> None:
        """Until the node subscribes to every stream and ``ready()``; a node that dies or never comes up fails
        with the tail of its log."""
        deadline = time.monotonic() + timeout_s
        streams = (self.color, self.depth, self.info, self.instruction)
        while any(p.get_subscription_count() == 0 for p in streams) or not ready():
            if time.monotonic() > deadline or node.poll() is not None:
                raise RuntimeError("node did not come up:\n" + log.read_text()[-3000:])
            time.sleep(0.1)

    def close(self) -> None:
        self.executor.shutdown()
        self.spinner.join(timeout=5)


def start_camera_streams(probe: Any, namespace: str = "/camera", compressed: bool = False) -> CameraStreams:
    """Publishers on the node's camera topics (remapped to ``namespace``) and its instruction topic; with
    ``compressed`` image_transport's jpeg / compressedDepth sub-topics."""
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
    from sensor_msgs.msg import CameraInfo, CompressedImage, Image
    from std_msgs.msg import String

    sensor = qos_profile_sensor_data
    if compressed:
        color = probe.create_publisher(CompressedImage, f"{namespace}/color/image_raw/compressed", sensor)
        depth = probe.create_publisher(CompressedImage,
                                       f"{namespace}/aligned_depth_to_color/image_raw/compressedDepth", sensor)
    else:
        color = probe.create_publisher(Image, f"{namespace}/color/image_raw", sensor)
        depth = probe.create_publisher(Image, f"{namespace}/aligned_depth_to_color/image_raw", sensor)
    info = probe.create_publisher(CameraInfo, f"{namespace}/color/camera_info", sensor)
    latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                         durability=DurabilityPolicy.TRANSIENT_LOCAL)
    instruction = probe.create_publisher(String, "/partseg/instruction", latched)
    executor = SingleThreadedExecutor()
    executor.add_node(probe)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()
    return CameraStreams(color, depth, info, instruction, executor, spinner)
