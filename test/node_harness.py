"""Shared by the node tests: start partseg as its own process and talk to it over real DDS.

Everything stays on loopback: the child gets dds_env.loopback_environment
(the same ROS_DOMAIN_ID as this pytest process, set by conftest), and this
process's probe node uses its own rclpy context.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import rclpy
import rclpy.duration
from diagnostic_msgs.msg import DiagnosticArray
from lifecycle_msgs.msg import Transition
from lifecycle_msgs.srv import ChangeState, GetState
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import Header, String

from partseg.msg import GraspRegionArray, PartSegmentation
from partseg.srv import SegmentParts
from partseg_ros.ros.bringup_spec import remapping_arguments
from partseg_ros.ros.conversions import array_to_image, intrinsics_to_camera_info
from partseg_ros.ros.dds_env import loopback_environment
from partseg_ros.ros.node import diagnostics_to_dict
from partseg_ros.types import CameraIntrinsics

ROOT = Path(__file__).resolve().parents[1]
PARAMS_FILE = ROOT / "config" / "partseg.yaml"
CAMERA_NS = "/camera"  # where the tests publish camera topics (the benchmark bags' namespace)
# The node's input topics are relative; remapped under CAMERA_NS as bringup does.
CAMERA_REMAPS = remapping_arguments(CAMERA_NS)
OPTICAL_FRAME = "camera_color_optical_frame"
INSTRUCTION_QOS = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL)
RELIABLE = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
# The node tests run the project's default backend; another one can be tried with this variable.
BACKEND = os.environ.get("PARTSEG_NODE_TEST_BACKEND", "shapegrasp")


class NodeProcess:
    """A child process running partseg (node or bringup), its log kept in a temp file."""

    def __init__(self, command: list[str], extra_env: Optional[dict[str, str]] = None) -> None:
        env = loopback_environment(base=os.environ)
        env["PYTHONUNBUFFERED"] = "1"
        env.update(extra_env or {})
        self.log = tempfile.NamedTemporaryFile("w+", prefix="partseg_node_", suffix=".log", delete=False)
        self.process = subprocess.Popen(command, env=env, stdout=self.log, stderr=subprocess.STDOUT, cwd=ROOT)

    @classmethod
    def node(cls, *ros_args: str) -> "NodeProcess":
        return cls([sys.executable, "-m", "partseg_ros.ros.node", "--ros-args", "--params-file", str(PARAMS_FILE),
                    *CAMERA_REMAPS, *ros_args])

    def alive(self) -> bool:
        return self.process.poll() is None

    def output(self) -> str:
        self.log.flush()
        return Path(self.log.name).read_text(errors="replace")

    def stop(self, timeout: float = 20.0) -> int:
        if self.alive():
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()
        os.unlink(self.log.name)
        return self.process.returncode


class Probe:
    """A test-side node: camera and instruction publishers, result subscribers, lifecycle clients."""

    def __init__(self, node_name: str = "partseg", camera_ns: str = CAMERA_NS) -> None:
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node("partseg_test_probe", context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self._lock = threading.Lock()
        self.segmentations: list[PartSegmentation] = []
        self.grasp_regions: list[GraspRegionArray] = []
        self.masks: list[Image] = []
        self.debug_images: list[Image] = []
        self.diagnostics: Optional[dict[str, str]] = None
        self.diagnostics_count = 0
        n, base = self.node, f"/{node_name}"
        self.color_pub = n.create_publisher(Image, f"{camera_ns}/color/image_raw", qos_profile_sensor_data)
        self.depth_pub = n.create_publisher(Image, f"{camera_ns}/aligned_depth_to_color/image_raw",
                                            qos_profile_sensor_data)
        self.info_pub = n.create_publisher(CameraInfo, f"{camera_ns}/color/camera_info", qos_profile_sensor_data)
        self.instruction_pub = n.create_publisher(String, f"{base}/instruction", INSTRUCTION_QOS)
        n.create_subscription(PartSegmentation, f"{base}/segmentation", self._keep(self.segmentations), RELIABLE)
        n.create_subscription(GraspRegionArray, f"{base}/grasp_regions", self._keep(self.grasp_regions), RELIABLE)
        n.create_subscription(Image, f"{base}/mask", self._keep(self.masks), RELIABLE)
        n.create_subscription(Image, f"{base}/debug_image", self._keep(self.debug_images), RELIABLE)
        n.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, RELIABLE)
        self.get_state = n.create_client(GetState, f"{base}/get_state")
        self.change_state = n.create_client(ChangeState, f"{base}/change_state")
        self.segment_parts = n.create_client(SegmentParts, f"{base}/segment_parts")
        self._spinner = threading.Thread(target=self.executor.spin, daemon=True)
        self._spinner.start()

    def _keep(self, store: list) -> Callable:
        def callback(msg) -> None:
            with self._lock:
                store.append(msg)
        return callback

    def _on_diagnostics(self, msg: DiagnosticArray) -> None:
        values = diagnostics_to_dict(msg)
        if values is not None:
            with self._lock:
                self.diagnostics = values
                self.diagnostics_count += 1

    # ---- waiting ----------------------------------------------------------------------------------
    @staticmethod
    def wait_for(predicate: Callable[[], bool], timeout: float, what: str = "condition") -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
            time.sleep(0.05)

    def wait_connected(self, timeout: float = 60.0, depth: bool = True) -> None:
        """Until the node's camera subscriptions and our result subscriptions are matched."""
        pubs = [self.color_pub, self.info_pub, self.instruction_pub] + ([self.depth_pub] if depth else [])
        self.wait_for(lambda: all(p.get_subscription_count() > 0 for p in pubs), timeout, "node subscriptions")
        self.wait_for(lambda: self.node.count_publishers("/partseg/segmentation") > 0, timeout, "node publishers")

    def fresh_diagnostics(self, timeout: float = 10.0) -> dict[str, str]:
        """The next diagnostics message published after this call."""
        seen = self.diagnostics_count
        self.wait_for(lambda: self.diagnostics_count > seen, timeout, "diagnostics")
        with self._lock:
            return dict(self.diagnostics)

    def counter(self, key: str, timeout: float = 10.0) -> int:
        return int(float(self.fresh_diagnostics(timeout).get(key, "0")))

    def wait_counter_increase(self, key: str, before: int, timeout: float = 15.0) -> int:
        deadline = time.monotonic() + timeout
        while True:
            value = self.counter(key, timeout)
            if value > before or time.monotonic() > deadline:
                return value

    # ---- publishing -------------------------------------------------------------------------------
    def stamp(self, offset_s: float = 0.0):
        return (self.node.get_clock().now() + rclpy.duration.Duration(nanoseconds=int(offset_s * 1e9))).to_msg()

    def send_instruction(self, text: str) -> None:
        self.instruction_pub.publish(String(data=text))

    def send_frame(
        self,
        color: Image,
        depth: Optional[Image],
        info: Optional[CameraInfo],
        stamp=None,
    ) -> Header:
        header = Header(stamp=stamp or self.stamp(), frame_id=OPTICAL_FRAME)
        if info is not None:
            info.header = header
            self.info_pub.publish(info)
        if depth is not None:
            depth.header = header
            self.depth_pub.publish(depth)
        color.header = header
        self.color_pub.publish(color)
        return header

    def results_for(self, header: Header) -> tuple[Optional[PartSegmentation], Optional[GraspRegionArray]]:
        with self._lock:
            seg = next((m for m in self.segmentations if m.header.stamp == header.stamp), None)
            regions = next((m for m in self.grasp_regions if m.header.stamp == header.stamp), None)
        return seg, regions

    def wait_results(self, header: Header, timeout: float = 60.0) -> tuple[PartSegmentation, GraspRegionArray]:
        self.wait_for(lambda: all(r is not None for r in self.results_for(header)), timeout,
                      f"results for stamp {header.stamp.sec}.{header.stamp.nanosec:09d}")
        return self.results_for(header)

    # ---- services ---------------------------------------------------------------------------------
    def call(self, client, request, timeout: float = 60.0, resend_after: Optional[float] = None):
        """The service's response; ``resend_after`` (for requests safe to repeat) asks again after that many seconds.

        ``wait_for_service`` can be satisfied by a server that is gone: a node an earlier test killed stays in
        this process's discovery until its lease runs out, and a request sent then goes to it and not to a new
        node not yet matched. A query is resent; a state change is not (it may have happened).
        """
        if not client.wait_for_service(timeout_sec=timeout):
            raise TimeoutError(f"service {client.srv_name} not available")
        deadline = time.monotonic() + timeout
        while True:
            future = client.call_async(request)
            wait = min(resend_after or timeout, max(deadline - time.monotonic(), 0.0))
            try:
                self.wait_for(future.done, wait, f"response from {client.srv_name}")
                return future.result()
            except TimeoutError:
                client.remove_pending_request(future)
                if time.monotonic() >= deadline:
                    raise TimeoutError(f"timed out after {timeout:.0f} s waiting for response from "
                                       f"{client.srv_name}") from None

    def lifecycle_state(self) -> str:
        return self.call(self.get_state, GetState.Request(), resend_after=5.0).current_state.label

    def transition(self, transition_id: int, timeout: float = 120.0) -> bool:
        request = ChangeState.Request()
        request.transition.id = transition_id
        return bool(self.call(self.change_state, request, timeout).success)

    def refused_configure(self, node: "NodeProcess") -> str:
        """The node's output after configure failed cleanly: still unconfigured, still running, and saying so."""
        assert self.lifecycle_state() == "unconfigured"
        assert not self.transition(Transition.TRANSITION_CONFIGURE)
        assert self.lifecycle_state() == "unconfigured"
        assert node.alive()
        out = node.output()
        assert "configure failed" in out, out[-3000:]
        return out

    def close(self) -> None:
        self.executor.shutdown()
        self._spinner.join(timeout=5.0)
        self.node.destroy_node()
        rclpy.shutdown(context=self.context)


