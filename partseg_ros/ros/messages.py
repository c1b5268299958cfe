"""partseg results -> partseg/msg, visualization_msgs/MarkerArray.

The node, the service and the replay tools all build their output here, so a
planner sees the same message whichever path produced it.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

import numpy as np
from builtin_interfaces.msg import Duration
from geometry_msgs.msg import Point, Pose, Quaternion, Vector3
from sensor_msgs.msg import RegionOfInterest
from std_msgs.msg import ColorRGBA, Header
from visualization_msgs.msg import Marker, MarkerArray

from partseg.msg import BoundingBox2D
from partseg.msg import GraspPose as GraspPoseMsg
from partseg.msg import GraspRegion as GraspRegionMsg
from partseg.msg import GraspRegionArray, PartSegmentation
from partseg.msg import PartInstance as PartInstanceMsg
from partseg_ros.geometry.grasp_poses import GraspPose
from partseg_ros.geometry.grasp_region import GraspRegion
from partseg_ros.geometry.transforms import quaternion_to_matrix
from partseg_ros.ros.conversions import mask_to_image, point_cloud2
from partseg_ros.ros.overlay import PALETTE
from partseg_ros.types import GroundingResult, PartInstance



def instance_color(index: int) -> np.ndarray:
    """The same hue the debug overlay gives instance ``index``."""
    return PALETTE[index % len(PALETTE)]


def box_to_roi(box: Sequence[int]) -> RegionOfInterest:
    """Inclusive pixel box (x0, y0, x1, y1) -> RegionOfInterest (all zeros when inverted)."""
    x0, y0, x1, y1 = (int(v) for v in box)
    roi = RegionOfInterest()
    if x1 < x0 or y1 < y0:
        return roi
    roi.x_offset, roi.y_offset = max(0, x0), max(0, y0)
    roi.width, roi.height = x1 - x0 + 1, y1 - y0 + 1
    return roi


def box_to_bbox(box: Sequence[int]) -> BoundingBox2D:
    """Inclusive pixel box (x0, y0, x1, y1) -> vision_msgs-layout BoundingBox2D (all zeros when inverted).

    Pixel centres are integers (ROS/OpenCV), so pixels x0..x1 span x0 - 0.5 to
    x1 + 0.5: centre (x0 + x1) / 2, size x1 - x0 + 1. Axis-aligned (theta 0).
    """
    x0, y0, x1, y1 = (int(v) for v in box)
    bbox = BoundingBox2D()
    if x1 < x0 or y1 < y0:
        return bbox
    bbox.center.position.x, bbox.center.position.y = 0.5 * (x0 + x1), 0.5 * (y0 + y1)
    bbox.size_x, bbox.size_y = float(x1 - x0 + 1), float(y1 - y0 + 1)
    return bbox


def part_instance_msg(instance: PartInstance, header: Header) -> PartInstanceMsg:
    msg = PartInstanceMsg()
    msg.object_label = instance.object_label
    msg.part_label = instance.part_label
    msg.score = float(instance.score)
    msg.mask = mask_to_image(instance.mask, header)
    if instance.mask.any():
        msg.box = box_to_roi(instance.box)
        msg.bbox = box_to_bbox(instance.box)
    msg.explanation = instance.explanation
    return msg


def segmentation_msg(
    result: Optional[GroundingResult],
    header: Header,
    instruction: str,
    inference_ms: float = 0.0,
    latency_ms: float = 0.0,
    error: str = "",
    backend: str = "",
) -> PartSegmentation:
    """The answer to one instruction on one frame; ``result=None`` with ``error`` reports a failure."""
    msg = PartSegmentation()
    msg.header = header
    msg.instruction = instruction
    msg.inference_ms = float(inference_ms)
    msg.latency_ms = float(latency_ms)
    if result is None:
        msg.status = PartSegmentation.STATUS_ERROR
        msg.explanation = error
        msg.backend = backend
        return msg
    msg.backend = result.backend
    msg.object_label = result.object_label
    msg.part_label = result.part_label
    msg.explanation = result.explanation
    msg.instances = [part_instance_msg(inst, header) for inst in result.instances]
    msg.status = PartSegmentation.STATUS_NO_TARGET if result.no_target else PartSegmentation.STATUS_OK
    return msg


def _vector3(values: Any) -> Vector3:
    x, y, z = (float(v) for v in np.asarray(values, dtype=np.float64).reshape(3))
    return Vector3(x=x, y=y, z=z)


def _pose(position: Any, orientation_xyzw: Any) -> Pose:
    """geometry_msgs/Pose from numpy-ish (x, y, z) and (x, y, z, w); the message fields want Python floats."""
    x, y, z = (float(v) for v in np.asarray(position, dtype=np.float64).reshape(3))
    qx, qy, qz, qw = (float(v) for v in np.asarray(orientation_xyzw, dtype=np.float64).reshape(4))
    return Pose(position=Point(x=x, y=y, z=z), orientation=Quaternion(x=qx, y=qy, z=qz, w=qw))


def grasp_pose_msg(pose: GraspPose) -> GraspPoseMsg:
    """A geometry.grasp_poses.GraspPose as partseg/GraspPose (same frame as the region it belongs to)."""
    msg = GraspPoseMsg()
    msg.pose = _pose(pose.position, pose.orientation_xyzw)
    msg.width = float(pose.width)
    msg.pregrasp_standoff = float(pose.pregrasp_standoff)
    msg.quality = float(pose.quality)
    return msg


def grasp_region_msg(
    region: GraspRegion,
    header: Header,
    instance_index: int,
    object_label: str,
    part_label: str,
    with_colors: bool = True,
) -> GraspRegionMsg:
    """A geometry.grasp_region.GraspRegion as the partseg/GraspRegion message (statuses share values)."""
    msg = GraspRegionMsg()
    msg.header = header
    msg.instance_index = int(instance_index)
    msg.object_label = object_label
    msg.part_label = part_label
    msg.status = int(region.status)
    msg.status_reason = region.status_reason
    points = np.asarray(region.points, dtype=np.float32).reshape(-1, 3)
    colors = region.colors if with_colors else None
    msg.points = point_cloud2(points, header, colors)
    msg.centroid_pose = _pose(region.centroid, region.orientation_xyzw)
    msg.box_size = _vector3(region.extents)
    msg.approach_direction = _vector3(region.approach)
    msg.grasp_width = float(region.grasp_width)
    msg.closing_axis = _vector3(region.closing_axis)
    msg.num_valid_points = int(region.num_valid_points)
    msg.depth_coverage = float(region.depth_coverage)
    msg.quality = float(region.quality)
    msg.grasp_poses = [grasp_pose_msg(pose) for pose in region.grasp_poses]
    return msg


def grasp_region_array_msg(header: Header, instruction: str, regions: Sequence[GraspRegionMsg]) -> GraspRegionArray:
    msg = GraspRegionArray()
    msg.header = header
    msg.instruction = instruction
    msg.regions = list(regions)
    return msg


def grasp_pose_markers(
    region: GraspRegionMsg, rgb: Sequence[float], lifetime: Duration, finger_length_m: float = 0.04
) -> list[Marker]:
    """Per grasp pose: a gripper sketch (two fingers, palm, wrist) and an arrow from the pre-grasp to the pose.

    The sketch is drawn in the pose's own frame (the marker's pose is the grasp
    pose): fingers along z at y = +-width/2, reaching half a finger past the
    surface point, so RViz shows exactly the frame a planner gets.
    """
    r, g, b = rgb
    out = []
    for rank, pose in enumerate(region.grasp_poses):
        marker_id = int(region.instance_index) * 64 + rank
        alpha = 1.0 if rank == 0 else 0.5
        half_w, tip, palm = 0.5 * float(pose.width), 0.5 * finger_length_m, -0.5 * finger_length_m
        sketch = Marker(header=region.header, ns="partseg/grasp_gripper", id=marker_id, type=Marker.LINE_LIST)
        sketch.pose = pose.pose
        corners = [
            (0.0, -half_w, palm), (0.0, -half_w, tip),  # finger
            (0.0, half_w, palm), (0.0, half_w, tip),  # finger
            (0.0, -half_w, palm), (0.0, half_w, palm),  # palm
            (0.0, 0.0, palm), (0.0, 0.0, palm - finger_length_m),  # wrist
        ]
        sketch.points = [Point(x=x, y=y, z=z) for x, y, z in corners]
        sketch.scale.x = 0.003 if rank == 0 else 0.0015  # line width
        sketch.color = ColorRGBA(r=r, g=g, b=b, a=alpha)
        sketch.lifetime = lifetime

        q = pose.pose.orientation
        z_axis = quaternion_to_matrix([q.x, q.y, q.z, q.w])[:, 2]
        position = np.array([pose.pose.position.x, pose.pose.position.y, pose.pose.position.z])
        start = position - z_axis * max(float(pose.pregrasp_standoff), 0.01)
        arrow = Marker(header=region.header, ns="partseg/grasp_approach", id=marker_id, type=Marker.ARROW)
        arrow.points = [Point(x=float(start[0]), y=float(start[1]), z=float(start[2])), pose.pose.position]
        arrow.pose.orientation.w = 1.0
        arrow.scale = Vector3(x=0.004, y=0.008, z=0.012)
        arrow.color = ColorRGBA(r=r, g=g, b=b, a=alpha)
        arrow.lifetime = lifetime
        out.extend([sketch, arrow])
    return out


def markers_msg(regions: GraspRegionArray, lifetime_s: float = 0.0, arrow_length_m: float = 0.1) -> MarkerArray:
    """RViz markers per usable region: approach arrow onto the centroid, oriented box, label, and per
    grasp pose a gripper sketch with an arrow from its pre-grasp position.

    Starts with DELETEALL so regions from the previous frame disappear.
    """
    out = MarkerArray()
    clear = Marker()
    clear.header = regions.header
    clear.action = Marker.DELETEALL
    out.markers.append(clear)
    lifetime = Duration(sec=int(lifetime_s), nanosec=int((lifetime_s % 1.0) * 1e9))
    for region in regions.regions:
        if region.status != GraspRegionMsg.STATUS_OK:
            continue
        r, g, b = (float(c) / 255.0 for c in instance_color(region.instance_index))
        header = region.header
        centroid = region.centroid_pose.position
        approach = np.array([region.approach_direction.x, region.approach_direction.y, region.approach_direction.z])

        arrow = Marker(header=header, ns="partseg/approach", id=int(region.instance_index), type=Marker.ARROW)
        start = np.array([centroid.x, centroid.y, centroid.z]) + approach * arrow_length_m
        arrow.points = [Point(x=float(start[0]), y=float(start[1]), z=float(start[2])), centroid]
        arrow.pose.orientation.w = 1.0
        arrow.scale = Vector3(x=0.008, y=0.016, z=0.02)  # shaft, head diameters, head length
        arrow.color = ColorRGBA(r=r, g=g, b=b, a=1.0)
        arrow.lifetime = lifetime

        box = Marker(header=header, ns="partseg/box", id=int(region.instance_index), type=Marker.CUBE)
        box.pose = region.centroid_pose
        box.scale = Vector3(
            x=max(region.box_size.x, 1e-3), y=max(region.box_size.y, 1e-3), z=max(region.box_size.z, 1e-3)
        )
        box.color = ColorRGBA(r=r, g=g, b=b, a=0.35)
        box.lifetime = lifetime

        text = Marker(header=header, ns="partseg/label", id=int(region.instance_index), type=Marker.TEXT_VIEW_FACING)
        label_at = start + approach * 0.03  # beyond the arrow's tail, whatever the frame's "up"
        text.pose.position = Point(x=float(label_at[0]), y=float(label_at[1]), z=float(label_at[2]))
        text.pose.orientation.w = 1.0
        text.scale.z = 0.03
        text.color = ColorRGBA(r=1.0, g=1.0, b=1.0, a=1.0)
        label = "/".join(s for s in (region.object_label, region.part_label) if s) or "part"
        text.text = f"{label} q={region.quality:.2f} w={region.grasp_width * 100:.1f}cm"
        text.lifetime = lifetime
        out.markers.extend([arrow, box, text])
        out.markers.extend(grasp_pose_markers(region, (r, g, b), lifetime))
    return out
