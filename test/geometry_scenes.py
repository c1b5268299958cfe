"""Analytic RGB-D scenes with known geometry for the grasp-region tests.

Each scene is built from open3d primitives with known dimensions and pose,
ray cast through a 640x480 pinhole camera about 0.6 m from the part, and
carries its ground truth:

* ``part_axis``: the part's true long axis (None where symmetry leaves the
  principal axis undefined, as for a round knob);
* ``solid_extent(direction)``: the width of the part's solid (the part of it
  outside the object it is attached to) along any unit direction, from the
  analytic shape: what a gripper closing along that direction must span;
* ``visible_centroid``: the mean of the part's visible surface as the camera
  samples it (equal weight per unit of image area), taken from a 4x
  supersampled ray cast. A depth camera cannot see the back of a part, so
  this, not the solid's centre of mass, is what a grasp region measured from
  one view can be compared with.

Scenes are independent of the project's procedural object library on
purpose: the geometry tests must not move when that library changes.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Callable

import numpy as np
import open3d as o3d

from partseg_ros.scene.raycast import LabelledMesh, RayCastFrame, look_at, raycast
from partseg_ros.types import CameraIntrinsics

INTRINSICS = CameraIntrinsics(fx=615.0, fy=615.0, cx=319.5, cy=239.5, width=640, height=480)
VIEW_DISTANCE_M = 0.6
TRUTH_SUPERSAMPLING = 4
PART_ID = 2  # every scene labels the part under test with this id


@dataclass
class AnalyticScene:
    name: str
    meshes: list[LabelledMesh]
    world_from_camera: np.ndarray
    part_axis_world: np.ndarray | None
    solid_extent_world: Callable[[np.ndarray], float]
    frame: RayCastFrame
    visible_centroid_world: np.ndarray
    visible_points_camera: np.ndarray  # supersampled visible surface of the part, camera frame

    @property
    def camera_from_world(self) -> np.ndarray:
        return np.linalg.inv(self.world_from_camera)

    @property
    def part_mask(self) -> np.ndarray:
        return self.frame.part_ids == PART_ID

    @property
    def visible_centroid_camera(self) -> np.ndarray:
        return _apply(self.camera_from_world, self.visible_centroid_world)

    @property
    def visible_major_axis_camera(self) -> np.ndarray:
        """Principal axis of the visible surface itself: what one view can recover at best."""
        centred = self.visible_points_camera - self.visible_points_camera.mean(axis=0)
        return np.linalg.eigh(centred.T @ centred)[1][:, -1]

    @property
    def part_axis_camera(self) -> np.ndarray | None:
        if self.part_axis_world is None:
            return None
        return self.camera_from_world[:3, :3] @ self.part_axis_world

    def solid_extent_camera(self, direction_camera: np.ndarray) -> float:
        return self.solid_extent_world(self.world_from_camera[:3, :3] @ np.asarray(direction_camera, dtype=np.float64))


def points_from_depth(depth: np.ndarray, intrinsics: CameraIntrinsics) -> np.ndarray:
    """(H, W, 3) optical-frame points with pixel (u, v) centred at (u, v), the ROS/OpenCV convention."""
    v, u = np.mgrid[0 : depth.shape[0], 0 : depth.shape[1]].astype(np.float64)
    z = depth.astype(np.float64)
    return np.stack([(u - intrinsics.cx) / intrinsics.fx * z, (v - intrinsics.cy) / intrinsics.fy * z, z], axis=-1)


@lru_cache(maxsize=1)
def renderer_pixel_offset() -> float:
    """Where the renderer puts a pixel's ray: 0.0 for (u, v), 0.5 for (u + 0.5, v + 0.5).

    Measured by casting against a plane whose edge lies 0.75 px left of the
    principal point: column cx - 1 sees it only with the half-pixel offset.
    The tests then stay right whichever convention partseg_ros.scene.raycast
    follows.
    """
    probe = CameraIntrinsics(100.0, 100.0, 10.0, 10.0, 21, 21)
    plane = o3d.geometry.TriangleMesh.create_box(1.0, 1.0, 0.01).translate((-0.75 / probe.fx, -0.5, 1.0))
    frame = raycast([_labelled(plane, 1, 1)], probe, np.eye(4))
    assert frame.hit[10, 10] and not frame.hit[10, 8], "probe plane edge must lie between columns 8 and 10"
    return 0.5 if frame.hit[10, 9] else 0.0


def render(meshes: list[LabelledMesh], world_from_camera: np.ndarray, intrinsics: CameraIntrinsics) -> RayCastFrame:
    """Ray cast so that pixel (u, v) looks along ((u - cx) / fx, (v - cy) / fy, 1), as a ROS camera does."""
    offset = renderer_pixel_offset()
    shifted = CameraIntrinsics(
        intrinsics.fx, intrinsics.fy, intrinsics.cx + offset, intrinsics.cy + offset, intrinsics.width,
        intrinsics.height
    )
    return raycast(meshes, shifted, world_from_camera)


def _labelled(mesh: o3d.geometry.TriangleMesh, object_id: int, part_id: int) -> LabelledMesh:
    return LabelledMesh(np.asarray(mesh.vertices).copy(), np.asarray(mesh.triangles).copy(), object_id, part_id)


def _apply(transform: np.ndarray, point: np.ndarray) -> np.ndarray:
    return transform[:3, :3] @ point + transform[:3, 3]


def _rotation_between(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Smallest rotation taking unit vector a onto unit vector b."""
    a, b = a / np.linalg.norm(a), b / np.linalg.norm(b)
    v, c = np.cross(a, b), float(np.dot(a, b))
    if np.linalg.norm(v) < 1e-12:
        if c > 0:
            return np.eye(3)
        # Opposite vectors: half a turn about any axis perpendicular to a.
        helper = np.eye(3)[int(np.argmin(np.abs(a)))]
        u = np.cross(a, helper) / np.linalg.norm(np.cross(a, helper))
        return 2 * np.outer(u, u) - np.eye(3)
    vx = np.array([[0, -v[2], v[1]], [v[2], 0, -v[0]], [-v[1], v[0], 0]])
    return np.eye(3) + vx + vx @ vx / (1 + c)


