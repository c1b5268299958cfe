"""The DDS side of the live evaluation path: a task answerer that asks a running partseg node.

:class:`LiveClient` implements the evaluator's
:class:`partseg_ros.evaluation.answering.TaskAnswerer`. For each task it sends
the node the task's frame as the bag recorded it: the serialized colour, depth
and camera_info (:class:`partseg_ros.bags.reader.RecordedFrame`), published
raw as ``partseg_replay`` does, so the node decodes the recording's own
encodings, depth units, distortion, step and byte order. Decoding them here
and sending rgb8 / 32FC1 / a distortion-free camera_info instead would make
"both paths score the same" true by construction and leave the node's own
decoding untested.

Only the header stamps change: each frame goes out under a fresh stamp on the
node's time line (depth keeps its recorded offset from colour; the camera_info
takes colour's stamp, as a driver sends it), because the node refuses stamps
from the future, takes a jump back as a new time line, and the bags of one run
may share their synthetic stamps. The client asks ``~/ask`` with the task's
instruction and that stamp and gets the answer for exactly that frame; request
and frame may reach the node in either order, so nothing sleeps or retries.
End-to-end latency is measured from the colour's publication to the response.

Readiness comes from the node's lifecycle state (``~/get_state``), so this
module needs none of the node's code.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Optional

import numpy as np
import rclpy
from lifecycle_msgs.msg import State
from lifecycle_msgs.srv import GetState
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, Image

from partseg.msg import GraspRegion, GraspRegionArray, PartSegmentation
from partseg.srv import AskParts
from partseg_ros.bags.format import CAMERA_INFO_TOPIC, CAMERA_INFO_TYPE, COLOR_TOPIC, DEPTH_TOPIC, IMAGE_TYPE
from partseg_ros.bags.reader import RecordedFrame
from partseg_ros.evaluation.answering import AnsweringError
from partseg_ros.evaluation.records import PATH_LIVE, PROTOCOL_FULL
from partseg_ros.evaluation.scoring import Prediction
from partseg_ros.evaluation.tasks import EvalTask
from partseg_ros.ros.conversions import image_to_mask
from partseg_ros.ros.raw import restamp
from partseg_ros.ros.sync import stamp_to_ns


@dataclass(frozen=True)
class LiveTopics:
    """Where the client talks to the node: the benchmark bags' camera topics, and the node's own names."""

    color: str = COLOR_TOPIC
    depth: str = DEPTH_TOPIC
    camera_info: str = CAMERA_INFO_TOPIC
    instruction: str = "/partseg/instruction"  # unused by the client (it asks); the node still offers it
    segmentation: str = "/partseg/segmentation"
    grasp_regions: str = "/partseg/grasp_regions"
    ask: str = "/partseg/ask"
    lifecycle_state: str = "/partseg/get_state"


# Consecutive frames' stamps differ by at least this, wider than the node's default
# sync.slop_s (15 ms), so no message of one task's frame can pair with the next one's.
STAMP_GAP_NS = 50_000_000
# Stamps run at most this far ahead of the wall clock (the node refuses beyond 0.5 s by default).
MAX_AHEAD_NS = 200_000_000
# How long past its own timeout the client waits for the node's (failure) response.
RESPONSE_MARGIN_S = 10.0
# How long one lifecycle state query may take while waiting for the node.
STATE_QUERY_TIMEOUT_S = 2.0


class LiveTimeout(TimeoutError):
    """The node did not answer a task in time."""


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
    """A ROS node that answers evaluation tasks by asking the partseg node, one task at a time.

    A :class:`partseg_ros.evaluation.answering.TaskAnswerer`; ``full`` only,
    since the node's camera topics carry no object mask for ``oracle_object``.
    """

    path = PATH_LIVE
    protocols = (PROTOCOL_FULL,)

    def __init__(self, topics: LiveTopics = LiveTopics(), task_timeout_s: float = 120.0) -> None:
        self.topics = topics
        self.task_timeout_s = float(task_timeout_s)
        self._context = rclpy.Context()
        rclpy.init(context=self._context)
        self._node = rclpy.create_node("partseg_evaluator", context=self._context)
        reliable = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE)
        node = self._node
        self._color = node.create_publisher(Image, topics.color, reliable)
        self._depth = node.create_publisher(Image, topics.depth, reliable)
        self._info = node.create_publisher(CameraInfo, topics.camera_info, reliable)
        self._ask = node.create_client(AskParts, topics.ask)
        self._get_state = node.create_client(GetState, topics.lifecycle_state)
        self._executor = SingleThreadedExecutor(context=self._context)
        self._executor.add_node(node)
        self._spinner = threading.Thread(target=self._executor.spin, daemon=True)
        self._spinner.start()
        self._last_stamp_ns = 0

    def _lifecycle_state(self, timeout_s: float) -> str:
        """The node's lifecycle state label ("active", "inactive", ...), "" when it did not answer in time."""
        done = threading.Event()
        future = self._get_state.call_async(GetState.Request())
        future.add_done_callback(lambda _: done.set())
        if not done.wait(timeout_s):
            self._get_state.remove_pending_request(future)
            return ""
        state = future.result().current_state
        return "active" if state.id == State.PRIMARY_STATE_ACTIVE else state.label

    def wait_for_node(self, timeout_s: float) -> None:
        """Block until the partseg node is active (lifecycle), its camera subscriptions are matched and
        ``~/ask`` is offered: subscriptions exist from configure on, but frames are only processed once active."""
        deadline = time.monotonic() + timeout_s
        publishers = (self._color, self._depth, self._info)
        state = ""
        while time.monotonic() < deadline:
            if self._get_state.service_is_ready():
                state = self._lifecycle_state(min(STATE_QUERY_TIMEOUT_S, max(deadline - time.monotonic(), 0.01)))
                inputs_ok = all(p.get_subscription_count() > 0 for p in publishers)
                if state == "active" and inputs_ok and self._ask.service_is_ready():
                    return
            time.sleep(0.05)
        raise LiveTimeout(
            f"the partseg node was not active on the topics within {timeout_s:.0f} s (last state {state!r})"
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

    @staticmethod
    def _recorded_frame(task: EvalTask) -> RecordedFrame:
        """The task's recorded colour, depth and camera_info, or AnsweringError saying why the node cannot take it."""
        frame = task.recorded
        if frame is None or frame.depth is None or frame.camera_info is None:
            raise AnsweringError(
                f"{task.bag}: task {task.task_id} has no recorded camera_info or depth; the live path sends the node "
                "the bag's RGB-D frames (use the in-process path for 2D-only bags)")
        types = (frame.color.msgtype, frame.depth.msgtype, frame.camera_info.msgtype)
        if types != (IMAGE_TYPE, IMAGE_TYPE, CAMERA_INFO_TYPE):
            raise AnsweringError(f"{task.bag}: task {task.task_id}: the live path sends raw Image and CameraInfo "
                                 f"messages, the bag has {types}")
        return frame

    def _publish_frame(self, task: EvalTask, stamp_ns: int) -> float:
        """Publish the recorded camera_info, depth, then colour under ``stamp_ns``; returns the colour's send time."""
        frame = self._recorded_frame(task)
        depth_offset_ns = frame.depth.stamp_ns - frame.color.stamp_ns
        self._info.publish(restamp(frame.camera_info.data, stamp_ns))
        self._depth.publish(restamp(frame.depth.data, stamp_ns + depth_offset_ns))
        color = restamp(frame.color.data, stamp_ns)
        sent = time.perf_counter()
        self._color.publish(color)
        return sent

    def answer(self, task: EvalTask, protocol: str) -> Prediction:
        """The node's answer to one task, for the frame this call publishes."""
        if protocol not in self.protocols:
            raise AnsweringError(f"the live path answers {', '.join(self.protocols)} only, not {protocol}")
        self._recorded_frame(task)  # refuse before asking
        stamp_ns = self._next_stamp_ns()
        timeout_s = self.task_timeout_s
        request = AskParts.Request(instruction=task.instruction, min_stamp_ns=stamp_ns, timeout_s=timeout_s)
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
        shape = task.rgb.shape[:2]
        if not response.success:  # the node refused the frame or failed on it: scored as an error
            segmentation = PartSegmentation(status=PartSegmentation.STATUS_ERROR, explanation=response.message,
                                            instruction=task.instruction)
            return prediction_from_messages(segmentation, None, shape, "", latency_ms)
        if stamp_to_ns(segmentation.header.stamp) != stamp_ns:
            raise LiveTimeout(f"task {task.task_id}: answered on the frame stamped "
                              f"{stamp_to_ns(segmentation.header.stamp)}, not on this task's frame {stamp_ns}")
        # Grasp regions come in the frame's own optical frame (the node runs with frames.target_frame "").
        return prediction_from_messages(segmentation, response.grasp_regions, shape, segmentation.header.frame_id,
                                        latency_ms)

    def close(self) -> None:
        self._executor.shutdown(timeout_sec=1.0)
        self._node.destroy_node()
        rclpy.shutdown(context=self._context)
        self._spinner.join(timeout=2.0)
