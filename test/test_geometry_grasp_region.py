"""compute_grasp_region on small analytic depth images: statuses, robustness filters, width convention."""

import re
from pathlib import Path

import numpy as np
import pytest

from partseg_ros.geometry.depth import depth_to_metres
from partseg_ros.geometry.grasp_region import (
    GraspRegionConfig,
    GraspRegionStatus,
    compute_grasp_region,
    compute_grasp_regions,
)
from partseg_ros.types import CameraIntrinsics

INTRINSICS = CameraIntrinsics(500.0, 500.0, 159.5, 119.5, 320, 240)
MSG_FILE = Path(__file__).resolve().parents[1] / "msg" / "GraspRegion.msg"


def plate_scene(part_depth: float = 0.6, background_depth: float = 1.0):
    """A fronto-parallel plate (rows 80-159, cols 100-219) in front of a wall."""
    depth = np.full((240, 320), background_depth, dtype=np.float32)
    mask = np.zeros((240, 320), dtype=bool)
    mask[80:160, 100:220] = True
    depth[mask] = part_depth
    return mask, depth


def horizontal_ray_cylinder_depth(radius: float, distance: float) -> np.ndarray:
    """z-depth of a vertical cylinder (axis along camera y) at x = 0, z = distance; NaN off it."""
    cols = np.arange(INTRINSICS.width)
    x_ray = (cols - INTRINSICS.cx) / INTRINSICS.fx
    # (x t)^2 + (t - d)^2 = r^2  ->  (1 + x^2) t^2 - 2 d t + d^2 - r^2 = 0, nearest root.
    a, b, c = 1 + x_ray**2, -2 * distance, distance**2 - radius**2
    disc = b * b - 4 * a * c
    t = np.where(disc >= 0, (-b - np.sqrt(np.clip(disc, 0, None))) / (2 * a), np.nan)
    return np.broadcast_to(t, (INTRINSICS.height, INTRINSICS.width)).astype(np.float32).copy()


def test_status_values_match_the_message_definition():
    constants = dict(re.findall(r"uint8 STATUS_(\w+)=(\d+)", MSG_FILE.read_text()))
    assert {name: int(value) for name, value in constants.items()} == {s.name: s.value for s in GraspRegionStatus}


def test_empty_mask():
    mask, depth = plate_scene()
    region = compute_grasp_region(np.zeros_like(mask), depth, INTRINSICS)
    assert region.status == GraspRegionStatus.EMPTY_MASK and not region.ok
    assert region.points.shape == (0, 3) and region.num_valid_points == 0


def test_all_nan_depth_and_all_zero_16uc1_depth_mean_no_depth():
    mask, _ = plate_scene()
    nan_depth = np.full(mask.shape, np.nan, dtype=np.float32)
    assert compute_grasp_region(mask, nan_depth, INTRINSICS).status == GraspRegionStatus.NO_DEPTH
    zeros = depth_to_metres(np.zeros(mask.shape, dtype=np.uint16))
    region = compute_grasp_region(mask, zeros, INTRINSICS)
    assert region.status == GraspRegionStatus.NO_DEPTH and "9600 mask pixels" in region.status_reason


def test_too_few_points():
    _, depth = plate_scene()
    mask = np.zeros(depth.shape, dtype=bool)
    mask[100:103, 120:124] = True  # 12 pixels
    region = compute_grasp_region(mask, depth, INTRINSICS, config=GraspRegionConfig(min_points=30))
    assert region.status == GraspRegionStatus.TOO_FEW_POINTS
    assert region.num_valid_points == 12 and region.depth_coverage == 1.0
    assert compute_grasp_region(mask, depth, INTRINSICS, config=GraspRegionConfig(min_points=10)).ok


def test_mostly_missing_depth_leaves_too_few_points():
    mask, depth = plate_scene()
    sparse = np.full(depth.shape, np.nan, dtype=np.float32)
    sparse[90:93, 150:153] = 0.6  # 9 valid pixels in a 9600-pixel mask
    region = compute_grasp_region(mask, sparse, INTRINSICS)
    assert region.status == GraspRegionStatus.TOO_FEW_POINTS and "9 of 9600" in region.status_reason


def test_shape_mismatch_is_a_caller_error():
    mask, depth = plate_scene()
    with pytest.raises(ValueError):
        compute_grasp_region(mask[:, :-1], depth, INTRINSICS)
    with pytest.raises(ValueError):
        compute_grasp_region(mask, depth, INTRINSICS, rgb=np.zeros((10, 10, 3), dtype=np.uint8))
    with pytest.raises(ValueError, match="depth_to_metres"):  # raw 16UC1 millimetres are not metres
        compute_grasp_region(mask, (depth * 1000).astype(np.uint16), INTRINSICS)


