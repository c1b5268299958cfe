"""Metric functions against hand-computed cases."""

import math

import numpy as np
import pytest

from partseg_ros.evaluation import metrics
from partseg_ros.geometry.camera import CameraModel
from partseg_ros.types import CameraIntrinsics


def _mask(shape, *boxes):
    m = np.zeros(shape, dtype=bool)
    for r0, r1, c0, c1 in boxes:
        m[r0:r1, c0:c1] = True
    return m


def test_iou_of_overlapping_boxes():
    pred = _mask((10, 10), (0, 4, 0, 4))  # 16 px
    target = _mask((10, 10), (2, 6, 2, 6))  # 16 px, overlap 2x2 = 4
    assert metrics.intersection_and_union(pred, target) == (4, 28)
    assert metrics.iou(pred, target) == pytest.approx(4 / 28)


def test_empty_masks():
    empty = np.zeros((5, 5), dtype=bool)
    full = np.ones((5, 5), dtype=bool)
    assert metrics.iou(empty, empty) == 1.0  # nothing predicted for nothing
    assert metrics.iou(empty, full) == 0.0
    assert metrics.iou(full, empty) == 0.0


def test_iou_rejects_mismatched_shapes():
    with pytest.raises(ValueError):
        metrics.iou(np.zeros((4, 4), bool), np.zeros((4, 5), bool))


def test_ciou_differs_from_giou():
    # A big part segmented well and a small part missed entirely.
    inters, unions = [90, 0], [100, 10]
    ious = [0.9, 0.0]
    assert metrics.giou(ious) == pytest.approx(0.45)
    assert metrics.ciou(inters, unions) == pytest.approx(90 / 110)


def test_ciou_ignores_empty_empty_samples_and_is_nan_when_all_empty():
    assert metrics.ciou([5, 0], [10, 0]) == pytest.approx(0.5)
    assert math.isnan(metrics.ciou([0, 0], [0, 0]))


def test_precision_thresholds():
    ious = [0.3, 0.5, 0.62, 0.8, 0.97]
    assert metrics.precision_at_50(ious) == pytest.approx(4 / 5)
    # Passing counts at 0.50..0.95: 4,3,3,2,2,2,2,1,1,1 -> 21 of 50.
    assert metrics.precision_50_95(ious) == pytest.approx(21 / 50)
    assert metrics.precision_50_95(ious) <= metrics.precision_at_50(ious)


def test_precision_threshold_is_inclusive_despite_float_rounding():
    # 11/20 is 0.55 in exact arithmetic; it must pass the 0.55 threshold.
    assert metrics.precision_at([11 / 20], 0.55) == 1.0
    assert metrics.mask_selection_success(0.5)
    assert not metrics.mask_selection_success(0.4999)


def test_micro_and_macro_giou():
    ious = [1.0, 0.0, 0.0, 0.5]
    images = ["a", "a", "a", "b"]
    assert metrics.micro_giou(ious) == pytest.approx(0.375)
    # image a: 1/3, image b: 0.5 -> (1/3 + 1/2) / 2
    assert metrics.macro_giou(ious, images) == pytest.approx((1 / 3 + 0.5) / 2)
    assert metrics.class_balanced_giou(ious, ["handle", "handle", "blade", "blade"]) == pytest.approx((0.5 + 0.25) / 2)


def test_no_target_accuracy_and_false_empty_rate():
    empty = [True, False, True, False, True]
    has_target = [False, False, True, True, True]
    assert metrics.no_target_accuracy(empty, has_target) == pytest.approx(0.5)
    assert metrics.false_empty_rate(empty, has_target) == pytest.approx(2 / 3)
    assert math.isnan(metrics.no_target_accuracy([True], [True]))


def test_grasp_point_criterion_projects_centroid():
    k = CameraIntrinsics(fx=100.0, fy=100.0, cx=10.0, cy=8.0, width=20, height=16)
    part = _mask((16, 20), (10, 14, 12, 16))  # rows 10..13, cols 12..15
    # X = (u - cx) z / fx: pixel (14, 12) at 0.5 m.
    on_part = ((14 - 10) * 0.5 / 100, (12 - 8) * 0.5 / 100, 0.5)
    assert metrics.project_point(on_part, k) == (14, 12)
    assert metrics.grasp_point_on_part(on_part, k, part)
    assert not metrics.grasp_point_on_part((0.0, 0.0, 0.5), k, part)  # image centre, off the part
    assert not metrics.grasp_point_on_part(None, k, part)  # no grasp region: failure
    assert not metrics.grasp_point_on_part((0.0, 0.0, -1.0), k, part)  # behind the camera
    assert not metrics.grasp_point_on_part((10.0, 0.0, 0.5), k, part)  # outside the image


def test_grasp_point_criterion_projects_through_the_lens_distortion():
    # The masks of a raw image are drawn where the lens put the part: plumb_bob k1 = -0.3 pulls the
    # normalised point (0.5, 0.3) in by 1 - 0.3 * 0.34 = 0.898, to pixel (54.45, 37.47), not the pinhole (57, 39).
    k = CameraIntrinsics(fx=50.0, fy=50.0, cx=32.0, cy=24.0, width=64, height=48)
    camera = CameraModel(k, "plumb_bob", (-0.3, 0.0, 0.0, 0.0, 0.0))
    point = (0.5, 0.3, 1.0)
    assert metrics.project_point(point, k) == (57, 39)
    assert metrics.project_point(point, camera) == (54, 37)
    part = _mask((48, 64), (37, 38, 54, 55))
    assert metrics.grasp_point_on_part(point, camera, part)
    assert not metrics.grasp_point_on_part(point, k, part)


def test_latency_and_throughput():
    lat = [100.0, 200.0, 300.0, 400.0, 1000.0]
    stats = metrics.latency_percentiles(lat)
    assert stats["p50_ms"] == pytest.approx(300.0)
    assert stats["p95_ms"] == pytest.approx(400.0 + 0.8 * 600.0)  # linear interpolation between 4th and 5th
    assert metrics.serial_throughput(lat) == pytest.approx(5 / 2.0)
    assert math.isnan(metrics.latency_percentiles([])["p50_ms"])


def test_success_rate():
    assert metrics.success_rate([True, False, True, True]) == pytest.approx(0.75)
    assert math.isnan(metrics.success_rate([]))
