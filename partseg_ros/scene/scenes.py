"""The 12 study scenes: which objects stand on the table, where, and which tasks they serve.

A scene is rebuilt from (name, seed): the seed picks object sizes, colours
within their names, distractors, the non-overlapping placement on the table
and the table's look. Tasks come from ``partseg_ros/data/study_tasks.yaml``
and name objects by instance label ("blue_mug"), so the scene specs below
use the same labels. Camera viewpoints are chosen by the renderer
(:mod:`partseg_ros.scene.render`), which checks what they can see.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import yaml

from partseg_ros.scene.colors import linear_color
from partseg_ros.scene.objects import ObjectModel, make_object
from partseg_ros.scene.primitives import box, rotation
from partseg_ros.scene.raycast import LabelledMesh

STUDY_TASKS_PATH = Path(__file__).resolve().parents[1] / "data" / "study_tasks.yaml"
BACKGROUND_NAME = "background"


@dataclass(frozen=True)
class ObjectSpec:
    kind: str
    instance: str
    color: Optional[str] = None


@dataclass(frozen=True)
class SceneSpec:
    """Objects the tasks need, plus a pool the seed draws distractors from."""

    name: str
    title: str
    objects: tuple[ObjectSpec, ...]
    distractors: tuple[ObjectSpec, ...] = ()
    num_distractors: tuple[int, int] = (1, 2)


def object_spec(kind: str, instance: Optional[str] = None, color: Optional[str] = None) -> ObjectSpec:
    return ObjectSpec(kind, instance or kind, color)


# Distractor pools never contain something a no-target task asks for (no red
# mug in Mugs, no blue lollipop in Messy, ...) nor a second valid target.
STUDY_SCENES: dict[str, SceneSpec] = {
    spec.name: spec
    for spec in (
        SceneSpec("kitchen", "Kitchen",
                  (object_spec("spoon", "grey_spoon", "grey"), object_spec("teapot"), object_spec("dish_brush"),
                   object_spec("feather_duster"), object_spec("books"), object_spec("plate", "dishes")),
                  (object_spec("bowl"), object_spec("apple", "apple", "green"), object_spec("can")), (0, 1)),
        SceneSpec("flowers", "Flowers", (object_spec("daisy"), object_spec("rose")),
                  (object_spec("vase"), object_spec("block", "block", "light_blue"), object_spec("bowl"),
                   object_spec("plate")), (1, 3)),
        SceneSpec("mugs", "Mugs",
                  (object_spec("mug", "blue_mug", "blue"), object_spec("mug", "grey_mug", "grey"),
                   object_spec("mug", "white_mug", "white"), object_spec("teacup")),
                  (object_spec("plate"), object_spec("apple", "apple", "green"),
                   object_spec("spoon", "spoon", "silver"))),
        SceneSpec("tools", "Tools",
                  (object_spec("tape_measure"), object_spec("screwdriver"), object_spec("wire_cutters"),
                   object_spec("soldering_iron"), object_spec("hammer")),
                  (object_spec("wire"), object_spec("block", "block", "orange")), (1, 2)),
        SceneSpec("knives", "Knives",
                  (object_spec("bread_knife"), object_spec("steak_knife"), object_spec("box_cutter"),
                   object_spec("bread"), object_spec("steak"), object_spec("cardboard_box")),
                  (object_spec("apple"), object_spec("can")), (0, 1)),
        SceneSpec("martinis", "Martinis",
                  (object_spec("martini_glass", "grey_martini_glass", "grey"),
                   object_spec("martini_glass", "green_martini_glass", "green")),
                  (object_spec("wine_bottle", "wine_bottle", "dark_red"), object_spec("bowl"), object_spec("plate"),
                   object_spec("can")), (1, 3)),
        SceneSpec("fragile", "Fragile",
                  (object_spec("camera"), object_spec("sunglasses", "blue_sunglasses", "blue"),
                   object_spec("sunglasses", "black_sunglasses", "black"), object_spec("lightbulb")),
                  (object_spec("teacup"), object_spec("block", "block", "yellow")), (0, 1)),
        SceneSpec("cords", "Cords",
                  (object_spec("power_strip"), object_spec("usb_dongle"), object_spec("connector_cable")),
                  (object_spec("wire", "wire", "red"), object_spec("block", "block", "dark_grey"),
                   object_spec("tape_measure", "tape_measure", "yellow")),
                  (1, 2)),
        SceneSpec("messy", "Messy",
                  (object_spec("ice_cream"), object_spec("lollipop", "red_lollipop", "red"),
                   object_spec("lollipop", "green_lollipop", "green"),
                   object_spec("lollipop", "orange_lollipop", "orange")),
                  (object_spec("wrapper"), object_spec("wrapper", "wrapper_2", "yellow"), object_spec("can"),
                   object_spec("apple", "apple", "green"), object_spec("block", "block", "purple")), (2, 4)),
        SceneSpec("pasta", "Pasta",
                  (object_spec("wine_bottle"), object_spec("corkscrew"), object_spec("saucepan"),
                   object_spec("pasta_box")),
                  (object_spec("plate"), object_spec("bowl"), object_spec("can", "tomato_can", "red")), (1, 2)),
        SceneSpec("cleaning", "Cleaning",
                  (object_spec("clorox_box"), object_spec("tissue_box")),
                  (object_spec("sponge"), object_spec("can"), object_spec("bowl")), (1, 2)),
        SceneSpec("bottles", "Bottles",
                  (object_spec("spray_bottle", "meyers_cleaning_spray", "light_green"),
                   object_spec("spray_bottle", "purple_cleaning_spray", "purple")),
                  (object_spec("sponge"), object_spec("can"), object_spec("block", "block", "red")), (1, 2)),
    )
}

STUDY_SCENE_NAMES: tuple[str, ...] = tuple(STUDY_SCENES)


@dataclass(frozen=True)
class StudyTask:
    """One instruction and what answers it; ``targets`` empty means no valid target."""

    task_id: str
    scene: str
    instruction: str
    targets: tuple[str, ...]
    parts: tuple[str, ...]
    reason: str

    @property
    def has_target(self) -> bool:
        return bool(self.targets)


@lru_cache(maxsize=4)
def _load_yaml(path: str) -> dict:
    with open(path, encoding="utf-8") as handle:
        return yaml.load(handle, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


def load_study_tasks(path: Optional[Path] = None, include_no_target: bool = False,
                     scene: Optional[str] = None) -> list[StudyTask]:
    """The study's tasks (48), optionally followed by the extra no-target tasks."""
    data = _load_yaml(str(path or STUDY_TASKS_PATH))
    entries = list(data["study_tasks"])
    if include_no_target:
        entries += list(data.get("no_target_tasks") or [])
    tasks = [
        StudyTask(
            task_id=str(e["id"]),
            scene=str(e["scene"]),
            instruction=str(e["instruction"]),
            targets=tuple(e.get("targets") or ()),
            parts=tuple(e.get("parts") or ()),
            reason=str(e["reason"]),
        )
        for e in entries
    ]
    return [t for t in tasks if scene is None or t.scene == scene]


