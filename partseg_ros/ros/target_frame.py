"""Where grasp regions are expressed: the camera optical frame, or ``frames.target_frame``.

A planner wants regions in its own frame (a robot base, a world frame). The
transform comes from tf2 when it is installed and ``frames.transform_source``
allows it, else from the fixed ``frames.static_transform``. tf2_ros is not on
PyPI, so this is optional, and a missing transform never fails a frame: the
regions stay in the camera frame, and the miss is counted and logged.
"""

from __future__ import annotations

from typing import Any, Optional

import rclpy
from rclpy.node import Node
from std_msgs.msg import Header

from partseg_ros.geometry.transforms import RigidTransform
from partseg_ros.ros.diagnostics import TRANSFORM_UNAVAILABLE
from partseg_ros.ros.params import NodeConfig
from partseg_ros.ros.stats import NodeStats, limited_log


class TargetFrame:
    """The camera-to-target transform of each frame, for the configured target frame."""

    def __init__(self, node: Node, stats: NodeStats) -> None:
        self._node = node
        self._stats = stats
        self._target = ""
        self._static_transform: Optional[RigidTransform] = None
        self._tf_buffer: Optional[Any] = None
        self._tf_listener: Optional[Any] = None

    def configure(self, config: NodeConfig) -> None:
        """Use ``config``'s target frame; start a tf2 listener when tf2 is the source (or may be)."""
        self._target = config.target_frame
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
            self._node.get_logger().info("tf2_ros not installed: using frames.static_transform")
            return
        self._tf_buffer = tf2_ros.Buffer()
        self._tf_listener = tf2_ros.TransformListener(self._tf_buffer, self._node)

    def reset(self) -> None:
        """Drop the tf2 listener (cleanup); the static transform is replaced at the next configure."""
        self._tf_listener = self._tf_buffer = None

    @property
    def name(self) -> str:
        return self._target

    def camera_to_target(self, header: Header) -> Optional[RigidTransform]:
        """target_frame <- camera optical frame, or None to stay in the camera frame."""
        target = self._target
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
                count = self._stats.reject(TRANSFORM_UNAVAILABLE)
                if limited_log(count):
                    self._node.get_logger().warning(
                        f"no transform {target} <- {header.frame_id} ({exc}); grasp regions stay in the camera frame"
                    )
                return None
        return self._static_transform
