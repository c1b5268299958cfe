"""Domain-randomised tabletop frames for training a part grounder that must outlive its generator.

The study scenes (:mod:`partseg_ros.scene.scenes`) are evaluation material and
are never sampled here: a randomised scene draws its own objects, poses,
looks, camera and depth sensor from a seed namespace of its own. What varies,
and why:

* **Shapes**: every kind's builder already varies proportions; on top, each
  object is stretched anisotropically and each part rescaled about its own
  centre, so a model cannot key on one silhouette. A held-back style (tapering
  plus stronger part rescaling) is sampled only for validation.
* **Appearance**: any palette colour per object, two-tone parts, matte,
  plastic, metal and glass materials, surface textures, an oblique key light
  with cast shadows, ambient level, light colour, white balance, exposure,
  gamma, blur and noise.
* **Cameras**: intrinsics of common RGB-D cameras from 640x480 to 1280x720,
  elevation 20-75 degrees, distance, roll.
* **Depth sensors**: the study's structured-light model, an active-stereo model
  (noise and quantisation in disparity, the second camera's occlusion shadow on
  either side, flying pixels at a random rate, holes on dark, shiny and glass
  surfaces, and on some sensors whole dark surfaces lost) and, held back for
  validation, a time-of-flight model.
* **Clutter**: 2 to 7 objects, same-kind rivals in other colours.

``DomainSettings.training()`` and ``DomainSettings.held_back()`` name the two
regimes; held-back object kinds are never built in training scenes.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Optional, Sequence

import numpy as np
from scipy import ndimage

from partseg_ros.geometry.camera import CameraModel
from partseg_ros.scene.colors import PALETTE, linear_color, linear_to_srgb
from partseg_ros.scene.depth_noise import DepthNoiseModel
from partseg_ros.scene.objects import ObjectModel, ObjectPart, make_object, object_kinds
from partseg_ros.scene.primitives import Mesh
from partseg_ros.scene.raycast import LabelledMesh, raycast
from partseg_ros.scene.render import MAX_RANGE_M, RenderedView, half_fov, lit_radiance, orbit_pose
from partseg_ros.scene.scenes import Scene, place_on_table
from partseg_ros.types import CameraIntrinsics

# Colour-stream intrinsics as the vendors' calibrations give them (rounded).
CAMERA_PRESETS: dict[str, CameraIntrinsics] = {
    "realsense_d435_640x480": CameraIntrinsics(615.0, 615.0, 319.5, 239.5, 640, 480),
    "realsense_d435_848x480": CameraIntrinsics(608.0, 608.0, 423.5, 239.5, 848, 480),
    "realsense_d435_1280x720": CameraIntrinsics(912.0, 912.0, 639.5, 359.5, 1280, 720),
    "realsense_d405_640x480": CameraIntrinsics(382.0, 382.0, 319.5, 239.5, 640, 480),
    "orbbec_astra_640x480": CameraIntrinsics(570.0, 570.0, 319.5, 239.5, 640, 480),
    "orbbec_femto_1280x720": CameraIntrinsics(745.0, 745.0, 639.5, 359.5, 1280, 720),
    "azure_kinect_1280x720": CameraIntrinsics(607.0, 607.0, 639.5, 359.5, 1280, 720),
    # Never trained on: the D435's low-resolution mode (Jetson users take it for speed), diagnostics only.
    "realsense_d435_424x240": CameraIntrinsics(307.0, 307.0, 211.5, 119.5, 424, 240),
}

MATERIALS = ("matte", "plastic", "metal", "glass")
# (specular strength, shininess) per material; glass also loses most depth returns.
_MATERIAL_SHADING = {"matte": (0.05, 8.0), "plastic": (0.3, 30.0), "metal": (0.8, 60.0), "glass": (0.9, 90.0)}


@dataclass(frozen=True)
class ActiveStereoSensor:
    """Active IR stereo (RealSense D4xx-like): errors live in disparity, not depth.

    Depth z = f b / d; disparity noise of ``disparity_sigma_px`` and sub-pixel
    quantisation become depth noise growing with z^2. Pixels the second
    camera cannot see (behind a nearer surface, on the baseline side) return
    nothing: the shadow band beside every object. Dark, shiny and glass
    surfaces give holes; edges get flying pixels.
    """

    baseline_m: float = 0.05
    focal_px: float = 640.0
    disparity_sigma_px: float = 0.08
    subpixel: float = 1.0 / 32.0
    edge_jump_m: float = 0.015
    flying_pixel_rate: float = 0.35
    dark_hole_rate: float = 0.3  # at zero reflectance
    glass_hole_rate: float = 0.8
    specular_hole_rate: float = 0.3
    random_hole_rate: float = 0.005
    max_shadow_px: int = 48
    # Below this reflectance nothing comes back at all (black plastic, dark cloth): the whole surface is a hole,
    # as on many real IR sensors; 0 keeps only the partial dark holes above.
    dark_dropout_reflectance: float = 0.0
    second_camera_right: bool = True  # which side the shadow band falls on (mounting, mirrored rigs)

    def apply(self, depth: np.ndarray, normals: np.ndarray, rng: np.random.Generator,
              reflectance: np.ndarray, glass: np.ndarray, shiny: np.ndarray) -> np.ndarray:
        valid = np.isfinite(depth)
        fb = self.focal_px * self.baseline_m
        disparity = np.where(valid, fb / np.where(valid, depth, 1.0), 0.0)
        noisy = disparity + rng.standard_normal(depth.shape) * self.disparity_sigma_px
        noisy = np.round(noisy / self.subpixel) * self.subpixel
        out = np.where(noisy > 0.1, fb / np.maximum(noisy, 0.1), np.nan)
        # The second camera sits at +baseline (or -baseline): a pixel is hidden when a nearer surface within reach
        # on that side covers it (its disparity exceeds ours by more than the column gap).
        # A left-hand rig is the right-hand one mirrored: mirror in, find the band, mirror back.
        seen = disparity if self.second_camera_right else disparity[:, ::-1]
        shadow = np.zeros(depth.shape, dtype=bool)
        for k in range(1, min(self.max_shadow_px, depth.shape[1] - 1) + 1):
            shadow[:, :-k] |= seen[:, k:] - seen[:, :-k] > k
        if not self.second_camera_right:
            shadow = shadow[:, ::-1]
        edges = _depth_edges(np.where(valid, depth, np.inf), self.edge_jump_m)
        lost = shadow | (rng.random(depth.shape) < self.random_hole_rate)
        lost |= rng.random(depth.shape) < self.dark_hole_rate * np.clip(1.0 - reflectance / 0.06, 0.0, 1.0)
        lost |= reflectance < self.dark_dropout_reflectance
        lost |= glass & (rng.random(depth.shape) < self.glass_hole_rate)
        lost |= shiny & (rng.random(depth.shape) < self.specular_hole_rate * np.abs(normals[..., 2]) ** 8)
        lost |= edges & (rng.random(depth.shape) < 0.3)
        out = _fly(out, depth, edges & ~lost, self.flying_pixel_rate, rng)
        return np.where(valid & ~lost, out, np.nan).astype(np.float32)


@dataclass(frozen=True)
class TimeOfFlightSensor:
    """Continuous-wave time of flight (Azure Kinect-like): noise grows with range and falls with reflectance.

    No stereo shadow, but strong flying pixels that smear along the ray at
    every depth edge (mixed returns), holes on very dark surfaces and at
    grazing angles, glass that mostly returns what lies behind it.
    """

    sigma_m: float = 0.0015
    sigma_per_m: float = 0.001
    flying_pixel_rate: float = 0.7
    edge_jump_m: float = 0.01
    dark_reflectance: float = 0.05
    grazing_deg: float = 80.0

    def apply(self, depth: np.ndarray, normals: np.ndarray, rng: np.random.Generator,
              reflectance: np.ndarray, glass: np.ndarray, shiny: np.ndarray) -> np.ndarray:
        valid = np.isfinite(depth)
        z = np.where(valid, depth, 0.0)
        sigma = (self.sigma_m + self.sigma_per_m * z) / np.sqrt(np.clip(reflectance, 0.05, 1.0) / 0.5)
        out = z + rng.standard_normal(z.shape) * sigma
        lost = reflectance < self.dark_reflectance
        lost |= np.abs(normals[..., 2]) < np.cos(np.deg2rad(self.grazing_deg))
        lost |= glass & (rng.random(z.shape) < 0.5)
        edges = _depth_edges(np.where(valid, depth, np.inf), self.edge_jump_m)
        out = _fly(out, depth, edges & ~lost, self.flying_pixel_rate, rng)
        return np.where(valid & ~lost & (out > 0), out, np.nan).astype(np.float32)


@dataclass(frozen=True)
class StructuredLightSensor:
    """The study's own noise model, adapted to the common sensor interface (holes on glass added)."""

    model: DepthNoiseModel = DepthNoiseModel()

    def apply(self, depth: np.ndarray, normals: np.ndarray, rng: np.random.Generator,
              reflectance: np.ndarray, glass: np.ndarray, shiny: np.ndarray) -> np.ndarray:
        out = self.model.apply(depth, normals, rng)
        return np.where(glass & (rng.random(depth.shape) < 0.6), np.nan, out).astype(np.float32)


