"""Ray casting of labelled triangle meshes into depth, labels and normals.

The one renderer behind the synthetic benchmark and the geometry tests: every
pixel's depth, object id, part id and surface normal come from the same rays,
so the ground truth is exact by construction.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from partseg_ros.geometry.camera import CameraModel, as_camera_model
from partseg_ros.types import CameraIntrinsics


@dataclass
class LabelledMesh:
    """A triangle mesh in world coordinates, tagged with the object and part it belongs to."""

    vertices: np.ndarray  # (N, 3) float, metres
    triangles: np.ndarray  # (M, 3) int
    object_id: int
    part_id: int
    color: tuple[float, float, float] = (0.7, 0.7, 0.7)  # linear RGB, 0..1

    def transformed(self, world_from_local: np.ndarray) -> "LabelledMesh":
        rot, trans = world_from_local[:3, :3], world_from_local[:3, 3]
        return LabelledMesh(
            self.vertices @ rot.T + trans, self.triangles, self.object_id, self.part_id, self.color
        )


@dataclass
class RayCastFrame:
    """What the camera sees; ids are 0 and depth is NaN where no mesh was hit."""

    depth: np.ndarray  # (H, W) float32 z-depth, metres
    object_ids: np.ndarray  # (H, W) uint16
    part_ids: np.ndarray  # (H, W) uint16
    normals: np.ndarray  # (H, W, 3) float32, camera optical frame, facing the camera
    mesh_index: np.ndarray  # (H, W) int32 index into the mesh list, -1 for no hit
    shadowed: np.ndarray | None = None  # (H, W) bool, hit points that see no light (only if asked for)

    @property
    def hit(self) -> np.ndarray:
        return self.mesh_index >= 0


def look_at(eye: np.ndarray, target: np.ndarray, up: np.ndarray | tuple = (0.0, 0.0, 1.0)) -> np.ndarray:
    """world_from_camera for an optical frame (z forward, x right, y down) at eye looking at target."""
    eye, target, up = (np.asarray(v, dtype=np.float64) for v in (eye, target, up))
    z = target - eye
    z /= np.linalg.norm(z)
    x = np.cross(z, up)
    if np.linalg.norm(x) < 1e-9:  # looking straight along up: pick any perpendicular
        x = np.cross(z, np.array([1.0, 0.0, 0.0]))
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    pose = np.eye(4)
    pose[:3, 0], pose[:3, 1], pose[:3, 2], pose[:3, 3] = x, y, z, eye
    return pose


def raycast(
    meshes: list[LabelledMesh],
    intrinsics: CameraModel | CameraIntrinsics,
    world_from_camera: np.ndarray,
    light_direction_world: np.ndarray | None = None,
) -> RayCastFrame:
    """Cast one ray per pixel centre through the camera: a pinhole, or a CameraModel with distortion.

    A distorted camera renders the raw image such a lens gives (straight
    edges bowed), with each pixel's ray from the model's undistortion, so
    tests can check that the backends lift those pixels back onto the scene.
    With ``light_direction_world`` (a vector pointing from the surface towards
    a distant light) a second ray per hit pixel tells whether it lies in shadow.
    """
    import open3d as o3d  # heavy; only scene generation and tests need it

    camera = as_camera_model(intrinsics)
    intrinsics = camera.intrinsics

    scene = o3d.t.geometry.RaycastingScene()
    geometry_to_mesh: dict[int, int] = {}
    for index, mesh in enumerate(meshes):
        gid = scene.add_triangles(
            o3d.core.Tensor(np.ascontiguousarray(mesh.vertices, dtype=np.float32)),
            o3d.core.Tensor(np.ascontiguousarray(mesh.triangles, dtype=np.uint32)),
        )
        geometry_to_mesh[int(gid)] = index

    camera_from_world = np.linalg.inv(world_from_camera)
    if camera.is_distorted:
        rays = o3d.core.Tensor(_distorted_rays(camera, world_from_camera))
    else:
        # Open3D casts pixel (u, v) through (u + 0.5, v + 0.5); ROS puts the pixel
        # centre at (u, v). Shift the principal point so both agree.
        open3d_k = intrinsics.matrix.copy()
        open3d_k[0, 2] += 0.5
        open3d_k[1, 2] += 0.5
        rays = scene.create_rays_pinhole(
            o3d.core.Tensor(open3d_k),
            o3d.core.Tensor(camera_from_world),
            intrinsics.width,
            intrinsics.height,
        )
    result = scene.cast_rays(rays)
    t_hit = result["t_hit"].numpy()  # z-depth: every ray has unit z in the camera frame
    geometry_ids = result["geometry_ids"].numpy().astype(np.int64)
    normals_world = result["primitive_normals"].numpy()

    invalid = scene.INVALID_ID
    lookup = np.full(max(geometry_to_mesh, default=0) + 2, -1, dtype=np.int32)
    for gid, index in geometry_to_mesh.items():
        lookup[gid] = index
    hit = np.isfinite(t_hit) & (geometry_ids != invalid)
    mesh_index = np.where(hit, lookup[np.where(hit, geometry_ids, len(lookup) - 1)], -1).astype(np.int32)

    object_lut = np.array([m.object_id for m in meshes] + [0], dtype=np.uint16)
    part_lut = np.array([m.part_id for m in meshes] + [0], dtype=np.uint16)
    object_ids = object_lut[mesh_index]  # index -1 reads the trailing 0
    part_ids = part_lut[mesh_index]

    normals = normals_world @ camera_from_world[:3, :3].T
    # Meshes may be open or have inconsistent winding: always face the camera.
    u, v = np.meshgrid(np.arange(intrinsics.width), np.arange(intrinsics.height))
    x_rays, y_rays = camera.pixel_rays(u, v)
    view = np.stack([x_rays, y_rays, np.ones_like(u, dtype=np.float64)], axis=-1)
    flip = np.sum(normals * view, axis=-1) > 0
    normals[flip] *= -1
    normals[~hit] = 0.0

    shadowed = None
    if light_direction_world is not None:
        shadowed = _shadow_rays(scene, rays.numpy(), t_hit, hit, np.asarray(light_direction_world, dtype=np.float64))

    depth = np.where(hit, t_hit, np.nan).astype(np.float32)
    return RayCastFrame(depth, object_ids, part_ids, normals.astype(np.float32), mesh_index, shadowed)


def _distorted_rays(camera: CameraModel, world_from_camera: np.ndarray) -> np.ndarray:
    """(H, W, 6) float32 world rays (origin, direction with unit z in the camera frame) through each pixel centre.

    A pixel without a ray (distortion fold-over) gets a zero direction and hits nothing.
    """
    x_rays, y_rays = camera.normalized_rays(slice(None), slice(None))
    directions = np.stack([x_rays, y_rays, np.ones(camera.shape, dtype=np.float32)], axis=-1).astype(np.float64)
    directions[~np.isfinite(directions).all(axis=-1)] = 0.0
    rays = np.empty(camera.shape + (6,), dtype=np.float32)
    rays[..., :3] = world_from_camera[:3, 3]
    rays[..., 3:] = directions @ world_from_camera[:3, :3].T
    return rays


def _shadow_rays(scene, rays: np.ndarray, t_hit: np.ndarray, hit: np.ndarray, light: np.ndarray) -> np.ndarray:
    """Hit pixels whose path towards a distant light is blocked by another triangle."""
    import open3d as o3d

    light = light / np.linalg.norm(light)
    origins = rays[..., :3] + rays[..., 3:] * np.where(hit, t_hit, 0.0)[..., None]
    points = origins[hit] + light * 1e-3  # lift off the surface to avoid self-hits
    shadow_rays = np.concatenate([points, np.broadcast_to(light, points.shape)], axis=1).astype(np.float32)
    blocked = np.zeros(hit.shape, dtype=bool)
    if len(points):
        t = scene.cast_rays(o3d.core.Tensor(shadow_rays))["t_hit"].numpy()
        blocked[hit] = np.isfinite(t)
    return blocked
