"""Compressed camera messages without DDS: peeking at serialized CompressedImage, decoding, and refusals.

The layouts are what image_transport's compressed and compressedDepth plugins publish;
the round trip over real DDS is in test_node_camera_input.py.
"""

import numpy as np
import pytest
from rclpy.serialization import serialize_message
from sensor_msgs.msg import CompressedImage
from std_msgs.msg import Header

from partseg_ros.ros.compressed import (
    COMPRESSED_DEPTH_HEADER,
    CompressedFormatError,
    decode_compressed_color,
    decode_compressed_depth,
    encode_color,
    encode_depth,
    peek_compressed,
)
from partseg_ros.ros.raw import CdrError

RNG = np.random.default_rng(14)


def test_peek_reads_stamp_format_and_size_without_decoding():
    fmt, data = encode_color(RNG.integers(0, 255, (48, 64, 3), dtype=np.uint8), "png")
    header = Header(frame_id="camera_color_optical_frame")
    header.stamp.sec, header.stamp.nanosec = 1_700_000_000, 123
    raw = serialize_message(CompressedImage(header=header, format=fmt, data=data))
    peek = peek_compressed(raw)
    assert (peek.stamp_ns, peek.frame_id, peek.format, peek.data_len) == (
        1_700_000_000_000_000_123, "camera_color_optical_frame", fmt, len(data))
    with pytest.raises(CdrError):
        peek_compressed(raw[: len(raw) // 2])


def test_colour_png_is_lossless_and_jpeg_close():
    rgb = RNG.integers(0, 255, (48, 64, 3), dtype=np.uint8)
    assert np.array_equal(decode_compressed_color(*encode_color(rgb, "png"), 8192, 8192), rgb)
    smooth = np.repeat(np.linspace(0, 255, 64, dtype=np.uint8)[None, :, None], 48, axis=0).repeat(3, axis=2)
    decoded = decode_compressed_color(*encode_color(smooth, "jpeg", quality=95), 8192, 8192)
    assert np.abs(decoded.astype(int) - smooth).mean() < 2


def test_compressed_depth_header_layout_and_round_trips():
    millimetres = RNG.integers(300, 5000, (48, 64)).astype(np.uint16)
    millimetres[0, 0] = 0
    fmt, data = encode_depth(millimetres, "16UC1")
    assert fmt == "16UC1; compressedDepth png" and data[12:16] == b"\x89PNG"  # 12-byte header, then the PNG
    values, encoding = decode_compressed_depth(fmt, data, 8192, 8192)
    assert encoding == "16UC1" and np.array_equal(values, millimetres)
    metres = millimetres.astype(np.float32) / 1000.0
    metres[0, 0] = np.nan
    fmt, data = encode_depth(metres, "32FC1")
    kind, quant_a, quant_b = COMPRESSED_DEPTH_HEADER.unpack_from(data, 0)
    assert kind == 0 and quant_a > 0  # inverse depth with its quantisation parameters
    values, encoding = decode_compressed_depth(fmt, data, 8192, 8192)
    assert encoding == "32FC1" and np.isnan(values[0, 0])
    assert np.nanmax(np.abs(values - metres)) < 0.01  # quantised inverse depth: mm-level at these ranges


def test_refusals_name_their_reason_before_allocating():
    fmt, data = encode_color(np.zeros((48, 64, 3), np.uint8), "png")
    with pytest.raises(CompressedFormatError) as too_large:
        decode_compressed_color(fmt, data, 32, 32)  # the header says 64x48: refused before decoding pixels
    assert too_large.value.reason == "image_too_large"
    with pytest.raises(CompressedFormatError) as too_many_bytes:
        decode_compressed_color(fmt, data, 8192, 8192, max_bytes=64 * 48 * 3 - 1)  # limits.max_image_bytes
    assert too_many_bytes.value.reason == "image_too_large"
    with pytest.raises(CompressedFormatError) as bad:
        decode_compressed_color("rgb8; bmp", data, 8192, 8192)
    assert bad.value.reason == "bad_encoding"
    with pytest.raises(CompressedFormatError) as broken:
        decode_compressed_color(fmt, data[:20], 8192, 8192)
    assert broken.value.reason == "malformed_image"
    fmt, data = encode_depth(np.full((48, 64), 800, np.uint16), "16UC1")
    with pytest.raises(CompressedFormatError) as rvl:
        decode_compressed_depth("16UC1; compressedDepth rvl", data, 8192, 8192)
    assert rvl.value.reason == "bad_encoding" and "png" in str(rvl.value)
    with pytest.raises(CompressedFormatError) as plain:
        decode_compressed_depth("png", data, 8192, 8192)
    assert "transport.depth" in str(plain.value)