def _depth_edges(depth: np.ndarray, jump: float) -> np.ndarray:
    """Pixels with a 4-neighbour more than ``jump`` metres away in depth (inf = no return counts as far)."""
    edges = np.zeros(depth.shape, dtype=bool)
    with np.errstate(invalid="ignore"):
        dy = np.abs(np.diff(depth, axis=0)) > jump
        dx = np.abs(np.diff(depth, axis=1)) > jump
    edges[1:] |= dy
    edges[:-1] |= dy
    edges[:, 1:] |= dx
    edges[:, :-1] |= dx
    return edges


def _fly(out: np.ndarray, clean: np.ndarray, edges: np.ndarray, rate: float, rng: np.random.Generator) -> np.ndarray:
    """Mix edge pixels with their farthest neighbour: the smeared returns every depth sensor shows at edges."""
    flying = edges & (rng.random(clean.shape) < rate)
    if not flying.any():
        return out
    far = ndimage.maximum_filter(np.where(np.isfinite(clean), clean, 0.0), size=3)
    mix = rng.random(int(flying.sum()))
    out = out.copy()
    out[flying] = mix * out[flying] + (1.0 - mix) * far[flying]
    return out


@dataclass(frozen=True)
class DomainSettings:
    """Which cameras, sensors, shape styles and object kinds a regime samples."""

    name: str
    cameras: tuple[str, ...]
    sensors: tuple[str, ...]
    shape_styles: tuple[str, ...]
    excluded_kinds: tuple[str, ...] = ()
    objects: tuple[int, int] = (2, 7)

    @classmethod
    def training(cls) -> "DomainSettings":
        return cls("training",
                   cameras=("realsense_d435_640x480", "realsense_d435_848x480", "realsense_d435_1280x720",
                            "realsense_d405_640x480", "orbbec_astra_640x480", "orbbec_femto_1280x720"),
                   sensors=("active_stereo", "structured_light"), shape_styles=("stretch",),
                   excluded_kinds=HELD_BACK_KINDS)

    @classmethod
    def held_back(cls) -> "DomainSettings":
        """Settings training never samples: another camera and sensor, another shape style."""
        return cls("held_back", cameras=("azure_kinect_1280x720",), sensors=("time_of_flight",),
                   shape_styles=("taper",), excluded_kinds=HELD_BACK_KINDS)

    @classmethod
    def held_back_camera(cls) -> "DomainSettings":
        """The training look with only the held-back camera and depth sensor: one half of the held-back gap."""
        held = cls.held_back()
        return replace(cls.training(), name="held_back_camera", cameras=held.cameras, sensors=held.sensors)

    @classmethod
    def low_resolution(cls) -> "DomainSettings":
        """The training look through a 424x240 camera: what a third of the pixels per object costs."""
        return replace(cls.training(), name="low_resolution", cameras=("realsense_d435_424x240",))

    @classmethod
    def held_back_shapes(cls) -> "DomainSettings":
        """The training look with only the held-back shape style: the other half."""
        return replace(cls.training(), name="held_back_shapes", shape_styles=cls.held_back().shape_styles)


