"""What comes into the node: camera frames paired by stamp, and the instruction. Never blocks, never raises.

The camera callbacks run for every message at camera rate, so they only peek
at a serialized image (stamp, size, encoding), check it and hand it to the
synchroniser; the pixels are decoded later by the worker, and only for the
frame it takes (:func:`decode_raw_frame`). A completed colour + depth +
camera_info set becomes the worker's latest frame. Every problem becomes a
counted rejection with a reason instead of an exception.

Also here, because they are about the same streams: the watch that refuses
colour frames whose camera_info never comes, the warning when colour keeps
arriving but no set completes, and the restart when stamps jump back (a bag
replayed again). An instruction is answered on the next frame, or on the
latest one if it arrived recently enough (a paused camera sends no new one).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Mapping
from typing import Any, Optional

from rclpy.node import Node
from rclpy.serialization import deserialize_message
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from std_msgs.msg import Header, String

from partseg_ros.ros.compressed import (
    CompressedFormatError,
    decode_compressed_color,
    decode_compressed_depth,
    peek_compressed,
)
from partseg_ros.ros.conversions import DEPTH_ENCODINGS, ImageFormatError, image_to_array
from partseg_ros.ros.diagnostics import (
    DESERIALIZATION_FAILED,
    INSTRUCTION_OVERFLOW,
    INTERNAL_ERROR,
    NO_INSTRUCTION,
    STALE_FRAME,
    SYNC_RESET,
    SYNC_STALLED,
    RejectionLog,
    stall_diagnosis,
)
from partseg_ros.ros.frame_worker import LatestFrameWorker, PendingFrame, RawFrame
from partseg_ros.ros.node_state import NodeState
from partseg_ros.ros.params import NodeConfig
from partseg_ros.ros.raw import CdrError, peek_image
from partseg_ros.ros.stats import NodeStats, elapsed_ms
from partseg_ros.ros.sync import QUEUE_OVERFLOW, UNMATCHED, ApproximateTimeSync, SyncedSet, stamp_to_ns
from partseg_ros.ros.validation import (
    CAMERA_INFO_MISSING,
    IMAGE_TOO_LARGE,
    INSTRUCTION_EMPTY,
    DecodedFrame,
    Rejection,
    check_image_size,
    check_instruction,
    decode_color,
    decode_frame,
    decode_frame_arrays,
)

CAMERA_INFO_CHECK_PERIOD_S = 0.05  # how often watched colour frames are checked for their camera_info
WATCHED_FRAMES = 64  # colour frames awaiting camera_info that are remembered (older ones are forgotten)


def input_streams(config: NodeConfig) -> list[str]:
    """The synchroniser's streams, colour first (results name the colour frame)."""
    return ["color", "camera_info"] + (["depth"] if config.depth_topic else [])


def decode_raw_frame(frame: RawFrame, config: NodeConfig) -> DecodedFrame:
    """Deserialise, decompress and check the frame the worker took (the only one of many that is decoded)."""
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


