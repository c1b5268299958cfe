"""Depth conversion: 16UC1 millimetres and 32FC1 metres to float32 metres with NaN holes."""

import numpy as np
import pytest

from partseg_ros.geometry.depth import decode_depth_buffer, depth_to_metres


def test_uint16_millimetres_become_metres_and_zero_becomes_nan():
    raw = np.array([[0, 1, 600], [65535, 1234, 0]], dtype=np.uint16)
    metres = depth_to_metres(raw)
    assert metres.dtype == np.float32
    np.testing.assert_array_equal(np.isnan(metres), raw == 0)
    np.testing.assert_allclose(metres[~np.isnan(metres)], np.array([0.001, 0.6, 65.535, 1.234]), rtol=1e-6)


def test_non_native_byte_order_arrays_are_accepted():
    raw = np.array([[0, 600]], dtype=np.uint16)
    for dtype in (">u2", "<u2"):
        metres = depth_to_metres(raw.astype(dtype))
        assert np.isnan(metres[0, 0]) and metres[0, 1] == pytest.approx(0.6)
    np.testing.assert_allclose(depth_to_metres(np.array([[0.5]], dtype=">f4")), [[0.5]])


def test_uint16_scale_is_configurable():
    raw = np.array([[5000, 0]], dtype=np.uint16)
    metres = depth_to_metres(raw, depth_scale_m=0.0001)  # 0.1 mm units
    assert metres[0, 0] == pytest.approx(0.5) and np.isnan(metres[0, 1])
    with pytest.raises(ValueError):
        depth_to_metres(raw, depth_scale_m=0.0)


def test_float_metres_with_every_kind_of_invalid_value():
    raw = np.array([[0.0, np.nan, np.inf, -np.inf], [-0.5, 0.75, 1e-4, 3.0]], dtype=np.float32)
    metres = depth_to_metres(raw)
    expected_invalid = np.array([[True, True, True, True], [True, False, False, False]])
    np.testing.assert_array_equal(np.isnan(metres), expected_invalid)
    np.testing.assert_allclose(metres[~expected_invalid], [0.75, 1e-4, 3.0])
    assert not np.isnan(raw[1, 1])  # the input is not modified


def test_unsupported_depth_types_are_rejected():
    with pytest.raises(ValueError):
        depth_to_metres(np.zeros((2, 2), dtype=np.int32))
    with pytest.raises(ValueError):
        depth_to_metres(np.zeros((2, 2, 1), dtype=np.uint16))


def test_decode_16uc1_buffer_with_row_padding_and_both_byte_orders():
    image = np.array([[0, 700, 701], [702, 0, 65000]], dtype=np.uint16)
    for big_endian in (False, True):
        rows = image.astype(">u2" if big_endian else "<u2").tobytes()
        padded = b"".join(rows[r * 6 : (r + 1) * 6] + b"\xff\xff" for r in range(2))  # step 8 > 6 bytes
        metres = decode_depth_buffer(padded, "16UC1", 2, 3, step=8, is_bigendian=big_endian)
        np.testing.assert_array_equal(np.isnan(metres), image == 0)
        np.testing.assert_allclose(metres[image > 0], image[image > 0] * 0.001, rtol=1e-6)


def test_decode_32fc1_buffer():
    image = np.array([[0.5, np.nan], [0.0, 2.25]], dtype=np.float32)
    metres = decode_depth_buffer(image.tobytes(), "32FC1", 2, 2, step=8)
    np.testing.assert_array_equal(np.isnan(metres), [[False, True], [True, False]])
    assert metres[1, 1] == 2.25


def test_decode_rejects_short_buffers_and_unknown_encodings():
    with pytest.raises(ValueError, match="expected 16"):
        decode_depth_buffer(b"\x00" * 10, "16UC1", 2, 4, step=8)
    with pytest.raises(ValueError, match="unsupported"):
        decode_depth_buffer(b"\x00" * 16, "rgb8", 2, 2, step=8)
    with pytest.raises(ValueError, match="shorter"):
        decode_depth_buffer(b"\x00" * 16, "32FC1", 2, 4, step=8)