# Kinds never built for training; validation asks for them to measure transfer to unseen objects.
HELD_BACK_KINDS: tuple[str, ...] = ("sponge", "vase", "apple")


def make_sensor(name: str, intrinsics: CameraIntrinsics, rng: np.random.Generator):
    if name == "active_stereo":
        # Wide draws of the artefacts every real sensor shows in some measure (whole dark surfaces lost, strong
        # flying pixels at edges), so no single sensor's strength of them is what the model learns.
        return ActiveStereoSensor(baseline_m=float(rng.uniform(0.018, 0.055)), focal_px=intrinsics.fx,
                                  disparity_sigma_px=float(rng.uniform(0.04, 0.12)),
                                  flying_pixel_rate=float(rng.uniform(0.2, 0.8)),
                                  dark_dropout_reflectance=float(rng.choice([0.0, rng.uniform(0.01, 0.08)])),
                                  second_camera_right=bool(rng.random() < 0.7))
    if name == "time_of_flight":
        return TimeOfFlightSensor()
    if name == "structured_light":
        return StructuredLightSensor()
    raise KeyError(f"unknown depth sensor model {name!r}")


def _deformed(obj: ObjectModel, style: str, rng: np.random.Generator) -> ObjectModel:
    """The object with its shape style applied, resting on z=0 again."""
    stretch = rng.uniform(0.8, 1.25, 3)
    parts = []
    for part in obj.parts:
        v = part.mesh.vertices.copy()
        centre = v.mean(axis=0)
        if style == "stretch":
            v = centre + (v - centre) * rng.uniform(0.85, 1.15)
            v = v * stretch
        elif style == "taper":
            v = centre + (v - centre) * rng.choice([rng.uniform(0.8, 0.88), rng.uniform(1.12, 1.2)])
            height = max(float(obj.height), 1e-3)
            t = rng.uniform(-0.35, 0.35)
            v[:, :2] *= (1.0 + t * (v[:, 2:3] / height - 0.5))
        else:
            raise KeyError(f"unknown shape style {style!r}")
        parts.append(ObjectPart(part.name, Mesh(v, part.mesh.triangles), part.color))
    z0 = min(p.mesh.vertices[:, 2].min() for p in parts)
    parts = [ObjectPart(p.name, p.mesh.translated((0.0, 0.0, -z0)), p.color) for p in parts]
    return ObjectModel(obj.kind, obj.instance, obj.color_name, parts)