@dataclass
class Scene:
    """Objects placed on a table in world coordinates (z up, table top at z=0)."""

    name: str
    seed: int
    objects: list[ObjectModel]
    tasks: list[StudyTask]
    table_color: tuple[float, float, float]
    table_material: str
    table_size: tuple[float, float]
    floor_color: tuple[float, float, float]
    object_names: list[str] = field(default_factory=list)  # index = object id, [0] = background
    part_names: list[str] = field(default_factory=list)  # index = part id, "instance/part"

    def __post_init__(self) -> None:
        self.object_names = [BACKGROUND_NAME] + [o.instance for o in self.objects]
        self.part_names = [BACKGROUND_NAME] + [f"{o.instance}/{p.name}" for o in self.objects for p in o.parts]

    def object(self, instance: str) -> ObjectModel:
        for o in self.objects:
            if o.instance == instance:
                return o
        raise KeyError(f"scene {self.name} has no object {instance!r}")

    def object_id(self, instance: str) -> int:
        return self.object_names.index(instance)

    def part_id(self, instance: str, part: str) -> int:
        return self.part_names.index(f"{instance}/{part}")

    @property
    def centre(self) -> np.ndarray:
        """Centre of the objects' bounding box on the table (what cameras look at)."""
        verts = np.concatenate([p.mesh.vertices for o in self.objects for p in o.parts])
        lo, hi = verts.min(axis=0), verts.max(axis=0)
        return np.array([(lo[0] + hi[0]) / 2, (lo[1] + hi[1]) / 2, 0.03])

    @property
    def radius(self) -> float:
        """Radius around :attr:`centre` that holds every object (for framing cameras)."""
        verts = np.concatenate([p.mesh.vertices for o in self.objects for p in o.parts])
        return float(np.max(np.linalg.norm(verts - self.centre, axis=1)))

    def labelled_meshes(self) -> list[LabelledMesh]:
        """Table, floor and every object part, tagged with object and part ids."""
        sx, sy = self.table_size
        centre = self.centre
        table = box((sx, sy, 0.03)).translated((centre[0], centre[1], -0.015))
        floor = box((12.0, 12.0, 0.02)).translated((centre[0], centre[1], -0.76))
        meshes = [LabelledMesh(table.vertices, table.triangles, 0, 0, self.table_color),
                  LabelledMesh(floor.vertices, floor.triangles, 0, 0, self.floor_color)]
        part_id = 1
        for object_id, obj in enumerate(self.objects, start=1):
            for part in obj.parts:
                meshes.append(LabelledMesh(part.mesh.vertices, part.mesh.triangles, object_id, part_id, part.color))
                part_id += 1
        return meshes


