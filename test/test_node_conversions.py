"""Image/CameraInfo/PointCloud2 conversions, input validation and result messages (no DDS)."""

import numpy as np
import pytest
from rclpy.serialization import deserialize_message, serialize_message
from sensor_msgs.msg import CameraInfo, Image, PointCloud2
from std_msgs.msg import Header

from partseg.msg import GraspRegion as GraspRegionMsg
from partseg.msg import PartSegmentation
from partseg_ros.geometry.grasp_region import GraspRegionStatus, compute_grasp_region
from partseg_ros.ros import messages
from partseg_ros.ros.conversions import (
    intrinsics_to_camera_info,
    BAD_ENCODING,
    MALFORMED_IMAGE,
    ImageFormatError,
    array_to_image,
    camera_info_to_camera_model,
    color_to_rgb,
    depth_to_metres,
    image_to_mask,
    mask_to_image,
    point_cloud2,
    point_cloud2_to_arrays,
)
from partseg_ros.ros.overlay import PALETTE, debug_overlay
from partseg_ros.ros.validation import (
    CAMERA_INFO_INVALID,
    CAMERA_INFO_MISSING,
    DEPTH_ALL_INVALID,
    DEPTH_UNITS,
    DEPTH_NONFINITE,
    INSTRUCTION_EMPTY,
    INSTRUCTION_TOO_LONG,
    SIZE_MISMATCH,
    InputLimits,
    Rejection,
    check_instruction,
    decode_frame,
)
from partseg_ros.types import CameraIntrinsics, GroundingResult, PartInstance

RNG = np.random.default_rng(3)


def camera_info(width=64, height=48, fx=60.0, rectified_p=True, d=(0.0,) * 5):
    info = CameraInfo()
    info.width, info.height = width, height
    info.k = [fx, 0.0, width / 2 - 0.5, 0.0, fx, height / 2 - 0.5, 0.0, 0.0, 1.0]
    if rectified_p:
        info.p = [fx * 1.01, 0.0, width / 2, 0.0, 0.0, fx * 1.01, height / 2, 0.0, 0.0, 0.0, 1.0, 0.0]
    info.distortion_model = "plumb_bob"
    info.d = list(d)
    return info


@pytest.mark.parametrize("encoding,order", [("rgb8", [0, 1, 2]), ("bgr8", [2, 1, 0]), ("rgba8", [0, 1, 2]),
                                            ("bgra8", [2, 1, 0])])
def test_colour_encodings_decode_to_rgb(encoding, order):
    rgb = RNG.integers(0, 256, (5, 7, 3), dtype=np.uint8)
    channels = rgb[:, :, order]
    if encoding.endswith("a8"):
        channels = np.concatenate([channels, np.full((5, 7, 1), 77, np.uint8)], axis=2)
    msg = array_to_image(channels, encoding)
    assert np.array_equal(color_to_rgb(msg), rgb)


def test_mono8_becomes_grey_rgb_and_rgb8_is_zero_copy():
    grey = RNG.integers(0, 256, (4, 6), dtype=np.uint8)
    out = color_to_rgb(array_to_image(grey, "mono8"))
    assert out.shape == (4, 6, 3) and np.array_equal(out[:, :, 1], grey)
    msg = array_to_image(RNG.integers(0, 256, (4, 6, 3), dtype=np.uint8), "rgb8")
    view = color_to_rgb(msg)
    assert not view.flags.owndata and not view.flags.writeable
    msg.data[0] = (int(view[0, 0, 0]) + 1) % 256  # the view reads the message buffer itself
    assert view[0, 0, 0] == msg.data[0]


def test_padded_rows_are_honoured():
    rgb = RNG.integers(0, 256, (3, 5, 3), dtype=np.uint8)
    padded = np.zeros((3, 20), np.uint8)
    padded[:, :15] = rgb.reshape(3, 15)
    msg = Image(height=3, width=5, encoding="rgb8", step=20, data=padded.tobytes())
    assert np.array_equal(color_to_rgb(msg), rgb)


def test_depth_16uc1_scale_and_zero_holes_and_big_endian():
    raw = np.array([[0, 1000, 2500], [65535, 1, 0]], dtype=np.uint16)
    metres = depth_to_metres(array_to_image(raw, "16UC1"), scale_16uc1=0.001)
    assert np.isnan(metres[0, 0]) and np.isnan(metres[1, 2])
    assert metres[0, 1] == pytest.approx(1.0) and metres[0, 2] == pytest.approx(2.5)
    assert depth_to_metres(array_to_image(raw, "16UC1"), scale_16uc1=0.0001)[0, 2] == pytest.approx(0.25)
    big = Image(height=2, width=3, encoding="16UC1", is_bigendian=True, step=6, data=raw.astype(">u2").tobytes())
    assert np.allclose(depth_to_metres(big), metres, equal_nan=True)


