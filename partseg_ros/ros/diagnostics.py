"""What the node tells the outside about its health: /diagnostics, rejection logs, the stall diagnosis.

The node never stops for bad input or a failed frame; it counts them. This
module holds the counter names (``rejected.<reason>``, ``dropped.<reason>``,
``events.<name>`` in /diagnostics), the rule for how loudly a rejection is
logged, the periodic /diagnostics message, its reverse for clients, and the
sentence that says why no synchronised frame completes. Kept apart from the
node so a reader can see everything the node reports in one place, and so the
clients that only parse /diagnostics need nothing else of the node.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.callback_groups import CallbackGroup
from rclpy.node import Node

from partseg_ros.ros.params import NodeConfig
from partseg_ros.ros.stats import NodeStats, limited_log
from partseg_ros.ros.sync import ApproximateTimeSync
from partseg_ros.ros.validation import DEPTH_UNITS

NODE_NAME = "partseg"  # the node's default name; its diagnostics status is "partseg: <fully qualified name>"

# Counter names (see the module docstring); the input checks' own reasons are in validation.py.
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
TRANSFORM_UNAVAILABLE = "transform_unavailable"  # no tf to frames.target_frame: regions stay in the camera frame
# Reasons whose cause is a setting, not a bad message: one warning says what to change, then they are counted.
WARN_ONCE = (DEPTH_UNITS,)


class RejectionLog:
    """Count a refused message or failed frame, and log it without flooding the log."""

    def __init__(self, stats: NodeStats, logger: Any) -> None:
        self._stats = stats
        self._logger = logger

    def reject(self, reason: str, message: str) -> None:
        count = self._stats.reject(reason)
        if count == 1 if reason in WARN_ONCE else limited_log(count):
            self._logger.warning(f"rejected ({reason}, #{count}): {message}")


def diagnostic_status(name: str, values: dict[str, Any]) -> DiagnosticStatus:
    """One DiagnosticStatus from the node's status values: WARN until active frames flow, then OK with rates."""
    status = DiagnosticStatus()
    status.name = name
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
    return status


class DiagnosticsPublisher:
    """Publishes the node's status on /diagnostics every ``period_s``, in every lifecycle state.

    A plain publisher and timer (not lifecycle ones): an unconfigured or
    inactive node must still say that it is, and why.
    """

    def __init__(self, node: Node, period_s: float, values: Callable[[], dict[str, Any]],
                 callback_group: CallbackGroup) -> None:
        self._node = node
        self._values = values
        self._publisher = node.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self._timer = node.create_timer(period_s, self.publish, callback_group)

    def publish(self) -> None:
        try:
            status = diagnostic_status(f"partseg: {self._node.get_fully_qualified_name()}", self._values())
            array = DiagnosticArray()
            array.header.stamp = self._node.get_clock().now().to_msg()
            array.status = [status]
            self._publisher.publish(array)
        except Exception as exc:  # noqa: BLE001 - diagnostics must not kill the timer
            self._node.get_logger().error(f"diagnostics failed: {exc}")


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


def stall_diagnosis(sync: Optional[ApproximateTimeSync], config: Optional[NodeConfig], streams: list[str],
                    stream_topics: dict[str, str], unmatched_color_since_ns: Optional[int], now_ns: int) -> str:
    """Why no synchronised frame completes: per partner stream, nothing / silent / stamps beyond slop.

    ``streams`` are the synchroniser's streams, colour first; ``stream_topics``
    the resolved topic of each (what to check); ``unmatched_color_since_ns``
    the first colour arrival since the last completed set.
    """
    if sync is None or config is None:
        return "the node is not configured"
    _, color_arrival = sync.last_seen("color")
    color_topic = stream_topics.get("color", config.color_topic)
    if color_arrival is None:
        return (f"no colour image received on {color_topic} (transport.color={config.color_transport}): check the "
                "topic name or remapping, the transport, and qos.sensor_reliability")
    since = unmatched_color_since_ns
    waited = (now_ns - since) / 1e9 if since is not None else 0.0
    parts: list[str] = []
    ok: list[str] = []
    for stream in streams[1:]:
        topic = stream_topics.get(stream, stream)
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
