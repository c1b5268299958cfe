"""Grasp poses on the part's surface (issue 14), on the ray-cast analytic scenes of test/geometry_scenes.py.

The bar over the study frames is measured by benchmarks/bench_grasp_poses.py;
these tests check the geometry the poses promise: on the part (not in the air
like a ring handle's centroid), a right-handed orthonormal gripper frame with
z into the surface and y the closing axis, the width of the part across y
under the fingers, the standoff, frames, and the GraspNet / MoveIt mappings.
"""

import numpy as np
import pytest

import geometry_scenes
from partseg_ros.geometry.grasp_poses import (
    GRASPNET_ARRAY_LEN,
    GraspPose,
    GraspPoseParams,
    compute_grasp_poses,
    from_graspnet_array,
    moveit_grasp_fields,
    to_graspnet_array,
)
from partseg_ros.geometry.grasp_region import GraspRegionConfig, compute_grasp_region
from partseg_ros.geometry.transforms import RigidTransform, quaternion_to_matrix
from partseg_ros.scene.depth_noise import DepthNoiseModel
from partseg_ros.types import CameraIntrinsics

ON_SURFACE_M = 0.002  # a pose position is a measured point: within this of the true visible surface
WIDTH_TOLERANCE_M = 0.002


@pytest.fixture(scope="module")
def scenes():
    names = ("mug_handle", "knife_handle", "flower_stem")
    return {name: geometry_scenes.SCENE_BUILDERS[name]() for name in names}


def _distance_to_surface(point: np.ndarray, scene) -> float:
    return float(np.min(np.linalg.norm(scene.visible_points_camera - point, axis=1)))


def _pixel(point: np.ndarray) -> tuple[int, int]:
    k = geometry_scenes.INTRINSICS
    return int(round(k.fx * point[0] / point[2] + k.cx)), int(round(k.fy * point[1] / point[2] + k.cy))


def test_ring_handle_pose_lies_on_the_handle_where_the_centroid_does_not():
    scene = geometry_scenes.mug_handle_scene(azimuth_deg=-90.0)  # the ring seen face on, the mug body behind it
    region = compute_grasp_region(scene.part_mask, scene.frame.depth, geometry_scenes.INTRINSICS)
    assert region.ok and region.grasp_poses
    # The problem: the visible centroid of a ring handle is in the air, in front of the body seen through the ring.
    assert _distance_to_surface(region.centroid, scene) > 0.004
    u, v = _pixel(region.centroid)
    assert not scene.part_mask[v, u]
    for pose in region.grasp_poses:
        assert _distance_to_surface(pose.position, scene) <= ON_SURFACE_M
        u, v = _pixel(pose.position)
        assert scene.part_mask[v, u]


def test_gripper_frame_is_right_handed_orthonormal_with_z_into_the_surface(scenes):
    for name, scene in scenes.items():
        region = compute_grasp_region(scene.part_mask, scene.frame.depth, geometry_scenes.INTRINSICS)
        for pose in region.grasp_poses:
            r = pose.rotation
            np.testing.assert_allclose(r.T @ r, np.eye(3), atol=1e-9, err_msg=name)
            assert np.linalg.det(r) == pytest.approx(1.0, abs=1e-9)
            np.testing.assert_allclose(np.cross(r[:, 1], r[:, 2]), r[:, 0], atol=1e-9)  # x = y cross z
            # Into the surface: against the camera-facing normal, away from the camera.
            assert np.dot(pose.approach, region.approach) == pytest.approx(-1.0, abs=1e-9)
            assert np.dot(pose.approach, pose.position) > 0
            # The quaternion is the same rotation.
            np.testing.assert_allclose(quaternion_to_matrix(pose.orientation_xyzw), r, atol=1e-9)
            # y is the region's closing axis (up to sign), made perpendicular to z.
            assert abs(np.dot(pose.closing_axis, region.closing_axis)) > 0.95


def test_width_is_the_part_extent_across_y_under_the_fingers(scenes):
    config = GraspRegionConfig()
    for name, scene in scenes.items():
        region = compute_grasp_region(scene.part_mask, scene.frame.depth, geometry_scenes.INTRINSICS, config=config)
        pose = region.grasp_poses[0]
        # Ground truth: the supersampled visible surface in the finger slab, across y.
        local = (scene.visible_points_camera - pose.position) @ pose.rotation
        slab = np.abs(local[:, 0]) <= 0.5 * config.grasp_finger_width_m
        truth = np.ptp(local[slab, 1])
        assert abs(pose.width - truth) <= WIDTH_TOLERANCE_M, (name, pose.width, truth)
    # A ring handle's bar is far narrower than the ring the region's width spans.
    handle = compute_grasp_region(scenes["mug_handle"].part_mask, scenes["mug_handle"].frame.depth,
                                  geometry_scenes.INTRINSICS)
    assert handle.grasp_poses[0].width < 0.6 * handle.grasp_width
    # Straight parts: the analytic solid across y, as the region's width is tested.
    for name in ("knife_handle", "flower_stem"):
        scene = scenes[name]
        region = compute_grasp_region(scene.part_mask, scene.frame.depth, geometry_scenes.INTRINSICS)
        pose = region.grasp_poses[0]
        assert abs(pose.width - scene.solid_extent_camera(pose.closing_axis)) <= WIDTH_TOLERANCE_M, name


