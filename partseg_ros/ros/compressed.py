"""Compressed camera streams: sensor_msgs/CompressedImage colour and image_transport's compressedDepth.

Robots send compressed streams over Wi-Fi and record them in bags, and
image_transport is not on PyPI, so partseg reads both formats itself with Pillow
(a maintained decoder, already a dependency):

* colour: ``CompressedImage`` with ``format`` "jpeg" or "png" (image_transport's
  compressed plugin writes e.g. "rgb8; jpeg compressed bgr8"; only the codec matters,
  the decoded pixels are RGB);
* depth: the ``compressedDepth`` plugin's layout, learnt from image_transport_plugins:
  ``format`` is "<encoding>; compressedDepth png" (older publishers write only
  "<encoding>; compressedDepth"), and ``data`` is a 12-byte header followed by a PNG.
  The header is a little-endian int32 compression format (0 = inverse depth) and two
  float32 quantisation parameters A and B. A 16UC1 stream's PNG holds the raw 16-bit
  values (A and B unused). A 32FC1 stream's PNG holds 16-bit quantised inverse depth
  q, with depth = A / (q - B) metres and q = 0 meaning no return. RVL-coded streams
  are refused (``bad_encoding``) with the parameter to change.

Like the raw path, arriving messages are only peeked at (stamp, format, byte count);
the worker decodes the one frame it takes. The decoded size is read from the image
header and checked against the node's limits before any pixel is allocated.
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass
from typing import Optional

import numpy as np

from partseg_ros.ros.raw import CdrError, _string, cdr_body

COMPRESSED_DEPTH_HEADER = struct.Struct("<iff")  # format enum, quantisation A, quantisation B
INVERSE_DEPTH = 0  # the only compression format the compressedDepth plugin writes
COLOR_CODECS = ("jpeg", "png")


class CompressedFormatError(ValueError):
    """A compressed image partseg cannot read; ``reason`` is the node's rejection counter."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class CompressedPeek:
    """The fields of a serialized CompressedImage the node needs before decoding it."""

    stamp_ns: int
    frame_id: str
    format: str
    data_len: int


def peek_compressed(raw: bytes) -> CompressedPeek:
    """Header stamp, frame_id, format and data size of a serialized sensor_msgs/CompressedImage."""
    buf, body, end = cdr_body(raw, "a CompressedImage")
    try:
        sec, nanosec = struct.unpack_from(end + "iI", body, 0)
        frame_id, pos = _string(body, 8, end)
        fmt, pos = _string(body, pos, end)
        pos = (pos + 3) & ~3
        (data_len,) = struct.unpack_from(end + "I", body, pos)
        pos += 4
    except (struct.error, IndexError) as exc:
        raise CdrError(f"truncated CompressedImage: {exc}") from None
    if data_len > len(body) - pos:
        raise CdrError(f"data of {data_len} bytes runs past the {len(buf)}-byte message")
    return CompressedPeek(sec * 1_000_000_000 + nanosec, frame_id, fmt, data_len)


def _open_checked(data: bytes, what: str, max_width: int, max_height: int, max_bytes: Optional[int] = None,
                  bytes_per_pixel: int = 3):
    """A lazily decoded Pillow image whose header size is within the limits (no pixels read yet)."""
    from PIL import Image as PILImage  # noqa: PLC0415 - Pillow only on the compressed path

    try:
        image = PILImage.open(io.BytesIO(data))
    except Exception as exc:  # noqa: BLE001 - Pillow raises several types for unreadable data
        raise CompressedFormatError("malformed_image", f"{what}: not a readable image ({exc})") from None
    width, height = image.size
    if width <= 0 or height <= 0 or width > max_width or height > max_height:
        raise CompressedFormatError(
            "image_too_large" if width > 0 and height > 0 else "malformed_image",
            f"{what}: the compressed image declares {width}x{height}; limits.max_image_width/height="
            f"{max_width}x{max_height}")
    if max_bytes is not None and width * height * bytes_per_pixel > max_bytes:
        raise CompressedFormatError(
            "image_too_large", f"{what}: {width}x{height} decodes to {width * height * bytes_per_pixel} bytes; "
            f"limits.max_image_bytes={max_bytes}")
    return image


def _codec(fmt: str) -> str:
    lowered = fmt.lower()
    for codec in COLOR_CODECS:
        if codec in lowered or (codec == "jpeg" and "jpg" in lowered):
            return codec
    return ""


def decode_compressed_color(fmt: str, data: bytes, max_width: int, max_height: int,
                            max_bytes: Optional[int] = None) -> np.ndarray:
    """HxWx3 uint8 RGB from a jpeg or png CompressedImage."""
    if not _codec(fmt):
        raise CompressedFormatError("bad_encoding", f"colour: compressed format {fmt!r} is not jpeg or png")
    image = _open_checked(data, "colour", max_width, max_height, max_bytes, 3)
    try:
        rgb = np.asarray(image.convert("RGB"))
    except Exception as exc:  # noqa: BLE001 - truncated or corrupt data shows up while decoding
        raise CompressedFormatError("malformed_image", f"colour: {fmt} data does not decode ({exc})") from None
    return rgb


def depth_encoding_of(fmt: str) -> str:
    """The raw encoding a compressedDepth ``format`` names ("16UC1; compressedDepth png" -> "16UC1")."""
    return fmt.split(";", 1)[0].strip()


