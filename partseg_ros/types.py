"""The data model shared by backends, geometry, evaluation and the ROS node.

Plain numpy containers with no ROS imports, so every layer can be used and
tested without a ROS installation. Conventions: images are HxWx3 uint8 RGB,
masks are HxW bool at the input resolution, depth is HxW float32 metres with
NaN where the sensor gave nothing, and 3D quantities follow REP-103 (camera
optical frame: x right, y down, z forward).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Optional

import numpy as np

if TYPE_CHECKING:
    from partseg_ros.geometry.camera import CameraModel


@dataclass(frozen=True)
class CameraIntrinsics:
    """Pinhole intrinsics of the image the masks and depth live in."""

    fx: float
    fy: float
    cx: float
    cy: float
    width: int
    height: int

    @property
    def matrix(self) -> np.ndarray:
        return np.array(
            [[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]], dtype=np.float64
        )

    @classmethod
    def from_matrix(cls, k: np.ndarray, width: int, height: int) -> "CameraIntrinsics":
        k = np.asarray(k, dtype=np.float64).reshape(3, 3)
        return cls(float(k[0, 0]), float(k[1, 1]), float(k[0, 2]), float(k[1, 2]), int(width), int(height))

    def scaled(self, width: int, height: int) -> "CameraIntrinsics":
        """Intrinsics of the same camera at another resolution."""
        sx, sy = width / self.width, height / self.height
        return CameraIntrinsics(
            self.fx * sx, self.fy * sy, (self.cx + 0.5) * sx - 0.5, (self.cy + 0.5) * sy - 0.5, width, height
        )


def mask_box(mask: np.ndarray) -> tuple[int, int, int, int]:
    """Tight box (x_min, y_min, x_max, y_max), inclusive, of a mask; zeros for an empty mask."""
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return (0, 0, 0, 0)
    cols = np.flatnonzero(mask.any(axis=0))
    return (int(cols[0]), int(rows[0]), int(cols[-1]), int(rows[-1]))


@dataclass
class PartInstance:
    """One grounded part: where it is in the image and what it is."""

    mask: np.ndarray
    score: float
    object_label: str
    part_label: str
    box: Optional[tuple[int, int, int, int]] = None
    explanation: str = ""

    def __post_init__(self) -> None:
        self.mask = np.asarray(self.mask, dtype=bool)
        if self.mask.ndim != 2:
            raise ValueError(f"instance mask must be HxW, got shape {self.mask.shape}")
        if self.box is None:
            self.box = mask_box(self.mask)


@dataclass
class GroundingRequest:
    """What a backend is asked: an image, an instruction, and optional 3D context.

    Oracle-object hints (ShapeGrasp's oracle-object protocol) come in two views
    of the same thing, both filled in after construction whichever one the
    caller gave:

    * ``object_mask_hints``: one HxW bool mask per acceptable object ("pick up
      the mug" with two mugs in view gives two masks; any one is a right
      answer). Backends that can choose among objects read this, so that two
      mugs are not grounded as one two-handled object. An empty tuple means
      "oracle protocol, but no object to give" (a no-target task).
    * ``object_mask_hint``: the union of those masks, for backends that only
      restrict their answer to the hinted pixels (any part inside the union is
      on one of the acceptable objects).

    None for both means the full protocol (no hint). When both are given, the
    single mask must equal the union of the list.

    The camera comes the same way: ``camera`` is the one model every
    pixel-to-ray in a backend goes through (with the distortion still in the
    image), so segmentation and the grasp regions computed from the same
    CameraModel agree. A caller with only K may pass ``intrinsics``; it gets
    a distortion-free camera. Either way both are filled in and agree, and a
    camera for another image size is refused.
    """

    rgb: np.ndarray
    instruction: str
    depth_m: Optional[np.ndarray] = None
    intrinsics: Optional[CameraIntrinsics] = None
    object_mask_hint: Optional[np.ndarray] = None
    object_mask_hints: Optional[tuple[np.ndarray, ...]] = None
    camera: Optional["CameraModel"] = None

    def __post_init__(self) -> None:
        if self.rgb.ndim != 3 or self.rgb.shape[2] != 3 or self.rgb.dtype != np.uint8:
            raise ValueError(f"rgb must be HxWx3 uint8, got {self.rgb.shape} {self.rgb.dtype}")
        h, w = self.rgb.shape[:2]
        if self.depth_m is not None and self.depth_m.shape != (h, w):
            raise ValueError(f"depth shape {self.depth_m.shape} does not match image {(h, w)}")
        self._settle_camera(h, w)
        if self.object_mask_hint is not None and self.object_mask_hint.shape != (h, w):
            raise ValueError(f"object mask hint shape {self.object_mask_hint.shape} does not match image {(h, w)}")
        if self.object_mask_hints is None:
            if self.object_mask_hint is not None:
                self.object_mask_hints = (np.asarray(self.object_mask_hint, dtype=bool),)
            return
        if isinstance(self.object_mask_hints, np.ndarray):
            raise ValueError("object_mask_hints is a sequence of HxW masks, one per object; "
                             "pass a single mask as object_mask_hint")
        hints = tuple(np.asarray(m, dtype=bool) for m in self.object_mask_hints)
        for i, mask in enumerate(hints):
            if mask.shape != (h, w):
                raise ValueError(f"object mask hint {i} shape {mask.shape} does not match image {(h, w)}")
        union = np.logical_or.reduce(hints) if hints else np.zeros((h, w), dtype=bool)
        if self.object_mask_hint is None:
            self.object_mask_hint = union
        elif not np.array_equal(np.asarray(self.object_mask_hint, dtype=bool), union):
            raise ValueError("object_mask_hint must be the union of object_mask_hints when both are given")
        self.object_mask_hints = hints

    @property
    def image_size(self) -> tuple[int, int]:
        """(height, width)."""
        return self.rgb.shape[0], self.rgb.shape[1]

    def _settle_camera(self, h: int, w: int) -> None:
        """Fill in whichever of ``camera`` / ``intrinsics`` is missing; refuse a pair that disagrees or misfits."""
        if self.camera is None and self.intrinsics is None:
            return
        # Imported here: geometry.camera builds on CameraIntrinsics from this module.
        from partseg_ros.geometry.camera import as_camera_model

        if self.camera is None:
            self.camera = as_camera_model(self.intrinsics)
        else:
            self.camera = as_camera_model(self.camera)
            if self.intrinsics is None:
                self.intrinsics = self.camera.intrinsics
            elif self.intrinsics != self.camera.intrinsics:
                raise ValueError(f"intrinsics {self.intrinsics} disagree with the camera's {self.camera.intrinsics}; "
                                 "pass the camera alone")
        if self.camera.shape != (h, w):
            cam_h, cam_w = self.camera.shape
            raise ValueError(f"the camera describes {cam_w}x{cam_h} images but the image is {w}x{h}")


@dataclass
class GroundingResult:
    """A backend's answer: a possibly empty set of part instances, best first."""

    instances: list[PartInstance]
    backend: str
    object_label: str = ""
    part_label: str = ""
    explanation: str = ""
    timings_ms: dict[str, float] = field(default_factory=dict)

    @property
    def no_target(self) -> bool:
        return len(self.instances) == 0

    def union_mask(self, shape: tuple[int, int]) -> np.ndarray:
        out = np.zeros(shape, dtype=bool)
        for inst in self.instances:
            out |= inst.mask
        return out
