"""Cheap looks into serialized (CDR) sensor_msgs/Image messages, without deserialising them.

The node subscribes to camera images with ``raw=True``: at 30 Hz most frames are
never processed (the model takes one every ~170 ms), so they stay as the bytes DDS
delivered until the worker takes one. On arrival only the header and the size
fields are read here, which is enough to pair frames by stamp and refuse absurd
sizes. A message whose CDR is broken (a length running past the buffer) raises
:class:`CdrError`, which the node counts as ``rejected.deserialization_failed``:
a typed subscription would drop it silently inside the middleware.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass


class CdrError(ValueError):
    """The bytes are not a well-formed CDR sensor_msgs/Image."""


@dataclass(frozen=True)
class ImagePeek:
    """The fields of a serialized Image that the node needs before decoding it."""

    stamp_ns: int
    frame_id: str
    height: int
    width: int
    encoding: str
    is_bigendian: bool
    step: int
    data_len: int


def _string(buf: memoryview, pos: int, end: str) -> tuple[str, int]:
    pos = (pos + 3) & ~3
    if pos + 4 > len(buf):
        raise CdrError("string length runs past the message")
    (length,) = struct.unpack_from(end + "I", buf, pos)
    pos += 4
    if length > len(buf) - pos:
        raise CdrError(f"string of {length} bytes runs past the {len(buf)}-byte message")
    text = bytes(buf[pos:pos + max(length - 1, 0)]).decode("utf-8", errors="replace")
    return text, pos + length


def cdr_body(raw: bytes, what: str) -> tuple[memoryview, memoryview, str]:
    """(whole message, body after the encapsulation header, struct byte-order prefix) of a serialized message
    that starts with a std_msgs/Header; CDR alignment counts from the body's start."""
    buf = memoryview(raw)
    if len(buf) < 4 + 8:
        raise CdrError(f"{len(buf)} bytes cannot hold {what}")
    if buf[0] != 0 or buf[1] not in (0, 1):
        raise CdrError(f"unknown CDR encapsulation {bytes(buf[:2]).hex()}")
    return buf, buf[4:], "<" if buf[1] == 1 else ">"


def peek_image(raw: bytes) -> ImagePeek:
    """Header stamp, frame_id and size fields of a serialized sensor_msgs/Image (CDR, either byte order)."""
    buf, body, end = cdr_body(raw, "an Image")
    try:
        sec, nanosec = struct.unpack_from(end + "iI", body, 0)
        frame_id, pos = _string(body, 8, end)
        pos = (pos + 3) & ~3
        height, width = struct.unpack_from(end + "II", body, pos)
        encoding, pos = _string(body, pos + 8, end)
        is_bigendian = body[pos]
        pos = (pos + 1 + 3) & ~3
        step, data_len = struct.unpack_from(end + "II", body, pos)
        pos += 8
    except (struct.error, IndexError) as exc:
        raise CdrError(f"truncated Image: {exc}") from None
    if data_len > len(body) - pos:
        raise CdrError(f"data of {data_len} bytes runs past the {len(buf)}-byte message")
    return ImagePeek(sec * 1_000_000_000 + nanosec, frame_id, height, width, encoding, bool(is_bigendian),
                     step, data_len)


def restamp(raw: bytes, stamp_ns: int) -> bytes:
    """A copy of a serialized message that starts with a std_msgs/Header, with only the header stamp changed.

    Lets a recorded frame be sent again on the receiver's time line (a fresh,
    unique stamp) while every other byte stays as recorded: the encoding,
    step, byte order, pixels, K and D the node must decode.
    """
    _, _, end = cdr_body(raw, "a stamped message")
    out = bytearray(raw)
    sec, nanosec = divmod(int(stamp_ns), 1_000_000_000)
    struct.pack_into(end + "iI", out, 4, sec, nanosec)  # the body (after the 4-byte encapsulation) opens with it
    return bytes(out)
