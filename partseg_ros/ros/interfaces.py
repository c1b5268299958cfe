"""The node's ROS interfaces: its subscriptions, publishers and services, and what it publishes per frame.

Kept apart from the lifecycle because entity handling has its own hard rules:

* Entities are created once and reused by a reconfigure with the same topics.
  Destroying a subscription while the multi-threaded executor builds a wait
  set from it can raise InvalidHandle inside ``executor.spin()``, so entities
  of an earlier configuration are parked, their callbacks silenced by a
  generation number, and released with the node.
* Camera streams are subscribed serialized (raw), so only the frame the
  worker takes is ever deserialised.
* A publisher whose QoS cannot match is silent otherwise: it is reported as
  an error naming the parameter to change.
* Per frame, what planners wait for (segmentation, grasp regions) goes out
  first; the views for people (mask, debug image, markers) are built only
  when someone subscribes to them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable, Optional

import numpy as np
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.event_handler import QoSMessageLostInfo, QoSRequestedIncompatibleQoSInfo, SubscriptionEventCallbacks
from rclpy.lifecycle import LifecycleNode
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from std_msgs.msg import Header, String
from visualization_msgs.msg import MarkerArray

from partseg.msg import GraspRegionArray, PartSegmentation
from partseg.srv import AskParts, SegmentParts
from partseg_ros.pipeline import PipelineResult
from partseg_ros.ros import messages
from partseg_ros.ros.conversions import array_to_image, mask_to_image
from partseg_ros.ros.node_state import NodeState
from partseg_ros.ros.overlay import debug_overlay
from partseg_ros.ros.params import NodeConfig
from partseg_ros.ros.stats import NodeStats, elapsed_ms

OUTPUT_QOS_DEPTH = 5  # reliable result topics keep this many messages for a slow subscriber


@dataclass
class PipelineOutput:
    """One frame's answer as the node publishes it: the result messages and the pipeline run behind them."""

    segmentation: PartSegmentation
    regions: GraspRegionArray
    run: PipelineResult
    stages_ms: dict[str, float]  # where the node's own time went: geometry, messages

    @property
    def inference_ms(self) -> float:
        return self.run.inference_ms


@dataclass
class InterfaceHandlers:
    """The callbacks behind the node's subscriptions and services."""

    color: Callable[[bytes], None]
    depth: Callable[[bytes], None]
    camera_info: Callable[[bytes], None]
    instruction: Callable[[String], None]
    segment_parts: Callable[[SegmentParts.Request, SegmentParts.Response], SegmentParts.Response]
    ask: Callable[[AskParts.Request, AskParts.Response], AskParts.Response]


def result_messages(run: PipelineResult, header: Header, instruction: str, target_frame: str,
                    with_colors: bool) -> tuple[PartSegmentation, GraspRegionArray]:
    """The segmentation and grasp-region messages of one pipeline run on the frame ``header`` names.

    ``target_frame`` is the frame the regions were computed in ("" for the camera's own).
    """
    segmentation = messages.segmentation_msg(run.grounding, header, instruction, inference_ms=run.inference_ms)
    region_header = Header(stamp=header.stamp, frame_id=target_frame or header.frame_id)
    regions = [
        messages.grasp_region_msg(region, region_header, index, instance.object_label, instance.part_label,
                                  with_colors=with_colors)
        for index, (region, instance) in enumerate(zip(run.regions, run.grounding.instances))
    ]
    return segmentation, messages.grasp_region_array_msg(region_header, instruction, regions)


