"""Camera models from CameraInfo fields: K vs P, distortion, invalid intrinsics."""

import numpy as np
import pytest

from partseg_ros.geometry.camera import (
    CameraModel,
    InvalidIntrinsicsError,
    as_camera_model,
    camera_model_from_camera_info,
    distort_normalized,
    undistort_normalized,
)
from partseg_ros.geometry.grasp_region import GraspRegionStatus, compute_grasp_region
from partseg_ros.types import CameraIntrinsics

K = [600.0, 0.0, 320.0, 0.0, 602.0, 240.0, 0.0, 0.0, 1.0]
P = [580.0, 0.0, 318.0, 0.0, 0.0, 585.0, 236.0, 0.0, 0.0, 0.0, 1.0, 0.0]
PLUMB_BOB = [0.12, -0.25, 0.001, -0.0015, 0.08]
RATIONAL = [0.3, -0.1, 0.0008, 0.0005, 0.01, 0.25, -0.05, 0.02]
EQUIDISTANT = [-0.02, 0.004, -0.001, 0.0002]


def test_raw_image_uses_k_and_keeps_distortion():
    camera = camera_model_from_camera_info(K, P, PLUMB_BOB, "plumb_bob", 640, 480, rectified=False)
    intrinsics = camera.intrinsics
    assert (intrinsics.fx, intrinsics.fy, intrinsics.cx, intrinsics.cy) == (600, 602, 320, 240)
    assert camera.is_distorted


def test_rectified_image_uses_p_and_ignores_distortion():
    camera = camera_model_from_camera_info(K, P, PLUMB_BOB, "plumb_bob", 640, 480, rectified=True)
    intrinsics = camera.intrinsics
    assert (intrinsics.fx, intrinsics.fy, intrinsics.cx, intrinsics.cy) == (580, 585, 318, 236)
    assert not camera.is_distorted


def test_rectified_without_p_falls_back_to_k_only_when_undistorted():
    camera = camera_model_from_camera_info(K, [0.0] * 12, [0.0] * 5, "plumb_bob", 640, 480, rectified=True)
    assert camera.intrinsics.fx == 600
    with pytest.raises(InvalidIntrinsicsError):
        camera_model_from_camera_info(K, [0.0] * 12, PLUMB_BOB, "plumb_bob", 640, 480, rectified=True)


@pytest.mark.parametrize(
    "k, width",
    [([0.0] * 9, 640), ([600.0, 0, 320, 0, -600.0, 240, 0, 0, 1], 640), ([np.nan, 0, 320, 0, 600, 240, 0, 0, 1], 640),
     (K, 0)],
)
def test_unusable_intrinsics_are_rejected(k, width):
    with pytest.raises(InvalidIntrinsicsError):
        camera_model_from_camera_info(k, [0.0] * 12, [], "", width, 480, rectified=False)


def test_unknown_distortion_model_with_coefficients_is_rejected_but_zero_coefficients_pass():
    with pytest.raises(InvalidIntrinsicsError, match="not supported"):
        camera_model_from_camera_info(K, P, [0.1, 0.0, 0.0, 0.0], "kannala_brandt_xyz", 640, 480, rectified=False)
    camera = camera_model_from_camera_info(K, P, [0.0] * 5, "anything", 640, 480, rectified=False)
    assert not camera.is_distorted


def test_extra_non_zero_coefficients_are_rejected():
    with pytest.raises(InvalidIntrinsicsError, match="thin prism"):
        camera_model_from_camera_info(K, P, PLUMB_BOB + [0.01], "plumb_bob", 640, 480, rectified=False)


@pytest.mark.parametrize("model, coefficients",
                         [("plumb_bob", PLUMB_BOB), ("rational_polynomial", RATIONAL), ("equidistant", EQUIDISTANT)])
def test_undistortion_inverts_the_distortion_model(model, coefficients):
    rng = np.random.default_rng(3)
    x, y = rng.uniform(-0.55, 0.55, 5000), rng.uniform(-0.4, 0.4, 5000)
    xd, yd = distort_normalized(x, y, model, coefficients)
    assert np.max(np.hypot(xd - x, yd - y)) > 1e-3  # the model really distorts
    xu, yu = undistort_normalized(xd, yd, model, coefficients)
    np.testing.assert_allclose(xu, x, atol=1e-9)
    np.testing.assert_allclose(yu, y, atol=1e-9)


