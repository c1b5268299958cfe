"""Depth arrays to float32 metres with NaN holes (reading them out of Image fields: test_codec.py)."""

import numpy as np
import pytest

from partseg_ros.geometry.depth import depth_to_metres


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