class NodeInterfaces:
    """Creates the node's entities per configuration and publishes its outputs while active."""

    def __init__(self, node: LifecycleNode, state: NodeState, stats: NodeStats) -> None:
        self._node = node
        self._state = state
        self._stats = stats
        # Camera and instruction callbacks share one group (they own the synchroniser);
        # each service has its own, so a blocked ~/ask never holds up ~/segment_parts.
        self.input_group = MutuallyExclusiveCallbackGroup()
        self.service_group = MutuallyExclusiveCallbackGroup()
        self.ask_group = MutuallyExclusiveCallbackGroup()
        self.stream_topics: dict[str, str] = {}  # stream -> resolved topic, for messages that name it
        self._input_subscriptions: list[Any] = []
        self._publishers: dict[str, Any] = {}
        self._segment_parts_service: Optional[Any] = None
        self._ask_service: Optional[Any] = None
        self._key_current: Optional[tuple] = None
        self._generation = 0
        self._retired: list[Any] = []  # entities of an earlier configuration, kept (see the module docstring)

    @staticmethod
    def _key(config: NodeConfig) -> tuple:
        qos = (config.sensor_qos.reliability, config.sensor_qos.depth, config.instruction_qos.reliability,
               config.instruction_qos.durability)
        return (config.color_topic, config.depth_topic, config.camera_info_topic, config.instruction_topic,
                config.color_transport, config.depth_transport, qos, config.debug_image, config.markers)

    def _event_callbacks(self, topic: str, parameter_hint: str, stream: Optional[str]) -> SubscriptionEventCallbacks:
        """A publisher whose QoS cannot match ours is silent otherwise: say so, and what to change.

        Camera streams also count the messages DDS reports lost (``dropped.lost.<stream>``)
        where the middleware supports the event.
        """

        def log(info: QoSRequestedIncompatibleQoSInfo) -> None:
            self._node.get_logger().error(
                f"a publisher on {topic} has QoS incompatible with this node's subscription "
                f"(policy id {info.last_policy_kind}, {info.total_count} so far): no messages will arrive; "
                f"set {parameter_hint} to match the publisher"
            )

        def lost(info: QoSMessageLostInfo) -> None:
            self._stats.drop(f"lost.{stream}", int(info.total_count_change))

        return SubscriptionEventCallbacks(incompatible_qos=log, message_lost=lost if stream else None)

    def create(self, config: NodeConfig, handlers: InterfaceHandlers) -> None:
        """Create the subscriptions and publishers once; a reconfigure with the same topics reuses them.

        When a reconfigure changes topics or QoS, the old entities are parked (their
        callbacks see a stale generation and return) rather than destroyed under the
        running executor; how many can pile up is bounded by how many distinct
        configurations the node goes through.
        """
        node = self._node
        key = self._key(config)
        if key == self._key_current:
            return
        self._retired += self._input_subscriptions + list(self._publishers.values())
        self._input_subscriptions, self._publishers = [], {}
        self._generation += 1
        generation = self._generation

        def current(callback):
            def guarded(msg: Any) -> None:
                if generation == self._generation:
                    callback(msg)
            return guarded

        def sub(msg_type, topic, callback, qos, hint="qos.sensor_reliability", stream=None):
            # Camera streams arrive serialized (raw): decoded only when the worker takes the frame.
            subscription = node.create_subscription(
                msg_type, topic, current(callback), qos, callback_group=self.input_group,
                event_callbacks=self._event_callbacks(topic, hint, stream), raw=stream is not None,
            )
            if stream is not None:
                self.stream_topics[stream] = subscription.topic_name
            return subscription

        if str(node.get_parameter("camera_namespace").value):
            node.get_logger().warning(
                "parameter camera_namespace is deprecated: input topics are relative names resolved in the node's "
                "namespace; remap them (bringup's camera_namespace argument does) and leave camera_namespace empty")
        color_type, color_topic = Image, config.color_topic
        if config.color_transport == "compressed":  # image_transport's name: <base topic>/compressed
            color_type, color_topic = CompressedImage, node.resolve_topic_name(config.color_topic) + "/compressed"
        depth_type, depth_topic = Image, config.depth_topic
        if config.depth_topic and config.depth_transport == "compressedDepth":
            depth_type = CompressedImage
            depth_topic = node.resolve_topic_name(config.depth_topic) + "/compressedDepth"
        self._input_subscriptions += [
            sub(color_type, color_topic, handlers.color, config.sensor_qos, stream="color"),
            sub(CameraInfo, config.camera_info_topic, handlers.camera_info, config.sensor_qos, stream="camera_info"),
            sub(String, config.instruction_topic, handlers.instruction, config.instruction_qos,
                hint="qos.instruction_reliability / qos.instruction_durability"),
        ]
        if config.depth_topic:
            self._input_subscriptions.append(
                sub(depth_type, depth_topic, handlers.depth, config.sensor_qos, stream="depth"))
        reliable = QoSProfile(depth=OUTPUT_QOS_DEPTH, reliability=ReliabilityPolicy.RELIABLE)
        outputs = {
            "segmentation": (PartSegmentation, "~/segmentation"),
            "mask": (Image, "~/mask"),
            "grasp_regions": (GraspRegionArray, "~/grasp_regions"),
        }
        if config.debug_image:
            outputs["debug_image"] = (Image, "~/debug_image")
        if config.markers:
            outputs["markers"] = (MarkerArray, "~/markers")
        for name, (msg_type, topic) in outputs.items():
            self._publishers[name] = node.create_lifecycle_publisher(msg_type, topic, reliable)
        if self._segment_parts_service is None:
            self._segment_parts_service = node.create_service(
                SegmentParts, "~/segment_parts", handlers.segment_parts, callback_group=self.service_group
            )
        if self._ask_service is None:
            self._ask_service = node.create_service(AskParts, "~/ask", handlers.ask, callback_group=self.ask_group)
        self._key_current = key

    # ---- publishing -------------------------------------------------------------------------------
    def wanted(self, name: str) -> bool:
        """Whether anyone listens on output ``name`` (views for people are built only then)."""
        publisher = self._publishers.get(name)
        return publisher is not None and publisher.get_subscription_count() > 0

    def publish_if_active(self, name: str, msg: Any) -> None:
        publisher = self._publishers.get(name)
        if publisher is not None and self._state.active:
            publisher.publish(msg)

    def publish_output(self, output: PipelineOutput, rgb: np.ndarray, header: Header,
                       marker_lifetime_s: float) -> tuple[float, float]:
        """Publish one frame's answer; returns the milliseconds spent on (results, views for people)."""
        publish_started = time.perf_counter()
        self.publish_if_active("segmentation", output.segmentation)
        self.publish_if_active("grasp_regions", output.regions)
        visuals_started = time.perf_counter()
        if self.wanted("mask"):
            self.publish_if_active("mask", _union_mask_msg(output, header))
        if self.wanted("debug_image"):
            overlay = debug_overlay(rgb, output.run.grounding.instances)
            self.publish_if_active("debug_image", array_to_image(overlay, "rgb8", header))
        if self.wanted("markers"):
            self.publish_if_active("markers", messages.markers_msg(output.regions, marker_lifetime_s))
        return (visuals_started - publish_started) * 1e3, elapsed_ms(visuals_started)


def _union_mask_msg(output: PipelineOutput, header: Header) -> Image:
    if len(output.segmentation.instances) == 1:  # the union is that mask: reuse its bytes
        single = output.segmentation.instances[0].mask
        return Image(header=header, height=single.height, width=single.width, encoding=single.encoding,
                     is_bigendian=single.is_bigendian, step=single.step, data=single.data)
    return mask_to_image(output.run.union_mask(), header)
