"""What scoring one task produces: a small, picklable record.

Workers (local processes, Ray actors, the live client) return these records
and nothing else, so aggregation happens exactly once and with the same code
whatever path produced them. Masks never travel: the record carries the counts
the metrics need and, optionally, a small PNG overlay for the report.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Optional

PROTOCOL_FULL = "full"
PROTOCOL_ORACLE_OBJECT = "oracle_object"
PROTOCOLS: tuple[str, ...] = (PROTOCOL_FULL, PROTOCOL_ORACLE_OBJECT)

PATH_INPROCESS = "inprocess"  # the backend called in the evaluating process (or its workers)
PATH_LIVE = "live"  # the running node, over DDS

# Fields that are scores: equal for the in-process and live paths when the
# backend is deterministic. Latency, overlays and bookkeeping are not scores.
SCORE_FIELDS: tuple[str, ...] = (
    "prediction_empty",
    "num_instances",
    "predicted_object",
    "predicted_part",
    "intersection",
    "union",
    "iou",
    "mask_success",
    "grasp_point_success",
    "grasp_pixel",
)


@dataclass
class TaskRecord:
    """The outcome of one task (one instruction on one view) under one protocol."""

    bag: str
    sample_index: int
    stamp_ns: int
    scene: str
    view: str
    task_id: str
    instruction: str
    has_target: bool
    target_object: str
    target_part: str
    # False for a targeted task whose target part has no pixel in this view: such
    # tasks are ill-posed and left out of the targeted metrics (and counted).
    target_visible: bool
    protocol: str
    backend: str
    path: str
    prediction_empty: bool
    num_instances: int
    predicted_object: str
    predicted_part: str
    intersection: int
    union: int
    iou: float
    mask_success: bool
    grasp_point_success: bool
    # "ok", or why no grasp region could be made for the selected part.
    grasp_status: str
    grasp_centroid: Optional[tuple[float, float, float]]
    grasp_pixel: Optional[tuple[int, int]]
    latency_ms: float
    error: str = ""
    overlay_png: Optional[bytes] = field(default=None, repr=False)

    @property
    def key(self) -> tuple[str, int, str]:
        """Stable sort key: bag, position in the bag, protocol."""
        return (self.bag, self.sample_index, self.protocol)

    @property
    def image_key(self) -> tuple[str, str, str]:
        """The image (frame) a task was asked on: Partonomy's macro-gIoU groups by it."""
        return (self.bag, self.scene, self.view)

    def scores(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in SCORE_FIELDS}

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict without the overlay image."""
        out = asdict(self)
        out.pop("overlay_png")
        for name in ("grasp_centroid", "grasp_pixel"):
            if out[name] is not None:
                out[name] = list(out[name])
        return out


def sort_records(records: list[TaskRecord]) -> list[TaskRecord]:
    """Records in a deterministic order, whatever order workers finished in."""
    return sorted(
        records, key=lambda r: (r.key[0], r.key[1], PROTOCOLS.index(r.protocol) if r.protocol in PROTOCOLS else 99)
    )
