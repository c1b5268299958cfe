"""Organised-image filters, normals and PCA frames on small hand-built arrays."""

import numpy as np
import pytest
from scipy import ndimage

from partseg_ros.geometry.filters import (
    NeighbourLinks,
    erode_mask,
    guided_filter,
    readmit_border,
    reject_depth_discontinuities,
    reject_depth_outliers,
)
from partseg_ros.geometry.normals import organised_normals
from partseg_ros.geometry.principal_axes import principal_frame

CROSS = ndimage.generate_binary_structure(2, 1)


def test_erosion_matches_scipy_with_a_cross_element():
    rng = np.random.default_rng(0)
    for radius in (1, 2, 3):
        for _ in range(10):
            mask = ndimage.binary_closing(rng.random((31, 45)) < 0.8)
            expected = ndimage.binary_erosion(mask, structure=CROSS, iterations=radius, border_value=0)
            np.testing.assert_array_equal(erode_mask(mask, radius), expected)
    assert erode_mask(np.ones((3, 3), bool), 0).all()


def _tilted_plane(shape=(40, 60)) -> np.ndarray:
    rows, cols = np.mgrid[0 : shape[0], 0 : shape[1]]
    return (0.6 + 0.001 * cols + 0.0005 * rows).astype(np.float32)


def test_flying_pixels_are_rejected_and_the_smooth_surface_kept():
    depth = _tilted_plane()
    rng = np.random.default_rng(1)
    flying = np.zeros(depth.shape, dtype=bool)
    flying[rng.integers(1, 39, 25), rng.integers(1, 59, 25)] = True
    depth[flying] += rng.uniform(0.02, 0.3, flying.sum()).astype(np.float32)  # mixed toward a far background
    candidates = np.ones(depth.shape, dtype=bool)
    links = NeighbourLinks(depth, candidates, absolute_m=0.005, relative=0.01)
    kept = reject_depth_discontinuities(links, candidates)
    assert not (kept & flying).any()
    assert kept[~flying].mean() > 0.97  # only pixels outvoted by clustered flyers may go


def test_readmission_restores_a_smooth_border_but_not_mask_bleed():
    depth = _tilted_plane()
    depth[:, 45:] = 1.2  # background 0.6 m behind, from column 45
    mask = np.zeros(depth.shape, dtype=bool)
    mask[5:35, 10:47] = True  # the part ends at column 44; columns 45-46 are bleed onto the background
    valid = mask.copy()
    links = NeighbourLinks(depth, valid, absolute_m=0.005, relative=0.01)
    eroded = erode_mask(mask, 2)
    core = reject_depth_discontinuities(links, eroded & valid)
    admitted = readmit_border(links, core, valid & ~eroded, rounds=6)
    true_part = mask.copy()
    true_part[:, 45:] = False
    np.testing.assert_array_equal(admitted, true_part)


def test_depth_outliers_drop_a_detached_cluster_but_keep_a_long_skewed_part():
    rng = np.random.default_rng(2)
    part = rng.uniform(0.55, 0.60, 2000)
    background = rng.uniform(0.80, 0.81, 300)  # table seen through a handle's hole
    strays = np.array([0.1, 3.0, 9.0])
    depths = np.concatenate([part, background, strays]).astype(np.float32)
    keep = reject_depth_outliers(depths, gap_m=0.02)
    np.testing.assert_array_equal(keep, np.arange(depths.size) < part.size)
    # A handle seen end-on: depth spread over 12 cm with most points near the front.
    skewed = (0.5 + 0.12 * rng.random(3000) ** 3).astype(np.float32)
    assert reject_depth_outliers(skewed, gap_m=0.02).all()


def test_organised_normals_of_a_tilted_plane_face_the_camera():
    # Plane z = 0.6 + 0.3 x seen by a 500 px camera: normal (0.3, 0, -1) normalised, toward the camera.
    rows, cols = np.mgrid[0:30, 0:40].astype(np.float64)
    x_ray, y_ray = (cols - 20) / 500, (rows - 15) / 500
    z = 0.6 / (1 - 0.3 * x_ray)
    z[10, 10] = np.nan  # a hole only removes the normals that need it
    normals = organised_normals(x_ray * z, y_ray * z, z, step_px=2)
    expected = np.array([0.3, 0.0, -1.0]) / np.linalg.norm([0.3, 0.0, -1.0])
    np.testing.assert_allclose(normals, np.broadcast_to(expected, normals.shape), atol=1e-9)
    assert len(normals) == 26 * 36 - 5  # none on the 2 px rim, at the hole, nor at the 4 pixels using it


def test_principal_frame_is_right_handed_faces_the_viewer_and_trims_strays():
    rng = np.random.default_rng(3)
    local = rng.uniform([-0.05, -0.01, -0.002], [0.05, 0.01, 0.002], size=(5000, 3))
    rotation = np.linalg.qr(rng.normal(size=(3, 3)))[0]
    rotation *= np.sign(np.linalg.det(rotation))
    points = local @ rotation.T + [0.1, 0.0, 0.7]
    frame = principal_frame(points, viewer=np.zeros(3))
    np.testing.assert_allclose(np.linalg.det(frame.axes), 1.0)
    assert np.dot(frame.axes[:, 2], -frame.centroid) > 0
    for column, true_axis in enumerate(rotation.T):
        assert abs(np.dot(frame.axes[:, column], true_axis)) > 0.999
    np.testing.assert_allclose(frame.extents, [0.1, 0.02, 0.004], atol=5e-4)  # PCA of a random sample tilts slightly
    with_strays = np.concatenate([points, points[:3] + 0.2 * rotation[:, 1]])
    assert principal_frame(with_strays, trim_fraction=0.002).extents[1] < 0.021


def test_guided_filter_moves_a_blurred_edge_onto_the_guide_edge_and_keeps_flat_maps():
    """A step blurred over 9 pixels (an upsampled coarse mask) regains a jump where the guide has its edge."""
    guide = np.zeros((40, 40, 3))
    guide[:, 20:] = 1.0
    truth = (guide[:, :, 0] > 0.5).astype(float)
    blurred = ndimage.uniform_filter(truth, size=9, mode="nearest")
    for subsample in (1, 2, 3):  # fits on a coarser grid, edges still at the full-size guide's
        sharp = guided_filter(guide, blurred, radius_px=4, eps=1e-4, subsample=subsample)
        jump = sharp[:, 20] - sharp[:, 19]
        assert (jump > 0.4).all() and (blurred[:, 20] - blurred[:, 19] < 0.12).all(), subsample
        assert ((sharp > 0.5) == (truth > 0.5)).all(), subsample
    for subsample in (1, 4):
        flat = guided_filter(np.random.default_rng(0).random((30, 30, 3)), np.full((30, 30), 0.7), 3, 0.01, subsample)
        assert np.allclose(flat, 0.7, atol=1e-5), subsample
    with pytest.raises(ValueError, match="differ in size"):
        guided_filter(guide, blurred[:-1], 4, 1e-4)
