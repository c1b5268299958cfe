"""The partseg perception node: RGB-D frames + an instruction -> part masks and 3D grasp regions.

A lifecycle node (like yolo_ros): ``configure`` reads the parameters, builds
and loads the backend and warms it up; ``activate`` starts processing;
``deactivate`` stops it; ``cleanup`` releases everything. With the parameter
``autostart`` it walks to active on its own (what bringup uses).

Threading: camera and instruction callbacks share one mutually exclusive
group and only peek at, check and pair messages: camera images arrive
serialized and are decoded only when the worker takes them. The model runs on
a worker thread that takes the latest paired frame (older unprocessed frames
are dropped and counted, never queued), so callbacks never wait for the model.
A new instruction is answered on the latest frame when that frame arrived
recently enough (a paused, throttled or replayed camera sends no new one);
every result's header is the stamp and frame_id of the frame it answers.
The service runs in its own group and shares the backend under a lock.
``~/ask`` takes only an instruction and answers it on the next synchronised
frame (or the first at or after a given stamp): the request waits in its own
group while the worker processes that frame, so a planner needs no sleep and
the answer never races the image.
"""

from __future__ import annotations

import importlib
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.event_handler import QoSMessageLostInfo, QoSRequestedIncompatibleQoSInfo, SubscriptionEventCallbacks
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.qos import QoSProfile, ReliabilityPolicy
from rclpy.serialization import deserialize_message
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from std_msgs.msg import Header, String
from visualization_msgs.msg import MarkerArray

from partseg.msg import GraspRegionArray, PartSegmentation
from partseg.srv import AskParts, SegmentParts
from partseg_ros.backends.base import PartGroundingBackend
from partseg_ros.backends.registry import create_backend
from partseg_ros.geometry.transforms import RigidTransform
from partseg_ros.ros import messages
from partseg_ros.ros.compressed import (
    CompressedFormatError,
    decode_compressed_color,
    decode_compressed_depth,
    peek_compressed,
)
from partseg_ros.ros.conversions import DEPTH_ENCODINGS, ImageFormatError, array_to_image, image_to_array, mask_to_image
from partseg_ros.ros.overlay import debug_overlay
from partseg_ros.ros.params import NodeConfig, declare_parameters, read_config
from partseg_ros.ros.raw import CdrError, peek_image
from partseg_ros.ros.stats import NodeStats, elapsed_ms, limited_log
from partseg_ros.ros.sync import QUEUE_OVERFLOW, UNMATCHED, ApproximateTimeSync, SyncedSet, stamp_to_ns
from partseg_ros.ros.validation import (
    CAMERA_INFO_MISSING,
    INSTRUCTION_EMPTY,
    DEPTH_UNITS,
    IMAGE_TOO_LARGE,
    DecodedFrame,
    Rejection,
    check_image_size,
    check_instruction,
    decode_color,
    decode_frame,
    decode_frame_arrays,
)
from partseg_ros.types import GroundingRequest, GroundingResult

NODE_NAME = "partseg"
INTERNAL_ERROR = "internal_error"  # an unexpected exception in a callback (a bug)
PROCESSING_ERROR = "processing_error"  # the backend or geometry failed on a frame
STALE_FRAME = "stale_frame"
NO_INSTRUCTION = "no_instruction"
DEPTH_REQUIRED = "depth_required"  # a colour-only service request to a backend that needs depth
DESERIALIZATION_FAILED = "deserialization_failed"  # a raw camera message whose CDR is broken
INSTRUCTION_OVERFLOW = "instruction_overflow"  # more instructions waiting on an earlier frame than the queue holds
SYNC_RESET = "sync_reset"  # stamps jumped back beyond sync.reset_jump_back_s, or repeated after a silence
EXECUTOR_ERROR = "executor_error"  # an exception escaped rclpy's executor; spin_node survived it
SYNC_STALLED = "sync_stalled"  # colour arrives but no set completes for sync.stall_warn_s (event, warned once)
ASK_TIMEOUT = "ask_timeout"  # ~/ask found no qualifying synchronised frame within its timeout
# Reasons whose cause is a setting, not a bad message: one warning says what to change, then they are counted.
WARN_ONCE = (DEPTH_UNITS,)


@dataclass
class AskWaiter:
    """One ~/ask request waiting for its frame; the worker fills ``output`` or ``error`` and sets ``done``."""

    instruction: str
    min_stamp_ns: int  # 0: the first frame completed after arrival_ns
    arrival_ns: int
    done: threading.Event
    output: Optional["PipelineOutput"] = None
    error: str = ""


@dataclass
class RawFrame:
    """A paired frame as it arrived: serialized colour and depth, decoded only if the worker takes it."""

    color: bytes
    depth: Optional[bytes]
    camera_info: CameraInfo
    header: Header  # of the colour image: the frame every result names
    arrival_ns: int  # node clock when the set was complete
    callback_ms: float  # peek + checks + pairing, for the overhead figure


@dataclass
class PendingFrame:
    """A paired frame and the instruction to answer on it, waiting for the worker."""

    frame: RawFrame
    instruction: str
    origin_ns: int  # latency is measured from here: the frame's stamp, or the instruction's arrival
    ask: Optional[AskWaiter] = None  # set when a ~/ask request waits for this answer

    @property
    def header(self) -> Header:
        return self.frame.header


@dataclass
class PipelineOutput:
    segmentation: PartSegmentation
    regions: GraspRegionArray
    union_mask: np.ndarray
    instances: list
    inference_ms: float
    stages_ms: dict  # where the node's own time went: geometry, messages


def load_backend(name: str, options: dict[str, Any]) -> PartGroundingBackend:
    """A backend by registry name, or by ``package.module:Class`` for out-of-tree backends."""
    if ":" in name:
        module_name, class_name = name.split(":", 1)
        backend_class = getattr(importlib.import_module(module_name), class_name)
        if not (isinstance(backend_class, type) and issubclass(backend_class, PartGroundingBackend)):
            raise TypeError(f"{name} is not a PartGroundingBackend")
        return backend_class(**options)
    return create_backend(name, **options)