@dataclass
class RandomisedScene:
    """A random tabletop scene with its looks; ``materials[i]`` belongs to mesh i of ``scene.labelled_meshes()``."""

    scene: Scene
    materials: list[str]
    texture_scale: list[float]
    settings_name: str
    kinds: list[str] = field(default_factory=list)  # per object id - 1


COLOUR_NAMES = tuple(n for n in PALETTE if n not in ("glass", "meat", "bread", "cork", "cardboard"))


def random_scene(seed: int, settings: DomainSettings, kinds: Optional[Sequence[str]] = None) -> RandomisedScene:
    """A randomised scene; ``kinds`` forces the object kinds (validation tasks need their targets in view)."""
    rng = np.random.default_rng([seed, 0x52414E44])  # a namespace of its own: never a study scene's stream
    pool = [k for k in object_kinds() if k not in settings.excluded_kinds]
    if kinds is None:
        lo, hi = settings.objects
        count = int(rng.integers(lo, hi + 1))
        kinds = list(rng.choice(pool, size=count, replace=True))
        if rng.random() < 0.4:  # a same-kind rival in another colour: "the blue mug" must look at colour
            kinds.append(kinds[0])
    models = []
    for index, kind in enumerate(kinds):
        colour = str(rng.choice(COLOUR_NAMES)) if rng.random() < 0.7 else None
        obj = make_object(str(kind), rng, f"{kind}_{index}", colour)
        if rng.random() < 0.35 and len(obj.parts) > 1:  # two-tone: one part in its own colour
            which = int(rng.integers(len(obj.parts)))
            obj.parts[which] = ObjectPart(obj.parts[which].name, obj.parts[which].mesh,
                                          linear_color(str(rng.choice(COLOUR_NAMES)), rng))
        models.append(_deformed(obj, str(rng.choice(settings.shape_styles)), rng))
    placed = place_on_table(models, rng)
    table_colour = linear_color(str(rng.choice(COLOUR_NAMES)), rng, 0.08)
    material = str(rng.choice(["wood", "plain", "plain", "dark_brown"]))
    scene = Scene(name="randomised", seed=seed, objects=placed, tasks=[], table_color=table_colour,
                  table_material=material, table_size=(float(rng.uniform(1.0, 2.0)), float(rng.uniform(0.8, 1.4))),
                  floor_color=linear_color(str(rng.choice(COLOUR_NAMES)), rng, 0.05))
    materials, textures = ["matte", "matte"], [0.0, 0.0]
    for obj in placed:
        for _ in obj.parts:
            materials.append(str(rng.choice(MATERIALS, p=[0.4, 0.35, 0.15, 0.1])))
            textures.append(float(rng.choice([0.0, 0.0, rng.uniform(0.05, 0.3)])))
    return RandomisedScene(scene, materials, textures, settings.name, [o.kind for o in placed])


