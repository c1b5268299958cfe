"""Render a study scene from a tabletop RGB-D viewpoint, with exact labels.

One ray per pixel (open3d, :mod:`partseg_ros.scene.raycast`) gives depth,
object and part ids and normals; colour is Lambertian shading of each
part's colour under a seeded key light with cast shadows plus ambient, a
little surface texture and sensor noise; depth gets the RealSense-like noise
and dropouts of :class:`DepthNoiseModel`. Everything is a function of
(scene, view index, seed), so a benchmark can be regenerated bit for bit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from partseg_ros.geometry.camera import CameraModel
from partseg_ros.scene.colors import linear_to_srgb
from partseg_ros.scene.depth_noise import DepthNoiseModel
from partseg_ros.scene.raycast import RayCastFrame, look_at, raycast
from partseg_ros.scene.scenes import Scene, StudyTask, build_scene
from partseg_ros.types import CameraIntrinsics

# A RealSense D435 colour stream at 640x480 (aligned depth shares it).
D435_COLOR_640x480 = CameraIntrinsics(fx=615.0, fy=615.0, cx=319.5, cy=239.5, width=640, height=480)
MAX_RANGE_M = 4.0


def default_intrinsics(width: int = 640, height: int = 480) -> CameraIntrinsics:
    return D435_COLOR_640x480 if (width, height) == (640, 480) else D435_COLOR_640x480.scaled(width, height)


@dataclass(frozen=True)
class TaskLabel:
    """A task resolved against one rendered view's label ids."""

    task_id: str
    instruction: str
    targets: tuple[str, ...]  # instance labels; any one is a correct answer; empty = no target
    parts: tuple[str, ...]
    reason: str
    target_object_ids: tuple[int, ...]
    target_part_ids: tuple[int, ...]  # parts of all targets together

    @property
    def has_target(self) -> bool:
        return bool(self.targets)


@dataclass
class RenderedView:
    """One RGB-D frame of a scene with its labels; ids index ``object_names``/``part_names``."""

    scene: str
    view_index: int
    seed: int
    rgb: np.ndarray  # HxWx3 uint8
    depth_m: np.ndarray  # HxW float32, noisy, NaN = no return
    depth_clean_m: np.ndarray  # HxW float32, exact z-depth of the meshes
    normals: np.ndarray  # HxWx3 float32, camera optical frame
    intrinsics: CameraIntrinsics
    world_from_camera: np.ndarray  # 4x4, optical frame
    object_ids: np.ndarray  # HxW uint16, 0 = table/background
    part_ids: np.ndarray  # HxW uint16, 0 = table/background
    object_names: list[str]  # [0] = "background"
    part_names: list[str]  # [0] = "background", then "instance/part"
    tasks: list[TaskLabel]

    def part_mask(self, part_ids: tuple[int, ...] | list[int]) -> np.ndarray:
        return np.isin(self.part_ids, np.asarray(part_ids, dtype=np.uint16))

    def object_mask(self, object_ids: tuple[int, ...] | list[int]) -> np.ndarray:
        return np.isin(self.object_ids, np.asarray(object_ids, dtype=np.uint16))

    def task_part_mask(self, task: TaskLabel) -> np.ndarray:
        return self.part_mask(task.target_part_ids)


def resolve_task(scene: Scene, task: StudyTask) -> TaskLabel:
    object_ids = tuple(scene.object_id(t) for t in task.targets)
    part_ids = tuple(scene.part_id(t, p) for t in task.targets for p in task.parts)
    return TaskLabel(task.task_id, task.instruction, task.targets, task.parts, task.reason, object_ids, part_ids)


def camera_pose(scene: Scene, view_index: int, num_views: int, rng: np.random.Generator,
                intrinsics: CameraIntrinsics) -> np.ndarray:
    """A tabletop viewpoint: azimuths spread around the table, looking down 30-60 degrees.

    The distance frames the scene's objects (0.5-1.0 m, like a wrist or head
    camera over a table).
    """
    slot = 2.0 * np.pi / max(num_views, 1)
    base = np.random.default_rng([scene.seed, len(scene.objects), 3]).uniform(-np.pi, np.pi)  # same for all views
    azimuth = base + view_index * slot + rng.uniform(-0.3, 0.3) * slot
    elevation = np.deg2rad(rng.uniform(30.0, 60.0))
    distance = float(np.clip(scene.radius / np.sin(half_fov(intrinsics) * 0.92) * rng.uniform(0.97, 1.05), 0.5, 1.0))
    target = scene.centre + np.array([rng.normal(0, 0.015), rng.normal(0, 0.015), 0.0])
    return orbit_pose(target, azimuth, elevation, distance)