class FrameInput:
    """The camera and instruction callbacks and the state they share (all on the node's input group).

    ``stream_topics`` is the interfaces' live map of stream -> resolved topic,
    used to name topics in warnings.
    """

    def __init__(self, node: Node, state: NodeState, stats: NodeStats, rejections: RejectionLog,
                 worker: LatestFrameWorker, stream_topics: Mapping[str, str]) -> None:
        self._node = node
        self._state = state
        self._stats = stats
        self._rejections = rejections
        self._worker = worker
        self._stream_topics = stream_topics
        self._instruction = ""
        self._instruction_lock = threading.Lock()
        self._sync: Optional[ApproximateTimeSync] = None
        self._last_info_arrival_ns: Optional[int] = None
        self._watched: deque[tuple[int, int]] = deque(maxlen=WATCHED_FRAMES)  # (stamp, arrival) awaiting camera_info
        self._unmatched_color_since: Optional[int] = None  # first colour arrival since the last completed set
        self._stall_reported = False
        self._add_started = 0.0  # perf_counter at the start of the sync.add that may complete a set

    @property
    def instruction(self) -> str:
        with self._instruction_lock:
            return self._instruction

    def configure(self, config: NodeConfig) -> None:
        self._sync = ApproximateTimeSync(
            input_streams(config), config.slop_ns, config.sync_queue_size, config.future_tolerance_ns,
            on_match=self._on_synced, reset_jump_back_ns=config.reset_jump_back_ns,
            reset_repeat_after_ns=config.reset_repeat_after_ns,
        )

    def reset(self) -> None:
        """A reconfigured node starts from a clean slate: no instruction, no synchroniser, nothing watched."""
        with self._instruction_lock:
            self._instruction = ""
        self._last_info_arrival_ns = None
        self._sync = None
        self._watched.clear()

    def _now_ns(self) -> int:
        return self._node.get_clock().now().nanoseconds

    # ---- subscription callbacks -----------------------------------------------------------------------
    def on_color(self, raw: bytes) -> None:
        self._guarded(self._on_image, "color", raw)

    def on_depth(self, raw: bytes) -> None:
        self._guarded(self._on_image, "depth", raw)

    def on_camera_info(self, raw: bytes) -> None:
        self._guarded(self._on_info, raw)

    def on_instruction(self, msg: String) -> None:
        self._guarded(self._set_instruction, msg.data)

    def _guarded(self, callback, *args: Any) -> None:
        try:
            callback(*args)
        except Rejection as rejection:
            self._rejections.reject(rejection.reason, str(rejection))
        except Exception as exc:  # noqa: BLE001 - a bad message must never take the node down
            self._rejections.reject(INTERNAL_ERROR, f"{type(exc).__name__}: {exc}")

    def _on_image(self, stream: str, raw: bytes) -> None:
        """Peek at a serialized image (stamp, sizes) and pair it; the pixels stay untouched."""
        started = time.perf_counter()
        config = self._state.config
        compressed = config is not None and (
            config.color_transport == "compressed" if stream == "color"
            else config.depth_transport == "compressedDepth")
        try:
            peek = peek_compressed(raw) if compressed else peek_image(raw)
        except CdrError as exc:
            raise Rejection(DESERIALIZATION_FAILED, f"{stream}: {exc}") from None
        if stream == "color":
            # Stamp to arrival: the DDS transport latency when the camera stamps at capture.
            transport_ms = (self._now_ns() - peek.stamp_ns) / 1e6
            self._stats.frame_received(transport_ms)
        if not self._state.active or config is None:
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
        self._last_info_arrival_ns = self._now_ns()
        try:
            msg = deserialize_message(raw, CameraInfo)
        except Exception as exc:  # noqa: BLE001 - rclpy raises several types for bad CDR
            raise Rejection(DESERIALIZATION_FAILED, f"camera_info: {type(exc).__name__}: {exc}") from None
        self._on_camera_message("camera_info", stamp_to_ns(msg.header.stamp), msg, started)

    def _set_instruction(self, text: str) -> None:
        config = self._state.config
        logger = self._node.get_logger()
        try:
            cleaned = check_instruction(text, config.limits)
        except Rejection as rejection:
            if rejection.reason == INSTRUCTION_EMPTY:
                with self._instruction_lock:
                    self._instruction = ""
                self._worker.clear()
                self._stats.reject(INSTRUCTION_EMPTY)
                logger.info("empty instruction: cleared, no frames are processed until a new one")
                return
            raise
        with self._instruction_lock:
            changed = cleaned != self._instruction
            self._instruction = cleaned
        if changed:
            logger.info(f"instruction: {cleaned!r}")
        if not self._state.active:
            return
        # Every instruction gets an answer: on the latest frame if it is fresh enough
        # (a paused, throttled or replayed camera), otherwise on the next frame.
        latest = self._worker.latest
        now_ns = self._now_ns()
        if latest is None or now_ns - latest.arrival_ns > config.instruction_frame_max_age_ns:
            return
        if self._worker.offer_request(PendingFrame(latest, cleaned, now_ns)):
            self._stats.drop(INSTRUCTION_OVERFLOW)

    # ---- pairing ------------------------------------------------------------------------------------
    def _on_camera_message(self, stream: str, stamp_ns: int, message: Any, started: float) -> None:
        sync, config = self._sync, self._state.config  # local: cleanup may reset them from another thread
        if not self._state.active or sync is None:
            return
        now_ns = self._now_ns()
        if stream == "color" and self._unmatched_color_since is None:
            self._unmatched_color_since = now_ns
        if stream == "color":
            # A camera_info may arrive with or just after its frame: the synchroniser pairs
            # them. When none came for camera_info_timeout_s, this frame is watched, and
            # refused only if its camera_info has not come camera_info_grace_s later.
            last = self._last_info_arrival_ns
            reference = last if last is not None else self._state.active_since_ns
            if now_ns - reference > config.camera_info_timeout_ns:
                self._watched.append((stamp_ns, now_ns))
        # sync.add calls _on_synced synchronously when this message completes a set;
        # the pending frame's callback time is measured from here.
        self._add_started = started
        resets = sync.resets
        reason = sync.add(stream, stamp_ns, message, now_ns)
        if sync.resets != resets:
            self._on_time_line_reset(stream, sync.last_jump_back_ns)
        self._stats.set_drops(UNMATCHED, sync.drops[UNMATCHED])
        self._stats.set_drops(QUEUE_OVERFLOW, sync.drops[QUEUE_OVERFLOW])
        if reason is not None:
            raise Rejection(
                reason,
                f"{stream} stamp {stamp_ns / 1e9:.3f} s refused (node clock {now_ns / 1e9:.3f} s, "
                f"future tolerance {config.future_tolerance_ns / 1e9:.2f} s, "
                f"a jump back beyond sync.reset_jump_back_s={config.reset_jump_back_ns / 1e9:.1f} s starts over)",
            )

    def _on_time_line_reset(self, stream: str, jump_ns: int) -> None:
        """Stamps jumped far back: a bag replayed again or looped, a simulator reset. Start over."""
        self._stats.event(SYNC_RESET)
        self._worker.latest = None
        self._watched.clear()
        what = f"jumped back {jump_ns / 1e9:.1f} s" if jump_ns else "repeated after a silence"
        self._node.get_logger().info(
            f"{stream} stamps {what} (bag restart, loop or simulator reset): synchroniser and stamp checks reset"
        )

    def _on_synced(self, matched: SyncedSet) -> None:
        by_stream = dict(zip(input_streams(self._state.config), matched.messages))
        color_raw, header = by_stream["color"]
        depth = by_stream.get("depth")
        frame = RawFrame(color_raw, depth[0] if depth is not None else None, by_stream["camera_info"], header,
                         self._now_ns(), elapsed_ms(self._add_started))
        self._worker.latest = frame  # what a new instruction is answered on
        self._unmatched_color_since = None
        self._stall_reported = False
        self._worker.serve_asks(frame)
        instruction = self.instruction
        if not instruction:
            self._stats.drop(NO_INSTRUCTION)
            return
        if self._worker.offer_frame(PendingFrame(frame, instruction, stamp_to_ns(header.stamp))):
            self._stats.drop(STALE_FRAME)

    # ---- watching the streams (a timer on the input group) -----------------------------------------
    def check_camera_info(self) -> None:
        """Refuse watched colour frames whose camera_info did not come within the grace period."""
        try:
            sync, config = self._sync, self._state.config
            if sync is None or config is None:
                self._watched.clear()
                return
            now_ns = self._now_ns()
            while self._watched and now_ns - self._watched[0][1] > config.camera_info_grace_ns:
                stamp_ns, arrival_ns = self._watched.popleft()
                last = self._last_info_arrival_ns
                if last is not None and last >= arrival_ns:
                    # A camera_info came after this frame: if it could not be read it was refused
                    # (and counted) on arrival; the frame is left to the synchroniser, which pairs
                    # it or drops it as unmatched, so one frame is never refused twice.
                    continue
                if sync.discard("color", stamp_ns):  # still unpaired: its camera_info never came
                    waited = "never" if last is None else f"{(now_ns - last) / 1e9:.1f} s ago"
                    self._rejections.reject(
                        CAMERA_INFO_MISSING,
                        f"colour frame without camera_info (last on {config.camera_info_topic}: {waited})")
            self._check_stall(sync, config, now_ns)
        except Exception as exc:  # noqa: BLE001 - a timer must not die
            self._rejections.reject(INTERNAL_ERROR, f"camera_info check: {type(exc).__name__}: {exc}")

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
        self._stats.event(SYNC_STALLED)
        self._node.get_logger().warning(self.stall_diagnosis(now_ns))

    def stall_diagnosis(self, now_ns: Optional[int] = None) -> str:
        """Why no synchronised frame completes (see diagnostics.stall_diagnosis)."""
        sync, config = self._sync, self._state.config
        streams = input_streams(config) if config is not None else []
        return stall_diagnosis(sync, config, streams, dict(self._stream_topics), self._unmatched_color_since,
                               self._now_ns() if now_ns is None else now_ns)