def test_poses_are_ranked_and_standoff_comes_from_the_config(scenes):
    scene = scenes["flower_stem"]
    config = GraspRegionConfig(pregrasp_standoff_m=0.07, grasp_poses_max=3)
    region = compute_grasp_region(scene.part_mask, scene.frame.depth, geometry_scenes.INTRINSICS, config=config)
    qualities = [pose.quality for pose in region.grasp_poses]
    assert len(qualities) == 3 and qualities == sorted(qualities, reverse=True)
    assert 0.0 < qualities[-1] <= qualities[0] <= region.quality
    for pose in region.grasp_poses:
        assert pose.pregrasp_standoff == 0.07
        np.testing.assert_allclose(pose.pregrasp_position, pose.position - 0.07 * pose.approach)
    # The best pose is the one through the centroid's slab: closest to the centroid along the part.
    along = [abs(np.dot(pose.position - region.centroid, pose.rotation[:, 0])) for pose in region.grasp_poses]
    assert along[0] == min(along)
    off = compute_grasp_region(scene.part_mask, scene.frame.depth, geometry_scenes.INTRINSICS,
                               config=GraspRegionConfig(grasp_poses_max=0))
    assert off.ok and off.grasp_poses == []


def test_poses_with_sensor_noise_stay_on_the_handle(scenes):
    scene = scenes["mug_handle"]
    noisy = DepthNoiseModel().apply(scene.frame.depth, scene.frame.normals, np.random.default_rng(3))
    region = compute_grasp_region(scene.part_mask, noisy, geometry_scenes.INTRINSICS)
    pose = region.grasp_poses[0]
    assert _distance_to_surface(pose.position, scene) <= 0.006  # noise moves the measured point, not off the part
    u, v = _pixel(pose.position)
    assert scene.part_mask[v, u]


def test_poses_follow_the_region_into_the_target_frame(scenes):
    scene = scenes["mug_handle"]
    base_from_camera = RigidTransform.from_matrix(scene.world_from_camera, "base_link", "camera_color_optical_frame")
    in_camera = compute_grasp_region(scene.part_mask, scene.frame.depth, geometry_scenes.INTRINSICS)
    in_base = compute_grasp_region(scene.part_mask, scene.frame.depth, geometry_scenes.INTRINSICS,
                                   camera_to_target=base_from_camera)
    assert in_base.frame == "base_link" and len(in_base.grasp_poses) == len(in_camera.grasp_poses)
    for cam, base in zip(in_camera.grasp_poses, in_base.grasp_poses):
        np.testing.assert_allclose(base.position, base_from_camera.apply_to_points(cam.position), atol=1e-9)
        np.testing.assert_allclose(base.rotation, base_from_camera.rotation @ cam.rotation, atol=1e-9)
        assert base.width == cam.width and base.quality == cam.quality
    # The handle sticks out along +x of the mug (world = base_link here): the pose is on it.
    assert in_base.grasp_poses[0].position[0] > 0.035


def two_bars_scene() -> tuple[np.ndarray, np.ndarray, CameraIntrinsics]:
    """Two separate bars in line (a part cut in two by an occluder): the centroid lies in the gap."""
    intrinsics = CameraIntrinsics(500.0, 500.0, 159.5, 119.5, 320, 240)
    depth = np.full((240, 320), 1.0, dtype=np.float32)
    mask = np.zeros((240, 320), dtype=bool)
    mask[110:130, 60:130] = True
    mask[110:130, 190:260] = True
    depth[mask] = 0.6
    return mask, depth, intrinsics


def test_a_part_in_two_pieces_gets_poses_on_the_pieces_not_in_the_gap():
    mask, depth, intrinsics = two_bars_scene()
    region = compute_grasp_region(mask, depth, intrinsics)
    assert region.ok and region.grasp_poses
    for pose in region.grasp_poses:
        u = int(round(intrinsics.fx * pose.position[0] / pose.position[2] + intrinsics.cx))
        v = int(round(intrinsics.fy * pose.position[1] / pose.position[2] + intrinsics.cy))
        assert mask[v, u], (u, v)
        assert pose.width == pytest.approx(20 * 0.6 / 500, abs=0.6 / 500)  # across the 20-pixel bar
    centroid_u = int(round(intrinsics.fx * region.centroid[0] / region.centroid[2] + intrinsics.cx))
    assert not mask[120, centroid_u]  # the centroid itself is in the gap