def test_plumb_bob_forward_model_matches_the_written_out_formula():
    x, y = np.array([0.3, -0.2]), np.array([-0.1, 0.25])
    k1, k2, p1, p2, k3 = PLUMB_BOB
    r2 = x * x + y * y
    radial = 1 + k1 * r2 + k2 * r2**2 + k3 * r2**3
    expected_x = x * radial + 2 * p1 * x * y + p2 * (r2 + 2 * x * x)
    expected_y = y * radial + p1 * (r2 + 2 * y * y) + 2 * p2 * x * y
    xd, yd = distort_normalized(x, y, "plumb_bob", PLUMB_BOB)
    np.testing.assert_allclose(xd, expected_x, rtol=1e-12)
    np.testing.assert_allclose(yd, expected_y, rtol=1e-12)


def test_distorted_camera_rays_reproject_onto_their_pixels():
    camera = camera_model_from_camera_info(K, P, RATIONAL, "rational_polynomial", 640, 480, rectified=False)
    x, y = camera.normalized_rays(slice(0, 480), slice(0, 640))
    assert x.shape == (480, 640) and np.isfinite(x).mean() > 0.99
    rows, cols = np.mgrid[0:480:37, 0:640:41]
    points = np.stack([x[rows, cols], y[rows, cols], np.ones(rows.shape)], axis=-1).reshape(-1, 3)
    finite = np.isfinite(points).all(axis=1)
    pixels = camera.project(points[finite])
    # The ray map is float32: 1e-4 px is its rounding, far below any depth effect.
    np.testing.assert_allclose(pixels[:, 0], cols.ravel()[finite], atol=1e-4)
    np.testing.assert_allclose(pixels[:, 1], rows.ravel()[finite], atol=1e-4)


def test_grasp_region_on_distorted_image_uses_the_undistorted_rays():
    """A plane at z = 0.5 m seen by a distorted camera: points must reproject through the distortion."""
    camera = camera_model_from_camera_info(K, P, PLUMB_BOB, "plumb_bob", 640, 480, rectified=False)
    depth = np.full((480, 640), 0.5, dtype=np.float32)
    mask = np.zeros((480, 640), dtype=bool)
    mask[20:120, 450:620] = True  # near a corner, where distortion is strong
    region = compute_grasp_region(mask, depth, camera)
    assert region.ok
    reprojected = camera.project(region.points.astype(np.float64))
    np.testing.assert_allclose(reprojected[:, 0], region.pixels[:, 1], atol=1e-3)
    np.testing.assert_allclose(reprojected[:, 1], region.pixels[:, 0], atol=1e-3)
    pinhole = compute_grasp_region(mask, depth, camera.intrinsics)
    assert np.linalg.norm(pinhole.centroid - region.centroid) > 0.002  # ignoring D would be visibly wrong


def test_pinhole_rays_follow_the_pixel_centre_convention():
    camera = as_camera_model(CameraIntrinsics(500.0, 400.0, 100.0, 50.0, 200, 100))
    x, y = camera.normalized_rays(slice(10, 12), slice(100, 103))
    np.testing.assert_allclose(np.broadcast_to(x, (2, 3))[0], [0.0, 1 / 500, 2 / 500])
    np.testing.assert_allclose(np.broadcast_to(y, (2, 3))[:, 0], [-40 / 400, -39 / 400])


def test_bad_intrinsics_status_instead_of_exception():
    mask = np.ones((4, 4), dtype=bool)
    depth = np.ones((4, 4), dtype=np.float32)
    region = compute_grasp_region(mask, depth, CameraIntrinsics(0.0, 0.0, 2.0, 2.0, 4, 4))
    assert region.status == GraspRegionStatus.BAD_INTRINSICS and "focal" in region.status_reason
    wrong_size = compute_grasp_region(mask, depth, CameraModel(CameraIntrinsics(5.0, 5.0, 2.0, 2.0, 8, 4)))
    assert wrong_size.status == GraspRegionStatus.BAD_INTRINSICS and "8x4" in wrong_size.status_reason
