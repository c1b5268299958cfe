"""One Image/CameraInfo codec for rclpy and rosbags messages (issue 13, item 2).

Every case builds the same fields as an rclpy message and as a rosbags message,
each passed through its own CDR serialisation as a subscriber or a bag reader
would receive it, and expects the same answer from both. The bag reader used to
decode with rules of its own: it dropped the distortion coefficients and
rescaled a camera_info of another size, which the node refuses; the last tests
write real bags that show it no longer does.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from rclpy.serialization import deserialize_message, serialize_message
from sensor_msgs.msg import CameraInfo, Image

from partseg_ros.bags import messages as bag_messages
from partseg_ros.bags.format import CAMERA_INFO_TOPIC, typestore
from partseg_ros.bags.reader import read_benchmark
from partseg_ros.bags.writer import BenchmarkFrame, TaskAnnotation, write_benchmark
from partseg_ros.codec import (
    BAD_ENCODING,
    CAMERA_INFO_INVALID,
    IMAGE_TOO_LARGE,
    IMAGE_TOO_SMALL,
    MALFORMED_IMAGE,
    SIZE_MISMATCH,
    CameraInfoError,
    DecodeLimits,
    ImageFormatError,
    camera_from_info,
    color_to_rgb,
    depth_to_metres,
    encode_image,
    is_calibrated,
    labels_to_array,
)
from partseg_ros.evaluation.records import PROTOCOL_FULL
from partseg_ros.evaluation.tasks import iter_tasks
from partseg_ros.ros.conversions import array_to_image, intrinsics_to_camera_info
from partseg_ros.types import CameraIntrinsics

KINDS = ("rclpy", "rosbags")
PLUMB_BOB_D = (0.11, -0.21, 0.001, -0.002, 0.05)


def image(kind: str, *, height: int, width: int, encoding: str, step: int, data: bytes, is_bigendian: bool = False):
    """An Image with exactly these fields, as a subscriber (rclpy) or a bag reader (rosbags) gets it."""
    if kind == "rclpy":
        msg = Image(height=height, width=width, encoding=encoding, is_bigendian=is_bigendian, step=step, data=data)
        return deserialize_message(serialize_message(msg), Image)
    store = typestore()
    msg = bag_messages.image_msg(np.zeros((1, 1), np.uint8), "mono8", 0, "cam")
    msg = dataclasses.replace(msg, height=height, width=width, encoding=encoding, is_bigendian=int(is_bigendian),
                              step=step, data=np.frombuffer(data, np.uint8))
    return store.deserialize_cdr(store.serialize_cdr(msg, "sensor_msgs/msg/Image"), "sensor_msgs/msg/Image")


def camera_info(kind: str, intrinsics: CameraIntrinsics, distortion_model: str = "", distortion=()):
    if kind == "rclpy":
        msg = intrinsics_to_camera_info(intrinsics)
        msg.distortion_model = distortion_model or msg.distortion_model
        msg.d = list(distortion) or list(msg.d)
        return deserialize_message(serialize_message(msg), CameraInfo)
    store = typestore()
    msg = bag_messages.camera_info_msg(intrinsics, 0, "cam", distortion_model, distortion)
    return store.deserialize_cdr(store.serialize_cdr(msg, "sensor_msgs/msg/CameraInfo"), "sensor_msgs/msg/CameraInfo")


@pytest.mark.parametrize("kind", KINDS)
def test_16uc1_with_row_padding_in_both_byte_orders(kind):
    values = np.array([[0, 700, 701], [702, 0, 65000]], dtype=np.uint16)
    for big_endian in (False, True):
        rows = values.astype(">u2" if big_endian else "<u2").tobytes()
        padded = b"".join(rows[r * 6:(r + 1) * 6] + b"\xff\xff" for r in range(2))  # step 8 > 6 bytes
        msg = image(kind, height=2, width=3, encoding="16UC1", step=8, data=padded, is_bigendian=big_endian)
        metres = depth_to_metres(msg)
        np.testing.assert_array_equal(np.isnan(metres), values == 0)
        np.testing.assert_allclose(metres[values > 0], values[values > 0] * 0.001, rtol=1e-6)
        np.testing.assert_array_equal(labels_to_array(image(kind, height=2, width=3, encoding="mono16", step=8,
                                                            data=padded, is_bigendian=big_endian)), values)


@pytest.mark.parametrize("kind", KINDS)
def test_32fc1_is_metres_and_the_last_row_needs_no_padding(kind):
    values = np.array([[0.5, np.nan], [0.0, 2.25]], dtype=np.float32)
    data = values[0].tobytes() + b"\0" * 4 + values[1].tobytes()  # step 12, last row only its 8 bytes
    metres = depth_to_metres(image(kind, height=2, width=2, encoding="32FC1", step=12, data=data))
    np.testing.assert_array_equal(np.isnan(metres), [[False, True], [True, False]])
    assert metres[1, 1] == 2.25
    assert depth_to_metres(image(kind, height=2, width=2, encoding="32FC1", step=12, data=data),
                           scale_32fc1=0.001)[1, 1] == pytest.approx(0.00225)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("fields,reason", [
    (dict(height=2, width=4, encoding="16UC1", step=8, data=b"\0" * 10), MALFORMED_IMAGE),  # needs 16 bytes
    (dict(height=2, width=4, encoding="32FC1", step=8, data=b"\0" * 32), MALFORMED_IMAGE),  # step < 16
    (dict(height=2, width=2, encoding="16UC1", step=5, data=b"\0" * 10), MALFORMED_IMAGE),  # odd step
    (dict(height=2, width=2, encoding="rgb8", step=6, data=b"\0" * 12), BAD_ENCODING),  # colour as depth
    (dict(height=2, width=2, encoding="yuv422", step=4, data=b"\0" * 8), BAD_ENCODING),
])
def test_unreadable_depth_is_refused_with_the_same_reason(kind, fields, reason):
    with pytest.raises(ImageFormatError) as error:
        depth_to_metres(image(kind, **fields))
    assert error.value.reason == reason


@pytest.mark.parametrize("kind", KINDS)
def test_declared_sizes_are_checked_before_anything_is_allocated(kind):
    limits = DecodeLimits()
    # 3 bytes declaring a 4096-row image with a 2**31-byte step: refused from the integers alone.
    huge = image(kind, height=4096, width=640, encoding="rgb8", step=2**31, data=b"abc")
    with pytest.raises(ImageFormatError) as error:
        color_to_rgb(huge, limits)
    assert error.value.reason == IMAGE_TOO_LARGE
    with pytest.raises(ImageFormatError) as error:
        color_to_rgb(huge)  # without limits the data length still refuses it, before any view is made
    assert error.value.reason == MALFORMED_IMAGE
    tiny = image(kind, height=1, width=1, encoding="rgb8", step=3, data=b"abc")
    with pytest.raises(ImageFormatError) as error:
        color_to_rgb(tiny, limits)
    assert error.value.reason == IMAGE_TOO_SMALL


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("encoding,order", [("rgb8", [0, 1, 2]), ("bgr8", [2, 1, 0]), ("bgra8", [2, 1, 0])])
def test_colour_reads_the_same_from_both_kinds(kind, encoding, order):
    rgb = np.random.default_rng(5).integers(0, 256, (4, 5, 3), dtype=np.uint8)
    channels = rgb[:, :, order]
    if encoding == "bgra8":
        channels = np.concatenate([channels, np.full((4, 5, 1), 9, np.uint8)], axis=2)
    encoded = encode_image(channels, encoding)
    msg = image(kind, height=encoded.height, width=encoded.width, encoding=encoding, step=encoded.step,
                data=encoded.data.tobytes(), is_bigendian=encoded.is_bigendian)
    np.testing.assert_array_equal(color_to_rgb(msg), rgb)


def test_both_builders_write_the_fields_the_codec_reads():
    depth_mm = np.array([[0, 1200], [65535, 7]], np.uint16)
    store = typestore()
    rosbags_msg = store.deserialize_cdr(
        store.serialize_cdr(bag_messages.image_msg(depth_mm, "16UC1", 0, "cam"), "sensor_msgs/msg/Image"),
        "sensor_msgs/msg/Image")
    rclpy_msg = deserialize_message(serialize_message(array_to_image(depth_mm, "16UC1")), Image)
    for msg in (rosbags_msg, rclpy_msg):
        assert (msg.height, msg.width, msg.encoding, msg.step) == (2, 2, "16UC1", 4)
        np.testing.assert_allclose(depth_to_metres(msg), [[np.nan, 1.2], [65.535, 0.007]], rtol=1e-6)


K = CameraIntrinsics(60.0, 61.0, 31.5, 23.5, 64, 48)


@pytest.mark.parametrize("kind", KINDS)
def test_camera_info_keeps_its_distortion(kind):
    camera = camera_from_info(camera_info(kind, K, "plumb_bob", PLUMB_BOB_D), image_shape=(48, 64))
    assert camera.intrinsics == K
    assert camera.distortion_model == "plumb_bob" and camera.distortion == pytest.approx(PLUMB_BOB_D)
    assert camera.is_distorted
    # One model per distinct camera_info: the distorted ray map is built once for both kinds.
    assert camera_from_info(camera_info("rclpy", K, "plumb_bob", PLUMB_BOB_D)) is camera
    rectified = camera_from_info(camera_info(kind, K, "plumb_bob", PLUMB_BOB_D), rectified=True)
    assert not rectified.is_distorted and rectified.intrinsics == K  # P = K here


@pytest.mark.parametrize("kind", KINDS)
def test_camera_info_of_another_size_is_refused_not_rescaled(kind):
    with pytest.raises(CameraInfoError) as error:
        camera_from_info(camera_info(kind, K), image_shape=(96, 128))
    assert error.value.reason == SIZE_MISMATCH and "64x48" in str(error.value) and "128x96" in str(error.value)


@pytest.mark.parametrize("kind", KINDS)
def test_unusable_camera_info_is_refused(kind):
    uncalibrated = camera_info(kind, K)
    if kind == "rclpy":
        uncalibrated.k = [0.0] * 9
    else:
        uncalibrated = dataclasses.replace(uncalibrated, k=np.zeros(9))
    assert not is_calibrated(uncalibrated) and is_calibrated(camera_info(kind, K))
    for bad in (uncalibrated, camera_info(kind, CameraIntrinsics(np.nan, 60.0, 31.5, 23.5, 64, 48)),
                camera_info(kind, CameraIntrinsics(60.0, 60.0, 900.0, 23.5, 64, 48)),  # centre far outside
                camera_info(kind, K, "kannala_brandt", (0.1, 0.0, 0.0, 0.0))):  # unsupported model
        with pytest.raises(CameraInfoError) as error:
            camera_from_info(bad)
        assert error.value.reason == CAMERA_INFO_INVALID
    with pytest.raises(CameraInfoError, match="focal_length"):
        camera_from_info(camera_info(kind, CameraIntrinsics(0.5, 0.5, 31.5, 23.5, 64, 48)), limits=DecodeLimits())


# -- the bag reader follows the same rules ------------------------------------------------------------

H, W = 24, 32
BAG_K = CameraIntrinsics(30.0, 30.0, 15.5, 11.5, W, H)


def _frame(**changes) -> BenchmarkFrame:
    object_ids = np.zeros((H, W), np.uint16)
    part_ids = np.zeros((H, W), np.uint16)
    object_ids[4:12, 2:12], part_ids[4:12, 2:10], part_ids[4:12, 10:12] = 1, 1, 2
    fields = dict(scene="mugs", rgb=np.full((H, W, 3), 120, np.uint8), object_ids=object_ids, part_ids=part_ids,
                  object_names=["background", "mug"], part_names=["background", "mug/body", "mug/handle"],
                  depth_m=np.full((H, W), 0.6, np.float32), intrinsics=BAG_K,
                  tasks=[TaskAnnotation("mug", "pick up the mug", ("mug",), ("handle",), (2,))])
    fields.update(changes)
    return BenchmarkFrame(**fields)


def _rewrite_camera_info(source: Path, target: Path, change) -> None:
    """Copy a bag message by message, passing each camera_info through ``change`` (a real recording's flaw)."""
    from rosbags.rosbag2 import Reader, Writer

    store = typestore()
    with Reader(source) as reader, Writer(target, version=9) as writer:
        connections = {c.id: writer.add_connection(c.topic, c.msgtype, typestore=store) for c in reader.connections}
        for connection, log_ns, raw in reader.messages():
            if connection.topic == CAMERA_INFO_TOPIC:
                raw = store.serialize_cdr(change(store.deserialize_cdr(raw, connection.msgtype)), connection.msgtype)
            writer.write(connections[connection.id], log_ns, raw)


def test_bag_reader_keeps_the_recorded_distortion(tmp_path):
    write_benchmark(tmp_path / "bag", [_frame(distortion_model="plumb_bob", distortion=PLUMB_BOB_D)])
    (sample,) = read_benchmark(tmp_path / "bag")
    assert sample.camera.distortion_model == "plumb_bob"
    assert sample.camera.distortion == pytest.approx(PLUMB_BOB_D)
    assert sample.intrinsics == BAG_K
    (task,) = iter_tasks(tmp_path / "bag")
    assert task.request(PROTOCOL_FULL).camera is sample.camera  # the in-process backend gets the recorded lens


def test_bag_reader_refuses_a_camera_info_of_another_size(tmp_path):
    write_benchmark(tmp_path / "bag", [_frame()])
    _rewrite_camera_info(tmp_path / "bag", tmp_path / "doubled", lambda info: dataclasses.replace(
        info, width=2 * W, height=2 * H, k=info.k * np.array([2, 1, 2, 1, 2, 2, 1, 1, 1.0])))
    with pytest.raises(ValueError, match=f"task 'mug': camera_info is for {2 * W}x{2 * H} but the image is {W}x{H}"):
        list(read_benchmark(tmp_path / "doubled"))


def test_bag_reader_reads_an_uncalibrated_camera_as_2d_only(tmp_path):
    write_benchmark(tmp_path / "bag", [_frame()])
    _rewrite_camera_info(tmp_path / "bag", tmp_path / "zero", lambda info: dataclasses.replace(
        info, k=np.zeros(9), p=np.zeros(12)))
    (sample,) = read_benchmark(tmp_path / "zero")
    assert sample.camera is None and sample.depth_m is not None
