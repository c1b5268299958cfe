"""Declared image sizes are checked before anything is allocated; absurd frames are refused.

Issue 15, item 1: a 1x1 rgb8 image declaring ``step`` 2**32-1 with 3 data bytes once
made the decoder pad its last row up to ``step`` (a 4 GB allocation). These tests
measure the allocation with tracemalloc (numpy reports its buffers to it).
"""

import tracemalloc

import numpy as np
import pytest
from sensor_msgs.msg import Image

from partseg_ros.ros.conversions import array_to_image, color_to_rgb, intrinsics_to_camera_info
from partseg_ros.ros.validation import (
    CAMERA_INFO_INVALID,
    IMAGE_TOO_LARGE,
    IMAGE_TOO_SMALL,
    MALFORMED_IMAGE,
    InputLimits,
    Rejection,
    decode_frame,
)
from partseg_ros.types import CameraIntrinsics


def _peak_bytes(function) -> int:
    tracemalloc.start()
    try:
        try:
            function()
        except Exception:  # noqa: BLE001 - only the allocation matters here
            pass
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_huge_step_with_tiny_data_allocates_nothing():
    # 256 MiB of declared padding, 3 bytes of data: a legal-looking unpadded last row.
    msg = Image(height=1, width=1, encoding="rgb8", step=2**28, data=bytes(3))
    assert _peak_bytes(lambda: color_to_rgb(msg)) < 1_000_000
    assert color_to_rgb(msg).tolist() == [[[0, 0, 0]]]


def test_unpadded_last_row_is_read_as_a_view():
    rgb = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    padded = np.zeros((2, 16), np.uint8)
    padded[:, :9] = rgb.reshape(2, 9)
    msg = Image(height=2, width=3, encoding="rgb8", step=16, data=padded.tobytes()[: 16 + 9])
    assert np.array_equal(color_to_rgb(msg), rgb)


def _frame(width: int, height: int, fx: float = 60.0):
    color = array_to_image(np.zeros((height, width, 3), np.uint8), "rgb8")
    depth = array_to_image(np.full((height, width), 800, np.uint16), "16UC1")
    info = intrinsics_to_camera_info(CameraIntrinsics(fx, fx, width / 2, height / 2, width, height))
    return color, depth, info


@pytest.mark.parametrize(
    "case,reason",
    [
        ("huge_step", IMAGE_TOO_LARGE),
        ("huge_data", IMAGE_TOO_LARGE),
        ("too_wide", IMAGE_TOO_LARGE),
        ("one_pixel", IMAGE_TOO_SMALL),
        ("huge_focal", CAMERA_INFO_INVALID),
        ("tiny_focal", CAMERA_INFO_INVALID),
        ("short_data", MALFORMED_IMAGE),
    ],
)
def test_sanity_limits(case, reason):
    limits = InputLimits(max_image_bytes=1_000_000, max_image_width=4096)
    color, depth, info = _frame(64, 48)
    if case == "huge_step":
        color.step = 2**32 - 1
    elif case == "huge_data":
        color = Image(height=48, width=64, encoding="rgb8", step=64 * 3, data=bytes(2_000_000))
    elif case == "too_wide":
        color = Image(height=16, width=5000, encoding="mono8", step=5000, data=bytes(5000 * 16))
    elif case == "one_pixel":
        color, depth, info = _frame(1, 1, fx=1.0)
    elif case == "huge_focal":
        info.k = [1e308, 0.0, 32.0, 0.0, 1e308, 24.0, 0.0, 0.0, 1.0]
    elif case == "tiny_focal":
        info.k = [1e-6, 0.0, 32.0, 0.0, 1e-6, 24.0, 0.0, 0.0, 1.0]
    elif case == "short_data":
        color.data = bytes(color.data)[:100]
    peak = {}

    def decode():
        with pytest.raises(Rejection) as info_:
            decode_frame(color, depth, info, limits)
        peak["reason"] = info_.value.reason

    assert _peak_bytes(decode) < 3_000_000
    assert peak["reason"] == reason


def test_a_normal_frame_still_decodes():
    frame = decode_frame(*_frame(64, 48), InputLimits())
    assert frame.rgb.shape == (48, 64, 3)