def decode_compressed_depth(fmt: str, data: bytes, max_width: int, max_height: int,
                            max_bytes: Optional[int] = None) -> tuple[np.ndarray, str]:
    """(HxW depth, encoding): uint16 units for 16UC1/mono16, float32 metres (NaN = none) for 32FC1."""
    encoding = depth_encoding_of(fmt)
    codec = fmt.split(";", 1)[1].strip() if ";" in fmt else ""
    if "compresseddepth" not in codec.lower():
        raise CompressedFormatError(
            "bad_encoding", f"depth: format {fmt!r} is not image_transport's compressedDepth "
            "(set transport.depth to match the stream: raw or compressedDepth)")
    if codec.lower() not in ("compresseddepth", "compresseddepth png"):
        raise CompressedFormatError(
            "bad_encoding", f"depth: compressedDepth codec {codec!r} is not supported (png only); "
            "set the publisher's compressedDepth format parameter to png")
    if encoding not in ("16UC1", "mono16", "32FC1"):
        raise CompressedFormatError("bad_encoding", f"depth: compressedDepth of {encoding!r} (16UC1 or 32FC1 expected)")
    if len(data) <= COMPRESSED_DEPTH_HEADER.size:
        raise CompressedFormatError(
            "malformed_image", f"depth: {len(data)} bytes cannot hold the compressedDepth header")
    kind, quant_a, quant_b = COMPRESSED_DEPTH_HEADER.unpack_from(data, 0)
    image = _open_checked(bytes(memoryview(data)[COMPRESSED_DEPTH_HEADER.size:]), "depth", max_width, max_height,
                          max_bytes, 4 if encoding == "32FC1" else 2)
    try:
        values = np.asarray(image)
    except Exception as exc:  # noqa: BLE001
        raise CompressedFormatError("malformed_image", f"depth: PNG data does not decode ({exc})") from None
    if values.ndim != 2:
        raise CompressedFormatError("malformed_image", f"depth: the PNG has {values.shape[2]} channels, not 1")
    values = values.astype(np.uint16, copy=False)
    if encoding != "32FC1":
        return values, encoding
    if kind != INVERSE_DEPTH or not (np.isfinite(quant_a) and np.isfinite(quant_b)) or quant_a == 0:
        raise CompressedFormatError(
            "malformed_image", f"depth: compressedDepth header (format {kind}, A {quant_a}, B {quant_b}) is unusable")
    with np.errstate(divide="ignore", invalid="ignore"):
        metres = np.float32(quant_a) / (values.astype(np.float32) - np.float32(quant_b))
    metres[values == 0] = np.nan
    return metres, encoding


# ---- encoders: what a camera driver's image_transport publisher sends (tests, benchmarks, replay) ----

def encode_color(rgb: np.ndarray, codec: str = "jpeg", quality: int = 90) -> tuple[str, bytes]:
    """(format, data) of a CompressedImage holding ``rgb`` as image_transport's compressed plugin names it."""
    from PIL import Image as PILImage  # noqa: PLC0415

    out = io.BytesIO()
    image = PILImage.fromarray(np.ascontiguousarray(rgb, dtype=np.uint8), "RGB")
    if codec == "jpeg":
        image.save(out, format="JPEG", quality=quality)
    elif codec == "png":
        image.save(out, format="PNG", compress_level=1)
    else:
        raise ValueError(f"codec must be jpeg or png, got {codec!r}")
    return f"rgb8; {codec} compressed rgb8", out.getvalue()


def encode_depth(depth: np.ndarray, encoding: str, depth_max_m: float = 10.0,
                 depth_quantization: float = 100.0) -> tuple[str, bytes]:
    """(format, data) in the compressedDepth layout: 16UC1 raw values, or 32FC1 metres as quantised inverse depth."""
    from PIL import Image as PILImage  # noqa: PLC0415

    if encoding in ("16UC1", "mono16"):
        values = np.ascontiguousarray(depth, dtype=np.uint16)
        header = COMPRESSED_DEPTH_HEADER.pack(INVERSE_DEPTH, 0.0, 0.0)
    elif encoding == "32FC1":
        quant_a = depth_quantization * (depth_quantization + 1.0)
        quant_b = 1.0 - quant_a / depth_max_m
        depth = np.asarray(depth, dtype=np.float32)
        valid = np.isfinite(depth) & (depth > 0) & (depth < depth_max_m)
        with np.errstate(divide="ignore", invalid="ignore"):
            q = np.where(valid, quant_a / np.where(valid, depth, 1.0) + quant_b, 0.0)
        values = np.clip(q, 0, 65535).astype(np.uint16)
        header = COMPRESSED_DEPTH_HEADER.pack(INVERSE_DEPTH, quant_a, quant_b)
    else:
        raise ValueError(f"compressedDepth takes 16UC1 or 32FC1, got {encoding!r}")
    out = io.BytesIO()
    PILImage.fromarray(values).save(out, format="PNG", compress_level=1)
    return f"{encoding}; compressedDepth png", header + out.getvalue()


def codec_of(fmt: str) -> Optional[str]:
    """jpeg, png, or None: which colour codec a CompressedImage format names."""
    return _codec(fmt) or None