class PartSegNode(LifecycleNode):
    """Lifecycle node wrapping a part-grounding backend and the grasp-region geometry."""

    def __init__(self, node_name: str = NODE_NAME, **kwargs: Any) -> None:
        super().__init__(node_name, automatically_declare_parameters_from_overrides=True, **kwargs)
        declare_parameters(self)
        self.stats = NodeStats()
        self.config: Optional[NodeConfig] = None
        self.backend: Optional[PartGroundingBackend] = None
        self._backend_lock = threading.Lock()
        self._active = False
        self._active_since_ns = 0
        self._instruction = ""
        self._instruction_lock = threading.Lock()
        self._last_info_arrival_ns: Optional[int] = None
        self._sync: Optional[ApproximateTimeSync] = None
        self._pending: Optional[PendingFrame] = None  # the latest camera frame (latest-frame policy)
        self._requests: deque[PendingFrame] = deque(maxlen=8)  # instructions answered on an earlier frame
        self._asks_waiting: list[AskWaiter] = []  # ~/ask requests whose frame has not come yet (under _wakeup)
        self._ask_frames: deque[PendingFrame] = deque()  # frames taken for ~/ask, never dropped (under _wakeup)
        self._unmatched_color_since: Optional[int] = None  # first colour arrival since the last completed set
        self._stall_reported = False
        self._stream_topics: dict[str, str] = {}
        self._ask_service: Optional[Any] = None
        self._ask_group = MutuallyExclusiveCallbackGroup()
        self._latest: Optional[RawFrame] = None  # the newest paired frame, for instructions without a new one
        self._watched: deque[tuple[int, int]] = deque(maxlen=64)  # (stamp, arrival) of colour awaiting camera_info
        self._wakeup = threading.Condition()
        self._worker: Optional[threading.Thread] = None
        self._stop_worker = False
        self._grasp = None  # (compute_grasp_region, config) once configured
        self._tf_buffer = None
        self._tf_listener = None
        self._static_transform: Optional[RigidTransform] = None
        self._input_subscriptions: list[Any] = []
        self._service: Optional[Any] = None
        self._pubs: dict[str, Any] = {}
        self._interfaces_key_current: Optional[tuple] = None
        self._generation = 0
        self._retired: list[Any] = []  # entities of an earlier configuration, kept (see _create_interfaces)
        self.shutdown_requested = False  # the lifecycle shutdown transition ends spin_node()
        self.closing = False  # the process is going down: failures from a dead context are not errors
        self._add_started = 0.0  # perf_counter at the start of the sync.add that may complete a set
        self._input_group = MutuallyExclusiveCallbackGroup()
        self._service_group = MutuallyExclusiveCallbackGroup()
        self._timer_group = MutuallyExclusiveCallbackGroup()
        # Diagnostics work in every lifecycle state, so this is a plain publisher.
        self._diagnostics_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        period = float(self.get_parameter("diagnostics.period_s").value)
        self._diagnostics_timer = self.create_timer(period, self._publish_diagnostics, self._timer_group)
        # In the input group: it touches the synchroniser, which the camera callbacks own.
        self._camera_info_timer = self.create_timer(0.05, self._check_camera_info, self._input_group)

    @property
    def autostart(self) -> bool:
        return bool(self.get_parameter("autostart").value)

    @property
    def instruction(self) -> str:
        with self._instruction_lock:
            return self._instruction

    # ---- lifecycle ------------------------------------------------------------------------------
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        try:
            self.config = config = read_config(self)
            started = time.perf_counter()
            options = dict(config.backend_options)
            options.setdefault("device", config.device)
            self.backend = load_backend(config.backend, options)
            self.backend.load()
            if config.warmup:
                self.backend.warmup()
            self.get_logger().info(f"backend {config.backend} loaded in {elapsed_ms(started):.0f} ms")
            self._grasp = self._load_grasp_geometry(config)
            self._setup_transforms(config)
            self._create_interfaces(config)
            self._sync = ApproximateTimeSync(
                self._streams(config), config.slop_ns, config.sync_queue_size, config.future_tolerance_ns,
                on_match=self._on_synced, reset_jump_back_ns=config.reset_jump_back_ns,
                reset_repeat_after_ns=config.reset_repeat_after_ns,
            )
            with self._wakeup:
                self._requests = deque(maxlen=config.instruction_queue_size)
            self._start_worker()
        except Exception as exc:  # noqa: BLE001 - any failure leaves the node unconfigured, with the reason
            self.get_logger().error(f"configure failed: {type(exc).__name__}: {exc}")
            self._teardown()
            return TransitionCallbackReturn.FAILURE
        self.get_logger().info(
            f"configured: colour {config.color_topic}, depth {config.depth_topic or '(none)'}, "
            f"camera_info {config.camera_info_topic}, instruction {self.resolve_topic_name(config.instruction_topic)}"
        )
        return super().on_configure(state)

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._active_since_ns = self.get_clock().now().nanoseconds
        self._active = True
        self.get_logger().info("active: processing frames")
        return super().on_activate(state)

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._active = False
        with self._wakeup:
            self._pending = None
            self._requests.clear()
        self._fail_asks("node deactivated before the frame came")
        self._latest = None
        self.get_logger().info("inactive: frames are ignored")
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._teardown()
        return super().on_cleanup(state)

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._active = False
        self._teardown()
        self.shutdown_requested = True  # spin_node() returns: the process exits after the transition
        return super().on_shutdown(state)

    def _teardown(self) -> None:
        """Back to a clean, unconfigured slate, without destroying any ROS entity.

        Subscriptions, publishers and the service live as long as the node: destroying
        them while the multi-threaded executor builds a wait set from them can raise
        InvalidHandle inside ``executor.spin()`` (rclpy adds a QoS event handler to the
        wait set even when entering it failed). Inactive, the callbacks ignore input;
        ``destroy_node`` releases everything once the executor has stopped.
        """
        self._active = False
        self._fail_asks("node shutting down or cleaned up before the frame came")
        self._stop()
        with self._instruction_lock:  # a reconfigured node starts from a clean slate
            self._instruction = ""
        self._last_info_arrival_ns = None
        self._sync = None
        self._latest = None
        self._watched.clear()
        self._tf_listener = self._tf_buffer = None
        self.backend = None
        self._grasp = None

    # ---- set-up helpers -------------------------------------------------------------------------
    @staticmethod
    def _streams(config: NodeConfig) -> list[str]:
        return ["color", "camera_info"] + (["depth"] if config.depth_topic else [])

    def _load_grasp_geometry(self, config: NodeConfig):
        from partseg_ros.geometry.grasp_region import GraspRegionConfig, compute_grasp_region

        return compute_grasp_region, GraspRegionConfig(**config.grasp_options)

    def _setup_transforms(self, config: NodeConfig) -> None:
        self._static_transform = RigidTransform.from_translation_quaternion(
            config.static_transform[:3], config.static_transform[3:], parent_frame=config.target_frame
        )
        if not config.target_frame or config.transform_source == "static":
            return
        try:
            import tf2_ros  # noqa: PLC0415 - optional: present in ROS installs, not on PyPI
        except ImportError:
            if config.transform_source == "tf":
                raise RuntimeError("frames.transform_source is 'tf' but tf2_ros is not installed") from None
            self.get_logger().info("tf2_ros not installed: using frames.static_transform")
            return
        self._tf_buffer = tf2_ros.Buffer()
        self._tf_listener = tf2_ros.TransformListener(self._tf_buffer, self)

    def _event_callbacks(self, topic: str, parameter_hint: str, stream: Optional[str]) -> SubscriptionEventCallbacks:
        """A publisher whose QoS cannot match ours is silent otherwise: say so, and what to change.

        Camera streams also count the messages DDS reports lost (``dropped.lost.<stream>``)
        where the middleware supports the event.
        """

        def log(info: QoSRequestedIncompatibleQoSInfo) -> None:
            self.get_logger().error(
                f"a publisher on {topic} has QoS incompatible with this node's subscription "
                f"(policy id {info.last_policy_kind}, {info.total_count} so far): no messages will arrive; "
                f"set {parameter_hint} to match the publisher"
            )

        def lost(info: QoSMessageLostInfo) -> None:
            self.stats.drop(f"lost.{stream}", int(info.total_count_change))

        return SubscriptionEventCallbacks(incompatible_qos=log, message_lost=lost if stream else None)

    @staticmethod
    def _interfaces_key(config: NodeConfig) -> tuple:
        qos = (config.sensor_qos.reliability, config.sensor_qos.depth, config.instruction_qos.reliability,
               config.instruction_qos.durability)
        return (config.color_topic, config.depth_topic, config.camera_info_topic, config.instruction_topic,
                config.color_transport, config.depth_transport, qos, config.debug_image, config.markers)

    def _create_interfaces(self, config: NodeConfig) -> None:
        """Create the subscriptions and publishers once; a reconfigure with the same topics reuses them.

        When a reconfigure changes topics or QoS, the old entities are parked (their
        callbacks see a stale generation and return) rather than destroyed under the
        running executor; how many can pile up is bounded by how many distinct
        configurations the node goes through.
        """
        key = self._interfaces_key(config)
        if key == self._interfaces_key_current:
            return
        self._retired += self._input_subscriptions + list(self._pubs.values())
        self._input_subscriptions, self._pubs = [], {}
        self._generation += 1
        generation = self._generation

        def current(callback):
            def guarded(msg: Any) -> None:
                if generation == self._generation:
                    callback(msg)
            return guarded

        def sub(msg_type, topic, callback, qos, callback_group, hint="qos.sensor_reliability", stream=None):
            # Camera streams arrive serialized (raw): decoded only when the worker takes the frame.
            subscription = self.create_subscription(
                msg_type, topic, current(callback), qos, callback_group=callback_group,
                event_callbacks=self._event_callbacks(topic, hint, stream), raw=stream is not None,
            )
            if stream is not None:
                self._stream_topics[stream] = subscription.topic_name
            return subscription

        if str(self.get_parameter("camera_namespace").value):
            self.get_logger().warning(
                "parameter camera_namespace is deprecated: input topics are relative names resolved in the node's "
                "namespace; remap them (bringup's camera_namespace argument does) and leave camera_namespace empty")
        color_type, color_topic = Image, config.color_topic
        if config.color_transport == "compressed":  # image_transport's name: <base topic>/compressed
            color_type, color_topic = CompressedImage, self.resolve_topic_name(config.color_topic) + "/compressed"
        depth_type, depth_topic = Image, config.depth_topic
        if config.depth_topic and config.depth_transport == "compressedDepth":
            depth_type = CompressedImage
            depth_topic = self.resolve_topic_name(config.depth_topic) + "/compressedDepth"
        self._input_subscriptions += [
            sub(color_type, color_topic, self._on_color, config.sensor_qos, callback_group=self._input_group,
                stream="color"),
            sub(CameraInfo, config.camera_info_topic, self._on_camera_info, config.sensor_qos,
                callback_group=self._input_group, stream="camera_info"),
            sub(String, config.instruction_topic, self._on_instruction, config.instruction_qos,
                callback_group=self._input_group,
                hint="qos.instruction_reliability / qos.instruction_durability"),
        ]
        if config.depth_topic:
            self._input_subscriptions.append(
                sub(depth_type, depth_topic, self._on_depth, config.sensor_qos, callback_group=self._input_group,
                    stream="depth")
            )
        reliable = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE)
        outputs = {
            "segmentation": (PartSegmentation, "~/segmentation"),
            "mask": (Image, "~/mask"),
            "grasp_regions": (GraspRegionArray, "~/grasp_regions"),
        }
        if config.debug_image:
            outputs["debug_image"] = (Image, "~/debug_image")
        if config.markers:
            outputs["markers"] = (MarkerArray, "~/markers")
        for key_, (msg_type, topic) in outputs.items():
            self._pubs[key_] = self.create_lifecycle_publisher(msg_type, topic, reliable)
        if self._service is None:
            self._service = self.create_service(
                SegmentParts, "~/segment_parts", self._on_service, callback_group=self._service_group
            )
        if self._ask_service is None:
            self._ask_service = self.create_service(AskParts, "~/ask", self._on_ask, callback_group=self._ask_group)
        self._interfaces_key_current = key

    # ---- input callbacks: never block, never raise ------------------------------------------------
    def _on_color(self, raw: bytes) -> None:
        self._guarded(self._on_image, "color", raw)

    def _on_depth(self, raw: bytes) -> None:
        self._guarded(self._on_image, "depth", raw)

    def _on_camera_info(self, raw: bytes) -> None:
        self._guarded(self._on_info, raw)

    def _on_image(self, stream: str, raw: bytes) -> None:
        """Peek at a serialized image (stamp, sizes) and pair it; the pixels stay untouched."""
        started = time.perf_counter()
        config = self.config
        compressed = config is not None and (
            config.color_transport == "compressed" if stream == "color"
            else config.depth_transport == "compressedDepth")
        try:
            peek = peek_compressed(raw) if compressed else peek_image(raw)
        except CdrError as exc:
            raise Rejection(DESERIALIZATION_FAILED, f"{stream}: {exc}") from None
        if stream == "color":
            # Stamp to arrival: the DDS transport latency when the camera stamps at capture.
            transport_ms = (self.get_clock().now().nanoseconds - peek.stamp_ns) / 1e6
            self.stats.frame_received(transport_ms)
        if not self._active or config is None:
            return
        if compressed:  # decoded sizes are checked on the image header when the worker decodes it
            if peek.data_len > config.limits.max_image_bytes:
                raise Rejection(IMAGE_TOO_LARGE, f"{stream} image: {peek.data_len} compressed bytes exceed "
                                f"limits.max_image_bytes={config.limits.max_image_bytes}")
        else:
            check_image_size(f"{stream} image", peek.height, peek.width, peek.encoding, peek.step, peek.data_len,
                             config.limits)
        header = Header(frame_id=peek.frame_id)
        header.stamp.sec, header.stamp.nanosec = divmod(peek.stamp_ns, 1_000_000_000)
        self._on_camera_message(stream, peek.stamp_ns, (raw, header), started)

    def _on_info(self, raw: bytes) -> None:
        started = time.perf_counter()
        self._last_info_arrival_ns = self.get_clock().now().nanoseconds
        try:
            msg = deserialize_message(raw, CameraInfo)
        except Exception as exc:  # noqa: BLE001 - rclpy raises several types for bad CDR
            raise Rejection(DESERIALIZATION_FAILED, f"camera_info: {type(exc).__name__}: {exc}") from None
        self._on_camera_message("camera_info", stamp_to_ns(msg.header.stamp), msg, started)

    def _on_instruction(self, msg: String) -> None:
        self._guarded(self._set_instruction, msg.data)

    def _guarded(self, callback, *args: Any) -> None:
        try:
            callback(*args)
        except Rejection as rejection:
            self._reject(rejection.reason, str(rejection))
        except Exception as exc:  # noqa: BLE001 - a bad message must never take the node down
            self._reject(INTERNAL_ERROR, f"{type(exc).__name__}: {exc}")

    def _reject(self, reason: str, message: str) -> None:
        count = self.stats.reject(reason)
        if count == 1 if reason in WARN_ONCE else limited_log(count):
            self.get_logger().warning(f"rejected ({reason}, #{count}): {message}")

    def _set_instruction(self, text: str) -> None:
        try:
            cleaned = check_instruction(text, self.config.limits)
        except Rejection as rejection:
            if rejection.reason == INSTRUCTION_EMPTY:
                with self._instruction_lock:
                    self._instruction = ""
                with self._wakeup:
                    self._pending = None
                    self._requests.clear()
                self.stats.reject(INSTRUCTION_EMPTY)
                self.get_logger().info("empty instruction: cleared, no frames are processed until a new one")
                return
            raise
        with self._instruction_lock:
            changed = cleaned != self._instruction
            self._instruction = cleaned
        if changed:
            self.get_logger().info(f"instruction: {cleaned!r}")
        if not self._active:
            return
        # Every instruction gets an answer: on the latest frame if it is fresh enough
        # (a paused, throttled or replayed camera), otherwise on the next frame.
        latest, config = self._latest, self.config
        now_ns = self.get_clock().now().nanoseconds
        if latest is None or now_ns - latest.arrival_ns > config.instruction_frame_max_age_ns:
            return
        with self._wakeup:
            if len(self._requests) == self._requests.maxlen:
                self.stats.drop(INSTRUCTION_OVERFLOW)
            self._requests.append(PendingFrame(latest, cleaned, now_ns))
            self._wakeup.notify()

    def _on_camera_message(self, stream: str, stamp_ns: int, message: Any, started: float) -> None:
        sync, config = self._sync, self.config  # local: cleanup may reset them from another thread
        if not self._active or sync is None:
            return
        now_ns = self.get_clock().now().nanoseconds
        if stream == "color" and self._unmatched_color_since is None:
            self._unmatched_color_since = now_ns
        if stream == "color":
            # A camera_info may arrive with or just after its frame: the synchroniser pairs
            # them. When none came for camera_info_timeout_s, this frame is watched, and
            # refused only if its camera_info has not come camera_info_grace_s later.
            last = self._last_info_arrival_ns
            reference = last if last is not None else self._active_since_ns
            if now_ns - reference > config.camera_info_timeout_ns:
                self._watched.append((stamp_ns, now_ns))
        # sync.add calls _on_synced synchronously when this message completes a set;
        # the pending frame's callback time is measured from here.
        self._add_started = started
        resets = sync.resets
        reason = sync.add(stream, stamp_ns, message, now_ns)
        if sync.resets != resets:
            self._on_time_line_reset(stream, sync.last_jump_back_ns)
        self.stats.set_drops(UNMATCHED, sync.drops[UNMATCHED])
        self.stats.set_drops(QUEUE_OVERFLOW, sync.drops[QUEUE_OVERFLOW])
        if reason is not None:
            raise Rejection(
                reason,
                f"{stream} stamp {stamp_ns / 1e9:.3f} s refused (node clock {now_ns / 1e9:.3f} s, "
                f"future tolerance {config.future_tolerance_ns / 1e9:.2f} s, "
                f"a jump back beyond sync.reset_jump_back_s={config.reset_jump_back_ns / 1e9:.1f} s starts over)",
            )

    def _on_time_line_reset(self, stream: str, jump_ns: int) -> None:
        """Stamps jumped far back: a bag replayed again or looped, a simulator reset. Start over."""
        self.stats.event(SYNC_RESET)
        self._latest = None
        self._watched.clear()
        what = f"jumped back {jump_ns / 1e9:.1f} s" if jump_ns else "repeated after a silence"
        self.get_logger().info(
            f"{stream} stamps {what} (bag restart, loop or simulator reset): synchroniser and stamp checks reset"
        )

    def _check_camera_info(self) -> None:
        """Refuse watched colour frames whose camera_info did not come within the grace period."""
        try:
            sync, config = self._sync, self.config
            if sync is None or config is None:
                self._watched.clear()
                return
            now_ns = self.get_clock().now().nanoseconds
            while self._watched and now_ns - self._watched[0][1] > config.camera_info_grace_ns:
                stamp_ns, _ = self._watched.popleft()
                if sync.discard("color", stamp_ns):  # still unpaired: its camera_info never came
                    last = self._last_info_arrival_ns
                    waited = "never" if last is None else f"{(now_ns - last) / 1e9:.1f} s ago"
                    self._reject(CAMERA_INFO_MISSING,
                                 f"colour frame without camera_info (last on {config.camera_info_topic}: {waited})")
            self._check_stall(sync, config, now_ns)
        except Exception as exc:  # noqa: BLE001 - a timer must not die
            self._reject(INTERNAL_ERROR, f"camera_info check: {type(exc).__name__}: {exc}")

    def _check_stall(self, sync: ApproximateTimeSync, config: NodeConfig, now_ns: int) -> None:
        """Colour keeps coming but no set completes: say once which stream is missing and what to change."""
        since = self._unmatched_color_since
        if config.stall_warn_ns <= 0 or since is None or self._stall_reported:
            return
        _, color_arrival = sync.last_seen("color")
        if color_arrival is None or now_ns - color_arrival > config.stall_warn_ns:
            return  # colour itself stopped: a paused camera, not a synchronisation freeze
        if now_ns - since < config.stall_warn_ns:
            return
        self._stall_reported = True
        self.stats.event(SYNC_STALLED)
        self.get_logger().warning(self.stall_diagnosis(now_ns))

    def stall_diagnosis(self, now_ns: Optional[int] = None) -> str:
        """Why no synchronised frame completes: per partner stream, nothing / silent / stamps beyond slop."""
        sync, config = self._sync, self.config
        if sync is None or config is None:
            return "the node is not configured"
        now_ns = self.get_clock().now().nanoseconds if now_ns is None else now_ns
        _, color_arrival = sync.last_seen("color")
        color_topic = self._stream_topics.get("color", config.color_topic)
        if color_arrival is None:
            return (f"no colour image received on {color_topic} (transport.color={config.color_transport}): check the "
                    "topic name or remapping, the transport, and qos.sensor_reliability")
        since = self._unmatched_color_since
        waited = (now_ns - since) / 1e9 if since is not None else 0.0
        parts: list[str] = []
        ok: list[str] = []
        for stream in self._streams(config)[1:]:
            topic = self._stream_topics.get(stream, stream)
            stamp, arrival = sync.last_seen(stream)
            if arrival is None:
                hint = "transport.depth, " if stream == "depth" else ""
                parts.append(f"{stream}: nothing received on {topic}; check the topic name or remapping, {hint}and "
                             "QoS (qos.sensor_reliability; an incompatible publisher is reported as an error)")
            elif now_ns - arrival > max(config.stall_warn_ns, 1):
                parts.append(f"{stream}: last message on {topic} {(now_ns - arrival) / 1e9:.1f} s ago")
            else:
                # Against the colour frame nearest in time: the offset a larger slop would have to cover.
                nearest = sync.nearest_stamp("color", stamp) if stamp is not None else None
                offset_s = (stamp - nearest) / 1e9 if nearest is not None else 0.0
                if abs(offset_s) * 1e9 > config.slop_ns:
                    parts.append(f"{stream}: arrives, but its stamps are {offset_s * 1e3:+.1f} ms from colour's; "
                                 f"raise sync.slop_s (now {config.slop_ns / 1e9:g} s) above {abs(offset_s):.3f} s "
                                 "or fix the camera's stamps")
                    continue
                ok.append(f"{stream} arrives within sync.slop_s ({offset_s * 1e3:+.1f} ms)")
        if not parts:  # every partner arrives in time: sets fall out of the queues
            parts.append("all streams arrive within sync.slop_s but sets do not complete: raise sync.queue_size "
                         "or qos.sensor_depth")
        parts += ok
        return (f"no synchronised frame for {waited:.1f} s although colour arrives on {color_topic}: "
                + "; ".join(parts) + f" (sync.stall_warn_s={config.stall_warn_ns / 1e9:g})")

    def _on_synced(self, matched: SyncedSet) -> None:
        by_stream = dict(zip(self._streams(self.config), matched.messages))
        color_raw, header = by_stream["color"]
        depth = by_stream.get("depth")
        frame = RawFrame(color_raw, depth[0] if depth is not None else None, by_stream["camera_info"], header,
                         self.get_clock().now().nanoseconds, elapsed_ms(self._add_started))
        self._latest = frame  # what a new instruction is answered on
        self._unmatched_color_since = None
        self._stall_reported = False
        self._serve_asks(frame)
        instruction = self.instruction
        if not instruction:
            self.stats.drop(NO_INSTRUCTION)
            return
        with self._wakeup:
            if self._pending is not None:
                self.stats.drop(STALE_FRAME)
            self._pending = PendingFrame(frame, instruction, stamp_to_ns(header.stamp))
            self._wakeup.notify()

    # ---- worker -----------------------------------------------------------------------------------
    def _start_worker(self) -> None:
        self._stop_worker = False
        self._worker = threading.Thread(target=self._work, name="partseg-worker", daemon=True)
        self._worker.start()

    def _stop(self) -> None:
        with self._wakeup:
            self._stop_worker = True
            self._pending = None
            self._wakeup.notify_all()
        if self._worker is not None and self._worker is not threading.current_thread():
            self._worker.join(timeout=30.0)
        self._worker = None

    def _work(self) -> None:
        while True:
            with self._wakeup:
                self._wakeup.wait_for(lambda: self._pending is not None or self._requests or self._ask_frames
                                      or self._stop_worker)
                if self._stop_worker:
                    return
                if self._ask_frames:  # a caller blocks on these
                    frame = self._ask_frames.popleft()
                elif self._requests:  # instructions waiting on an earlier frame come next
                    frame = self._requests.popleft()
                else:
                    frame, self._pending = self._pending, None
            try:
                if not self._active:
                    if frame.ask is not None:
                        frame.ask.error = "node deactivated before the frame was processed"
                    continue
                output = self._process(frame)
                if frame.ask is not None:
                    frame.ask.output = output
            except Rejection as rejection:
                self._reject(rejection.reason, str(rejection))
                if frame.ask is not None:
                    frame.ask.error = f"{rejection.reason}: {rejection}"
            except Exception as exc:  # noqa: BLE001 - report and keep serving
                if frame.ask is not None:
                    frame.ask.error = f"{PROCESSING_ERROR}: {type(exc).__name__}: {exc}"
                if self.closing or not self.context.ok():
                    return  # shutting down (SIGINT mid-frame): publishing fails, nothing to report
                count = self.stats.reject(PROCESSING_ERROR)
                if limited_log(count):
                    self.get_logger().error(f"processing failed: {type(exc).__name__}: {exc}")
                self._publish_if_active("segmentation", messages.segmentation_msg(
                    None, frame.header, frame.instruction, error=f"{type(exc).__name__}: {exc}",
                    backend=self.config.backend if self.config else ""))
            finally:
                if frame.ask is not None:
                    frame.ask.done.set()

    def _decode(self, frame: RawFrame) -> DecodedFrame:
        """Deserialise, decompress and check the frame the worker took (the only one of many that is decoded)."""
        config = self.config
        limits = config.limits
        color_compressed = config.color_transport == "compressed"
        depth_compressed = config.depth_transport == "compressedDepth"
        try:
            color = deserialize_message(frame.color, CompressedImage if color_compressed else Image)
            depth = None
            if frame.depth is not None:
                depth = deserialize_message(frame.depth, CompressedImage if depth_compressed else Image)
        except Exception as exc:  # noqa: BLE001 - rclpy raises several types for bad CDR
            raise Rejection(DESERIALIZATION_FAILED, f"image: {type(exc).__name__}: {exc}") from None
        if not (color_compressed or depth_compressed):
            return decode_frame(color, depth, frame.camera_info, limits)
        try:
            if color_compressed:
                rgb = decode_compressed_color(color.format, color.data, limits.max_image_width,
                                              limits.max_image_height, limits.max_image_bytes)
            else:
                rgb = decode_color(color, limits)
            depth_values = None
            if depth is not None and depth_compressed:
                depth_values = decode_compressed_depth(depth.format, depth.data, limits.max_image_width,
                                                       limits.max_image_height, limits.max_image_bytes)
            elif depth is not None:
                check_image_size("depth image", depth.height, depth.width, depth.encoding, depth.step,
                                 len(depth.data), limits)
                depth_values = (image_to_array(depth, DEPTH_ENCODINGS), depth.encoding)
        except (CompressedFormatError, ImageFormatError) as exc:
            raise Rejection(exc.reason, str(exc)) from None
        return decode_frame_arrays(rgb, depth_values, frame.camera_info, limits, frame.header.frame_id)

    def _process(self, pending: PendingFrame) -> PipelineOutput:
        started = time.perf_counter()
        decoded = self._decode(pending.frame)
        frame = pending
        output = self.run_pipeline(decoded, frame.instruction, frame.header)
        latency_ms = (self.get_clock().now().nanoseconds - frame.origin_ns) / 1e6
        output.segmentation.latency_ms = float(latency_ms)
        # What planners wait for goes out first; views for people only when someone listens.
        publish_started = time.perf_counter()
        self._publish_if_active("segmentation", output.segmentation)
        self._publish_if_active("grasp_regions", output.regions)
        visuals_started = time.perf_counter()
        if self._wanted("mask"):
            self._publish_if_active("mask", self._union_mask_msg(output, frame.header))
        if self._wanted("debug_image"):
            overlay = debug_overlay(decoded.rgb, output.instances)
            self._publish_if_active("debug_image", array_to_image(overlay, "rgb8", frame.header))
        if self._wanted("markers"):
            self._publish_if_active("markers", messages.markers_msg(output.regions, self.config.marker_lifetime_s))
        stages = dict(output.stages_ms, callback=frame.frame.callback_ms,
                      publish=(visuals_started - publish_started) * 1e3, visuals=elapsed_ms(visuals_started))
        overhead_ms = frame.frame.callback_ms + elapsed_ms(started) - output.inference_ms
        self.stats.frame_processed(latency_ms, output.inference_ms, overhead_ms, stages)
        return output

    def _wanted(self, key: str) -> bool:
        publisher = self._pubs.get(key)
        return publisher is not None and publisher.get_subscription_count() > 0

    @staticmethod
    def _union_mask_msg(output: PipelineOutput, header: Header) -> Image:
        if len(output.segmentation.instances) == 1:  # the union is that mask: reuse its bytes
            single = output.segmentation.instances[0].mask
            return Image(header=header, height=single.height, width=single.width, encoding=single.encoding,
                         is_bigendian=single.is_bigendian, step=single.step, data=single.data)
        return mask_to_image(output.union_mask, header)

    def _publish_if_active(self, key: str, msg: Any) -> None:
        publisher = self._pubs.get(key)
        if publisher is not None and self._active:
            publisher.publish(msg)

    def run_pipeline(self, decoded: DecodedFrame, instruction: str, header: Header) -> PipelineOutput:
        """Backend + grasp regions + result messages for one frame (used by topics and the service)."""
        request = GroundingRequest(
            rgb=decoded.rgb, instruction=instruction, depth_m=decoded.depth_m, intrinsics=decoded.intrinsics
        )
        started = time.perf_counter()
        with self._backend_lock:
            if self.backend is None:
                raise RuntimeError("no backend: the node is not configured")
            result: GroundingResult = self.backend.ground(request)
        inference_ms = elapsed_ms(started)
        shape = decoded.rgb.shape[:2]
        for instance in result.instances:
            if instance.mask.shape != shape:
                raise ValueError(f"backend returned a {instance.mask.shape} mask for a {shape} image")
        started = time.perf_counter()
        segmentation = messages.segmentation_msg(result, header, instruction, inference_ms=inference_ms)
        regions, geometry_ms = self._grasp_regions(decoded, result, header, instruction)
        stages = {"geometry": geometry_ms, "messages": elapsed_ms(started) - geometry_ms}
        return PipelineOutput(
            segmentation, regions, result.union_mask(shape), list(result.instances), inference_ms, stages
        )

    def _grasp_regions(
        self, decoded: DecodedFrame, result: GroundingResult, header: Header, instruction: str
    ) -> tuple[GraspRegionArray, float]:
        """The regions message, and the milliseconds spent in the geometry itself."""
        region_header = Header(stamp=header.stamp, frame_id=header.frame_id)
        if decoded.depth_m is None or decoded.camera is None or self._grasp is None:
            return messages.grasp_region_array_msg(region_header, instruction, []), 0.0
        camera_to_target = self._camera_to_target(header)
        if camera_to_target is not None:
            region_header.frame_id = self.config.target_frame
        compute, grasp_config = self._grasp
        out = []
        geometry_ms = 0.0
        for index, instance in enumerate(result.instances):
            started = time.perf_counter()
            region = compute(
                instance.mask, decoded.depth_m, decoded.camera, rgb=decoded.rgb,
                camera_to_target=camera_to_target, config=grasp_config,
            )
            geometry_ms += elapsed_ms(started)
            out.append(messages.grasp_region_msg(
                region, region_header, index, instance.object_label, instance.part_label,
                with_colors=self.config.point_cloud_colors,
            ))
        return messages.grasp_region_array_msg(region_header, instruction, out), geometry_ms

    def _camera_to_target(self, header: Header) -> Optional[RigidTransform]:
        """target_frame <- camera optical frame, or None to stay in the camera frame."""
        target = self.config.target_frame if self.config else ""
        if not target or target == header.frame_id:
            return None
        if self._tf_buffer is not None:
            try:
                stamped = self._tf_buffer.lookup_transform(target, header.frame_id, rclpy.time.Time())
                t, q = stamped.transform.translation, stamped.transform.rotation
                return RigidTransform.from_translation_quaternion(
                    [t.x, t.y, t.z], [q.x, q.y, q.z, q.w], parent_frame=target, child_frame=header.frame_id
                )
            except Exception as exc:  # noqa: BLE001 - tf raises several lookup exception types
                count = self.stats.reject("transform_unavailable")
                if limited_log(count):
                    self.get_logger().warning(
                        f"no transform {target} <- {header.frame_id} ({exc}); grasp regions stay in the camera frame"
                    )
                return None
        return self._static_transform

    # ---- service --------------------------------------------------------------------------------
    def _on_service(self, request: SegmentParts.Request, response: SegmentParts.Response) -> SegmentParts.Response:
        if not self._active or self.config is None:
            response.success = False
            response.message = "node is not active (lifecycle): configure and activate it first"
            return response
        has_depth = request.depth.width > 0 and request.depth.height > 0
        try:
            instruction = check_instruction(request.instruction, self.config.limits)
            has_depth = request.depth.width > 0 and request.depth.height > 0
            has_info = request.camera_info.width > 0 and any(request.camera_info.k)
            decoded = decode_frame(
                request.color, request.depth if has_depth else None, request.camera_info if has_info else None,
                self.config.limits, require_camera_info=False,
            )
            if has_depth and not has_info:
                raise Rejection(CAMERA_INFO_MISSING, "depth given without camera_info: cannot lift masks into 3D")
            output = self.run_pipeline(decoded, instruction, request.color.header)
        except Rejection as rejection:
            self._reject(rejection.reason, f"service: {rejection}")
            response.success = False
            response.message = f"{rejection.reason}: {rejection}"
            return response
        except Exception as exc:  # noqa: BLE001 - answer instead of crashing the service
            if not has_depth and isinstance(exc, ValueError):
                # The .srv makes depth optional; a backend that finds objects in 3D cannot do without it.
                # Say so with its own reason, so a caller can tell "send depth" from a failure.
                self._reject(DEPTH_REQUIRED, f"service: {exc}")
                response.success = False
                response.message = (f"{DEPTH_REQUIRED}: backend {self.config.backend!r} cannot answer a colour-only "
                                    f"request ({exc}); send depth and camera_info")
                response.segmentation = messages.segmentation_msg(
                    None, request.color.header, request.instruction, error=response.message, backend=self.config.backend)
                return response
            self._reject(PROCESSING_ERROR, f"service: {type(exc).__name__}: {exc}")
            response.success = False
            response.message = f"{PROCESSING_ERROR}: {type(exc).__name__}: {exc}"
            return response
        response.success = True
        response.message = "ok" if output.segmentation.instances else "no target"
        response.segmentation = output.segmentation
        response.grasp_regions = output.regions
        return response

    # ---- ask: the answer for the next frame ----------------------------------------------------------
    def _serve_asks(self, frame: RawFrame) -> None:
        """Hand a just-completed frame to every waiting ~/ask request it qualifies for."""
        stamp_ns = stamp_to_ns(frame.header.stamp)
        with self._wakeup:
            if not self._asks_waiting:
                return
            still = []
            for waiter in self._asks_waiting:
                if stamp_ns >= waiter.min_stamp_ns and frame.arrival_ns >= waiter.arrival_ns:
                    self._ask_frames.append(PendingFrame(frame, waiter.instruction, waiter.arrival_ns, ask=waiter))
                else:
                    still.append(waiter)
            self._asks_waiting = still
            self._wakeup.notify()

    def _fail_asks(self, reason: str) -> None:
        with self._wakeup:
            waiting, self._asks_waiting = self._asks_waiting, []
            frames, self._ask_frames = list(self._ask_frames), deque()
        for waiter in waiting + [f.ask for f in frames if f.ask is not None]:
            waiter.error = reason
            waiter.done.set()

    def _on_ask(self, request: AskParts.Request, response: AskParts.Response) -> AskParts.Response:
        """Block until the worker answers ``request.instruction`` on the next qualifying frame, or time out.

        With ``min_stamp_ns`` the frame is the first whose stamp is at or after it, and the
        newest frame already received counts: a client that publishes the frame itself may
        have it arrive before or after the request, and no sleep is needed either way.
        """
        config = self.config
        if not self._active or config is None:
            response.success = False
            response.message = "node is not active (lifecycle): configure and activate it first"
            return response
        try:
            instruction = check_instruction(request.instruction, config.limits)
        except Rejection as rejection:
            self._reject(rejection.reason, f"ask: {rejection}")
            response.success, response.message = False, f"{rejection.reason}: {rejection}"
            return response
        timeout_s = float(request.timeout_s) if request.timeout_s > 0 else config.ask_timeout_s
        now_ns = self.get_clock().now().nanoseconds
        waiter = AskWaiter(instruction, max(int(request.min_stamp_ns), 0), now_ns, threading.Event())
        with self._wakeup:
            latest = self._latest
            if waiter.min_stamp_ns and latest is not None and stamp_to_ns(latest.header.stamp) >= waiter.min_stamp_ns:
                self._ask_frames.append(PendingFrame(latest, instruction, now_ns, ask=waiter))
                self._wakeup.notify()
            else:
                self._asks_waiting.append(waiter)
        if not waiter.done.wait(timeout_s):
            with self._wakeup:  # give up: nobody is waiting for this answer any more
                if waiter in self._asks_waiting:
                    self._asks_waiting.remove(waiter)
                self._ask_frames = deque(f for f in self._ask_frames if f.ask is not waiter)
            if not waiter.done.is_set():
                self.stats.reject(ASK_TIMEOUT)
                response.success = False
                response.message = (f"{ASK_TIMEOUT}: no synchronised frame answered within {timeout_s:g} s; "
                                     + self.stall_diagnosis())
                return response
        output = waiter.output
        if output is None:
            response.success, response.message = False, waiter.error or "no answer"
            return response
        response.success = True
        response.message = "ok" if output.segmentation.instances else "no target"
        response.segmentation = output.segmentation
        response.grasp_regions = output.regions
        return response

    # ---- diagnostics ------------------------------------------------------------------------------
    def status_values(self) -> dict[str, Any]:
        values: dict[str, Any] = {
            "state": "active" if self._active else ("inactive" if self.backend is not None else "unconfigured"),
            "backend": self.config.backend if self.config else str(self.get_parameter("backend").value),
            "instruction": self.instruction,
        }
        values.update(self.stats.snapshot())
        return values

    def _publish_diagnostics(self) -> None:
        try:
            values = self.status_values()
            status = DiagnosticStatus()
            status.name = f"partseg: {self.get_fully_qualified_name()}"
            status.hardware_id = str(values["backend"])
            if values["state"] != "active":
                status.level, status.message = DiagnosticStatus.WARN, f"{values['state']}"
            elif values["frames_in"] == 0:
                status.level, status.message = DiagnosticStatus.WARN, "active, no camera frames yet"
            else:
                status.level = DiagnosticStatus.OK
                status.message = (
                    f"{values['processed_hz']:.1f} Hz processed of {values['input_hz']:.1f} Hz in, "
                    f"latency p50 {values['latency_p50_ms']:.0f} ms"
                )
            status.values = [KeyValue(key=str(k), value=_diagnostic_value(v)) for k, v in values.items()]
            array = DiagnosticArray()
            array.header.stamp = self.get_clock().now().to_msg()
            array.status = [status]
            self._diagnostics_pub.publish(array)
        except Exception as exc:  # noqa: BLE001 - diagnostics must not kill the timer
            self.get_logger().error(f"diagnostics failed: {exc}")