def test_depth_32fc1_marks_nan_inf_and_nonpositive_invalid():
    raw = np.array([[np.nan, 0.5, np.inf], [-np.inf, -1.0, 0.0]], dtype=np.float32)
    metres = depth_to_metres(array_to_image(raw, "32FC1"))
    assert metres[0, 1] == pytest.approx(0.5)
    assert np.isnan(np.delete(metres.ravel(), 1)).all()


@pytest.mark.parametrize(
    "msg,reason",
    [
        (Image(height=2, width=2, encoding="yuv422", step=4, data=bytes(8)), BAD_ENCODING),
        (Image(height=2, width=2, encoding="rgb8", step=5, data=bytes(10)), MALFORMED_IMAGE),  # step < 6
        (Image(height=2, width=2, encoding="rgb8", step=6, data=bytes(7)), MALFORMED_IMAGE),  # too short
        (Image(height=0, width=2, encoding="rgb8", step=6, data=b""), MALFORMED_IMAGE),
    ],
)
def test_unreadable_images_raise_with_reason(msg, reason):
    with pytest.raises(ImageFormatError) as info:
        color_to_rgb(msg)
    assert info.value.reason == reason


def test_depth_encoding_on_colour_topic_is_bad_encoding():
    with pytest.raises(ImageFormatError) as info:
        color_to_rgb(array_to_image(np.zeros((2, 2), np.uint16), "16UC1"))
    assert info.value.reason == BAD_ENCODING


def test_camera_info_raw_uses_k_rectified_uses_p():
    info = camera_info()
    raw = camera_info_to_camera_model(info, rectified=False).intrinsics
    rect = camera_info_to_camera_model(info, rectified=True).intrinsics
    assert raw.fx == pytest.approx(60.0) and raw.cx == pytest.approx(31.5)
    assert rect.fx == pytest.approx(60.6) and rect.cx == pytest.approx(32.0)
    distorted = camera_info_to_camera_model(camera_info(d=(0.1, -0.05, 0.0, 0.0, 0.0)), rectified=False)
    assert distorted.is_distorted
    assert camera_info_to_camera_model(camera_info(d=(0.1, -0.05, 0.0, 0.0, 0.0)), rectified=False) is distorted


def test_zero_camera_info_is_rejected():
    info = camera_info()
    info.k = [0.0] * 9
    with pytest.raises(ValueError):
        camera_info_to_camera_model(info)


def test_point_cloud_round_trip_with_packed_rgb():
    points = RNG.normal(size=(50, 3)).astype(np.float32)
    colors = RNG.integers(0, 256, (50, 3), dtype=np.uint8)
    msg = point_cloud2(points, Header(frame_id="f"), colors)
    assert [f.name for f in msg.fields] == ["x", "y", "z", "rgb"] and msg.point_step == 16
    msg = deserialize_message(serialize_message(msg), PointCloud2)
    back_points, back_colors = point_cloud2_to_arrays(msg)
    assert np.array_equal(back_points, points) and np.array_equal(back_colors, colors)
    plain = point_cloud2(points, Header())
    assert plain.point_step == 12 and point_cloud2_to_arrays(plain)[1] is None


def test_mask_image_round_trip():
    mask = RNG.random((9, 11)) > 0.5
    msg = mask_to_image(mask)
    assert msg.encoding == "mono8" and set(np.frombuffer(msg.data, np.uint8)) <= {0, 255}
    assert np.array_equal(image_to_mask(msg), mask)


# ---- validation ---------------------------------------------------------------------------------

def frame_messages(width=64, height=48, depth=None, encoding="16UC1"):
    rgb = RNG.integers(0, 256, (height, width, 3), dtype=np.uint8)
    if depth is None:
        depth = np.full((height, width), 800, np.uint16) if encoding == "16UC1" else np.full(
            (height, width), 0.8, np.float32)
    return array_to_image(rgb, "rgb8"), array_to_image(depth, encoding), camera_info(width, height)


def test_valid_frame_decodes():
    color, depth, info = frame_messages()
    frame = decode_frame(color, depth, info, InputLimits())
    assert frame.rgb.shape == (48, 64, 3) and frame.depth_m.dtype == np.float32
    assert np.allclose(frame.depth_m, 0.8) and frame.intrinsics.width == 64