def test_graspnet_array_layout_and_round_trip():
    rotation = quaternion_to_matrix([0.1, -0.3, 0.2, 0.9])
    poses = [GraspPose(np.array([0.1, -0.2, 0.6]), rotation, 0.03, 0.1, 0.8),
             GraspPose(np.array([0.0, 0.0, 0.5]), np.eye(3), 0.01, 0.1, 0.4)]
    array = to_graspnet_array(poses, height_m=0.015, depth_m=0.025, object_id=7)
    assert array.shape == (2, GRASPNET_ARRAY_LEN)
    score, width, height, depth = array[0, :4]
    assert (score, width, height, depth) == (0.8, 0.03, 0.015, 0.025) and array[0, 16] == 7
    graspnet_rotation = array[0, 4:13].reshape(3, 3)
    np.testing.assert_allclose(graspnet_rotation[:, 0], poses[0].approach)  # GraspNet x = approach
    np.testing.assert_allclose(graspnet_rotation[:, 1], poses[0].closing_axis)  # GraspNet y = width direction
    assert np.linalg.det(graspnet_rotation) == pytest.approx(1.0)
    np.testing.assert_allclose(array[0, 13:16], poses[0].position)
    back = from_graspnet_array(array, pregrasp_standoff_m=0.1)
    for original, restored in zip(poses, back):
        np.testing.assert_allclose(restored.rotation, original.rotation, atol=1e-12)
        np.testing.assert_allclose(restored.position, original.position)
        assert (restored.width, restored.quality) == (original.width, original.quality)
    with pytest.raises(ValueError, match="17 columns"):
        from_graspnet_array(np.zeros((1, 16)))


def test_moveit_mapping_numbers():
    rotation = quaternion_to_matrix([0.2, 0.1, -0.4, 0.88])
    pose = GraspPose(np.array([0.4, 0.1, 0.2]), rotation, 0.025, 0.12, 0.7)
    fields = moveit_grasp_fields(pose, tcp_offset_m=0.1034, retreat_m=0.08, clearance_m=0.01)
    np.testing.assert_allclose(fields.eef_position, pose.position - 0.1034 * pose.approach)
    np.testing.assert_allclose(quaternion_to_matrix(fields.eef_orientation_xyzw), rotation, atol=1e-9)
    np.testing.assert_allclose(fields.approach_direction, pose.approach)
    np.testing.assert_allclose(fields.retreat_direction, -pose.approach)
    assert (fields.approach_desired_m, fields.approach_min_m) == pytest.approx((0.12, 0.06))
    assert (fields.retreat_desired_m, fields.retreat_min_m) == pytest.approx((0.08, 0.04))
    assert fields.quality == 0.7 and fields.opening_m == pytest.approx(0.035)
    # A link with other axes (e.g. x along the fingers): world_from_eef x eef_from_gripper = world_from_gripper.
    quarter = [0.0, np.sin(np.pi / 4), 0.0, np.cos(np.pi / 4)]
    turned = moveit_grasp_fields(pose, eef_from_gripper_xyzw=quarter)
    eef_rotation = quaternion_to_matrix(turned.eef_orientation_xyzw)
    eef_from_gripper = quaternion_to_matrix(quarter)
    np.testing.assert_allclose(eef_rotation @ eef_from_gripper, rotation, atol=1e-9)


def test_config_validation_of_grasp_pose_fields():
    with pytest.raises(ValueError):
        GraspRegionConfig(pregrasp_standoff_m=-0.1)
    with pytest.raises(ValueError):
        GraspRegionConfig(grasp_finger_width_m=0.0)
    with pytest.raises(ValueError):
        GraspPoseParams(max_poses=-1)
    assert compute_grasp_poses(np.zeros((3, 3)), np.zeros(3), np.eye(3), np.array([0, 0, -1.0]),
                               np.array([0, 1.0, 0]), 1.0) == []


def test_moveit_helper_says_what_to_install_without_moveit():
    pytest.importorskip("rclpy")
    try:
        import moveit_msgs  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("moveit_msgs is installed here")
    from std_msgs.msg import Header

    from partseg.msg import GraspPose as GraspPoseMsg
    from partseg_ros.ros.moveit_grasp import to_moveit_grasp

    with pytest.raises(ImportError, match="moveit_msgs.*moveit_grasp_fields"):
        to_moveit_grasp(GraspPoseMsg(), Header(frame_id="base_link"))