def _diagnostic_value(value: Any) -> str:
    if isinstance(value, float):
        return "nan" if np.isnan(value) else f"{value:.3f}"
    return str(value)


def diagnostics_to_dict(array: DiagnosticArray, node_name: str = NODE_NAME) -> Optional[dict[str, str]]:
    """The partseg node's key/values from a /diagnostics message (None when it is not in it)."""
    for status in array.status:
        if status.name.startswith("partseg: ") and status.name.rstrip("/").endswith(node_name):
            return {kv.key: kv.value for kv in status.values}
    return None


USAGE = """usage: partseg_node [--ros-args --params-file FILE [-p NAME:=VALUE ...] [-r FROM:=TO ...]]

The partseg perception node (lifecycle; -p autostart:=true configures and activates it).
Parameters: config/partseg.yaml and `ros2 param describe /partseg <name>`.
Topics (node name partseg): color/image_raw, aligned_depth_to_color/image_raw and color/camera_info in
(relative: remap them, e.g. -r color/image_raw:=/camera/camera/color/image_raw; transport.color:=compressed
and transport.depth:=compressedDepth read image_transport's <topic>/compressed and <topic>/compressedDepth),
~/instruction in; ~/segmentation, ~/grasp_regions, ~/mask, ~/debug_image, ~/markers and /diagnostics out;
services ~/segment_parts (send a frame) and ~/ask (an instruction, answered on the next frame).
"""