def _pose(rotation: np.ndarray, translation) -> np.ndarray:
    pose = np.eye(4)
    pose[:3, :3], pose[:3, 3] = rotation, translation
    return pose


def _camera_looking_at(target: np.ndarray, azimuth_deg: float, elevation_deg: float,
                       distance: float = VIEW_DISTANCE_M) -> np.ndarray:
    az, el = np.deg2rad(azimuth_deg), np.deg2rad(elevation_deg)
    eye = target + distance * np.array([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)])
    return look_at(eye, target)


def _table() -> LabelledMesh:
    """A 1.2 m table top at z = 0, the background behind every part."""
    table = o3d.geometry.TriangleMesh.create_box(1.2, 1.2, 0.02).translate((-0.6, -0.6, -0.02))
    return _labelled(table, 9, 9)


def _finish(name, meshes, world_from_camera, axis, extent_fn) -> AnalyticScene:
    frame = render(meshes, world_from_camera, INTRINSICS)
    fine_points = _fine_visible_points(meshes, world_from_camera, frame.part_ids == PART_ID)
    centroid_world = _apply(world_from_camera, fine_points.mean(axis=0))
    return AnalyticScene(name, meshes, world_from_camera, axis, extent_fn, frame, centroid_world, fine_points)


def _fine_visible_points(meshes: list[LabelledMesh], world_from_camera: np.ndarray,
                         part_mask: np.ndarray) -> np.ndarray:
    """Camera-frame hits of TRUTH_SUPERSAMPLING^2 rays per pixel around the part, cast directly with open3d.

    Independent of the renderer's pixel convention: sub-pixel sample k of
    pixel u sits at u - 0.5 + (k + 0.5) / s, so the samples tile each pixel.
    """
    rows, cols = np.nonzero(part_mask)
    s = TRUTH_SUPERSAMPLING
    offsets = (np.arange(s) + 0.5) / s - 0.5
    u = (np.arange(cols.min() - 1, cols.max() + 2)[:, None] + offsets).ravel()
    v = (np.arange(rows.min() - 1, rows.max() + 2)[:, None] + offsets).ravel()
    uu, vv = np.meshgrid(u, v)
    directions_camera = np.stack(
        [(uu - INTRINSICS.cx) / INTRINSICS.fx, (vv - INTRINSICS.cy) / INTRINSICS.fy, np.ones_like(uu)], axis=-1
    ).reshape(-1, 3)
    rotation, eye = world_from_camera[:3, :3], world_from_camera[:3, 3]
    rays = np.concatenate([np.broadcast_to(eye, directions_camera.shape), directions_camera @ rotation.T], axis=1)
    scene = o3d.t.geometry.RaycastingScene()
    part_geometries = set()
    for mesh in meshes:
        gid = scene.add_triangles(
            o3d.core.Tensor(np.ascontiguousarray(mesh.vertices, dtype=np.float32)),
            o3d.core.Tensor(np.ascontiguousarray(mesh.triangles, dtype=np.uint32)),
        )
        if mesh.part_id == PART_ID:
            part_geometries.add(int(gid))
    result = scene.cast_rays(o3d.core.Tensor(rays.astype(np.float32)))
    t_hit = result["t_hit"].numpy().astype(np.float64)  # z-depth: the camera-frame directions have unit z
    on_part = np.isin(result["geometry_ids"].numpy().astype(np.int64), list(part_geometries)) & np.isfinite(t_hit)
    return directions_camera[on_part] * t_hit[on_part, None]


