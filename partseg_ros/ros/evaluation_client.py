"""The DDS side of the live evaluation path: feed the running node one task at a time.

This is the only evaluation module that imports rclpy; live.py imports it
lazily, so the rest of the evaluator works without ROS. For each task it asks
the node's ``~/ask`` service with the task's instruction and the stamp it is
about to give the frame, then publishes the task's camera_info, depth and
colour under that stamp; the response is the answer for exactly that frame.
Request and frame may reach the node in either order (the node takes the first
frame at or after the stamp, including one it already has), so there is no
sleep before publishing and no retry: a missing answer is a timeout with the
node's own diagnosis. End-to-end latency is measured from the colour's
publication to the response.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Optional

import numpy as np
import rclpy
from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import Header

from partseg.msg import GraspRegion, GraspRegionArray, PartSegmentation
from partseg.srv import AskParts
from partseg_ros.evaluation.scoring import Prediction
from partseg_ros.evaluation.tasks import EvalTask
from partseg_ros.ros.conversions import array_to_image, image_to_mask, intrinsics_to_camera_info
from partseg_ros.ros.node import diagnostics_to_dict


@dataclass(frozen=True)
class LiveTopics:
    color: str = "/camera/color/image_raw"
    depth: str = "/camera/aligned_depth_to_color/image_raw"
    camera_info: str = "/camera/color/camera_info"
    instruction: str = "/partseg/instruction"  # unused by the client (it asks); the node still offers it
    segmentation: str = "/partseg/segmentation"
    grasp_regions: str = "/partseg/grasp_regions"
    ask: str = "/partseg/ask"
    frame_id: str = "camera_color_optical_frame"


# Consecutive frames' stamps differ by at least this, wider than the node's default
# sync.slop_s (15 ms), so no message of one task's frame can pair with the next one's.
STAMP_GAP_NS = 50_000_000
# Stamps run at most this far ahead of the wall clock (the node refuses beyond 0.5 s by default).
MAX_AHEAD_NS = 200_000_000
# How long past its own timeout the client waits for the node's (failure) response.
RESPONSE_MARGIN_S = 10.0


class LiveTimeout(TimeoutError):
    """The node did not answer a task in time."""


def _stamp(ns: int) -> Time:
    return Time(sec=int(ns // 1_000_000_000), nanosec=int(ns % 1_000_000_000))


def _stamp_ns(stamp: Time) -> int:
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def prediction_from_messages(
    segmentation: PartSegmentation,
    grasp_regions: Optional[GraspRegionArray],
    shape: tuple[int, int],
    camera_frame: str,
    latency_ms: float,
) -> Prediction:
    """Rebuild the union mask and the top instance's grasp centroid from the node's messages."""
    mask = np.zeros(shape, dtype=bool)
    for instance in segmentation.instances:
        instance_mask = image_to_mask(instance.mask)
        if instance_mask.shape != shape:
            raise ValueError(f"node returned a {instance_mask.shape} mask for a {shape} image")
        mask |= instance_mask
    error = segmentation.explanation if segmentation.status == PartSegmentation.STATUS_ERROR else ""
    top = segmentation.instances[0] if segmentation.instances else None
    centroid, status = None, "no instance"
    if top is not None:
        region = None
        if grasp_regions is not None:
            region = next((r for r in grasp_regions.regions if r.instance_index == 0), None)
        if region is None:
            status = "no grasp region received"
        elif region.status != GraspRegion.STATUS_OK:
            status = region.status_reason or f"status {region.status}"
        elif grasp_regions.header.frame_id and grasp_regions.header.frame_id != camera_frame:
            # The criterion projects through the camera: a region in base_link cannot be scored.
            status = f"grasp region in frame {grasp_regions.header.frame_id!r}, not the camera frame"
        else:
            p = region.centroid_pose.position
            centroid, status = (float(p.x), float(p.y), float(p.z)), "ok"
    return Prediction(
        mask=mask,
        num_instances=len(segmentation.instances),
        object_label=(top.object_label if top is not None else "") or segmentation.object_label,
        part_label=(top.part_label if top is not None else "") or segmentation.part_label,
        grasp_centroid=centroid,
        grasp_status=status,
        latency_ms=latency_ms,
        error=error,
    )


class LiveClient:
    """A ROS node that asks the partseg node one task at a time through ``~/ask``."""

    def __init__(self, topics: LiveTopics = LiveTopics()) -> None:
        self.topics = topics
        self._context = rclpy.Context()
        rclpy.init(context=self._context)
        self._node = rclpy.create_node("partseg_evaluator", context=self._context)
        reliable = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE)
        node = self._node
        self._color = node.create_publisher(Image, topics.color, reliable)
        self._depth = node.create_publisher(Image, topics.depth, reliable)
        self._info = node.create_publisher(CameraInfo, topics.camera_info, reliable)
        self._ask = node.create_client(AskParts, topics.ask)
        self._lock = threading.Condition()
        self._executor = SingleThreadedExecutor(context=self._context)
        self._executor.add_node(node)
        self._node_state = ""
        node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, reliable)
        self._spinner = threading.Thread(target=self._executor.spin, daemon=True)
        self._spinner.start()
        self._last_stamp_ns = 0

    def _on_diagnostics(self, msg: DiagnosticArray) -> None:
        values = diagnostics_to_dict(msg)
        if values is not None:
            with self._lock:
                self._node_state = values.get("state", "")
                self._lock.notify_all()

    def wait_for_node(self, timeout_s: float) -> None:
        """Block until the partseg node is active (its diagnostics say so), its camera
        subscriptions are matched and ``~/ask`` is offered.

        Subscriptions exist from configure on, but frames are only processed once active.
        """
        deadline = time.monotonic() + timeout_s
        publishers = (self._color, self._depth, self._info)
        while time.monotonic() < deadline:
            inputs_ok = all(p.get_subscription_count() > 0 for p in publishers)
            if inputs_ok and self._ask.service_is_ready() and self._node_state == "active":
                return
            with self._lock:
                self._lock.wait(timeout=0.05)
        raise LiveTimeout(
            f"the partseg node was not active on the topics within {timeout_s:.0f} s (last state {self._node_state!r})"
        )

    def _next_stamp_ns(self) -> int:
        """Now, or ``STAMP_GAP_NS`` after the previous stamp when that is later.

        Stamping ahead instead of waiting costs nothing while tasks take longer than the
        gap (any real backend). With a microsecond backend the stamps would run ahead of
        the clock task after task until the node refuses them (limits.future_tolerance_s),
        so beyond ``MAX_AHEAD_NS`` this waits for the clock to catch up.
        """
        stamp = max(time.time_ns(), self._last_stamp_ns + STAMP_GAP_NS)
        ahead_ns = stamp - time.time_ns()
        if ahead_ns > MAX_AHEAD_NS:
            time.sleep((ahead_ns - MAX_AHEAD_NS) / 1e9)
        self._last_stamp_ns = stamp
        return stamp

    def _publish_frame(self, task: EvalTask, stamp_ns: int) -> float:
        """Publish camera_info, depth, then colour; returns the colour's publication time."""
        header = Header(stamp=_stamp(stamp_ns), frame_id=self.topics.frame_id)
        color = array_to_image(task.rgb, "rgb8", header)
        depth = array_to_image(np.ascontiguousarray(task.depth_m, dtype=np.float32), "32FC1", header)
        self._info.publish(intrinsics_to_camera_info(task.intrinsics, header))
        self._depth.publish(depth)
        sent = time.perf_counter()
        self._color.publish(color)
        return sent

    def ask(self, task: EvalTask, timeout_s: float) -> Prediction:
        """The node's answer to one task, for the frame this call publishes."""
        stamp_ns = self._next_stamp_ns()
        request = AskParts.Request(instruction=task.instruction, min_stamp_ns=stamp_ns, timeout_s=float(timeout_s))
        answered = threading.Event()
        future = self._ask.call_async(request)
        future.add_done_callback(lambda _: answered.set())
        sent = self._publish_frame(task, stamp_ns)
        if not answered.wait(timeout_s + RESPONSE_MARGIN_S):
            self._ask.remove_pending_request(future)
            raise LiveTimeout(f"task {task.task_id} ({task.instruction!r}): no response from {self.topics.ask}")
        latency_ms = (time.perf_counter() - sent) * 1000.0
        response: AskParts.Response = future.result()
        if not response.success and response.message.startswith("ask_timeout"):
            raise LiveTimeout(f"task {task.task_id} ({task.instruction!r}): {response.message}")
        segmentation = response.segmentation
        if not response.success:  # the node refused the frame or failed on it: scored as an error
            segmentation = PartSegmentation(status=PartSegmentation.STATUS_ERROR, explanation=response.message,
                                            instruction=task.instruction)
            return prediction_from_messages(segmentation, None, task.rgb.shape[:2], self.topics.frame_id, latency_ms)
        if _stamp_ns(segmentation.header.stamp) != stamp_ns:
            raise LiveTimeout(f"task {task.task_id}: answered on the frame stamped "
                              f"{_stamp_ns(segmentation.header.stamp)}, not on this task's frame {stamp_ns}")
        return prediction_from_messages(segmentation, response.grasp_regions, task.rgb.shape[:2],
                                        self.topics.frame_id, latency_ms)

    def close(self) -> None:
        self._executor.shutdown(timeout_sec=1.0)
        self._node.destroy_node()
        rclpy.shutdown(context=self._context)
        self._spinner.join(timeout=2.0)
