"""One camera model (issue 13): the backends lift pixels through the same CameraModel as the grasp regions.

On a raw, distorted camera a pinhole back-projection bends the table and
moves every object; these tests render scenes through a strongly distorted
lens and check that segmentation's 3D points, the table it finds and the
pixels it drops agree with :class:`CameraModel`, and that requests built
from K alone keep working as a distortion-free camera.
"""

from __future__ import annotations

import numpy as np
import pytest

from partseg_ros.backends.pisa_rgbd.crops import CropWindow, height_above_plane
from partseg_ros.backends.shapegrasp import proposals
from partseg_ros.geometry.camera import CameraModel, camera_model_from_camera_info
from partseg_ros.types import CameraIntrinsics, GroundingRequest

K = CameraIntrinsics(fx=615.0, fy=615.0, cx=319.5, cy=239.5, width=640, height=480)
# A wide-angle barrel lens: its corner pixels see rays about 65 px outside a pinhole image of 640x480.
BARREL = CameraModel(K, "plumb_bob", (-0.32, 0.14, 0.0015, -0.0012, -0.035))


def _rgb(height: int = 480, width: int = 640) -> np.ndarray:
    return np.zeros((height, width, 3), np.uint8)


def _table_plane_in_camera(world_from_camera: np.ndarray) -> tuple[np.ndarray, float]:
    """The table top (world z = 0, normal up) as n.p + d = 0 in the optical frame."""
    normal = world_from_camera[:3, :3].T @ np.array([0.0, 0.0, 1.0])
    return normal, float(world_from_camera[2, 3])


@pytest.fixture(scope="module")
def distorted_table():
    from shapegrasp_scenes import render, table

    return render([table()], camera=BARREL, noisy=False)


@pytest.fixture(scope="module")
def distorted_kitchen():
    from shapegrasp_scenes import flower, knife, mug, render, table

    meshes = [table()] + mug(1, -0.15, 0.05, 0.6) + knife(2, 0.05, -0.08, 0.3) + flower(3, 0.12, 0.16, -0.4)
    return render(meshes, camera=BARREL, noisy=False)


# --------------------------------------------------------------- the request carries the camera


def test_request_from_intrinsics_alone_gets_the_equivalent_distortion_free_camera():
    request = GroundingRequest(_rgb(), "pick up the mug", np.ones((480, 640), np.float32), K)
    assert isinstance(request.camera, CameraModel)
    assert request.camera == CameraModel(K) and not request.camera.is_distorted
    assert request.intrinsics == K
    u, v = np.array([0, 639, 320]), np.array([0, 479, 100])
    x, y = request.camera.pixel_rays(u, v)
    np.testing.assert_array_equal(x, (u - K.cx) / K.fx)
    np.testing.assert_array_equal(y, (v - K.cy) / K.fy)


def test_request_from_a_camera_fills_in_its_intrinsics_and_keeps_the_distortion():
    request = GroundingRequest(_rgb(), "pick up the mug", camera=BARREL)
    assert request.camera is BARREL and request.camera.is_distorted
    assert request.intrinsics == K
    assert GroundingRequest(_rgb(), "x", intrinsics=K, camera=BARREL).camera is BARREL  # the same K: accepted


def test_request_whose_intrinsics_contradict_its_camera_is_refused():
    other = CameraIntrinsics(600.0, 600.0, 319.5, 239.5, 640, 480)
    with pytest.raises(ValueError, match="disagree"):
        GroundingRequest(_rgb(), "x", intrinsics=other, camera=BARREL)


@pytest.mark.parametrize("how", ["camera", "intrinsics"])
def test_request_whose_camera_size_does_not_match_the_image_is_refused(how):
    small = CameraIntrinsics(307.5, 307.5, 159.5, 119.5, 320, 240)
    given = {"camera": CameraModel(small)} if how == "camera" else {"intrinsics": small}
    with pytest.raises(ValueError, match="camera describes 320x240 images but the image is 640x480"):
        GroundingRequest(_rgb(), "pick up the mug", **given)


# --------------------------------------------------------------- the camera model's own pieces


