"""Rigid transforms between frames (rotation matrix + translation).

Naming follows tf2: a transform with ``parent_frame="base_link"`` and
``child_frame="camera_color_optical_frame"`` maps points expressed in the child
frame into the parent frame, exactly like a geometry_msgs/TransformStamped
with header.frame_id = parent and child_frame_id = child. Quaternions are
(x, y, z, w) as in geometry_msgs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
from scipy.spatial.transform import Rotation


def quaternion_to_matrix(quaternion_xyzw: Sequence[float]) -> np.ndarray:
    """3x3 rotation of a (x, y, z, w) quaternion; it is normalised first."""
    q = np.asarray(quaternion_xyzw, dtype=np.float64)
    norm = np.linalg.norm(q)
    if q.shape != (4,) or not np.isfinite(norm) or norm < 1e-9:
        raise ValueError(f"not a usable quaternion: {quaternion_xyzw}")
    return Rotation.from_quat(q / norm).as_matrix()


def matrix_to_quaternion(rotation: np.ndarray) -> np.ndarray:
    """(x, y, z, w) unit quaternion of a proper rotation matrix, with w >= 0 for a unique answer.

    Shepperd's method: start from the largest of w, x, y, z so the square
    root never sees a near-zero argument. Written out because it runs once
    per grasp region, where scipy's general converter costs a millisecond.
    """
    m = np.asarray(rotation, dtype=np.float64).reshape(3, 3)
    trace = m[0, 0] + m[1, 1] + m[2, 2]
    diagonal = (m[0, 0], m[1, 1], m[2, 2])
    largest = int(np.argmax((trace, *diagonal)))
    if largest == 0:
        s = 2.0 * np.sqrt(1.0 + trace)
        q = ((m[2, 1] - m[1, 2]) / s, (m[0, 2] - m[2, 0]) / s, (m[1, 0] - m[0, 1]) / s, 0.25 * s)
    elif largest == 1:
        s = 2.0 * np.sqrt(1.0 + m[0, 0] - m[1, 1] - m[2, 2])
        q = (0.25 * s, (m[0, 1] + m[1, 0]) / s, (m[0, 2] + m[2, 0]) / s, (m[2, 1] - m[1, 2]) / s)
    elif largest == 2:
        s = 2.0 * np.sqrt(1.0 + m[1, 1] - m[0, 0] - m[2, 2])
        q = ((m[0, 1] + m[1, 0]) / s, 0.25 * s, (m[1, 2] + m[2, 1]) / s, (m[0, 2] - m[2, 0]) / s)
    else:
        s = 2.0 * np.sqrt(1.0 + m[2, 2] - m[0, 0] - m[1, 1])
        q = ((m[0, 2] + m[2, 0]) / s, (m[1, 2] + m[2, 1]) / s, 0.25 * s, (m[1, 0] - m[0, 1]) / s)
    quaternion = np.array(q)
    quaternion /= np.linalg.norm(quaternion)
    return -quaternion if quaternion[3] < 0 else quaternion


@dataclass(frozen=True)
class RigidTransform:
    """parent_from_child: ``p_parent = rotation @ p_child + translation``."""

    rotation: np.ndarray = field(default_factory=lambda: np.eye(3))
    translation: np.ndarray = field(default_factory=lambda: np.zeros(3))
    parent_frame: str = ""
    child_frame: str = ""

    def __post_init__(self) -> None:
        rotation = np.asarray(self.rotation, dtype=np.float64).reshape(3, 3)
        translation = np.asarray(self.translation, dtype=np.float64).reshape(3)
        if not (np.all(np.isfinite(rotation)) and np.all(np.isfinite(translation))):
            raise ValueError("transform has non-finite entries")
        if not np.allclose(rotation @ rotation.T, np.eye(3), atol=1e-6) or np.linalg.det(rotation) < 0:
            raise ValueError("rotation is not a proper orthonormal matrix")
        object.__setattr__(self, "rotation", rotation)
        object.__setattr__(self, "translation", translation)

    @classmethod
    def identity(cls, parent_frame: str = "", child_frame: str = "") -> "RigidTransform":
        return cls(np.eye(3), np.zeros(3), parent_frame, child_frame)

    @classmethod
    def from_translation_quaternion(
        cls,
        translation: Sequence[float],
        quaternion_xyzw: Sequence[float],
        parent_frame: str = "",
        child_frame: str = "",
    ) -> "RigidTransform":
        """From a TransformStamped-style (translation, rotation quaternion) pair."""
        return cls(quaternion_to_matrix(quaternion_xyzw), np.asarray(translation, dtype=np.float64), parent_frame,
                   child_frame)

    @classmethod
    def from_translation_rpy(
        cls,
        translation: Sequence[float],
        roll_pitch_yaw: Sequence[float],
        parent_frame: str = "",
        child_frame: str = "",
    ) -> "RigidTransform":
        """From static_transform_publisher-style fixed-axis roll, pitch, yaw (radians)."""
        rotation = Rotation.from_euler("xyz", np.asarray(roll_pitch_yaw, dtype=np.float64)).as_matrix()
        return cls(rotation, np.asarray(translation, dtype=np.float64), parent_frame, child_frame)

    @classmethod
    def from_matrix(cls, matrix: np.ndarray, parent_frame: str = "", child_frame: str = "") -> "RigidTransform":
        matrix = np.asarray(matrix, dtype=np.float64)
        if matrix.shape != (4, 4) or not np.allclose(matrix[3], [0, 0, 0, 1]):
            raise ValueError("expected a 4x4 homogeneous rigid transform")
        return cls(matrix[:3, :3], matrix[:3, 3], parent_frame, child_frame)

    @property
    def matrix(self) -> np.ndarray:
        out = np.eye(4)
        out[:3, :3], out[:3, 3] = self.rotation, self.translation
        return out

    @property
    def quaternion_xyzw(self) -> np.ndarray:
        return matrix_to_quaternion(self.rotation)

    def inverse(self) -> "RigidTransform":
        rotation_t = self.rotation.T
        return RigidTransform(rotation_t, -rotation_t @ self.translation, self.child_frame, self.parent_frame)

    def compose(self, other: "RigidTransform") -> "RigidTransform":
        """self ∘ other: first other (child -> middle), then self (middle -> parent)."""
        if self.child_frame and other.parent_frame and self.child_frame != other.parent_frame:
            raise ValueError(f"cannot chain {self.child_frame!r} -> {self.parent_frame!r} "
                             f"after {other.child_frame!r} -> {other.parent_frame!r}")
        return RigidTransform(
            self.rotation @ other.rotation,
            self.rotation @ other.translation + self.translation,
            self.parent_frame,
            other.child_frame,
        )

    def __matmul__(self, other: "RigidTransform") -> "RigidTransform":
        return self.compose(other)

    def apply_to_points(self, points: np.ndarray) -> np.ndarray:
        """(..., 3) points in the child frame -> the parent frame; float32 stays float32."""
        points = _as_float(points)
        return _rotate(self.rotation, points) + self.translation.astype(points.dtype)

    def apply_to_vectors(self, vectors: np.ndarray) -> np.ndarray:
        """(..., 3) directions (rotation only) in the child frame -> the parent frame."""
        return _rotate(self.rotation, _as_float(vectors))


def _rotate(rotation: np.ndarray, values: np.ndarray) -> np.ndarray:
    """rotation @ v for every (..., 3) row, in einsum's own loops: a BLAS call on a
    tall (N, 3) operand may wake a thread pool that costs more than the product."""
    return np.einsum("ij,...j->...i", rotation.astype(values.dtype), values)


def _as_float(values: np.ndarray) -> np.ndarray:
    values = np.asarray(values)
    if values.shape[-1:] != (3,):
        raise ValueError(f"expected (..., 3) coordinates, got shape {values.shape}")
    return values if values.dtype in (np.float32, np.float64) else values.astype(np.float64)
