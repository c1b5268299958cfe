"""Grasp poses ON a part's surface, from the points of its grasp region.

Why not the centroid: the centroid of the visible points of a ring handle, a
curved stem or a C-shaped part lies in the air (the middle of the ring), so a
gripper sent there closes on nothing. Each pose here sits on a measured point
of the part.

How poses are placed
--------------------
1. The gripper frame: z = approach INTO the surface (minus the region's mean
   camera-facing normal), y = the region's closing axis made perpendicular to
   z, x = y x z (right-handed). x then runs (nearly) along the part's length.
2. Candidate slabs across x, one finger width thick. The part is first cut
   along x at empty intervals of at least ``min_gap_m`` (two sunglasses
   temples, a body split by an occluder); slabs start at the centroid in the
   segment holding it, at the middle of the others, then every ``spacing_m``
   to both sides while the slab stays inside its segment; the
   ``2 * max_poses + 1`` slabs nearest the centroid are kept. A short part
   gets one slab. Only crumbs left (no piece of ``min_piece_points``): one pose at
   the part point nearest the centroid.
3. Within a slab, the points are split along y into connected pieces wherever
   an empty interval at least ``min_gap_m`` long separates them: a finger fits
   into such a gap, so the gripper can close around one piece alone (the two
   arms of a C cut across are two pieces, a ring handle's outer bar is one).
4. A piece's pose sits on the surface point nearest (in the gripper's x-y
   plane, i.e. seen along the approach) to the middle of the piece across y at
   the slab's centre along x: where the gripper's axis meets the surface. Its
   width is the piece's extent along y plus half a pixel footprint (pixel
   centres lie inside the silhouette; see grasp_region.py), measured on the
   piece only, so a thin handle bar reads its own thickness, not the width of
   the whole ring.
5. Quality = region quality x centrality (1 at the centroid's slab, 0.5 at the
   part's end) x support (piece points / points of the best-supported piece)
   x fit (0 if the width exceeds ``max_width_m`` when that is set). Poses are
   sorted best first and the first ``max_poses`` kept.

Everything is plain numpy and works in any frame: the grasp-region code calls
it in the camera optical frame (where a pixel footprint is known) and then
moves the poses into the target frame with the same transform as the region.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Sequence

import numpy as np

from partseg_ros.geometry.transforms import RigidTransform, matrix_to_quaternion, quaternion_to_matrix

GRASPNET_ARRAY_LEN = 17  # [score, width, height, depth, rotation (9, row-major), translation (3), object_id]


@dataclass(frozen=True)
class GraspPoseParams:
    """Gripper-side parameters (set through GraspRegionConfig's ``grasp_*`` and ``pregrasp_*`` fields)."""

    max_poses: int = 3
    pregrasp_standoff_m: float = 0.10
    finger_width_m: float = 0.02
    spacing_m: float = 0.03
    min_gap_m: float = 0.01
    max_width_m: float = 0.0  # 0: no limit
    min_piece_points: int = 10

    def __post_init__(self) -> None:
        if self.max_poses < 0 or self.min_piece_points < 1:
            raise ValueError("max_poses >= 0 and min_piece_points >= 1 are required")
        if self.finger_width_m <= 0 or self.spacing_m <= 0 or self.min_gap_m <= 0:
            raise ValueError("finger width, pose spacing and minimum gap must be positive")
        if self.pregrasp_standoff_m < 0 or self.max_width_m < 0:
            raise ValueError("pregrasp standoff and max width must be >= 0")


@dataclass(frozen=True)
class GraspPose:
    """A gripper pose on the part: rotation columns are x, y (closing), z (approach into the surface)."""

    position: np.ndarray  # (3,) a measured point of the part's surface
    rotation: np.ndarray  # (3, 3) columns x, y, z of the gripper frame
    width: float  # opening needed along y, metres
    pregrasp_standoff: float  # metres back along -z
    quality: float  # 0..1

    @property
    def approach(self) -> np.ndarray:
        """Unit direction the gripper moves in to reach the part (into the surface)."""
        return self.rotation[:, 2]

    @property
    def closing_axis(self) -> np.ndarray:
        return self.rotation[:, 1]

    @property
    def orientation_xyzw(self) -> np.ndarray:
        return matrix_to_quaternion(self.rotation)

    @property
    def pregrasp_position(self) -> np.ndarray:
        """Where the gripper waits before moving straight in along z."""
        return self.position - self.pregrasp_standoff * self.approach

    def transformed(self, transform: RigidTransform) -> "GraspPose":
        """The same pose expressed in ``transform``'s parent frame."""
        position = transform.apply_to_points(np.asarray(self.position, dtype=np.float64))
        return replace(self, position=np.asarray(position, dtype=np.float64),
                       rotation=transform.rotation @ self.rotation)


def gripper_frame(approach_out: np.ndarray, closing_axis: np.ndarray, fallback_axes: np.ndarray) -> np.ndarray:
    """Rotation with z = -approach_out (into the surface), y = closing axis made perpendicular to z, x = y x z.

    ``fallback_axes`` (columns, e.g. the principal axes) supply a closing
    direction when the given one is (nearly) parallel to the approach.
    """
    z = -np.asarray(approach_out, dtype=np.float64)
    z /= np.linalg.norm(z)
    candidates = [np.asarray(closing_axis, dtype=np.float64)] + [fallback_axes[:, i] for i in (1, 0, 2)]
    for candidate in candidates:
        y = candidate - np.dot(candidate, z) * z
        length = np.linalg.norm(y)
        if length > 0.2 * max(np.linalg.norm(candidate), 1e-12):
            y /= length
            break
    else:  # every axis along z: any perpendicular will do
        helper = np.eye(3)[int(np.argmin(np.abs(z)))]
        y = np.cross(z, helper)
        y /= np.linalg.norm(y)
    x = np.cross(y, z)
    return np.column_stack([x, y, z])


def compute_grasp_poses(
    points: np.ndarray,
    centroid: np.ndarray,
    axes: np.ndarray,
    approach_out: np.ndarray,
    closing_axis: np.ndarray,
    region_quality: float,
    pixel_pitch_m: float = 0.0,
    params: GraspPoseParams = GraspPoseParams(),
    trim_fraction: float = 0.002,
) -> list[GraspPose]:
    """Ranked grasp poses for the (N, 3) surface ``points`` of one part (see the module docstring).

    ``approach_out`` is the region's approach (pointing away from the surface,
    toward the camera side); ``pixel_pitch_m`` the pixel footprint at the
    part's depth (0 in frames where it is unknown: widths then lose the
    half-footprint correction). Returns an empty list for fewer than
    ``params.min_piece_points`` points or ``params.max_poses == 0``.
    """
    points = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    if params.max_poses == 0 or points.shape[0] < params.min_piece_points:
        return []
    rotation = gripper_frame(approach_out, closing_axis, np.asarray(axes, dtype=np.float64))
    # float32 offsets from the centroid: sub-micrometre exact at part scale, and twice as fast to sort.
    offsets = points.astype(np.float32) - np.asarray(centroid, dtype=np.float32)
    local = offsets @ rotation.astype(np.float32)  # (N, 3) along x, y, z
    along_x, along_y = local[:, 0], local[:, 1]
    low, high = _trimmed(along_x, trim_fraction)
    half = 0.5 * params.finger_width_m
    # Image-plane share of y: the half-footprint correction applies to silhouette edges only.
    y_correction = 0.5 * pixel_pitch_m * float(np.linalg.norm(rotation[:2, 1]))
    order_x = np.argsort(along_x)
    sorted_x = along_x[order_x]
    # Only the slabs nearest the centroid compete (centrality ranks them), which keeps
    # the cost flat in the part's length.
    centres = sorted(_slab_centres(sorted_x, params, half), key=abs)[: 2 * params.max_poses + 1]
    half_length = max(high, -low, half)

    candidates: list[tuple[float, np.ndarray, float, int]] = []  # (centrality, point, width, count)
    for s in centres:
        in_slab = order_x[np.searchsorted(sorted_x, s - half, "left") : np.searchsorted(sorted_x, s + half, "right")]
        if in_slab.size < params.min_piece_points:
            continue
        order = in_slab[np.argsort(along_y[in_slab])]
        ys = along_y[order]
        breaks = np.flatnonzero(np.diff(ys) >= params.min_gap_m) + 1
        for piece in np.split(order, breaks):
            if piece.size < params.min_piece_points:
                continue
            y_low, y_high = _trimmed(along_y[piece], trim_fraction)
            y_mid = 0.5 * (y_low + y_high)
            # Surface point under the gripper's axis: nearest in the x-y plane of the gripper.
            offset = (along_x[piece] - s) ** 2 + (along_y[piece] - y_mid) ** 2
            point = points[piece[int(np.argmin(offset))]]
            width = float(y_high - y_low + y_correction)
            centrality = 1.0 - 0.5 * min(1.0, abs(s) / half_length)
            candidates.append((centrality, point, width, int(piece.size)))
    if not candidates:
        # Only crumbs (every piece under min_piece_points): the part point nearest the centroid.
        nearest = int(np.argmin(np.einsum("ij,ij->i", local, local)))
        y_low, y_high = _trimmed(along_y, trim_fraction)
        candidates.append((0.5, points[nearest], float(y_high - y_low + y_correction), params.min_piece_points))
    best_support = max(c[3] for c in candidates)
    poses = []
    for centrality, point, width, count in candidates:
        fits = params.max_width_m == 0.0 or width <= params.max_width_m
        quality = float(region_quality) * centrality * (count / best_support) * (1.0 if fits else 0.0)
        poses.append(GraspPose(point.copy(), rotation.copy(), width, params.pregrasp_standoff_m, quality))
    poses.sort(key=lambda pose: -pose.quality)  # stable: ties keep the central slab first
    return poses[: params.max_poses]


def _slab_centres(ordered: np.ndarray, params: GraspPoseParams, half: float) -> list[float]:
    """Centres (along x, given sorted) of the candidate slabs, the centroid's (0) first when the part is there.

    The part is first cut along x wherever an empty interval of at least
    ``min_gap_m`` separates its points: two sunglasses temples, or a bottle
    body split by something in front of it, are separate segments, and a
    slab through the empty middle would hold nothing. In the segment that
    contains the centroid, slabs start at the centroid; in the others, at the
    segment's middle; then every ``spacing_m`` to both sides while the slab
    stays inside the segment.
    """
    breaks = np.flatnonzero(np.diff(ordered) >= params.min_gap_m) + 1
    centres: list[float] = []
    for segment in np.split(ordered, breaks):
        if segment.size < params.min_piece_points:
            continue
        low, high = float(segment[0]), float(segment[-1])
        origin = 0.0 if low <= 0.0 <= high else 0.5 * (low + high)
        segment_centres = [origin]
        for k in range(1, int((high - low) / params.spacing_m) + 2):
            for sign in (1.0, -1.0):
                c = origin + sign * k * params.spacing_m
                if low + half <= c <= high - half:
                    segment_centres.append(c)
        if origin == 0.0:
            centres = segment_centres + centres
        else:
            centres.extend(segment_centres)
    return centres


def _trimmed(values: np.ndarray, trim_fraction: float) -> tuple[float, float]:
    """``trim_fraction`` and ``1 - trim_fraction`` quantiles (min and max when nothing would be trimmed)."""
    count = values.size
    trimmed = int(trim_fraction * count)
    if trimmed == 0:
        return float(values.min()), float(values.max())
    ordered = np.partition(values, [trimmed, count - 1 - trimmed])
    return float(ordered[trimmed]), float(ordered[count - 1 - trimmed])


def to_graspnet_array(
    poses: Sequence[GraspPose], height_m: float = 0.02, depth_m: float = 0.02, object_id: int = -1
) -> np.ndarray:
    """(N, 17) GraspNet-1Billion / graspnetAPI ``GraspGroup`` array of ``poses``.

    GraspNet's gripper frame has x = approach, y = closing (width) and z =
    x cross y, with the origin on the object and the finger tips ``depth``
    further along x. partseg's frame has z = approach, y = closing, so
    GraspNet's rotation columns are (z, y, -x) of ours; the translation is the
    pose position. ``height_m`` (finger height along GraspNet's z) and
    ``depth_m`` (how far the finger tips go past the surface point) describe
    the gripper, which partseg does not know: pass your gripper's values.
    """
    out = np.zeros((len(poses), GRASPNET_ARRAY_LEN), dtype=np.float64)
    for i, pose in enumerate(poses):
        r = np.asarray(pose.rotation, dtype=np.float64)
        graspnet_rotation = np.column_stack([r[:, 2], r[:, 1], -r[:, 0]])
        out[i, 0] = pose.quality
        out[i, 1] = pose.width
        out[i, 2] = height_m
        out[i, 3] = depth_m
        out[i, 4:13] = graspnet_rotation.reshape(9)
        out[i, 13:16] = np.asarray(pose.position, dtype=np.float64).reshape(3)
        out[i, 16] = object_id
    return out


def from_graspnet_array(array: np.ndarray, pregrasp_standoff_m: float = 0.0) -> list[GraspPose]:
    """Inverse of :func:`to_graspnet_array` (height, depth and object id are dropped)."""
    array = np.atleast_2d(np.asarray(array, dtype=np.float64))
    if array.shape[1] != GRASPNET_ARRAY_LEN:
        raise ValueError(f"GraspNet arrays have {GRASPNET_ARRAY_LEN} columns, got {array.shape[1]}")
    poses = []
    for row in array:
        g = row[4:13].reshape(3, 3)
        rotation = np.column_stack([-g[:, 2], g[:, 1], g[:, 0]])
        poses.append(GraspPose(row[13:16].copy(), rotation, float(row[1]), pregrasp_standoff_m, float(row[0])))
    return poses



@dataclass(frozen=True)
class MoveItGraspFields:
    """The numbers a moveit_msgs/Grasp needs, in the region's frame (plain numpy, tested without MoveIt)."""

    eef_position: np.ndarray  # grasp_pose.pose.position: where the end-effector link goes
    eef_orientation_xyzw: np.ndarray  # grasp_pose.pose.orientation
    approach_direction: np.ndarray  # pre_grasp_approach.direction.vector (unit, region frame)
    approach_desired_m: float  # pre_grasp_approach.desired_distance
    approach_min_m: float  # pre_grasp_approach.min_distance
    retreat_direction: np.ndarray  # post_grasp_retreat.direction.vector (unit, region frame)
    retreat_desired_m: float
    retreat_min_m: float
    quality: float  # grasp_quality
    opening_m: float  # gripper opening for pre_grasp_posture


def moveit_grasp_fields(
    pose: GraspPose,
    tcp_offset_m: float = 0.0,
    eef_from_gripper_xyzw: Sequence[float] = (0.0, 0.0, 0.0, 1.0),
    min_approach_fraction: float = 0.5,
    retreat_m: float = 0.10,
    clearance_m: float = 0.01,
) -> MoveItGraspFields:
    """How one partseg pose maps onto moveit_msgs/Grasp.

    MoveIt's ``grasp_pose`` is the pose of the end-effector link, not of the
    point between the finger tips: ``tcp_offset_m`` is how far that link sits
    back along the approach from the finger-tip centre (0.1034 m for a Panda
    hand's ``panda_hand`` link), and ``eef_from_gripper_xyzw`` rotates
    partseg's gripper frame (z approach, y closing) into the link's axes
    (identity for a Panda hand, whose z points along the fingers and y along
    their motion). The approach is partseg's z with the pose's standoff as the
    desired distance; the retreat backs out along -z.
    """
    z = np.asarray(pose.approach, dtype=np.float64)
    gripper_from_eef = quaternion_to_matrix(eef_from_gripper_xyzw).T
    eef_rotation = np.asarray(pose.rotation, dtype=np.float64) @ gripper_from_eef
    return MoveItGraspFields(
        eef_position=np.asarray(pose.position, dtype=np.float64) - tcp_offset_m * z,
        eef_orientation_xyzw=matrix_to_quaternion(eef_rotation),
        approach_direction=z.copy(),
        approach_desired_m=float(pose.pregrasp_standoff),
        approach_min_m=float(min_approach_fraction * pose.pregrasp_standoff),
        retreat_direction=-z,
        retreat_desired_m=float(retreat_m),
        retreat_min_m=float(min_approach_fraction * retreat_m),
        quality=float(pose.quality),
        opening_m=float(pose.width + clearance_m),
    )