def random_camera(scene: Scene, settings: DomainSettings,
                  rng: np.random.Generator) -> tuple[CameraIntrinsics, np.ndarray, str]:
    """(intrinsics, world_from_camera, preset name) for a tabletop view of the scene."""
    preset = str(rng.choice(settings.cameras))
    base = CAMERA_PRESETS[preset]
    f = base.fx * rng.uniform(0.97, 1.03)
    k = CameraIntrinsics(f, f, base.cx + rng.normal(0, 3), base.cy + rng.normal(0, 3), base.width, base.height)
    azimuth = rng.uniform(-np.pi, np.pi)
    elevation = np.deg2rad(rng.uniform(20.0, 75.0))
    distance = float(np.clip(scene.radius / np.sin(half_fov(k) * 0.9) * rng.uniform(0.8, 1.3), 0.35, 1.4))
    target = scene.centre + np.array([rng.normal(0, 0.04), rng.normal(0, 0.04), 0.0])
    pose = orbit_pose(target, azimuth, elevation, distance)
    roll = np.deg2rad(rng.normal(0.0, 8.0))
    c, s = np.cos(roll), np.sin(roll)
    pose[:3, :3] = pose[:3, :3] @ np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
    return k, pose, preset


def render_randomised(randomised: RandomisedScene, settings: DomainSettings,
                      view_seed: int) -> tuple[RenderedView, dict]:
    """One frame of a randomised scene and a record of the draws (camera, sensor, light)."""
    rng = np.random.default_rng([randomised.scene.seed, view_seed, 0x56494557])
    scene = randomised.scene
    intrinsics, pose, preset = random_camera(scene, settings, rng)
    elevation = np.deg2rad(rng.uniform(20.0, 85.0))
    azimuth = rng.uniform(-np.pi, np.pi)
    light = np.array([np.cos(elevation) * np.cos(azimuth), np.cos(elevation) * np.sin(azimuth), np.sin(elevation)])
    meshes: list[LabelledMesh] = scene.labelled_meshes()
    frame = raycast(meshes, intrinsics, pose, light_direction_world=light)

    h, w = frame.depth.shape
    albedo_lut = np.array([m.color for m in meshes] + [tuple(rng.uniform(0.1, 0.8, 3))], dtype=np.float32)
    albedo = albedo_lut[frame.mesh_index]
    spec_lut = np.array([_MATERIAL_SHADING[m][0] for m in randomised.materials] + [0.0], dtype=np.float32)
    shine_lut = np.array([_MATERIAL_SHADING[m][1] for m in randomised.materials] + [1.0], dtype=np.float32)
    material_ids = {name: i for i, name in enumerate(MATERIALS)}
    material_lut = np.array([material_ids[m] for m in randomised.materials] + [0], dtype=np.int32)
    texture_lut = np.array(randomised.texture_scale + [0.0], dtype=np.float32)
    mat = material_lut[frame.mesh_index]
    glass = frame.hit & (mat == material_ids["glass"])
    metal = frame.hit & (mat == material_ids["metal"])
    albedo[glass] = albedo[glass] * 0.4 + 0.35  # pale and see-through-looking
    z = np.where(frame.hit, frame.depth, np.float32(0.0))
    cam_points = CameraModel(intrinsics).backproject(z)
    world = cam_points @ pose[:3, :3].T.astype(np.float32) + pose[:3, 3].astype(np.float32)
    # Surface-fixed textures (stripes, grain) with a per-scene frequency, scaled per part.
    freq = rng.uniform(40.0, 400.0)
    pattern = np.sin(world[..., 0] * freq + np.sin(world[..., 1] * freq * 0.7) * 2.0 + world[..., 2] * freq * 0.5)
    albedo *= (1.0 + texture_lut[frame.mesh_index] * pattern)[..., None]
    coarse = rng.normal(0.0, 1.0, (h // 16 + 2, w // 16 + 2))
    smooth = ndimage.zoom(coarse, (h / coarse.shape[0], w / coarse.shape[1]), order=1)[:h, :w]
    albedo *= (1.0 + 0.06 * smooth)[..., None]
    light_cam = (pose[:3, :3].T @ light).astype(np.float32)
    ambient = float(rng.uniform(0.15, 0.5))
    radiance = lit_radiance(albedo, frame, cam_points, light_cam, ambient=ambient,
                            specular=spec_lut[frame.mesh_index], shininess=shine_lut[frame.mesh_index],
                            gain=float(rng.uniform(0.9, 1.4)))
    radiance[~frame.hit] = albedo_lut[-1]
    radiance *= rng.uniform(0.85, 1.15, 3).astype(np.float32)  # light colour and white balance
    srgb = linear_to_srgb(np.clip(radiance, 0.0, None).astype(np.float32)) ** np.float32(rng.uniform(0.85, 1.2))
    blur = float(rng.choice([0.0, 0.0, rng.uniform(0.3, 1.2)]))
    if blur > 0:
        srgb = ndimage.gaussian_filter(srgb, sigma=(blur, blur, 0))
    srgb = srgb + rng.normal(0.0, rng.uniform(0.003, 0.03), srgb.shape).astype(np.float32)
    rgb = np.clip(np.round(srgb * 255.0), 0, 255).astype(np.uint8)

    clean = np.where(frame.depth <= MAX_RANGE_M, frame.depth, np.nan).astype(np.float32)
    sensor_name = str(rng.choice(settings.sensors))
    sensor = make_sensor(sensor_name, intrinsics, rng)
    reflectance = albedo.mean(axis=-1)
    noisy = sensor.apply(clean, frame.normals, rng, reflectance, glass, metal | glass)
    view = RenderedView(
        scene=f"randomised_{scene.seed}", view_index=view_seed, seed=scene.seed, rgb=rgb, depth_m=noisy,
        depth_clean_m=clean, normals=frame.normals, intrinsics=intrinsics, world_from_camera=pose,
        object_ids=frame.object_ids, part_ids=frame.part_ids, object_names=list(scene.object_names),
        part_names=list(scene.part_names), tasks=[],
    )
    return view, {"camera": preset, "sensor": sensor_name, "settings": settings.name,
                  "kinds": list(randomised.kinds)}


def table_plane_in_camera(world_from_camera: np.ndarray) -> tuple[np.ndarray, float]:
    """(normal, offset) of the table plane z=0 in the camera optical frame: height = n.p + d."""
    rot, trans = world_from_camera[:3, :3], world_from_camera[:3, 3]
    normal = rot.T @ np.array([0.0, 0.0, 1.0])
    return normal, float(trans[2])