def half_fov(intrinsics: CameraIntrinsics) -> float:
    """Half the narrower field of view: a scene of radius r fills it from r / sin(half_fov)."""
    return min(np.arctan(intrinsics.width / (2 * intrinsics.fx)), np.arctan(intrinsics.height / (2 * intrinsics.fy)))


def orbit_pose(target: np.ndarray, azimuth: float, elevation: float, distance: float) -> np.ndarray:
    """world_from_camera for a camera on a sphere around ``target`` (z up), looking at it."""
    eye = target + distance * np.array([np.cos(elevation) * np.cos(azimuth), np.cos(elevation) * np.sin(azimuth),
                                        np.sin(elevation)])
    return look_at(eye, target)


def _visible_enough(frame: RayCastFrame, tasks: list[TaskLabel], min_pixels: int) -> int:
    """How many tasks have fewer than ``min_pixels`` visible target-part pixels (for at least one target)."""
    failures = 0
    for task in tasks:
        if not task.has_target:
            continue
        per_target = len(task.parts)
        groups = [task.target_part_ids[i * per_target:(i + 1) * per_target] for i in range(len(task.targets))]
        best = max(int(np.isin(frame.part_ids, g).sum()) for g in groups)
        failures += best < min_pixels
    return failures


def render_view(scene: Scene, view_index: int, seed: int = 0, num_views: int = 3,
                intrinsics: Optional[CameraIntrinsics] = None, noise: Optional[DepthNoiseModel] = None,
                candidates: int = 8) -> RenderedView:
    """Render view ``view_index`` of ``scene``.

    Up to ``candidates`` seeded viewpoints are tried and the first from which
    every task's target part is visible (at least 0.02 % of the image) wins;
    failing that, the one hiding the fewest targets.
    """
    intrinsics = intrinsics or default_intrinsics()
    noise = noise or DepthNoiseModel()
    rng = np.random.default_rng([seed, scene.seed, view_index, 7])
    meshes = scene.labelled_meshes()
    tasks = [resolve_task(scene, t) for t in scene.tasks]
    min_pixels = max(8, int(intrinsics.width * intrinsics.height * 2e-4))
    light = np.array([rng.normal(0.3, 0.3), rng.normal(0.2, 0.3), 1.0])
    light /= np.linalg.norm(light)

    # Choose the viewpoint on a quarter-resolution cast (cheap), then render it in full.
    preview = intrinsics.scaled(max(intrinsics.width // 4, 1), max(intrinsics.height // 4, 1))
    preview_min = max(2, min_pixels // 16)
    best: tuple[int, np.ndarray] | None = None
    for _ in range(candidates):
        pose = camera_pose(scene, view_index, num_views, rng, intrinsics)
        failures = _visible_enough(raycast(meshes, preview, pose), tasks, preview_min)
        if best is None or failures < best[0]:
            best = (failures, pose)
        if failures == 0:
            break
    assert best is not None
    pose = best[1]
    frame = raycast(meshes, intrinsics, pose, light_direction_world=light)

    shade_rng = np.random.default_rng([seed, scene.seed, view_index, 11])
    rgb = shade(frame, meshes, pose, light, intrinsics, scene, shade_rng)
    clean = np.where(frame.depth <= MAX_RANGE_M, frame.depth, np.nan).astype(np.float32)
    noisy = noise.apply(clean, frame.normals, np.random.default_rng([seed, scene.seed, view_index, 13]))
    return RenderedView(
        scene=scene.name, view_index=view_index, seed=seed, rgb=rgb, depth_m=noisy, depth_clean_m=clean,
        normals=frame.normals, intrinsics=intrinsics, world_from_camera=pose,
        object_ids=frame.object_ids, part_ids=frame.part_ids,
        object_names=list(scene.object_names), part_names=list(scene.part_names), tasks=tasks,
    )


def shade(frame: RayCastFrame, meshes: list, world_from_camera: np.ndarray, light_world: np.ndarray,
          intrinsics: CameraIntrinsics, scene: Scene, rng: np.random.Generator) -> np.ndarray:
    """Lambertian + ambient shading with cast shadows, mild texture and sensor noise, to sRGB uint8."""
    h, w = frame.depth.shape
    albedo_lut = np.array([m.color for m in meshes] + [(0.55, 0.6, 0.65)], dtype=np.float32)
    albedo = albedo_lut[frame.mesh_index]  # -1 (no hit) reads the trailing background colour

    # World position of each hit, for textures fixed to surfaces (wood grain on the table).
    z = np.where(frame.hit, frame.depth, np.float32(0.0))
    cam_points = CameraModel(intrinsics).backproject(z)
    world = cam_points @ world_from_camera[:3, :3].T.astype(np.float32) + world_from_camera[:3, 3].astype(np.float32)
    on_table = frame.hit & (frame.object_ids == 0) & (world[..., 2] > -0.1)
    if scene.table_material in ("wood", "dark_brown", "beige"):
        phase = rng.uniform(0, 2 * np.pi)
        grain = np.sin(world[..., 0] * 2 * np.pi / 0.013 + 3.0 * np.sin(world[..., 1] * 9.0) + phase)
        albedo[on_table] *= (1.0 + 0.07 * grain[on_table])[:, None]

    # Low-frequency blotches so flat colours are not perfectly flat.
    coarse = rng.normal(0.0, 1.0, (h // 16 + 2, w // 16 + 2))
    blotch = _upsample(coarse, h, w).astype(np.float32)
    albedo *= (1.0 + 0.04 * blotch)[..., None]

    light_cam = (world_from_camera[:3, :3].T @ light_world).astype(np.float32)
    radiance = lit_radiance(albedo, frame, cam_points, light_cam)
    radiance[~frame.hit] = albedo_lut[-1]

    srgb = linear_to_srgb(radiance.astype(np.float32))
    srgb = srgb + rng.normal(0.0, 0.012, srgb.shape).astype(np.float32)
    return np.clip(np.round(srgb * 255.0), 0, 255).astype(np.uint8)


def lit_radiance(albedo: np.ndarray, frame: RayCastFrame, cam_points: np.ndarray, light_cam: np.ndarray,
                 ambient: float | np.ndarray = 0.32, specular: float | np.ndarray = 0.25,
                 shininess: float | np.ndarray = 40, gain: float = 1.15) -> np.ndarray:
    """Lambertian + ambient + a Blinn highlight, with cast shadows; linear RGB (H, W, 3).

    The study look uses the defaults; the randomised training renderer passes
    per-pixel specular strength and shininess (metal, glass, plastic) and its
    own ambient level.
    """
    lambert = np.clip(frame.normals @ light_cam, 0.0, 1.0)
    if frame.shadowed is not None:
        lambert = np.where(frame.shadowed, 0.0, lambert)
    # A soft highlight from the same light makes rounded parts read as rounded.
    view_dir = -cam_points / np.maximum(np.linalg.norm(cam_points, axis=-1, keepdims=True), 1e-9)
    half_vec = view_dir + light_cam
    half_vec /= np.maximum(np.linalg.norm(half_vec, axis=-1, keepdims=True), 1e-9)
    spec = np.clip(np.sum(frame.normals * half_vec, axis=-1), 0.0, 1.0) ** shininess * specular
    if frame.shadowed is not None:
        spec = np.where(frame.shadowed, 0.0, spec)
    return albedo * (ambient + (1.0 - ambient) * lambert)[..., None] * gain + spec[..., None]


def _upsample(grid: np.ndarray, h: int, w: int) -> np.ndarray:
    """Bilinear upsampling of a coarse grid to (h, w)."""
    gy = np.linspace(0.0, grid.shape[0] - 1.001, h)
    gx = np.linspace(0.0, grid.shape[1] - 1.001, w)
    y0, x0 = gy.astype(int), gx.astype(int)
    fy, fx = (gy - y0)[:, None], (gx - x0)[None, :]
    a = grid[y0][:, x0]
    b = grid[y0][:, x0 + 1]
    c = grid[y0 + 1][:, x0]
    d = grid[y0 + 1][:, x0 + 1]
    return (a * (1 - fx) + b * fx) * (1 - fy) + (c * (1 - fx) + d * fx) * fy


def render_study_view(scene_name: str, view_index: int = 0, seed: int = 0, num_views: int = 3,
                      width: int = 640, height: int = 480, include_no_target: bool = False) -> RenderedView:
    """Build study scene ``scene_name`` from ``seed`` and render one of its views."""
    scene = build_scene(scene_name, seed, include_no_target=include_no_target)
    return render_view(scene, view_index, seed, num_views, default_intrinsics(width, height))