def spin_node(executor: MultiThreadedExecutor, node: PartSegNode, poll_s: float = 0.1) -> None:
    """Spin until Ctrl-C, an external shutdown, or the node's lifecycle shutdown transition.

    An exception escaping the executor (rclpy's InvalidHandle when an entity is
    destroyed while a wait set is built, or any other) is logged and counted under
    ``rejected.executor_error``, and spinning goes on: the process never dies of it.
    """
    while rclpy.ok(context=executor.context) and not node.shutdown_requested:
        try:
            executor.spin_once(timeout_sec=poll_s)
        except (KeyboardInterrupt, ExternalShutdownException):
            return
        except Exception as exc:  # noqa: BLE001 - see the docstring
            if not rclpy.ok(context=executor.context):
                return
            count = node.stats.reject(EXECUTOR_ERROR)
            if limited_log(count):
                node.get_logger().error(f"executor error (survived, #{count}): {type(exc).__name__}: {exc}")


def main(args: Optional[list[str]] = None) -> int:
    """Console entry point: ``partseg_node --ros-args --params-file config/partseg.yaml``."""
    argv = sys.argv if args is None else args
    own = argv[1:argv.index("--ros-args")] if "--ros-args" in argv else argv[1:]
    if any(flag in own for flag in ("-h", "--help")):
        print(USAGE)
        return 0
    rclpy.init(args=argv)
    node = PartSegNode()
    executor = MultiThreadedExecutor(num_threads=4)  # input, timers, segment_parts, ask (which may wait)
    executor.add_node(node)
    code = 0
    try:
        if node.autostart:
            if node.trigger_configure() != TransitionCallbackReturn.SUCCESS:
                node.get_logger().error("autostart: configure failed, staying unconfigured")
                code = 1
            elif node.trigger_activate() != TransitionCallbackReturn.SUCCESS:
                node.get_logger().error("autostart: activate failed")
                code = 1
        spin_node(executor, node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.closing = True
        node._teardown()
        # In this order: shutdown() joins the executor threads, so a service call in flight
        # is answered while its service still exists (test_node_shutdown.py).
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown()
    return code


if __name__ == "__main__":
    sys.exit(main())