def _cylinder_extent(axis: np.ndarray, radius: float, length: float) -> Callable[[np.ndarray], float]:
    def extent(direction: np.ndarray) -> float:
        along = abs(float(np.dot(direction, axis)))
        return 2 * radius * np.sqrt(max(0.0, 1 - along**2)) + length * along

    return extent


def _box_extent(edges: np.ndarray) -> Callable[[np.ndarray], float]:
    """edges: (3, 3) columns are the box's edge vectors (direction times length)."""

    def extent(direction: np.ndarray) -> float:
        return float(np.sum(np.abs(direction @ edges)))

    return extent


def mug_handle_scene(azimuth_deg: float = -60.0, elevation_deg: float = 0.0) -> AnalyticScene:
    """A mug (cylinder body) with a ring handle whose inner half is buried in the body.

    From above, the visible part of a ring is no longer symmetric about its
    long axis (the top of the tube shows, the bottom hides), which tilts the
    principal axis of what the camera sees by a degree or more; the default
    view is level with the handle, where the visible surface keeps the
    symmetry. Elevated views are tested against the visible surface's axis.
    """
    body_radius, body_height = 0.04, 0.10
    ring_radius, tube_radius = 0.028, 0.0065
    body = o3d.geometry.TriangleMesh.create_cylinder(body_radius, body_height, resolution=96, split=4)
    body.translate((0, 0, body_height / 2))
    centre = np.array([body_radius, 0.0, body_height / 2])
    # ring in the XZ plane
    ring_to_world = _pose(_rotation_between(np.array([0, 0, 1.0]), np.array([0, 1.0, 0])), centre)
    torus = o3d.geometry.TriangleMesh.create_torus(ring_radius, tube_radius, radial_resolution=160,
                                                   tubular_resolution=48)
    torus.transform(ring_to_world)

    # Analytic handle surface outside the body: what a gripper has to span.
    u, v = np.meshgrid(np.linspace(0, 2 * np.pi, 720), np.linspace(0, 2 * np.pi, 180))
    local = np.stack(
        [(ring_radius + tube_radius * np.cos(v)) * np.cos(u), (ring_radius + tube_radius * np.cos(v)) * np.sin(u),
         tube_radius * np.sin(v)],
        axis=-1,
    ).reshape(-1, 3)
    surface = local @ ring_to_world[:3, :3].T + centre
    outside = surface[np.hypot(surface[:, 0], surface[:, 1]) > body_radius]

    def extent(direction: np.ndarray) -> float:
        coordinate = outside @ direction
        return float(coordinate.max() - coordinate.min())

    meshes = [_table(), _labelled(body, 1, 1), _labelled(torus, 1, PART_ID)]
    target = centre + np.array([ring_radius / 2, 0, 0])
    return _finish("mug_handle", meshes, _camera_looking_at(target, azimuth_deg, elevation_deg), np.array([0, 0, 1.0]),
                   extent)