@pytest.mark.parametrize(
    "case,reason",
    [
        ("size_mismatch", SIZE_MISMATCH),
        ("info_size_mismatch", SIZE_MISMATCH),
        ("no_info", CAMERA_INFO_MISSING),
        ("zero_info", CAMERA_INFO_INVALID),
        ("all_zero_depth", DEPTH_ALL_INVALID),
        ("out_of_range_depth", DEPTH_ALL_INVALID),
        ("nan_depth", DEPTH_NONFINITE),
        ("depth_as_colour", BAD_ENCODING),
        ("colour_as_depth", BAD_ENCODING),
    ],
)
def test_bad_frames_are_rejected_with_their_reason(case, reason):
    color, depth, info = frame_messages()
    if case == "size_mismatch":
        # Another aspect ratio is another field of view: refused (the same one is registered, below).
        depth = array_to_image(np.full((24, 40), 800, np.uint16), "16UC1")
    elif case == "info_size_mismatch":
        info = camera_info(32, 24)
    elif case == "no_info":
        info = None
    elif case == "zero_info":
        info.k = [0.0] * 9
    elif case == "all_zero_depth":
        depth = array_to_image(np.zeros((48, 64), np.uint16), "16UC1")
    elif case == "out_of_range_depth":
        depth = array_to_image(np.full((48, 64), 12000, np.uint16), "16UC1")  # 12 m > depth_max_m
    elif case == "nan_depth":
        values = np.full((48, 64), np.nan, np.float32)
        values[::2] = np.inf
        values[0, :5] = 0.7  # a few finite pixels do not make it usable
        depth = array_to_image(values, "32FC1")
    elif case == "depth_as_colour":
        color = array_to_image(np.zeros((48, 64), np.uint16), "16UC1")
    elif case == "colour_as_depth":
        depth = array_to_image(np.zeros((48, 64, 3), np.uint8), "rgb8")
    with pytest.raises(Rejection) as info_:
        decode_frame(color, depth, info, InputLimits())
    assert info_.value.reason == reason
    assert str(info_.value)  # a readable message for the log


def test_partial_nan_depth_is_accepted_as_holes():
    values = np.full((48, 64), 0.9, np.float32)
    values[:20] = np.nan
    color, depth, info = frame_messages(depth=values, encoding="32FC1")
    frame = decode_frame(color, depth, info, InputLimits())
    assert np.isnan(frame.depth_m[:20]).all() and np.isfinite(frame.depth_m[20:]).all()


def test_instruction_checks():
    limits = InputLimits(max_instruction_length=20)
    assert check_instruction("  pick up\tthe   mug\n", limits) == "pick up the mug"
    for text, reason in (("", INSTRUCTION_EMPTY), (" \n\t", INSTRUCTION_EMPTY), ("x" * 21, INSTRUCTION_TOO_LONG)):
        with pytest.raises(Rejection) as info:
            check_instruction(text, limits)
        assert info.value.reason == reason


# ---- result messages ------------------------------------------------------------------------------

def test_segmentation_message_carries_instances_and_no_target():
    mask = np.zeros((48, 64), bool)
    mask[10:20, 30:45] = True
    result = GroundingResult([PartInstance(mask, 0.9, "mug", "handle", explanation="why")], "test",
                             object_label="mug", part_label="handle")
    header = Header(frame_id="cam")
    msg = messages.segmentation_msg(result, header, "pick up the mug", inference_ms=12.0)
    msg = deserialize_message(serialize_message(msg), PartSegmentation)
    assert msg.status == PartSegmentation.STATUS_OK and msg.backend == "test"
    (inst,) = msg.instances
    assert (inst.box.x_offset, inst.box.y_offset, inst.box.width, inst.box.height) == (30, 10, 15, 10)
    assert np.array_equal(image_to_mask(inst.mask), mask) and inst.mask.header.frame_id == "cam"
    empty = messages.segmentation_msg(GroundingResult([], "test"), header, "pick up the unicorn")
    assert empty.status == PartSegmentation.STATUS_NO_TARGET and not empty.instances
    failed = messages.segmentation_msg(None, header, "x", error="boom", backend="test")
    assert failed.status == PartSegmentation.STATUS_ERROR and failed.explanation == "boom"


def plane_scene():
    """A fronto-parallel plane at 0.6 m with a raised 4 cm block on it."""
    intr = CameraIntrinsics(120.0, 120.0, 63.5, 47.5, 128, 96)
    depth = np.full((96, 128), 0.6, np.float32)
    mask = np.zeros((96, 128), bool)
    mask[30:60, 50:90] = True
    depth[mask] = 0.56
    return intr, depth, mask