def build_scene(name: str, seed: int = 0, include_no_target: bool = False,
                tasks_path: Optional[Path] = None) -> Scene:
    """Build a study scene deterministically from ``seed``."""
    if name not in STUDY_SCENES:
        raise KeyError(f"unknown scene {name!r}; known: {list(STUDY_SCENES)}")
    spec = STUDY_SCENES[name]
    rng = np.random.default_rng([seed, _stable_hash(name)])
    specs = list(spec.objects)
    lo, hi = spec.num_distractors
    n_extra = int(rng.integers(lo, hi + 1)) if spec.distractors else 0
    if n_extra:
        chosen = rng.choice(len(spec.distractors), size=min(n_extra, len(spec.distractors)), replace=False)
        specs += [spec.distractors[i] for i in sorted(chosen)]
    models = [make_object(s.kind, rng, s.instance, s.color) for s in specs]
    placed = place_on_table(models, rng)
    material = str(rng.choice(["wood", "light_grey", "off_white", "beige", "dark_brown"]))
    tasks = load_study_tasks(tasks_path, include_no_target, scene=name)
    scene = Scene(
        name=name,
        seed=seed,
        objects=placed,
        tasks=tasks,
        table_color=linear_color(material, rng, 0.05),
        table_material=material,
        table_size=(float(rng.uniform(1.2, 1.8)), float(rng.uniform(0.9, 1.3))),
        floor_color=linear_color(str(rng.choice(["grey", "dark_grey", "tan"])), rng, 0.05),
    )
    _check_tasks(scene)
    return scene


def _check_tasks(scene: Scene) -> None:
    """Every target named by a task must exist in the scene with the named parts."""
    for task in scene.tasks:
        for instance in task.targets:
            obj = scene.object(instance)
            for part in task.parts:
                obj.part(part)


def _stable_hash(text: str) -> int:
    """A hash that does not change between Python runs (unlike hash())."""
    value = 0
    for ch in text.encode("utf-8"):
        value = (value * 131 + ch) % (2**31 - 1)
    return value


# ----------------------------------------------------------------- placement

_CELL_M = 0.005
_MARGIN_CELLS = 3  # 1.5 cm clearance between objects


