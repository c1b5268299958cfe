"""The one kind of error the codec raises for a message it refuses.

The node counts rejected messages by a stable name and logs the text; every
refusal, of an image or of a camera_info, carries both the same way, so the
code that counts them needs no per-message-kind branch.
"""

from __future__ import annotations


class CodecError(ValueError):
    """A message the codec refuses; ``reason`` is the stable counter name, the message says what is wrong."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