def test_strided_camera_rays_are_the_full_camera_rays_at_every_stride_th_pixel():
    for stride in (2, 3):
        grid = BARREL.strided(stride)
        assert grid.shape == (-(-480 // stride), -(-640 // stride))
        assert BARREL.strided(stride) is grid  # one ray map per stride and camera
        x_grid, y_grid = grid.normalized_rays(slice(None), slice(None))
        x_full, y_full = BARREL.normalized_rays(slice(None), slice(None))
        np.testing.assert_allclose(x_grid, x_full[::stride, ::stride], atol=1e-6)
        np.testing.assert_allclose(y_grid, y_full[::stride, ::stride], atol=1e-6)
    assert BARREL.strided(1) is BARREL


def test_pixel_rays_of_a_distorted_camera_reproject_onto_their_pixels():
    rows, cols = np.mgrid[0:480:23, 0:640:29]
    x, y = BARREL.pixel_rays(cols.ravel(), rows.ravel())
    pixels = BARREL.project(np.stack([x, y, np.ones_like(x)], axis=1).astype(np.float64))
    np.testing.assert_allclose(pixels, np.stack([cols.ravel(), rows.ravel()], axis=1), atol=1e-3)
    with pytest.raises(TypeError, match="integer"):
        BARREL.pixel_rays(np.array([1.5]), np.array([2.0]))


def test_pixels_past_a_distortion_fold_over_back_project_to_nothing():
    folding = camera_model_from_camera_info([615.0, 0, 319.5, 0, 615.0, 239.5, 0, 0, 1], [0.0] * 12,
                                            [-0.9, 0.0, 0.0, 0.0, 0.0], "plumb_bob", 640, 480, rectified=False)
    points = folding.backproject(np.ones((480, 640), np.float32))
    assert np.isnan(points[0, 0]).all()  # the corner lies past the fold: no ray, so no point
    assert np.isfinite(points[240, 320]).all()


def test_focal_length_for_metric_sizes_follows_the_lens():
    from partseg_ros.backends.pisa_rgbd.crops import window_focal_px

    assert CameraModel(K).focal_length_at(600.0, 20.0) == K.fx  # a pinhole keeps fx exactly
    centre, corner = BARREL.focal_length_at(319.5, 239.5), BARREL.focal_length_at(620.0, 460.0)
    assert abs(centre - K.fx) < 0.5
    # A barrel lens squeezes the corners: each pixel there covers more of the scene.
    x_left, _ = BARREL.pixel_rays(np.array([619]), np.array([460]))
    x_right, _ = BARREL.pixel_rays(np.array([621]), np.array([460]))
    assert corner == pytest.approx(2.0 / float(x_right[0] - x_left[0]), rel=1e-6)
    assert corner < 0.9 * K.fx
    # pisa_rgbd sizes its crops by the scale at the crop's centre, on training renders and real lenses alike.
    window = CropWindow(x0=600, y0=440, side=41)
    assert window_focal_px(K, window) == K.fx
    assert window_focal_px(BARREL, window) == BARREL.focal_length_at(620.0, 460.0)


# --------------------------------------------------------------- shapegrasp on a distorted lens


def test_shapegrasp_table_points_are_the_camera_models_points(distorted_table):
    view = distorted_table
    request = GroundingRequest(view.rgb, "pick up the mug", view.depth_m, camera=BARREL)
    stride = 2
    plane, depth, _, grid_camera, points = proposals.find_table(request, stride, 0.01)
    assert plane is not None
    valid = np.isfinite(points).all(axis=-1)
    assert valid.mean() > 0.5  # the table, not the background past its edge
    rows, cols = np.nonzero(valid)
    # Every point lies on the ray of the full-resolution pixel its grid cell samples.
    pixels = BARREL.project(points[rows, cols].astype(np.float64))
    np.testing.assert_allclose(pixels[:, 0], cols * stride, atol=2e-3)
    np.testing.assert_allclose(pixels[:, 1], rows * stride, atol=2e-3)
    np.testing.assert_allclose(points[valid][:, 2], depth[valid])


def test_shapegrasp_finds_the_true_table_plane_through_a_distorted_lens(distorted_table):
    view = distorted_table
    truth_normal, truth_offset = _table_plane_in_camera(view.world_from_camera)

    def plane_error(request: GroundingRequest) -> tuple[float, float]:
        plane, *_ = proposals.find_table(request, 2, 0.01)
        angle = np.degrees(np.arccos(np.clip(plane.normal @ truth_normal, -1.0, 1.0)))
        return float(angle), abs(plane.offset - truth_offset)

    angle, offset = plane_error(GroundingRequest(view.rgb, "x", view.depth_m, camera=BARREL))
    assert angle < 0.05 and offset < 0.0005
    # The scene really needs the distortion: K alone bends the table by centimetres.
    pinhole_angle, pinhole_offset = plane_error(GroundingRequest(view.rgb, "x", view.depth_m, K))
    assert pinhole_angle > 10 * max(angle, 0.01) or pinhole_offset > 0.005


def test_shapegrasp_drops_every_table_pixel_of_a_distorted_image(distorted_table):
    view = distorted_table
    table = np.isfinite(view.depth_m)

    def kept_table_share(request: GroundingRequest) -> float:
        plane, depth, *_ = proposals.find_table(request, 2, 0.01)
        everything = proposals.to_full_resolution(np.ones(depth.shape, bool), request, plane, 2)
        return float((everything & table).sum() / table.sum())

    assert kept_table_share(GroundingRequest(view.rgb, "x", view.depth_m, camera=BARREL)) < 0.001
    assert kept_table_share(GroundingRequest(view.rgb, "x", view.depth_m, K)) > 0.05  # the pinhole reading


def test_shapegrasp_object_points_lie_where_the_camera_model_puts_them(distorted_kitchen):
    """The objects the backend segments are made of CameraModel points: they reproject onto their own pixels."""
    from partseg_ros.backends.shapegrasp.segmentation import SegmentationConfig

    view = distorted_kitchen
    request = GroundingRequest(view.rgb, "pick up the mug", view.depth_m, camera=BARREL)
    stride = 2
    plane, _, rgb, _, points = proposals.find_table(request, stride, 0.01)
    clusters = proposals.object_clusters(request, plane, points, rgb, stride, SegmentationConfig())
    assert len(clusters) == 3
    for cluster in clusters:
        rows, cols = np.nonzero(cluster.mask)
        np.testing.assert_array_equal(points[rows, cols], np.asarray(cluster.points_camera, np.float32))
        pixels = BARREL.project(cluster.points_camera.astype(np.float64))
        np.testing.assert_allclose(pixels, np.stack([cols, rows], axis=1) * stride, atol=2e-3)


@pytest.mark.parametrize("instruction, part_id", [("pick up the mug by the handle", 2), ("give the flower", 5),
                                                  ("hand me the knife", 4)])
def test_shapegrasp_grounds_parts_on_a_raw_distorted_image(distorted_kitchen, instruction, part_id):
    """End to end on the raw image of a wide-angle lens, the camera passed as the node will pass it."""
    from partseg_ros.backends.shapegrasp.backend import ShapeGraspBackend

    view = distorted_kitchen
    result = ShapeGraspBackend().ground(GroundingRequest(view.rgb, instruction, view.depth_m, camera=BARREL))
    mask = result.union_mask(view.depth_m.shape)
    truth = view.part_ids == part_id
    assert (mask & truth).sum() / (mask | truth).sum() > 0.5


# --------------------------------------------------------------- pisa_rgbd's crops


def test_pisa_rgbd_height_above_the_table_is_zero_on_a_distorted_table(distorted_table):
    view = distorted_table
    normal, offset = _table_plane_in_camera(view.world_from_camera)
    table = np.isfinite(view.depth_m)
    height = height_above_plane(view.depth_m, BARREL, normal, offset)
    assert np.nanmax(np.abs(height[table])) < 0.0005
    pinhole = height_above_plane(view.depth_m, K, normal, offset)
    assert np.nanmax(np.abs(pinhole[table])) > 0.01  # ignoring D: centimetres off in the corners


@pytest.mark.slow
def test_pisa_rgbd_grounds_the_mug_handle_on_a_distorted_image(distorted_kitchen):
    pytest.importorskip("torch")
    from partseg_ros.backends.registry import create_backend

    view = distorted_kitchen
    result = create_backend("pisa_rgbd").ground(GroundingRequest(view.rgb, "pick up the mug", view.depth_m,
                                                                 camera=BARREL))
    truth = view.part_ids == 2  # the mug's handle
    mask = result.union_mask(truth.shape)
    assert result.part_label == "handle"
    assert (mask & truth).sum() / (mask | truth).sum() > 0.5