def test_grasp_region_message_matches_geometry_and_markers_follow():
    intr, depth, mask = plane_scene()
    rgb = np.full((96, 128, 3), 200, np.uint8)
    region = compute_grasp_region(mask, depth, intr, rgb=rgb)
    assert region.status == GraspRegionStatus.OK
    header = Header(frame_id="cam")
    msg = messages.grasp_region_msg(region, header, 0, "block", "top")
    msg = deserialize_message(serialize_message(msg), GraspRegionMsg)
    points, colors = point_cloud2_to_arrays(msg.points)
    assert len(points) == msg.num_valid_points == region.num_valid_points
    assert np.allclose(points.mean(axis=0), region.centroid, atol=1e-4)
    assert msg.centroid_pose.position.z == pytest.approx(0.56, abs=2e-3)
    assert msg.approach_direction.z < -0.9  # facing the camera
    closing = np.array([msg.closing_axis.x, msg.closing_axis.y, msg.closing_axis.z])
    assert np.allclose(closing, region.closing_axis, atol=1e-6) and abs(np.linalg.norm(closing) - 1) < 1e-6
    assert (colors == 200).all()
    array = messages.grasp_region_array_msg(header, "x", [msg])
    markers = messages.markers_msg(array)
    kinds = [m.type for m in markers.markers]
    assert kinds[0] == 0 or markers.markers[0].action == markers.markers[0].DELETEALL
    assert {m.ns for m in markers.markers[1:]} == {
        "partseg/approach", "partseg/box", "partseg/label", "partseg/grasp_gripper", "partseg/grasp_approach"
    }
    empty_region = compute_grasp_region(np.zeros_like(mask), depth, intr)
    bad = messages.grasp_region_msg(empty_region, header, 1, "block", "top")
    assert bad.status == GraspRegionMsg.STATUS_EMPTY_MASK and bad.status_reason
    only_bad = messages.markers_msg(messages.grasp_region_array_msg(header, "x", [bad]))
    assert len(only_bad.markers) == 1  # just DELETEALL


def test_debug_overlay_tints_only_the_instance():
    rgb = np.full((20, 30, 3), 100, np.uint8)
    mask = np.zeros((20, 30), bool)
    mask[5:15, 10:20] = True
    out = debug_overlay(rgb, [PartInstance(mask, 1.0, "a", "b")])
    assert (out[~mask] == 100).sum() > 0 and np.array_equal(out[0, 0], [100, 100, 100])
    centre = out[10, 15].astype(int)
    expected = (100 + PALETTE[0].astype(int)) // 2
    assert np.all(np.abs(centre - expected) <= 1)
    assert np.array_equal(out[5, 12], PALETTE[0].astype(np.uint8))  # outline
    assert np.array_equal(rgb[10, 15], [100, 100, 100])  # input untouched


def test_intrinsics_to_camera_info_round_trips_through_the_camera_model():
    intrinsics = CameraIntrinsics(fx=615.0, fy=612.5, cx=321.25, cy=238.75, width=640, height=480)
    msg = intrinsics_to_camera_info(intrinsics, Header(frame_id="cam"))
    msg = deserialize_message(serialize_message(msg), CameraInfo)
    assert msg.header.frame_id == "cam"
    for rectified in (False, True):
        assert camera_info_to_camera_model(msg, rectified=rectified).intrinsics == intrinsics


# -- depth as real cameras give it (issue 14) ----------------------------------------------------------

def test_depth_at_another_resolution_is_registered_to_the_colour_grid():
    """Half-resolution aligned depth: each colour pixel takes the depth pixel under its centre."""
    color, _, info = frame_messages()
    half = np.arange(24 * 32, dtype=np.uint16).reshape(24, 32) + 500
    frame = decode_frame(color, array_to_image(half, "16UC1"), info, InputLimits())
    assert frame.depth_m.shape == (48, 64)
    assert np.allclose(frame.depth_m, np.repeat(np.repeat(half, 2, axis=0), 2, axis=1) * 0.001)
    double = np.full((96, 128), 900, np.uint16)
    double[:, 64:] = 1800  # a depth edge stays sharp: nearest neighbour, no mixed values
    frame = decode_frame(color, array_to_image(double, "16UC1"), info, InputLimits())
    assert np.allclose(np.unique(frame.depth_m), [0.9, 1.8])


@pytest.mark.parametrize("values,encoding,limits,parameter", [
    (np.full((48, 64), 1, np.uint16), "16UC1", InputLimits(), "depth.scale:=1"),  # metres in 16UC1
    (np.full((48, 64), 800.0, np.float32), "32FC1", InputLimits(), "depth.float_scale:=0.001"),  # mm in 32FC1
])
def test_depth_in_the_wrong_units_is_refused_naming_the_parameter(values, encoding, limits, parameter):
    color, _, info = frame_messages()
    with pytest.raises(Rejection) as info_:
        decode_frame(color, array_to_image(values, encoding), info, limits)
    assert info_.value.reason == DEPTH_UNITS and parameter in str(info_.value)
    # Setting what the message says makes the same stream usable.
    fixed = dict(depth_scale=1.0) if encoding == "16UC1" else dict(depth_float_scale=0.001)
    frame = decode_frame(color, array_to_image(values, encoding), info, InputLimits(**fixed))
    assert 0.5 < float(np.nanmedian(frame.depth_m)) < 1.5