def test_plate_region_geometry_colours_and_scores():
    mask, depth = plate_scene()
    rgb = np.zeros((240, 320, 3), dtype=np.uint8)
    rgb[..., 0] = (np.arange(320) % 256).astype(np.uint8)[None, :]
    rgb[..., 1] = np.arange(240, dtype=np.uint8)[:, None]
    region = compute_grasp_region(mask, depth, INTRINSICS, rgb=rgb)
    assert region.ok and region.num_valid_points == 9600 and region.depth_coverage == 1.0
    np.testing.assert_array_equal(region.colors[:, 0], region.pixels[:, 1] % 256)
    np.testing.assert_array_equal(region.colors[:, 1], region.pixels[:, 0])
    # Centre of pixels 100..219 and 80..159 lifted to 0.6 m.
    np.testing.assert_allclose(region.centroid, [(159.5 - 159.5) * 0.6 / 500, (119.5 - 119.5) * 0.6 / 500, 0.6],
                               atol=1e-6)
    np.testing.assert_allclose(region.approach, [0, 0, -1], atol=1e-6)
    np.testing.assert_allclose(np.abs(region.axes[:, 0]), [1, 0, 0], atol=1e-6)
    np.testing.assert_allclose(region.extents[:2], [119 * 0.6 / 500, 79 * 0.6 / 500], rtol=0.01)
    assert region.quality == pytest.approx(1.0)
    no_colours = GraspRegionConfig(with_colors=False)
    assert compute_grasp_region(mask, depth, INTRINSICS, rgb=rgb, config=no_colours).colors is None


def test_injected_flying_pixels_are_removed():
    mask, depth = plate_scene()
    rng = np.random.default_rng(4)
    border = mask & ~np.pad(mask[1:-1, 1:-1] & mask[:-2, 1:-1] & mask[2:, 1:-1] & mask[1:-1, :-2] & mask[1:-1, 2:], 1)
    flying = border & (rng.random(mask.shape) < 0.5)
    mix = rng.uniform(0.05, 0.95, flying.sum())
    depth[flying] = (mix * 0.6 + (1 - mix) * 1.0).astype(np.float32)  # between the plate and the wall
    region = compute_grasp_region(mask, depth, INTRINSICS)
    kept = np.zeros(mask.shape, dtype=bool)
    kept[region.pixels[:, 0], region.pixels[:, 1]] = True
    assert flying.sum() > 100 and not (kept & flying).any()
    assert region.centroid[2] == pytest.approx(0.6, abs=1e-6)
    naive = depth[mask].mean()
    assert naive - 0.6 > 0.003  # the test would notice if the flyers stayed


def test_mask_bleed_onto_the_background_is_removed():
    mask, depth = plate_scene()
    bled = mask.copy()
    bled[78:162, 98:222] = True  # 2 px of bleed onto the wall all round
    region = compute_grasp_region(bled, depth, INTRINSICS)
    assert region.num_valid_points == mask.sum()
    assert np.all(np.abs(region.points[:, 2] - 0.6) < 1e-6)


def test_background_seen_through_a_hole_in_the_mask_is_removed():
    mask, depth = plate_scene()
    depth[100:140, 140:180] = 1.0  # a hole in the part: the mask (a box) covers wall there
    region = compute_grasp_region(mask, depth, INTRINSICS)
    assert region.ok and np.all(np.abs(region.points[:, 2] - 0.6) < 1e-6)
    assert region.depth_coverage == pytest.approx((9600 - 1600) / 9600)


def test_width_of_a_cylinder_is_its_diameter_across_the_closing_axis():
    """Visible skin of a 10 mm radius cylinder: 20 mm wide, only 10 mm deep; the gripper needs 20 mm."""
    depth = horizontal_ray_cylinder_depth(radius=0.010, distance=0.5)
    mask = np.isfinite(depth)
    mask[:40] = mask[200:] = False  # 160 rows of cylinder
    region = compute_grasp_region(mask, depth, INTRINSICS)
    assert region.ok
    np.testing.assert_allclose(np.abs(region.axes[:, 0]), [0, 1, 0], atol=1e-3)  # length along image y
    np.testing.assert_allclose(np.abs(region.closing_axis), [1, 0, 0], atol=1e-3)
    assert region.grasp_width == pytest.approx(0.020, abs=0.001)  # one pixel is 1 mm here
    assert region.extents[2] < 0.011  # the minor (depth) axis spans only the near half
    assert region.approach[2] < -0.99  # toward the camera


def test_thin_parts_survive_erosion_and_fall_back_to_the_line_of_sight():
    """A 1 px wide line: erosion would empty it, and no normal can be formed across it."""
    depth = np.full((240, 320), 0.6, dtype=np.float32)
    mask = np.zeros(depth.shape, dtype=bool)
    mask[20:220, 150] = True
    region = compute_grasp_region(mask, depth, INTRINSICS)
    assert region.ok and region.num_valid_points == 200
    line_of_sight = -region.centroid / np.linalg.norm(region.centroid)
    np.testing.assert_allclose(region.approach, line_of_sight)
    np.testing.assert_allclose(np.abs(region.closing_axis), [1, 0, 0], atol=1e-6)
    assert region.grasp_width == pytest.approx(0.5 * 0.6 / 500)  # half a pixel footprint each side of a 1 px line
    assert region.extents[0] == pytest.approx(199 * 0.6 / 500 + 0.5 * 0.6 / 500, rel=1e-3)


def test_batch_helper_keeps_order_and_per_instance_status():
    mask, depth = plate_scene()
    regions = compute_grasp_regions([mask, np.zeros_like(mask), mask[::-1]], depth, INTRINSICS)
    assert [r.status for r in regions] == [GraspRegionStatus.OK, GraspRegionStatus.EMPTY_MASK, GraspRegionStatus.OK]
    bad = compute_grasp_regions([mask], depth, CameraIntrinsics(0, 0, 0, 0, 320, 240))
    assert bad[0].status == GraspRegionStatus.BAD_INTRINSICS


def test_config_validation():
    with pytest.raises(ValueError):
        GraspRegionConfig(erosion_px=-1)
    with pytest.raises(ValueError):
        GraspRegionConfig(extent_trim_fraction=0.6)
