"""partseg/GraspPose -> moveit_msgs/Grasp, where MoveIt's messages are installed.

moveit_msgs is not a dependency of partseg (it is not on PyPI, and most users
of the part masks never plan with MoveIt), so it is imported only when a
conversion is asked for; without it the call raises an ImportError saying how
to get it. The mapping itself is plain numpy
(:func:`partseg_ros.geometry.grasp_poses.moveit_grasp_fields`) and tested
without MoveIt; this module only copies those numbers into the message.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
from std_msgs.msg import Header

from partseg.msg import GraspPose as GraspPoseMsg
from partseg_ros.geometry.grasp_poses import GraspPose, moveit_grasp_fields
from partseg_ros.geometry.transforms import quaternion_to_matrix


def _moveit_msgs() -> Any:
    try:
        import moveit_msgs.msg as moveit
    except ImportError as error:
        raise ImportError(
            "partseg_ros.ros.moveit_grasp needs moveit_msgs, which is not installed here: "
            "`sudo apt install ros-$ROS_DISTRO-moveit-msgs` (or build moveit_msgs in your workspace) "
            "and source the workspace; the numbers alone come from "
            "partseg_ros.geometry.grasp_poses.moveit_grasp_fields without MoveIt"
        ) from error
    return moveit


def grasp_pose_from_msg(msg: GraspPoseMsg) -> GraspPose:
    """partseg/GraspPose -> the geometry dataclass (same frame)."""
    q = msg.pose.orientation
    position = np.array([msg.pose.position.x, msg.pose.position.y, msg.pose.position.z], dtype=np.float64)
    rotation = quaternion_to_matrix([q.x, q.y, q.z, q.w])
    return GraspPose(position, rotation, float(msg.width), float(msg.pregrasp_standoff), float(msg.quality))


def to_moveit_grasp(
    pose: GraspPoseMsg,
    header: Header,
    grasp_id: str = "",
    tcp_offset_m: float = 0.0,
    eef_from_gripper_xyzw: Sequence[float] = (0.0, 0.0, 0.0, 1.0),
    min_approach_fraction: float = 0.5,
    retreat_m: float = 0.10,
    clearance_m: float = 0.01,
) -> Any:
    """A moveit_msgs/Grasp for one pose of a GraspRegion (``header`` = the region's header).

    Directions are stamped in the region's frame, so they hold whatever the
    end-effector link's axes are. The finger postures (``pre_grasp_posture``,
    ``grasp_posture``) are joint trajectories of the caller's robot and stay
    empty: open the fingers to at least the pose's width plus ``clearance_m``
    (``moveit_grasp_fields(...).opening_m``).
    """
    moveit = _moveit_msgs()
    from geometry_msgs.msg import Point, Pose, PoseStamped, Quaternion, Vector3, Vector3Stamped

    fields = moveit_grasp_fields(
        grasp_pose_from_msg(pose), tcp_offset_m, eef_from_gripper_xyzw, min_approach_fraction, retreat_m, clearance_m
    )

    def vector(values: np.ndarray) -> Vector3Stamped:
        x, y, z = (float(v) for v in values)
        return Vector3Stamped(header=header, vector=Vector3(x=x, y=y, z=z))

    grasp = moveit.Grasp()
    grasp.id = grasp_id
    px, py, pz = (float(v) for v in fields.eef_position)
    qx, qy, qz, qw = (float(v) for v in fields.eef_orientation_xyzw)
    grasp.grasp_pose = PoseStamped(
        header=header, pose=Pose(position=Point(x=px, y=py, z=pz), orientation=Quaternion(x=qx, y=qy, z=qz, w=qw))
    )
    grasp.grasp_quality = fields.quality
    grasp.pre_grasp_approach.direction = vector(fields.approach_direction)
    grasp.pre_grasp_approach.desired_distance = fields.approach_desired_m
    grasp.pre_grasp_approach.min_distance = fields.approach_min_m
    grasp.post_grasp_retreat.direction = vector(fields.retreat_direction)
    grasp.post_grasp_retreat.desired_distance = fields.retreat_desired_m
    grasp.post_grasp_retreat.min_distance = fields.retreat_min_m
    return grasp