def knife_handle_scene(yaw_deg: float = 25.0, elevation_deg: float = 50.0) -> AnalyticScene:
    """A knife lying on the table: a box handle and a thin blade; seen from the side, above."""
    length, width, thickness = 0.11, 0.022, 0.016
    rotation = _rotation_between(np.array([1.0, 0, 0]),
                                 np.array([np.cos(np.deg2rad(yaw_deg)), np.sin(np.deg2rad(yaw_deg)), 0]))
    handle = o3d.geometry.TriangleMesh.create_box(length, width, thickness).translate((-length / 2, -width / 2, 0))
    handle.rotate(rotation, center=(0, 0, 0))
    blade = o3d.geometry.TriangleMesh.create_box(0.13, 0.026, 0.002).translate((length / 2, -0.013, 0.007))
    blade.rotate(rotation, center=(0, 0, 0))
    edges = rotation @ np.diag([length, width, thickness])
    meshes = [_table(), _labelled(handle, 2, PART_ID), _labelled(blade, 2, 3)]
    target = np.array([0, 0, thickness / 2])
    # Look across the handle (perpendicular to its length), from above.
    return _finish(
        "knife_handle", meshes, _camera_looking_at(target, yaw_deg - 90.0, elevation_deg), edges[:, 0] / length,
        _box_extent(edges)
    )


def flower_stem_scene(tilt_deg: float = 15.0, elevation_deg: float = 10.0) -> AnalyticScene:
    """A thin tilted stem (3.5 mm radius) under a spherical flower head."""
    radius, length = 0.0035, 0.22
    axis = np.array([np.sin(np.deg2rad(tilt_deg)), 0, np.cos(np.deg2rad(tilt_deg))])
    stem = o3d.geometry.TriangleMesh.create_cylinder(radius, length, resolution=64, split=8)
    centre = axis * length / 2
    stem.rotate(_rotation_between(np.array([0, 0, 1.0]), axis), center=(0, 0, 0)).translate(centre)
    head = o3d.geometry.TriangleMesh.create_sphere(0.03, resolution=40).translate(axis * (length + 0.025))
    meshes = [_table(), _labelled(stem, 3, PART_ID), _labelled(head, 3, 4)]
    return _finish("flower_stem", meshes, _camera_looking_at(centre, -100.0, elevation_deg), axis,
                   _cylinder_extent(axis, radius, length))


def pot_lid_knob_scene(elevation_deg: float = 55.0) -> AnalyticScene:
    """A round knob (cylinder) on a pot lid (flat disc) on a pot; no long axis, so none is claimed."""
    pot_radius, pot_height, lid_thickness = 0.10, 0.10, 0.006
    knob_radius, knob_height = 0.016, 0.02
    pot = o3d.geometry.TriangleMesh.create_cylinder(pot_radius, pot_height, resolution=96).translate(
        (0, 0, pot_height / 2))
    lid = o3d.geometry.TriangleMesh.create_cylinder(pot_radius + 0.004, lid_thickness, resolution=96)
    lid.translate((0, 0, pot_height + lid_thickness / 2))
    knob_base = pot_height + lid_thickness
    knob = o3d.geometry.TriangleMesh.create_cylinder(knob_radius, knob_height, resolution=96, split=4)
    knob.translate((0, 0, knob_base + knob_height / 2))
    meshes = [_table(), _labelled(pot, 4, 1), _labelled(lid, 4, 3), _labelled(knob, 4, PART_ID)]
    target = np.array([0, 0, knob_base + knob_height / 2])
    axis = np.array([0, 0, 1.0])
    return _finish("pot_lid_knob", meshes, _camera_looking_at(target, 200.0, elevation_deg), None,
                   _cylinder_extent(axis, knob_radius, knob_height))


SCENE_BUILDERS = {
    "mug_handle": mug_handle_scene,
    "knife_handle": knife_handle_scene,
    "flower_stem": flower_stem_scene,
    "pot_lid_knob": pot_lid_knob_scene,
}
