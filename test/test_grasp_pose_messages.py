"""Grasp poses and the vision_msgs-layout box in the messages, across real DDS (issue 14).

A child process builds the grasp regions and the segmentation of a small
scene in a target frame with partseg_ros.ros.messages (the code the node and
the service use) and publishes them on loopback; this process subscribes and
compares what arrives with the geometry computed here. No node and no model:
the messages are the subject, so the test stays a few seconds long.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy  # noqa: E402

from partseg.msg import GraspRegionArray, PartSegmentation  # noqa: E402
from partseg_ros.geometry.grasp_region import GraspRegionConfig, compute_grasp_region  # noqa: E402
from partseg_ros.geometry.transforms import RigidTransform, quaternion_to_matrix  # noqa: E402
from partseg_ros.ros.dds_env import loopback_environment  # noqa: E402
from partseg_ros.types import CameraIntrinsics  # noqa: E402

QOS = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
TOPIC_PREFIX = f"/partseg_test_{os.getpid()}"

SCENE = textwrap.dedent(
    """
    import numpy as np
    from partseg_ros.geometry.transforms import RigidTransform
    from partseg_ros.types import CameraIntrinsics

    INTRINSICS = CameraIntrinsics(500.0, 500.0, 159.5, 119.5, 320, 240)
    CONFIG_KW = dict(pregrasp_standoff_m=0.08, grasp_poses_max=3)
    BASE_FROM_CAMERA = RigidTransform.from_translation_rpy(
        [0.3, -0.1, 0.9], [-2.2, 0.05, -1.5], parent_frame="base_link", child_frame="camera_optical")

    def scene():
        depth = np.full((240, 320), 1.0, dtype=np.float32)
        mask = np.zeros((240, 320), dtype=bool)
        mask[110:130, 60:130] = True  # a bar in two pieces, in line
        mask[110:130, 190:260] = True
        depth[mask] = 0.6
        return mask, depth
    """
)

CHILD = SCENE + textwrap.dedent(
    f"""
    import time
    import rclpy
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
    from std_msgs.msg import Header
    from partseg.msg import GraspRegionArray, PartSegmentation
    from partseg_ros.geometry.grasp_region import GraspRegionConfig, compute_grasp_region
    from partseg_ros.ros import messages
    from partseg_ros.types import GroundingResult, PartInstance

    mask, depth = scene()
    region = compute_grasp_region(mask, depth, INTRINSICS, camera_to_target=BASE_FROM_CAMERA,
                                  config=GraspRegionConfig(**CONFIG_KW))
    rclpy.init()
    node = rclpy.create_node("grasp_pose_publisher")
    qos = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
    regions_pub = node.create_publisher(GraspRegionArray, "{TOPIC_PREFIX}/grasp_regions", qos)
    seg_pub = node.create_publisher(PartSegmentation, "{TOPIC_PREFIX}/segmentation", qos)
    header = Header(frame_id="base_link")
    header.stamp.sec = 42
    array = messages.grasp_region_array_msg(
        header, "pick up the bar", [messages.grasp_region_msg(region, header, 0, "bar", "handle")])
    result = GroundingResult(instances=[PartInstance(mask, 0.9, "bar", "handle")], object_label="bar",
                             part_label="handle", backend="test")
    segmentation = messages.segmentation_msg(result, Header(frame_id="camera_optical"), "pick up the bar")
    regions_pub.publish(array)
    seg_pub.publish(segmentation)
    deadline = time.monotonic() + 30.0
    while time.monotonic() < deadline:
        rclpy.spin_once(node, timeout_sec=0.2)
    """
)


def test_grasp_poses_and_bbox_cross_dds_intact():
    namespace: dict = {}
    exec(SCENE, namespace)  # the very scene the publisher builds
    mask, depth = namespace["scene"]()
    intrinsics: CameraIntrinsics = namespace["INTRINSICS"]
    base_from_camera: RigidTransform = namespace["BASE_FROM_CAMERA"]
    expected = compute_grasp_region(mask, depth, intrinsics, camera_to_target=base_from_camera,
                                    config=GraspRegionConfig(**namespace["CONFIG_KW"]))
    assert expected.ok and len(expected.grasp_poses) >= 2

    context = rclpy.Context()
    rclpy.init(context=context)
    child = subprocess.Popen([sys.executable, "-c", CHILD], env=loopback_environment(base=os.environ),
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        node = rclpy.create_node("grasp_pose_probe", context=context)
        got: dict = {}
        node.create_subscription(GraspRegionArray, f"{TOPIC_PREFIX}/grasp_regions",
                                 lambda m: got.setdefault("regions", m), QOS)
        node.create_subscription(PartSegmentation, f"{TOPIC_PREFIX}/segmentation",
                                 lambda m: got.setdefault("segmentation", m), QOS)
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(node)
        deadline = time.monotonic() + 25.0
        while len(got) < 2 and time.monotonic() < deadline and child.poll() is None:
            executor.spin_once(timeout_sec=0.1)
        assert len(got) == 2, ("nothing arrived; publisher said: "
                               f"{child.stdout.read().decode() if child.poll() is not None else '(running)'}")
    finally:
        child.kill()
        child.wait()
        rclpy.shutdown(context=context)

    region = got["regions"].regions[0]
    assert region.header.frame_id == "base_link" and region.header.stamp.sec == 42
    # Backward compatible: the old fields are still there and unchanged.
    np.testing.assert_allclose(
        [region.centroid_pose.position.x, region.centroid_pose.position.y, region.centroid_pose.position.z],
        expected.centroid, atol=1e-9)
    assert len(region.grasp_poses) == len(expected.grasp_poses)
    for msg, pose in zip(region.grasp_poses, expected.grasp_poses):
        p, q = msg.pose.position, msg.pose.orientation
        np.testing.assert_allclose([p.x, p.y, p.z], pose.position, atol=1e-9)
        np.testing.assert_allclose(quaternion_to_matrix([q.x, q.y, q.z, q.w]), pose.rotation, atol=1e-9)
        assert msg.width == pytest.approx(pose.width, rel=1e-6)
        assert msg.quality == pytest.approx(pose.quality, rel=1e-6)
        assert msg.pregrasp_standoff == pytest.approx(0.08)
    qualities = [m.quality for m in region.grasp_poses]
    assert qualities == sorted(qualities, reverse=True)

    instance = got["segmentation"].instances[0]
    # The mask spans columns 60..259 and rows 110..129.
    assert (instance.box.x_offset, instance.box.y_offset, instance.box.width, instance.box.height) == (60, 110, 200, 20)
    bbox = instance.bbox
    assert (bbox.center.position.x, bbox.center.position.y, bbox.center.theta) == (159.5, 119.5, 0.0)
    assert (bbox.size_x, bbox.size_y) == (200.0, 20.0)


def test_markers_draw_a_gripper_and_an_approach_arrow_per_pose():
    from std_msgs.msg import Header
    from visualization_msgs.msg import Marker

    from partseg_ros.ros import messages

    namespace: dict = {}
    exec(SCENE, namespace)
    mask, depth = namespace["scene"]()
    region = compute_grasp_region(mask, depth, namespace["INTRINSICS"])
    header = Header(frame_id="camera_optical")
    array = messages.grasp_region_array_msg(header, "x", [messages.grasp_region_msg(region, header, 2, "bar", "h")])
    markers = messages.markers_msg(array).markers
    grippers = [m for m in markers if m.ns == "partseg/grasp_gripper"]
    arrows = [m for m in markers if m.ns == "partseg/grasp_approach"]
    assert len(grippers) == len(arrows) == len(region.grasp_poses)
    assert len({m.id for m in grippers}) == len(grippers)
    for marker, pose in zip(grippers, region.grasp_poses):
        assert marker.type == Marker.LINE_LIST and len(marker.points) % 2 == 0
        finger_ys = sorted({round(pt.y, 9) for pt in marker.points})
        assert finger_ys[0] == pytest.approx(-pose.width / 2) and finger_ys[-1] == pytest.approx(pose.width / 2)
    for arrow, pose in zip(arrows, region.grasp_poses):
        tail = np.array([arrow.points[0].x, arrow.points[0].y, arrow.points[0].z])
        head = np.array([arrow.points[1].x, arrow.points[1].y, arrow.points[1].z])
        np.testing.assert_allclose(head, pose.position, atol=1e-9)
        np.testing.assert_allclose(tail, pose.pregrasp_position, atol=1e-9)