# ---- frames ---------------------------------------------------------------------------------------

def camera_info_msg(intrinsics: CameraIntrinsics) -> CameraInfo:
    return intrinsics_to_camera_info(intrinsics)


def depth_mm_msg(depth_m: np.ndarray) -> Image:
    """16UC1 millimetres, 0 where the sensor has nothing (as a RealSense publishes it)."""
    millimetres = np.where(np.isfinite(depth_m), np.round(depth_m * 1000.0), 0).astype(np.uint16)
    return array_to_image(millimetres, "16UC1")


def rendered_frame(view) -> tuple[Image, Image, CameraInfo]:
    """Messages for one partseg_ros.scene.render.RenderedView."""
    return array_to_image(view.rgb, "rgb8"), depth_mm_msg(view.depth_m), camera_info_msg(view.intrinsics)


def true_part_points(view, part_ids, within: Optional[np.ndarray] = None) -> np.ndarray:
    """Camera-frame points of the true part (optionally only inside a mask), from the noise-free depth."""
    mask = np.isin(view.part_ids, list(part_ids)) & np.isfinite(view.depth_clean_m)
    if within is not None:
        mask &= within
    rows, cols = np.nonzero(mask)
    k = view.intrinsics
    z = view.depth_clean_m[rows, cols].astype(np.float64)
    return np.stack([(cols - k.cx) / k.fx * z, (rows - k.cy) / k.fy * z, z], axis=1)
