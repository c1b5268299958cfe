"""The DDS side of the live evaluation path: feed the running node one task at a time.

This is the only evaluation module that imports rclpy; live.py imports it
lazily, so the rest of the evaluator works without ROS. For each task it
publishes the instruction, then the task's colour, depth and camera_info
under a fresh stamp, and waits for the PartSegmentation and GraspRegionArray
carrying that stamp before the next task: end-to-end latency is measured from
the frame's publication to the arrival of the answer.
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
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import Header, String

from partseg.msg import GraspRegion, GraspRegionArray, PartSegmentation
from partseg_ros.evaluation.scoring import Prediction
from partseg_ros.evaluation.tasks import EvalTask
from partseg_ros.ros.conversions import array_to_image, image_to_mask, intrinsics_to_camera_info
from partseg_ros.ros.node import diagnostics_to_dict


@dataclass(frozen=True)
class LiveTopics:
    color: str = "/camera/color/image_raw"
    depth: str = "/camera/aligned_depth_to_color/image_raw"
    camera_info: str = "/camera/color/camera_info"
    instruction: str = "/partseg/instruction"
    segmentation: str = "/partseg/segmentation"
    grasp_regions: str = "/partseg/grasp_regions"
    frame_id: str = "camera_color_optical_frame"


# Wider than the node's default sync.slop_s (15 ms).
STAMP_GAP_NS = 50_000_000


class LiveTimeout(TimeoutError):
    """The node did not answer a task in time."""


def _normalised(text: str) -> str:
    """Whitespace collapsed, as the node cleans instructions before answering them."""
    return " ".join(text.split())


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
    """A ROS node that asks the partseg node one task at a time and waits for the answer."""

    def __init__(
        self,
        topics: LiveTopics = LiveTopics(),
        grasp_grace_s: float = 2.0,
        instruction_settle_s: float = 0.2,
        camera_info_lead_s: float = 0.1,
    ) -> None:
        self.topics = topics
        self.grasp_grace_s = grasp_grace_s
        # A new instruction and the next frame travel on different topics; give the
        # instruction a head start (not counted in latency) so the frame rarely overtakes it.
        self.instruction_settle_s = instruction_settle_s
        self.camera_info_lead_s = camera_info_lead_s
        self._current_instruction: Optional[str] = None
        self._context = rclpy.Context()
        rclpy.init(context=self._context)
        self._node = rclpy.create_node("partseg_evaluator", context=self._context)
        reliable = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE)
        latched = QoSProfile(
            depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL
        )
        node = self._node
        self._color = node.create_publisher(Image, topics.color, reliable)
        self._depth = node.create_publisher(Image, topics.depth, reliable)
        self._info = node.create_publisher(CameraInfo, topics.camera_info, reliable)
        self._instruction = node.create_publisher(String, topics.instruction, latched)
        self._lock = threading.Condition()
        self._segmentations: dict[int, tuple[PartSegmentation, float]] = {}
        self._grasps: dict[int, tuple[GraspRegionArray, float]] = {}
        node.create_subscription(PartSegmentation, topics.segmentation, self._on_segmentation, reliable)
        node.create_subscription(GraspRegionArray, topics.grasp_regions, self._on_grasps, reliable)
        self._executor = SingleThreadedExecutor(context=self._context)
        self._executor.add_node(node)
        self._node_state = ""
        node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, reliable)
        self._spinner = threading.Thread(target=self._executor.spin, daemon=True)
        self._spinner.start()
        self._last_stamp_ns = 0

    def _on_segmentation(self, msg: PartSegmentation) -> None:
        with self._lock:
            self._segmentations[_stamp_ns(msg.header.stamp)] = (msg, time.perf_counter())
            self._lock.notify_all()

    def _on_grasps(self, msg: GraspRegionArray) -> None:
        with self._lock:
            self._grasps[_stamp_ns(msg.header.stamp)] = (msg, time.perf_counter())
            self._lock.notify_all()

    def _on_diagnostics(self, msg: DiagnosticArray) -> None:
        values = diagnostics_to_dict(msg)
        if values is not None:
            with self._lock:
                self._node_state = values.get("state", "")
                self._lock.notify_all()

    def wait_for_node(self, timeout_s: float) -> None:
        """Block until the partseg node is active (its diagnostics say so) and all topics are matched.

        Subscriptions exist from configure on, but frames are only processed once active.
        """
        deadline = time.monotonic() + timeout_s
        publishers = (self._color, self._depth, self._info, self._instruction)
        while time.monotonic() < deadline:
            inputs_ok = all(p.get_subscription_count() > 0 for p in publishers)
            outputs_ok = self._node.count_publishers(self.topics.segmentation) > 0
            if inputs_ok and outputs_ok and self._node_state == "active":
                return
            time.sleep(0.05)
        raise LiveTimeout(
            f"the partseg node was not active on the topics within {timeout_s:.0f} s (last state {self._node_state!r})"
        )

    def _fresh_stamp_ns(self) -> int:
        """A wall-clock stamp at least ``STAMP_GAP_NS`` after the previous one.

        Answers are matched to tasks by stamp, and the gap (wider than the
        node's sync slop) keeps a late message of one frame from pairing with
        the next. Waiting instead of stamping ahead keeps stamps out of the future.
        """
        wait_ns = self._last_stamp_ns + STAMP_GAP_NS - time.time_ns()
        if wait_ns > 0:
            time.sleep(wait_ns / 1e9)
        self._last_stamp_ns = time.time_ns()
        return self._last_stamp_ns

    def _publish_frame(self, task: EvalTask, stamp_ns: int) -> float:
        """Publish camera_info first, then depth and colour; returns the colour's publication time.

        The node refuses a colour frame that arrives before any camera_info, and
        callbacks of messages that arrive together may run colour first, so
        camera_info gets a head start (not counted in latency).
        """
        header = Header(stamp=_stamp(stamp_ns), frame_id=self.topics.frame_id)
        color = array_to_image(task.rgb, "rgb8", header)
        depth = array_to_image(np.ascontiguousarray(task.depth_m, dtype=np.float32), "32FC1", header)
        self._info.publish(intrinsics_to_camera_info(task.intrinsics, header))
        time.sleep(self.camera_info_lead_s)
        self._depth.publish(depth)
        sent = time.perf_counter()
        self._color.publish(color)
        return sent

    def ask(self, task: EvalTask, timeout_s: float, attempts: int = 3) -> Prediction:
        """The node's answer to one task; retried under a new stamp if a frame or instruction was missed."""
        if task.instruction != self._current_instruction:
            self._instruction.publish(String(data=task.instruction))
            self._current_instruction = task.instruction
            time.sleep(self.instruction_settle_s)
        last_problem = "no answer"
        for _ in range(attempts):
            stamp_ns = self._fresh_stamp_ns()
            sent = self._publish_frame(task, stamp_ns)
            with self._lock:
                got = self._lock.wait_for(lambda: stamp_ns in self._segmentations, timeout=timeout_s)
                if not got:
                    last_problem = f"no PartSegmentation for the frame within {timeout_s:.0f} s"
                    continue
                segmentation, seg_time = self._segmentations.pop(stamp_ns)
                if _normalised(segmentation.instruction) != _normalised(task.instruction):
                    # The frame overtook the instruction: ask again with the instruction now in place.
                    last_problem = f"answer was for instruction {segmentation.instruction!r}"
                    continue
                grasps, done_time = None, seg_time
                if segmentation.instances:
                    self._lock.wait_for(lambda: stamp_ns in self._grasps, timeout=self.grasp_grace_s)
                    if stamp_ns in self._grasps:
                        grasps, grasp_time = self._grasps.pop(stamp_ns)
                        done_time = max(seg_time, grasp_time)
                self._grasps.pop(stamp_ns, None)
            latency_ms = (done_time - sent) * 1000.0
            return prediction_from_messages(segmentation, grasps, task.rgb.shape[:2], self.topics.frame_id, latency_ms)
        raise LiveTimeout(f"task {task.task_id} ({task.instruction!r}): {last_problem}")

    def close(self) -> None:
        self._executor.shutdown(timeout_sec=1.0)
        self._node.destroy_node()
        rclpy.shutdown(context=self._context)
        self._spinner.join(timeout=2.0)
