"""Small, real backends for the node traffic tests (loaded by ``backend:=traffic_backends:Name``).

They do real work on the frame they get (no canned output), but in microseconds
instead of the default backend's ~170 ms, so tests that cycle the lifecycle or
push thousands of messages through the node stay quick.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from partseg_ros.backends.base import PartGroundingBackend
from partseg_ros.types import GroundingRequest, GroundingResult, PartInstance


class BrightestBlockBackend(PartGroundingBackend):
    """The instance is the brightest 8x8 block of the image; ``delay_ms`` emulates a slower model."""

    name = "brightest_block"

    def __init__(self, delay_ms: float = 0.0, **options: Any) -> None:
        super().__init__(**options)
        self.delay_ms = float(delay_ms)

    def _ground(self, request: GroundingRequest) -> GroundingResult:
        if self.delay_ms:
            time.sleep(self.delay_ms / 1000.0)
        grey = np.asarray(request.rgb, dtype=np.float32).mean(axis=2)
        h, w = grey.shape
        bh, bw = max(h // 8, 1), max(w // 8, 1)
        blocks = grey[: bh * 8, : bw * 8].reshape(8, bh, 8, bw).mean(axis=(1, 3))
        row, col = np.unravel_index(int(np.argmax(blocks)), blocks.shape)
        mask = np.zeros((h, w), dtype=bool)
        mask[row * bh:(row + 1) * bh, col * bw:(col + 1) * bw] = True
        return GroundingResult(
            instances=[PartInstance(mask=mask, score=1.0, object_label="block", part_label="brightest")],
            backend=self.name, object_label="block", part_label="brightest",
            explanation=f"brightest block of 8x8 for {request.instruction!r}",
        )