def footprint_points(obj: ObjectModel, spacing: float = _CELL_M / 2, seed: int = 0) -> np.ndarray:
    """Points covering the object's shadow on the table (xy): triangle samples, one per ``spacing`` cell."""
    rng = np.random.default_rng(seed)
    points = []
    for part in obj.parts:
        tri = part.mesh.vertices[part.mesh.triangles][:, :, :2]
        edge1, edge2 = tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]
        area = 0.5 * np.abs(edge1[:, 0] * edge2[:, 1] - edge1[:, 1] * edge2[:, 0])
        edge_len = np.maximum(np.linalg.norm(edge1, axis=1), np.linalg.norm(edge2, axis=1))
        counts = np.clip(np.ceil(2.0 * area / spacing**2 + edge_len / spacing), 1, 20000).astype(int)
        idx = np.repeat(np.arange(len(tri)), counts)
        a, b = rng.random(len(idx)), rng.random(len(idx))
        flip = a + b > 1.0
        a[flip], b[flip] = 1.0 - a[flip], 1.0 - b[flip]
        points.append(tri[idx, 0] + a[:, None] * edge1[idx] + b[:, None] * edge2[idx])
        points.append(part.mesh.vertices[:, :2])
    cells = np.floor(np.concatenate(points) / spacing).astype(np.int64)
    keys = np.unique((cells[:, 0] << 32) + (cells[:, 1] + (1 << 31)))  # 1D keys sort much faster than rows
    cells = np.column_stack([keys >> 32, (keys & 0xFFFFFFFF) - (1 << 31)])
    return (cells + 0.5) * spacing


def place_on_table(models: Sequence[ObjectModel], rng: np.random.Generator, max_tries: int = 300) -> list[ObjectModel]:
    """Random yaw and position for each object so that no two footprints overlap.

    Footprints are rasterised on a 5 mm grid and kept apart by a margin, so
    long thin objects (knives, cords) can lie close to others, as on a real
    table. Everything stays inside a disc that grows until the objects fit.
    """
    footprints = [footprint_points(m) for m in models]
    total_area = sum(len(f) for f in footprints) * (_CELL_M / 2) ** 2
    # A disc keeps the layout compact in every viewing direction (the cameras circle the table).
    radius = max(0.12, float(np.sqrt(total_area * 1.5 / np.pi)))
    order = sorted(range(len(models)), key=lambda i: -len(footprints[i]))
    for _ in range(20):
        grid_half = int(np.ceil((radius + 0.05) / _CELL_M))
        blocked = np.zeros((2 * grid_half, 2 * grid_half), dtype=bool)  # occupied cells grown by the margin
        poses: dict[int, np.ndarray] = {}
        for i in order:
            placed = _try_place(footprints[i], blocked, grid_half, radius, rng, max_tries)
            if placed is None:
                break
            poses[i], cells = placed
            mask = np.zeros_like(blocked)
            mask[cells[:, 1], cells[:, 0]] = True
            blocked |= _dilate(mask, _MARGIN_CELLS)
        if len(poses) == len(models):
            return [models[i].transformed(poses[i]) for i in range(len(models))]
        radius *= 1.08
    raise RuntimeError("could not place the objects without overlap")


def _try_place(points: np.ndarray, blocked: np.ndarray, grid_half: int, radius: float,
               rng: np.random.Generator, max_tries: int) -> Optional[tuple[np.ndarray, np.ndarray]]:
    """A pose (yaw, xy) that keeps the footprint inside the disc and off blocked cells, or None."""
    reach = float(np.max(np.linalg.norm(points, axis=1)))
    room = radius - reach
    if room < 0:
        return None
    for _ in range(max_tries):
        pose = rotation("z", rng.uniform(-np.pi, np.pi))
        angle, dist = rng.uniform(-np.pi, np.pi), room * np.sqrt(rng.random())
        offset = np.array([dist * np.cos(angle), dist * np.sin(angle)])
        cells = np.floor((points @ pose[:2, :2].T + offset) / _CELL_M).astype(np.int64) + grid_half
        if np.any(blocked[cells[:, 1], cells[:, 0]]):
            continue
        pose[:2, 3] = offset
        return pose, cells
    return None


def _dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    """Binary dilation by a square of side 2*radius+1 (separable, edges do not wrap)."""
    out = mask.copy()
    for axis in (0, 1):
        acc = out.copy()
        n = out.shape[axis]
        for shift in range(1, radius + 1):
            fwd = [slice(None)] * 2
            src = [slice(None)] * 2
            fwd[axis], src[axis] = slice(shift, n), slice(0, n - shift)
            acc[tuple(fwd)] |= out[tuple(src)]
            acc[tuple(src)] |= out[tuple(fwd)]
        out = acc
    return out
