"""Small ray-cast tabletop scenes with known objects and parts, for the shapegrasp tests.

Built from open3d primitives (cylinder, torus, box, sphere) and rendered with
partseg_ros.scene.raycast, so depth, object ids and part ids are exact; a
seeded noise model then makes the depth look like a real sensor's.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from partseg_ros.scene.depth_noise import DepthNoiseModel
from partseg_ros.scene.raycast import LabelledMesh, look_at, raycast
from partseg_ros.types import CameraIntrinsics

INTRINSICS = CameraIntrinsics(fx=615.0, fy=615.0, cx=319.5, cy=239.5, width=640, height=480)
TABLE_COLOUR = (0.55, 0.42, 0.3)

# part ids used by the scenes below
MUG_BODY, MUG_HANDLE = 1, 2
KNIFE_BLADE, KNIFE_HANDLE = 3, 4
FLOWER_STEM, FLOWER_HEAD = 5, 6
BOTTLE_BODY, BOTTLE_LABEL, BOTTLE_CAP = 7, 8, 9


def _mesh(o3d_mesh, object_id: int, part_id: int, colour, pose: np.ndarray) -> LabelledMesh:
    return LabelledMesh(
        np.asarray(o3d_mesh.vertices, dtype=np.float64),
        np.asarray(o3d_mesh.triangles, dtype=np.int64),
        object_id,
        part_id,
        colour,
    ).transformed(pose)


def _pose(x: float, y: float, z: float = 0.0, yaw: float = 0.0) -> np.ndarray:
    c, s = np.cos(yaw), np.sin(yaw)
    pose = np.eye(4)
    pose[:3, :3] = [[c, -s, 0], [s, c, 0], [0, 0, 1]]
    pose[:3, 3] = [x, y, z]
    return pose


def mug(object_id: int, x: float, y: float, yaw: float, colour=(0.05, 0.1, 0.7)) -> list[LabelledMesh]:
    """8 cm wide, 10 cm tall cylinder with a torus handle on its side."""
    import open3d as o3d

    body = o3d.geometry.TriangleMesh.create_cylinder(radius=0.04, height=0.10, resolution=40)
    body.translate((0, 0, 0.05))
    handle = o3d.geometry.TriangleMesh.create_torus(torus_radius=0.03, tube_radius=0.007)
    handle.rotate(o3d.geometry.get_rotation_matrix_from_xyz((np.pi / 2, 0, 0)), center=(0, 0, 0))
    handle.translate((0.045, 0, 0.05))
    pose = _pose(x, y, 0.0, yaw)
    return [_mesh(body, object_id, MUG_BODY, colour, pose), _mesh(handle, object_id, MUG_HANDLE, colour, pose)]


def knife(object_id: int, x: float, y: float, yaw: float, blade_m: float = 0.12,
          handle_m: float = 0.10) -> list[LabelledMesh]:
    """A flat steel blade (12 cm by default) and a thicker black handle (10 cm), lying on the table."""
    import open3d as o3d

    blade = o3d.geometry.TriangleMesh.create_box(blade_m, 0.025, 0.003)
    blade.translate((0.0, -0.0125, 0.004))
    handle = o3d.geometry.TriangleMesh.create_box(handle_m, 0.022, 0.022)
    handle.translate((-handle_m, -0.011, 0.0))
    pose = _pose(x, y, 0.0, yaw)
    return [
        _mesh(blade, object_id, KNIFE_BLADE, (0.6, 0.6, 0.62), pose),
        _mesh(handle, object_id, KNIFE_HANDLE, (0.03, 0.03, 0.03), pose),
    ]


def flower(object_id: int, x: float, y: float, yaw: float) -> list[LabelledMesh]:
    """A 22 cm green stem lying on the table, ending in a flat yellow blossom."""
    import open3d as o3d

    stem = o3d.geometry.TriangleMesh.create_cylinder(radius=0.004, height=0.22, resolution=12)
    stem.rotate(o3d.geometry.get_rotation_matrix_from_xyz((0, np.pi / 2, 0)), center=(0, 0, 0))
    stem.translate((0.02, 0.0, 0.005))
    head = o3d.geometry.TriangleMesh.create_sphere(radius=0.03)
    head.vertices = o3d.utility.Vector3dVector(np.asarray(head.vertices) * [1.0, 1.0, 0.5])  # a flat blossom
    head.translate((0.13, 0.0, 0.016))
    pose = _pose(x, y, 0.0, yaw)
    return [
        _mesh(stem, object_id, FLOWER_STEM, (0.1, 0.5, 0.1), pose),
        _mesh(head, object_id, FLOWER_HEAD, (0.9, 0.8, 0.05), pose),
    ]


def labelled_bottle(object_id: int, x: float, y: float, body_colour=(0.05, 0.35, 0.1),
                    label_colour=(0.9, 0.88, 0.8), cap_colour=(0.75, 0.05, 0.05)) -> list[LabelledMesh]:
    """An upright 24 cm straight bottle: a 20 cm body wrapped by a label band, closed by a cap of the same width.

    Neither the label nor the cap changes the outline: only colour tells them
    apart, so the label must stay with the body while the cap becomes a part."""
    import open3d as o3d

    body = o3d.geometry.TriangleMesh.create_cylinder(radius=0.035, height=0.20, resolution=40)
    body.translate((0, 0, 0.10))
    label = o3d.geometry.TriangleMesh.create_cylinder(radius=0.0356, height=0.08, resolution=40)
    label.translate((0, 0, 0.10))
    cap = o3d.geometry.TriangleMesh.create_cylinder(radius=0.035, height=0.035, resolution=40)
    cap.translate((0, 0, 0.2175))
    pose = _pose(x, y)
    return [
        _mesh(body, object_id, BOTTLE_BODY, body_colour, pose),
        _mesh(label, object_id, BOTTLE_LABEL, label_colour, pose),
        _mesh(cap, object_id, BOTTLE_CAP, cap_colour, pose),
    ]


def table() -> LabelledMesh:
    import open3d as o3d

    top = o3d.geometry.TriangleMesh.create_box(1.4, 1.0, 0.03)
    top.translate((-0.7, -0.5, -0.03))
    return _mesh(top, 0, 0, TABLE_COLOUR, np.eye(4))


@dataclass
class SyntheticView:
    rgb: np.ndarray
    depth_m: np.ndarray
    object_ids: np.ndarray
    part_ids: np.ndarray
    intrinsics: CameraIntrinsics
    world_from_camera: np.ndarray


def render(meshes: list[LabelledMesh], eye=(0.0, -0.5, 0.45), target=(0.0, 0.0, 0.02), seed: int = 0,
           noisy: bool = True, camera=INTRINSICS) -> SyntheticView:
    """Ray-cast the meshes; colour is the part albedo with simple shading, depth gets sensor noise.

    ``camera`` may be a distorted CameraModel: the view is then the raw image of that lens.
    """
    pose = look_at(np.array(eye), np.array(target))
    frame = raycast(meshes, camera, pose)
    albedo = np.array([m.color for m in meshes] + [(0.5, 0.5, 0.5)])[frame.mesh_index]
    shading = 0.35 + 0.65 * np.clip(-frame.normals[..., 2], 0.0, 1.0)
    rgb = (np.clip(albedo * shading[..., None], 0, 1) ** (1 / 2.2) * 255).astype(np.uint8)
    rng = np.random.default_rng(seed)
    depth = DepthNoiseModel().apply(frame.depth, frame.normals, rng) if noisy else frame.depth
    k = getattr(camera, "intrinsics", camera)
    return SyntheticView(rgb, depth, frame.object_ids, frame.part_ids, k, pose)


def kitchen_scene(seed: int = 0, noisy: bool = True) -> SyntheticView:
    """Table with a blue mug (object 1), a knife (object 2) and a flower (object 3)."""
    meshes = [table()] + mug(1, -0.15, 0.05, 0.6) + knife(2, 0.05, -0.08, 0.3) + flower(3, 0.12, 0.16, -0.4)
    return render(meshes, seed=seed, noisy=noisy)


def two_knives_scene(seed: int = 0) -> SyntheticView:
    """A long bread knife (object 1, 36 cm) and a short cutter (object 2, 15 cm) side by side."""
    meshes = ([table()] + knife(1, 0.02, -0.08, 0.1, blade_m=0.23, handle_m=0.13)
              + knife(2, 0.0, 0.1, -0.2, blade_m=0.06, handle_m=0.09))
    return render(meshes, seed=seed)


def bottle_scene(seed: int = 0) -> SyntheticView:
    """One labelled, capped bottle (object 1) standing on the table, seen from above the front edge."""
    meshes = [table()] + labelled_bottle(1, 0.0, 0.05)
    return render(meshes, eye=(0.0, -0.45, 0.40), target=(0.0, 0.05, 0.10), seed=seed)
