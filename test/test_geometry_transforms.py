"""Rigid transforms: quaternions, composition, inverse, and grasp regions in a target frame."""

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from partseg_ros.geometry.grasp_region import CAMERA_FRAME, compute_grasp_region
from partseg_ros.geometry.transforms import RigidTransform, matrix_to_quaternion, quaternion_to_matrix
from partseg_ros.types import CameraIntrinsics


def test_quaternion_conversions_match_scipy_and_fix_the_sign():
    rotations = Rotation.random(300, random_state=7)
    for rotation in rotations:
        quaternion = matrix_to_quaternion(rotation.as_matrix())
        assert quaternion[3] >= 0
        np.testing.assert_allclose(Rotation.from_quat(quaternion).as_matrix(), rotation.as_matrix(), atol=1e-12)
        np.testing.assert_allclose(quaternion_to_matrix(quaternion), rotation.as_matrix(), atol=1e-12)
    # 180 degree turns have w = 0: the branches of the conversion without the trace.
    for axis in np.eye(3):
        flip = Rotation.from_rotvec(np.pi * axis).as_matrix()
        np.testing.assert_allclose(quaternion_to_matrix(matrix_to_quaternion(flip)), flip, atol=1e-12)


def test_unnormalised_quaternions_are_normalised_and_zero_is_rejected():
    np.testing.assert_allclose(quaternion_to_matrix([0, 0, 0, 5.0]), np.eye(3))
    with pytest.raises(ValueError):
        quaternion_to_matrix([0, 0, 0, 0])


def test_compose_inverse_and_apply():
    base_from_camera = RigidTransform.from_translation_rpy([0.4, -0.1, 0.9], [-2.0, 0.1, -1.4], "base_link", "camera")
    camera_from_base = base_from_camera.inverse()
    assert (camera_from_base.parent_frame, camera_from_base.child_frame) == ("camera", "base_link")
    identity = base_from_camera @ camera_from_base
    np.testing.assert_allclose(identity.matrix, np.eye(4), atol=1e-12)
    points = np.random.default_rng(0).normal(size=(50, 3))
    expected = points @ base_from_camera.matrix[:3, :3].T + base_from_camera.matrix[:3, 3]
    np.testing.assert_allclose(base_from_camera.apply_to_points(points), expected)
    np.testing.assert_allclose(camera_from_base.apply_to_points(expected), points, atol=1e-12)
    np.testing.assert_allclose(base_from_camera.apply_to_vectors(points), points @ base_from_camera.rotation.T)


def test_yaw_turns_x_into_y_and_chains_check_frames():
    yaw = RigidTransform.from_translation_rpy([1.0, 0, 0], [0, 0, np.pi / 2], "world", "base_link")
    np.testing.assert_allclose(yaw.apply_to_points(np.array([[1.0, 0, 0]])), [[1.0, 1.0, 0]], atol=1e-12)
    tool = RigidTransform.from_translation_quaternion([0, 0, 0.1], [0, 0, 0, 1], "base_link", "tool")
    chained = yaw @ tool
    assert (chained.parent_frame, chained.child_frame) == ("world", "tool")
    with pytest.raises(ValueError, match="cannot chain"):
        tool @ yaw


def test_non_rotations_are_rejected():
    with pytest.raises(ValueError):
        RigidTransform(np.diag([1.0, 1.0, -1.0]), np.zeros(3))
    with pytest.raises(ValueError):
        RigidTransform.from_matrix(np.ones((4, 4)))


def test_grasp_region_is_expressed_in_the_target_frame():
    """A fronto-parallel plate 0.5 m ahead of a camera looking down from 1 m above base_link."""
    intrinsics = CameraIntrinsics(500.0, 500.0, 99.5, 79.5, 200, 160)
    depth = np.full((160, 200), 0.5, dtype=np.float32)
    mask = np.zeros((160, 200), dtype=bool)
    mask[60:100, 40:160] = True  # wide in x: the major axis is the camera's x
    # Camera optical frame looking straight down: z_cam = -z_base, x_cam = x_base, y_cam = -y_base.
    base_from_camera = RigidTransform(np.diag([1.0, -1.0, -1.0]), [0.2, 0.0, 1.0], "base_link", "camera_optical")
    in_camera = compute_grasp_region(mask, depth, intrinsics)
    in_base = compute_grasp_region(mask, depth, intrinsics, camera_to_target=base_from_camera)
    assert in_camera.frame == CAMERA_FRAME and in_base.frame == "base_link"
    np.testing.assert_allclose(in_base.centroid, base_from_camera.apply_to_points(in_camera.centroid), atol=1e-9)
    assert in_base.centroid[2] == pytest.approx(0.5, abs=1e-6)  # 0.5 m below a camera at 1 m
    np.testing.assert_allclose(in_base.approach, [0, 0, 1], atol=1e-6)  # up, toward the camera
    assert abs(in_base.axes[0, 0]) == pytest.approx(1.0, abs=1e-6)  # major axis along base x
    np.testing.assert_allclose(np.linalg.det(in_base.axes), 1.0)
    np.testing.assert_allclose(quaternion_to_matrix(in_base.orientation_xyzw), in_base.axes, atol=1e-9)
    np.testing.assert_allclose(in_base.points, base_from_camera.apply_to_points(in_camera.points), atol=1e-6)
    assert in_base.grasp_width == pytest.approx(in_camera.grasp_width)
