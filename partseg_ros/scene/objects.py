"""A procedural library of the study's household objects, built from named parts.

Every builder takes a random generator and a colour name and returns the
object's parts in its own frame: resting on the table plane z=0, centred on
the xy origin, metres. Sizes and proportions vary within ranges typical of
the real object, so a model cannot key on one exact shape. Part names are
the words a person uses for what they grasp or act on (handle, stem, cork,
trigger, lid, knob...), because they are what the ground truth names.

Entry point: :func:`make_object` (kind, instance label, colour, rng).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np

from partseg_ros.scene.colors import PALETTE, linear_color
from partseg_ros.scene.primitives import (
    Mesh,
    bent_tube,
    box,
    capsule,
    cylinder,
    ellipsoid,
    extruded_polygon,
    frustum,
    lathe,
    merge,
    plate,
    rotation,
    rounded_box,
    segment_between,
    sphere,
    superellipse,
    torus,
    tube,
)


@dataclass
class ObjectPart:
    name: str
    mesh: Mesh
    color: tuple[float, float, float]  # linear RGB


@dataclass
class ObjectModel:
    """One object instance: its kind ("mug"), label ("blue_mug"), colour word and parts."""

    kind: str
    instance: str
    color_name: str
    parts: list[ObjectPart]

    @property
    def part_names(self) -> list[str]:
        return [p.name for p in self.parts]

    def part(self, name: str) -> ObjectPart:
        for p in self.parts:
            if p.name == name:
                return p
        raise KeyError(f"{self.instance} has no part {name!r}; parts: {self.part_names}")

    @property
    def footprint_radius(self) -> float:
        """Radius of the smallest origin-centred disc covering the object seen from above."""
        xy = np.concatenate([p.mesh.vertices[:, :2] for p in self.parts])
        return float(np.max(np.linalg.norm(xy, axis=1)))

    @property
    def height(self) -> float:
        return float(max(p.mesh.vertices[:, 2].max() for p in self.parts))

    def transformed(self, world_from_object: np.ndarray) -> "ObjectModel":
        parts = [ObjectPart(p.name, p.mesh.transformed(world_from_object), p.color) for p in self.parts]
        return ObjectModel(self.kind, self.instance, self.color_name, parts)


Builder = Callable[[np.random.Generator, str], list[ObjectPart]]
OBJECT_BUILDERS: dict[str, Builder] = {}
DEFAULT_COLORS: dict[str, str] = {}


def _builder(kind: str, default_color: str) -> Callable[[Builder], Builder]:
    def register(fn: Builder) -> Builder:
        OBJECT_BUILDERS[kind] = fn
        DEFAULT_COLORS[kind] = default_color
        return fn

    return register


def object_kinds() -> list[str]:
    return sorted(OBJECT_BUILDERS)


def make_object(kind: str, rng: np.random.Generator, instance: Optional[str] = None,
                color_name: Optional[str] = None) -> ObjectModel:
    """Build one object of ``kind`` with seeded size/proportion/colour variation.

    The result rests on z=0 and is centred on its xy bounding box.
    """
    if kind not in OBJECT_BUILDERS:
        raise KeyError(f"unknown object kind {kind!r}; known: {object_kinds()}")
    color_name = color_name or DEFAULT_COLORS[kind]
    if color_name not in PALETTE:
        raise KeyError(f"unknown colour {color_name!r}")
    parts = OBJECT_BUILDERS[kind](rng, color_name)
    verts = np.concatenate([p.mesh.vertices for p in parts])
    lo, hi = verts.min(axis=0), verts.max(axis=0)
    offset = np.array([-(lo[0] + hi[0]) / 2.0, -(lo[1] + hi[1]) / 2.0, -lo[2]])
    parts = [ObjectPart(p.name, p.mesh.translated(offset), p.color) for p in parts]
    return ObjectModel(kind, instance or kind, color_name, parts)


# ----------------------------------------------------------------- helpers


def jittered(rng: np.random.Generator, value: float, rel: float = 0.12) -> float:
    """``value`` scaled by a uniform factor in [1-rel, 1+rel]."""
    return float(value * rng.uniform(1.0 - rel, 1.0 + rel))


def _pick(rng: np.random.Generator, names: list[str]) -> str:
    return names[int(rng.integers(len(names)))]


def _along_x(mesh: Mesh, height: float) -> Mesh:
    """Lay a mesh built along +z down along +x, its axis at ``height`` above the table."""
    return mesh.transformed(rotation("y", np.pi / 2)).translated((0.0, 0.0, height))


def _lying_flat(mesh: Mesh) -> Mesh:
    """Put a plate built in xy (centred on z=0) onto the table."""
    z0 = mesh.vertices[:, 2].min()
    return mesh.translated((0.0, 0.0, -z0))


def _blade_outline(length: float, width: float, tip: float = 0.25, serration: int = 0) -> np.ndarray:
    """Knife blade outline in xy from x=0 (heel) to x=length (tip); spine on +y, edge on y=0."""
    n = 24
    xs = np.linspace(0.0, length, n)
    spine_end = length * (1.0 - tip)
    spine = np.where(xs <= spine_end, width, width * np.clip((length - xs) / (length - spine_end), 0.0, 1.0) ** 0.7)
    edge_x = np.linspace(length, 0.0, n if serration == 0 else max(serration * 2, n))
    edge_y = np.zeros_like(edge_x)
    edge_y += 0.08 * width * np.clip((edge_x - spine_end) / (length - spine_end + 1e-9), 0.0, 1.0) ** 2
    if serration:
        edge_y[1:-1:2] += 0.06 * width
    top = np.column_stack([xs, spine])
    bottom = np.column_stack([edge_x, edge_y])
    return np.concatenate([top, bottom[1:-1]])


def _handle_ring(radius: float, thickness: float, arc: float = np.pi * 1.15) -> Mesh:
    """A C-shaped handle in the xz plane, open towards -x (the side it attaches to)."""
    ring = torus(radius, thickness, arc=arc, segments=20, sides=10)
    return ring.transformed(rotation("z", -arc / 2.0)).transformed(rotation("x", np.pi / 2))


# ----------------------------------------------------------------- kitchen


@_builder("spoon", "grey")
def _spoon(rng: np.random.Generator, color: str) -> list[ObjectPart]:
    handle_len = jittered(rng, 0.13)
    width = jittered(rng, 0.012, 0.2)
    handle = extruded_polygon(
        [(0.0, -width * 0.35), (handle_len, -width * 0.5), (handle_len + 0.004, 0.0), (handle_len, width * 0.5),
         (0.0, width * 0.35)], jittered(rng, 0.003, 0.2))
    handle = _lying_flat(handle.transformed(rotation("y", -0.12)))
    bowl_len, bowl_w = jittered(rng, 0.055, 0.15), jittered(rng, 0.038, 0.15)
    bowl = ellipsoid((bowl_len / 2, bowl_w / 2, 0.008), 20, 8)
    bowl = bowl.translated((-bowl_len / 2 + 0.004, 0.0, 0.008))
    col = linear_color(color, rng)
    return [ObjectPart("handle", handle, col), ObjectPart("bowl", bowl, col)]


@_builder("teapot", "white")
def _teapot(rng: np.random.Generator, color: str) -> list[ObjectPart]:
    r, h = jittered(rng, 0.075), jittered(rng, 0.11)
    body = lathe([(0.0, 0.0), (r * 0.7, 0.0), (r * 0.95, h * 0.25), (r, h * 0.5), (r * 0.85, h * 0.85),
                  (r * 0.55, h), (0.0, h)], 32)
    lid = lathe([(0.0, h - 0.002), (r * 0.56, h - 0.002), (r * 0.45, h + 0.015), (0.0, h + 0.022)], 24)
    knob = sphere(jittered(rng, 0.012), 12, 6).translated((0.0, 0.0, h + 0.03))
    spout_pts = [(r * 0.8, 0.0, h * 0.35), (r * 1.2, 0.0, h * 0.5), (r * 1.45, 0.0, h * 0.75), (r * 1.6, 0.0, h * 0.9)]
    spout = bent_tube(spout_pts, [0.016, 0.012, 0.009, 0.008], sides=12)
    handle = _handle_ring(jittered(rng, 0.04), 0.007, arc=np.pi * 1.3)
    handle = handle.transformed(rotation("z", np.pi)).translated((-r * 0.95, 0.0, h * 0.55))
    col = linear_color(color, rng)
    accent = linear_color(_pick(rng, ["blue", "dark_green", "white", "red"]), rng)
    return [ObjectPart("body", body, col), ObjectPart("lid", lid, col), ObjectPart("knob", knob, accent),
            ObjectPart("spout", spout, col), ObjectPart("handle", handle, col)]


@_builder("dish_brush", "light_blue")
def _dish_brush(rng: np.random.Generator, color: str) -> list[ObjectPart]:
    length, radius = jittered(rng, 0.16), jittered(rng, 0.011)
    handle = _along_x(capsule(radius, length, 16, 4), radius * 1.4)
    head_r = jittered(rng, 0.028)
    head = _along_x(cylinder(head_r, 0.02, 20), head_r).translated((length - 0.005, 0.0, 0.0))
    bristles = _along_x(cylinder(head_r * 0.9, jittered(rng, 0.03), 20), head_r).translated((length + 0.015, 0.0, 0.0))
    return [ObjectPart("handle", handle, linear_color(color, rng)), ObjectPart("head", head, linear_color(color, rng)),
            ObjectPart("bristles", bristles, linear_color(_pick(rng, ["white", "off_white", "yellow"]), rng))]


@_builder("sponge", "yellow")
def _sponge(rng: np.random.Generator, color: str) -> list[ObjectPart]:
    sx, sy = jittered(rng, 0.10), jittered(rng, 0.065)
    soft = _lying_flat(rounded_box((sx, sy, jittered(rng, 0.025)), 0.006))
    top = soft.vertices[:, 2].max()
    scour = rounded_box((sx, sy, 0.008), 0.003)
    scour = scour.translated((0.0, 0.0, top + 0.004))
    return [ObjectPart("sponge", soft, linear_color(color, rng)),
            ObjectPart("scouring_pad", scour, linear_color("green", rng))]


@_builder("feather_duster", "brown")
def _feather_duster(rng: np.random.Generator, color: str) -> list[ObjectPart]:
    length, radius = jittered(rng, 0.2), jittered(rng, 0.009)
    handle = _along_x(capsule(radius, length, 14, 4), 0.03)
    feathers = ellipsoid((jittered(rng, 0.09), jittered(rng, 0.045), 0.03), 18, 8).translated(
        (length + 0.07, 0.0, 0.03))
    bumps = [sphere(jittered(rng, 0.02, 0.3), 10, 5).translated((length + 0.07 + rng.uniform(-0.06, 0.06),
                                                          rng.uniform(-0.03, 0.03), 0.03 + rng.uniform(0.0, 0.02)))
             for _ in range(6)]
    return [ObjectPart("handle", handle, linear_color(color, rng)),
            ObjectPart("feathers", merge([feathers, *bumps]),
                       linear_color(_pick(rng, ["pink", "grey", "black", "purple"]), rng))]


@_builder("books", "blue")
def _books(rng: np.random.Generator, color: str) -> list[ObjectPart]:
    """A small stack of books: covers in varied colours, pages visible on three sides."""
    covers, pages, z = [], [], 0.0
    for _ in range(int(rng.integers(2, 4))):
        sx, sy, sz = jittered(rng, 0.22, 0.15), jittered(rng, 0.15, 0.15), jittered(rng, 0.03, 0.3)
        yaw = rng.uniform(-0.25, 0.25)
        shell = box((sx, sy, sz)).translated((0.0, 0.0, z + sz / 2))
        paper = box((sx * 0.98, sy * 0.96, sz * 0.8)).translated((0.006, 0.0, z + sz / 2))
        covers.append(shell.transformed(rotation("z", yaw)))
        pages.append(paper.transformed(rotation("z", yaw)))
        z += sz
    cover_mesh = merge(covers)
    return [ObjectPart("cover", cover_mesh, linear_color(color, rng)),
            ObjectPart("pages", merge(pages), linear_color("off_white", rng))]


@_builder("plate", "white")
def _plate(rng: np.random.Generator, color: str) -> list[ObjectPart]:
    r = jittered(rng, 0.12)
    dish = lathe([(0.0, 0.0), (r * 0.6, 0.0), (r * 0.65, 0.008), (r, 0.02), (r * 0.97, 0.022), (r * 0.62, 0.011),
                  (0.0, 0.011)], 36)
    return [ObjectPart("plate", dish, linear_color(color, rng))]


@_builder("bowl", "white")
def _bowl(rng: np.random.Generator, color: str) -> list[ObjectPart]:
    r, h = jittered(rng, 0.07), jittered(rng, 0.06)
    wall = lathe([(0.0, 0.0), (r * 0.5, 0.0), (r * 0.85, h * 0.5), (r, h), (r * 0.94, h), (r * 0.78, h * 0.5),
                  (r * 0.42, 0.008), (0.0, 0.008)], 32)
    return [ObjectPart("bowl", wall, linear_color(color, rng))]


# ----------------------------------------------------------------- flowers


def _flower_stem(rng: np.random.Generator, length: float) -> tuple[Mesh, np.ndarray, np.ndarray]:
    """A slightly curved stem lying on the table along +x; returns mesh, head position and direction."""
    n = 10
    xs = np.linspace(0.0, length, n)
    bend = rng.uniform(-0.04, 0.04)
    ys = bend * np.sin(np.linspace(0.0, np.pi, n))
    radius = jittered(rng, 0.003, 0.2)
    zs = radius + np.linspace(0.0, 0.012, n)
    pts = np.column_stack([xs, ys, zs])
    stem = bent_tube(pts, radius, sides=8)
    direction = pts[-1] - pts[-2]
    return stem, pts[-1], direction / np.linalg.norm(direction)


def _leaf(length: float, width: float) -> Mesh:
    t = np.linspace(0.0, np.pi, 12)
    outline = np.concatenate([np.column_stack([length * (1 - np.cos(t)) / 2, width * np.sin(t) / 2]),
                              np.column_stack([length * (1 + np.cos(t[1:-1])) / 2, -width * np.sin(t[1:-1]) / 2])])
    return extruded_polygon(outline, 0.0015)


@_builder("daisy", "white")
def _daisy(rng: np.random.Generator, color: str) -> list[ObjectPart]:
    stem, head, _ = _flower_stem(rng, jittered(rng, 0.24))
    radius = jittered(rng, 0.03)
    k = 16
    angles = np.linspace(0.0, 2 * np.pi, 2 * k, endpoint=False)
    radii = np.where(np.arange(2 * k) % 2 == 0, radius, radius * 0.35)
    petals = extruded_polygon(np.column_stack([radii * np.cos(angles), radii * np.sin(angles)]), 0.002)
    # The head faces up and slightly toward the stem end, resting on its petals.
    petals = petals.transformed(rotation("y", 0.35)).translated(
        (head[0] + radius * 0.7, head[1], radius * 0.45 + 0.004))
    centre = ellipsoid((radius * 0.32, radius * 0.32, 0.006), 14, 6).transformed(rotation("y", 0.35))
    centre = centre.translated((head[0] + radius * 0.7 - 0.001, head[1], radius * 0.45 + 0.008))
    leaves = merge([_leaf(jittered(rng, 0.05), jittered(rng, 0.016)).transformed(rotation("z", s * 0.6)).translated(
        (head[0] * f, 0.0, 0.004)) for s, f in ((1, 0.35), (-1, 0.55))])
    return [ObjectPart("stem", stem, linear_color("green", rng)),
            ObjectPart("petals", petals, linear_color(color, rng, 0.03)),
            ObjectPart("center", centre, linear_color("yellow", rng)),
            ObjectPart("leaves", leaves, linear_color("dark_green", rng))]


@_builder("rose", "red")
def _rose(rng: np.random.Generator, color: str) -> list[ObjectPart]:
    stem, head, _ = _flower_stem(rng, jittered(rng, 0.26))
    r = jittered(rng, 0.022)
    bloom_parts = [ellipsoid((r * 1.2, r, r), 16, 8).translated((head[0] + r, head[1], r + 0.004))]
    for a in np.linspace(0.0, 2 * np.pi, 5, endpoint=False):
        bloom_parts.append(ellipsoid((r * 0.7, r * 0.5, r * 0.8), 10, 5).translated(
            (head[0] + r + 0.7 * r * np.cos(a), head[1] + 0.7 * r * np.sin(a), r + 0.004)))
    sepals = frustum(0.006, r * 0.7, 0.012, 12).transformed(rotation("y", np.pi / 2)).translated(
        (head[0] - 0.006, head[1], r + 0.004))
    leaves = merge([_leaf(jittered(rng, 0.04), jittered(rng, 0.02)).transformed(rotation("z", s * 0.7)).translated(
        (head[0] * f, 0.0, 0.004)) for s, f in ((1, 0.4), (-1, 0.6), (1, 0.75))])
    return [ObjectPart("stem", stem, linear_color("dark_green", rng)),
            ObjectPart("bloom", merge(bloom_parts), linear_color(color, rng)),
            ObjectPart("sepals", sepals, linear_color("green", rng)),
            ObjectPart("leaves", leaves, linear_color("green", rng))]


@_builder("vase", "teal")
def _vase(rng: np.random.Generator, color: str) -> list[ObjectPart]:
    r, h = jittered(rng, 0.045), jittered(rng, 0.18)
    body = lathe([(0.0, 0.0), (r * 0.8, 0.0), (r, h * 0.3), (r * 0.6, h * 0.8), (r * 0.7, h), (r * 0.6, h),
                  (r * 0.5, h * 0.8), (0.0, h * 0.6)], 28)
    return [ObjectPart("body", body, linear_color(color, rng))]


# ----------------------------------------------------------------- mugs


@_builder("mug", "red")
def _mug(rng: np.random.Generator, color: str) -> list[ObjectPart]:
    r, h = jittered(rng, 0.042), jittered(rng, 0.095)
    body = tube(r, r - 0.004, h, 32, floor=0.006)
    handle_r = jittered(rng, 0.026, 0.15)
    handle = _handle_ring(handle_r, jittered(rng, 0.006, 0.2)).transformed(rotation("z", np.pi))
    handle = handle.translated((-r + 0.002 - 0.2 * handle_r, 0.0, h * 0.52))
    col = linear_color(color, rng)
    return [ObjectPart("body", body, col), ObjectPart("handle", handle, col)]


@_builder("teacup", "white")
def _teacup(rng: np.random.Generator, color: str) -> list[ObjectPart]:
    r, h = jittered(rng, 0.045), jittered(rng, 0.05)
    saucer_r = jittered(rng, 0.075)
    saucer = lathe([(0.0, 0.0), (saucer_r * 0.6, 0.0), (saucer_r, 0.012), (saucer_r * 0.95, 0.014),
                    (saucer_r * 0.6, 0.007), (0.0, 0.007)], 32)
    cup = lathe([(0.0, 0.007), (r * 0.55, 0.007), (r * 0.8, h * 0.35), (r, h), (r * 0.94, h), (r * 0.75, h * 0.35),
                 (r * 0.5, 0.013), (0.0, 0.013)], 32)
    handle = _handle_ring(jittered(rng, 0.016), 0.0045).transformed(rotation("z", np.pi)).translated(
        (-r * 0.95, 0.0, h * 0.6))
    col = linear_color(color, rng)
    accent = linear_color(_pick(rng, ["blue", "pink", "light_green", "white"]), rng)
    return [ObjectPart("cup", cup, col), ObjectPart("handle", handle, col), ObjectPart("saucer", saucer, accent)]


# ----------------------------------------------------------------- tools


@_builder("tape_measure", "yellow")
def _tape_measure(rng: np.random.Generator, color: str) -> list[ObjectPart]:
    s = jittered(rng, 0.07)
    depth = jittered(rng, 0.038)
    outline = superellipse(s / 2, s / 2, 3.0, 40)
    case = extruded_polygon(outline, depth).transformed(rotation("x", np.pi / 2)).translated((0.0, 0.0, s / 2))
    tape = plate(jittered(rng, 0.02), depth * 0.6, 0.002).translated((s / 2, 0.0, 0.001))
    hook = box((0.003, depth * 0.65, 0.01)).translated((s / 2 + 0.02, 0.0, 0.005))
    button = box((0.012, 0.01, 0.02)).translated((s * 0.2, 0.0, s + 0.004))
    clip = box((s * 0.7, 0.004, s * 0.5)).translated((-0.005, -depth / 2 - 0.002, s * 0.55))
    return [ObjectPart("case", case, linear_color(color, rng)),
            ObjectPart("tape", merge([tape, hook]), linear_color("light_yellow", rng)),
            ObjectPart("lock_button", button, linear_color("black", rng)),
            ObjectPart("clip", clip, linear_color("silver", rng))]


@_builder("screwdriver", "red")
def _screwdriver(rng: np.random.Generator, color: str) -> list[ObjectPart]:
    hl, hr = jittered(rng, 0.1), jittered(rng, 0.015)
    handle = _along_x(lathe([(0.0, 0.0), (hr * 0.8, 0.0), (hr, 0.01), (hr, hl * 0.8), (hr * 0.7, hl), (0.0, hl)], 14),
                      hr)
    sl = jittered(rng, 0.1, 0.25)
    shaft = _along_x(cylinder(0.003, sl, 10), hr).translated((hl, 0.0, 0.0))
    tip = _along_x(frustum(0.003, 0.001, 0.008, 10), hr).translated((hl + sl, 0.0, 0.0))
    return [ObjectPart("handle", handle, linear_color(color, rng)),
            ObjectPart("shaft", shaft, linear_color("steel", rng)),
            ObjectPart("tip", tip, linear_color("steel", rng))]


@_builder("wire_cutters", "red")
def _wire_cutters(rng: np.random.Generator, color: str) -> list[ObjectPart]:
    hl = jittered(rng, 0.11)
    spread = rng.uniform(0.015, 0.03)
    arms = []
    for side in (-1.0, 1.0):
        pts = [(0.0, side * 0.004, 0.008), (-hl * 0.3, side * (0.006 + spread * 0.4), 0.008),
               (-hl, side * (0.008 + spread), 0.008)]
        arms.append(bent_tube(pts, 0.007, sides=10))
    jaw_len = jittered(rng, 0.035)
    jaws = merge([_lying_flat(extruded_polygon([(0.0, 0.0), (jaw_len, side * 0.001), (jaw_len * 0.7, side * 0.012),
                                                 (0.0, side * 0.01)], 0.006)).translated((0.0, 0.0, 0.005))
                  for side in (-1.0, 1.0)])
    pivot = cylinder(0.007, 0.014, 14).translated((0.0, 0.0, 0.001))
    return [ObjectPart("handles", merge(arms), linear_color(color, rng)),
            ObjectPart("jaws", jaws, linear_color("steel", rng)),
            ObjectPart("pivot", pivot, linear_color("silver", rng))]


@_builder("wire", "orange")
def _wire(rng: np.random.Generator, color: str) -> list[ObjectPart]:
    n = 30
    t = np.linspace(0.0, 1.0, n)
    length = jittered(rng, 0.25)
    pts = np.column_stack([length * t, 0.03 * np.sin(t * rng.uniform(4.0, 8.0)), np.full(n, 0.003)])
    return [ObjectPart("wire", bent_tube(pts, 0.0025, sides=8), linear_color(color, rng))]


@_builder("soldering_iron", "blue")
def _soldering_iron(rng: np.random.Generator, color: str) -> list[ObjectPart]:
    hl, hr = jittered(rng, 0.1), jittered(rng, 0.013)
    handle = _along_x(lathe([(0.0, 0.0), (hr * 0.7, 0.0), (hr, 0.015), (hr * 0.9, hl * 0.7), (hr * 0.75, hl),
                             (0.0, hl)], 14), hr)
    bl = jittered(rng, 0.07)
    barrel = _along_x(cylinder(hr * 0.35, bl, 12), hr).translated((hl, 0.0, 0.0))
    tip = _along_x(frustum(hr * 0.25, 0.0008, 0.025, 10), hr).translated((hl + bl, 0.0, 0.0))
    n = 12
    t = np.linspace(0.0, 1.0, n)
    cord_pts = np.column_stack([-0.12 * t, 0.05 * np.sin(t * 3.0), hr * (1.0 - t) + 0.004 * t])
    cord = bent_tube(cord_pts, 0.0035, sides=8)
    return [ObjectPart("handle", handle, linear_color(color, rng)),
            ObjectPart("barrel", barrel, linear_color("silver", rng)),
            ObjectPart("tip", tip, linear_color("dark_grey", rng)),
            ObjectPart("cord", cord, linear_color("black", rng))]


@_builder("hammer", "brown")
def _hammer(rng: np.random.Generator, color: str) -> list[ObjectPart]:
    hl = jittered(rng, 0.25)
    hw = jittered(rng, 0.028)
    handle = rounded_box((hl, hw, 0.02), 0.008).translated((hl / 2, 0.0, 0.012))
    head_len = jittered(rng, 0.11)
    head = merge([
        box((0.03, head_len * 0.55, 0.026)).translated((hl + 0.01, head_len * 0.2, 0.013)),
        cylinder(0.014, head_len * 0.35, 14).transformed(rotation("x", -np.pi / 2))
        .translated((hl + 0.01, head_len * 0.45, 0.014)),
        extruded_polygon([(-0.012, 0.0), (0.012, 0.0), (0.02, -head_len * 0.45), (0.008, -head_len * 0.5)], 0.02)
        .translated((hl + 0.01, 0.0, 0.012)),
    ])
    return [ObjectPart("handle", handle, linear_color(color, rng)),
            ObjectPart("head", head, linear_color("dark_grey", rng))]


# ----------------------------------------------------------------- knives and what they cut


def _knife(rng: np.random.Generator, color: str, blade_len: float, blade_w: float, handle_len: float,
           serration: int, tip: float) -> list[ObjectPart]:
    hr = jittered(rng, 0.011)
    handle = rounded_box((handle_len, hr * 1.6, hr * 1.8), hr * 0.6).translated((-handle_len / 2, 0.0, hr * 0.9))
    # Lying on its side: the blade is a flat plate on the table, the handle is thicker.
    blade = extruded_polygon(_blade_outline(blade_len, blade_w, tip, serration), 0.002)
    blade = blade.translated((0.0, -blade_w * 0.45, 0.001))
    return [ObjectPart("handle", handle, linear_color(color, rng)),
            ObjectPart("blade", blade, linear_color("steel", rng))]


@_builder("bread_knife", "black")
def _bread_knife(rng: np.random.Generator, color: str) -> list[ObjectPart]:
    return _knife(rng, color, jittered(rng, 0.21), jittered(rng, 0.03), jittered(rng, 0.12), serration=30, tip=0.1)


@_builder("steak_knife", "wood")
def _steak_knife(rng: np.random.Generator, color: str) -> list[ObjectPart]:
    return _knife(rng, color, jittered(rng, 0.12), jittered(rng, 0.02), jittered(rng, 0.11), serration=16, tip=0.35)


@_builder("box_cutter", "orange")
def _box_cutter(rng: np.random.Generator, color: str) -> list[ObjectPart]:
    bl, bw = jittered(rng, 0.13), jittered(rng, 0.026)
    body = rounded_box((bl, bw, 0.018), 0.006).translated((-bl / 2, 0.0, 0.009))
    slider = box((0.02, 0.01, 0.006)).translated((-bl * 0.4, 0.0, 0.02))
    blade = _lying_flat(extruded_polygon([(0.0, -bw * 0.35), (0.028, -bw * 0.35), (0.016, bw * 0.3), (0.0, bw * 0.3)],
                                         0.0015)).translated((0.0, 0.0, 0.008))
    return [ObjectPart("handle", body, linear_color(color, rng)),
            ObjectPart("slider", slider, linear_color("black", rng)),
            ObjectPart("blade", blade, linear_color("silver", rng))]


@_builder("bread", "bread")
def _bread(rng: np.random.Generator, color: str) -> list[ObjectPart]:
    loaf = rounded_box((jittered(rng, 0.24), jittered(rng, 0.11), jittered(rng, 0.08)), 0.035)
    return [ObjectPart("loaf", _lying_flat(loaf), linear_color(color, rng))]


@_builder("steak", "meat")
def _steak(rng: np.random.Generator, color: str) -> list[ObjectPart]:
    r = jittered(rng, 0.11)
    dish = lathe([(0.0, 0.0), (r * 0.6, 0.0), (r, 0.015), (r * 0.96, 0.017), (r * 0.62, 0.009), (0.0, 0.009)], 32)
    meat = ellipsoid((jittered(rng, 0.07), jittered(rng, 0.045), 0.012), 20, 8).translated((0.0, 0.0, 0.015))
    return [ObjectPart("meat", meat, linear_color(color, rng)), ObjectPart("plate", dish, linear_color("white", rng))]


@_builder("cardboard_box", "cardboard")
def _cardboard_box(rng: np.random.Generator, color: str) -> list[ObjectPart]:
    sx, sy, sz = jittered(rng, 0.2), jittered(rng, 0.14), jittered(rng, 0.1)
    shell = box((sx, sy, sz)).translated((0.0, 0.0, sz / 2))
    tape = box((sx * 1.002, 0.05, 0.002)).translated((0.0, 0.0, sz + 0.001))
    return [ObjectPart("box", shell, linear_color(color, rng)), ObjectPart("tape", tape, linear_color("tan", rng))]


# ----------------------------------------------------------------- martinis, fragile


@_builder("martini_glass", "grey")
def _martini_glass(rng: np.random.Generator, color: str) -> list[ObjectPart]:
    br = jittered(rng, 0.035)
    base = lathe([(0.0, 0.0), (br, 0.0), (br * 0.95, 0.004), (0.0, 0.005)], 24)
    sh = jittered(rng, 0.09)
    stem = cylinder(jittered(rng, 0.0035, 0.15), sh, 12).translated((0.0, 0.0, 0.004))
    cr, ch = jittered(rng, 0.06), jittered(rng, 0.065)
    bowl = lathe([(0.0, sh), (cr, sh + ch), (cr - 0.002, sh + ch), (0.0, sh + 0.006)], 32)
    col = linear_color(color, rng, 0.04)
    return [ObjectPart("base", base, col), ObjectPart("stem", stem, col), ObjectPart("bowl", bowl, col)]


@_builder("camera", "black")
def _camera(rng: np.random.Generator, color: str) -> list[ObjectPart]:
    sx, sy, sz = jittered(rng, 0.13), jittered(rng, 0.07), jittered(rng, 0.09)
    body = rounded_box((sx, sy, sz), 0.012).translated((0.0, 0.0, sz / 2))
    lr = jittered(rng, 0.03)
    lens = cylinder(lr, jittered(rng, 0.06), 24).transformed(rotation("x", -np.pi / 2)).translated(
        (0.01, sy / 2 - 0.002, sz * 0.45))
    button = cylinder(0.006, 0.006, 12).translated((sx * 0.3, 0.0, sz))
    # The strap runs from both lugs and lies in a loop on the table behind the camera.
    n = 28
    t = np.linspace(0.0, np.pi, n)
    loop = np.column_stack([(sx / 2 + 0.004) * np.cos(t), -sy / 2 - jittered(rng, 0.12) * np.sin(t),
                            sz * 0.85 * np.abs(np.cos(t)) ** 3 + 0.003])
    strap = bent_tube(loop, 0.004, sides=8)
    return [ObjectPart("body", body, linear_color(color, rng)),
            ObjectPart("lens", lens, linear_color("dark_grey", rng)),
            ObjectPart("shutter_button", button, linear_color("silver", rng)),
            ObjectPart("strap", strap, linear_color(_pick(rng, ["brown", "red", "navy", "black"]), rng))]


@_builder("sunglasses", "black")
def _sunglasses(rng: np.random.Generator, color: str) -> list[ObjectPart]:
    lw, lh = jittered(rng, 0.05), jittered(rng, 0.04)
    gap = jittered(rng, 0.018)
    lens_outline = superellipse(lw / 2, lh / 2, 2.6, 32)
    lenses, rims = [], []
    for side in (-1.0, 1.0):
        centre_x = side * (gap / 2 + lw / 2)
        lens = extruded_polygon(lens_outline, 0.002).transformed(rotation("x", np.pi / 2)).translated(
            (centre_x, 0.0, lh / 2 + 0.004))
        lenses.append(lens)
        rims.append(bent_tube(np.column_stack([centre_x + (lw / 2 + 0.002) * np.cos(np.linspace(0, np.pi, 10)),
                                               np.zeros(10),
                                               lh / 2 + 0.004 + (lh / 2 + 0.002) * np.sin(np.linspace(0, np.pi, 10))]),
                              0.0025, sides=6))
    bridge = segment_between((-gap / 2 - 0.002, 0.0, lh * 0.8), (gap / 2 + 0.002, 0.0, lh * 0.8), 0.0025, 8)
    tl = jittered(rng, 0.13)
    temples = merge([bent_tube([(side * (gap / 2 + lw + 0.002), 0.0, lh * 0.85),
                                (side * (gap / 2 + lw + 0.006), tl * 0.8, lh * 0.6),
                                (side * (gap / 2 + lw + 0.004), tl, lh * 0.25)], 0.0025, sides=6)
                     for side in (-1.0, 1.0)])
    frame_col = linear_color(color, rng)
    return [ObjectPart("lenses", merge(lenses), linear_color("dark_grey", rng, 0.02)),
            ObjectPart("frame", merge([*rims, bridge]), frame_col),
            ObjectPart("temples", temples, frame_col)]


@_builder("lightbulb", "white")
def _lightbulb(rng: np.random.Generator, color: str) -> list[ObjectPart]:
    r = jittered(rng, 0.03)
    bl = jittered(rng, 0.027)
    base = lathe([(0.0, 0.0), (0.006, 0.0), (0.009, 0.004)]
                 + [(0.0125 + 0.0012 * (i % 2), 0.004 + bl * i / 8) for i in range(9)]
                 + [(0.013, bl + 0.004), (0.0, bl + 0.004)], 20)
    bulb = lathe([(0.0, bl + 0.002), (0.012, bl + 0.002), (0.014, bl + 0.02), (r, bl + 0.02 + r * 0.9),
                  (r * 0.85, bl + 0.02 + r * 1.5), (r * 0.45, bl + 0.02 + r * 1.9), (0.0, bl + 0.02 + r * 2.0)], 24)
    lying = rotation("y", np.pi / 2)
    base, bulb = base.transformed(lying), bulb.transformed(lying)
    z0 = min(base.vertices[:, 2].min(), bulb.vertices[:, 2].min())
    lift = (0.0, 0.0, -z0)
    return [ObjectPart("bulb", bulb.translated(lift), linear_color(color, rng, 0.03)),
            ObjectPart("base", base.translated(lift), linear_color("silver", rng))]


# ----------------------------------------------------------------- cords


def _cord_path(rng: np.random.Generator, start: np.ndarray, length: float, n: int = 24) -> np.ndarray:
    heading = rng.uniform(-0.5, 0.5)
    pts = [np.asarray(start, dtype=np.float64)]
    step = length / n
    for _ in range(n):
        heading += rng.normal(0.0, 0.25)
        pts.append(pts[-1] + step * np.array([-np.cos(heading), np.sin(heading), 0.0]))
    pts = np.array(pts)
    pts[:, 2] = np.linspace(start[2], 0.004, len(pts))
    return pts


@_builder("power_strip", "white")
def _power_strip(rng: np.random.Generator, color: str) -> list[ObjectPart]:
    sx, sy, sz = jittered(rng, 0.25), jittered(rng, 0.055), jittered(rng, 0.035)
    body = rounded_box((sx, sy, sz), 0.008).translated((0.0, 0.0, sz / 2))
    n_sockets = int(rng.integers(3, 6))
    sockets = merge([box((0.026, 0.03, 0.003)).translated(
                         (-sx * 0.38 + i * sx * 0.7 / (n_sockets - 1) * 0.9, 0.0, sz + 0.0015))
                     for i in range(n_sockets)])
    switch = box((0.02, 0.025, 0.008)).translated((sx * 0.42, 0.0, sz + 0.003))
    cord_pts = _cord_path(rng, np.array([-sx / 2, 0.0, sz / 2]), jittered(rng, 0.22))
    cord = bent_tube(cord_pts, 0.0035, sides=8)
    end, prev = cord_pts[-1], cord_pts[-2]
    heading = np.arctan2(end[1] - prev[1], end[0] - prev[0])
    plug = merge([box((0.035, 0.03, 0.02)).translated((0.0175, 0.0, 0.01)),
                  box((0.015, 0.002, 0.006)).translated((0.042, 0.006, 0.01)),
                  box((0.015, 0.002, 0.006)).translated((0.042, -0.006, 0.01))])
    plug = plug.transformed(rotation("z", heading)).translated((end[0], end[1], 0.0))
    return [ObjectPart("body", body, linear_color(color, rng)),
            ObjectPart("sockets", sockets, linear_color("dark_grey", rng)),
            ObjectPart("switch", switch, linear_color("red", rng)), ObjectPart("cord", cord, linear_color(color, rng)),
            ObjectPart("plug", plug, linear_color(color, rng))]


@_builder("usb_dongle", "black")
def _usb_dongle(rng: np.random.Generator, color: str) -> list[ObjectPart]:
    bl = jittered(rng, 0.045)
    body = rounded_box((bl, 0.02, 0.009), 0.003).translated((0.0, 0.0, 0.0045))
    connector = box((0.013, 0.012, 0.0045)).translated((bl / 2 + 0.0065, 0.0, 0.0045))
    return [ObjectPart("body", body, linear_color(color, rng)),
            ObjectPart("connector", connector, linear_color("silver", rng))]


@_builder("connector_cable", "black")
def _connector_cable(rng: np.random.Generator, color: str) -> list[ObjectPart]:
    hl = jittered(rng, 0.035)
    housing = rounded_box((hl, 0.016, 0.01), 0.003).translated((0.0, 0.0, 0.005))
    tip = box((0.012, 0.009, 0.004)).translated((hl / 2 + 0.006, 0.0, 0.005))
    cable = bent_tube(_cord_path(rng, np.array([-hl / 2, 0.0, 0.005]), jittered(rng, 0.25)), 0.0028, sides=8)
    return [ObjectPart("connector", housing, linear_color(color, rng)),
            ObjectPart("plug_tip", tip, linear_color("silver", rng)),
            ObjectPart("cable", cable, linear_color(color, rng))]


# ----------------------------------------------------------------- messy


@_builder("ice_cream", "pink")
def _ice_cream(rng: np.random.Generator, color: str) -> list[ObjectPart]:
    cl, cr = jittered(rng, 0.11), jittered(rng, 0.028)
    cone = frustum(cr, 0.002, cl, 20).transformed(rotation("y", np.pi / 2))
    scoop = sphere(cr * 1.15, 20, 10).translated((-cr * 0.5, 0.0, 0.0))
    lift = (0.0, 0.0, cr * 1.15)
    return [ObjectPart("cone", cone.translated(lift), linear_color("tan", rng)),
            ObjectPart("scoop", scoop.translated(lift), linear_color(color, rng))]


@_builder("lollipop", "red")
def _lollipop(rng: np.random.Generator, color: str) -> list[ObjectPart]:
    r = jittered(rng, 0.02)
    candy = cylinder(r, jittered(rng, 0.01), 24)
    sl = jittered(rng, 0.1)
    stick = _along_x(cylinder(0.0022, sl, 8), 0.004).translated((r * 0.6, 0.0, 0.0))
    return [ObjectPart("candy", candy, linear_color(color, rng)),
            ObjectPart("stick", stick, linear_color("white", rng))]


@_builder("apple", "red")
def _apple(rng: np.random.Generator, color: str) -> list[ObjectPart]:
    r = jittered(rng, 0.038)
    fruit = ellipsoid((r, r, r * 0.9), 20, 10).translated((0.0, 0.0, r * 0.9))
    stalk = cylinder(0.002, 0.015, 6).translated((0.0, 0.0, r * 1.7))
    return [ObjectPart("fruit", fruit, linear_color(color, rng)),
            ObjectPart("stalk", stalk, linear_color("brown", rng))]


@_builder("can", "silver")
def _can(rng: np.random.Generator, color: str) -> list[ObjectPart]:
    r, h = jittered(rng, 0.033), jittered(rng, 0.12)
    shell = cylinder(r, h, 28)
    label = cylinder(r + 0.0008, h * 0.7, 28, capped=False).translated((0.0, 0.0, h * 0.15))
    return [ObjectPart("can", shell, linear_color(color, rng)),
            ObjectPart("label", label, linear_color(_pick(rng, ["red", "green", "blue", "yellow", "orange"]), rng))]


@_builder("wrapper", "orange")
def _wrapper(rng: np.random.Generator, color: str) -> list[ObjectPart]:
    sheet = rounded_box((jittered(rng, 0.09, 0.3), jittered(rng, 0.05, 0.3), 0.006), 0.003)
    return [ObjectPart("wrapper", _lying_flat(sheet.transformed(rotation("x", rng.uniform(-0.1, 0.1)))),
                       linear_color(color, rng))]


@_builder("block", "green")
def _block(rng: np.random.Generator, color: str) -> list[ObjectPart]:
    s = jittered(rng, 0.04, 0.3)
    return [ObjectPart("block", _lying_flat(box((s, s * rng.uniform(0.8, 1.5), s))), linear_color(color, rng))]


# ----------------------------------------------------------------- pasta


@_builder("wine_bottle", "dark_green")
def _wine_bottle(rng: np.random.Generator, color: str) -> list[ObjectPart]:
    r, h = jittered(rng, 0.037), jittered(rng, 0.2)
    nr, nh = jittered(rng, 0.014), jittered(rng, 0.085)
    body = lathe([(0.0, 0.0), (r, 0.0), (r, h), (r * 0.7, h + 0.02), (0.0, h + 0.02)], 28)
    neck = lathe([(0.0, h + 0.01), (r * 0.72, h + 0.012), (nr * 1.15, h + 0.035), (nr, h + 0.05), (nr, h + nh),
                  (nr * 1.2, h + nh + 0.002), (nr * 1.2, h + nh + 0.008), (0.0, h + nh + 0.008)], 24)
    cork = cylinder(nr * 0.85, jittered(rng, 0.018), 16).translated((0.0, 0.0, h + nh + 0.007))
    label = cylinder(r + 0.0008, h * 0.45, 28, capped=False).translated((0.0, 0.0, h * 0.3))
    return [ObjectPart("body", body, linear_color(color, rng)), ObjectPart("neck", neck, linear_color(color, rng)),
            ObjectPart("cork", cork, linear_color("cork", rng)),
            ObjectPart("label", label, linear_color(_pick(rng, ["cream", "white", "beige"]), rng))]


@_builder("corkscrew", "silver")
def _corkscrew(rng: np.random.Generator, color: str) -> list[ObjectPart]:
    hl, hr = jittered(rng, 0.1), jittered(rng, 0.011)
    handle = capsule(hr, hl, 14, 4).transformed(rotation("x", np.pi / 2)).translated((0.0, hl / 2, hr))
    sl = jittered(rng, 0.025)
    shaft = _along_x(cylinder(0.004, sl, 10), hr).translated((hr * 0.8, 0.0, 0.0))
    wl = jittered(rng, 0.055)
    t = np.linspace(0.0, 1.0, 60)
    turns = 5.0
    helix = np.column_stack([hr * 0.8 + sl + wl * t, 0.006 * np.cos(2 * np.pi * turns * t),
                             hr + 0.006 * np.sin(2 * np.pi * turns * t)])
    worm = bent_tube(helix, 0.0014, sides=6)
    return [ObjectPart("handle", handle, linear_color(_pick(rng, ["wood", "black", "dark_brown"]), rng)),
            ObjectPart("shaft", shaft, linear_color(color, rng)), ObjectPart("worm", worm, linear_color(color, rng))]


@_builder("saucepan", "silver")
def _saucepan(rng: np.random.Generator, color: str) -> list[ObjectPart]:
    r, h = jittered(rng, 0.08), jittered(rng, 0.08)
    pot = tube(r, r - 0.003, h, 36, floor=0.005)
    hl = jittered(rng, 0.15)
    handle = rounded_box((hl, 0.028, 0.016), 0.007).transformed(rotation("y", -0.2)).translated(
        (r + hl / 2 - 0.005, 0.0, h * 0.8 + hl * 0.1))
    lid = lathe([(0.0, h + 0.012), (r * 0.6, h + 0.01), (r + 0.003, h + 0.001), (r + 0.003, h - 0.003),
                 (r - 0.004, h - 0.003), (0.0, h + 0.006)], 36)
    knob = merge([cylinder(0.006, 0.012, 12).translated((0.0, 0.0, h + 0.011)),
                  ellipsoid((0.018, 0.018, 0.008), 16, 6).translated((0.0, 0.0, h + 0.024))])
    handle_col = linear_color(_pick(rng, ["black", "dark_grey", "wood"]), rng)
    return [ObjectPart("pot", pot, linear_color(color, rng)), ObjectPart("handle", handle, handle_col),
            ObjectPart("lid", lid, linear_color(_pick(rng, ["glass", "silver"]), rng)),
            ObjectPart("knob", knob, handle_col)]


@_builder("pasta_box", "blue")
def _pasta_box(rng: np.random.Generator, color: str) -> list[ObjectPart]:
    sx, sy, sz = jittered(rng, 0.2), jittered(rng, 0.07), jittered(rng, 0.05)
    shell = box((sx, sy, sz)).translated((0.0, 0.0, sz / 2))
    window = box((sx * 0.4, sy * 0.5, 0.002)).translated((0.0, 0.0, sz + 0.001))
    return [ObjectPart("box", shell, linear_color(color, rng)),
            ObjectPart("window", window, linear_color("light_yellow", rng))]


# ----------------------------------------------------------------- cleaning


@_builder("clorox_box", "yellow")
def _clorox_box(rng: np.random.Generator, color: str) -> list[ObjectPart]:
    """A disinfecting-wipes canister, flip lid open, a wet wipe poking out of the slot."""
    r, h = jittered(rng, 0.055), jittered(rng, 0.17)
    body = cylinder(r, h, 32)
    cap = tube(r + 0.002, r - 0.01, 0.018, 32).translated((0.0, 0.0, h))
    lid_open = rng.uniform(1.2, 1.9)
    flap = cylinder(r * 0.55, 0.006, 24).translated((r * 0.55, 0.0, 0.0))
    flap = flap.transformed(rotation("y", -lid_open)).translated((-r * 0.5, 0.0, h + 0.018))
    wipe = merge([rounded_box((0.05, 0.01, 0.05), 0.004).transformed(rotation("z", rng.uniform(-0.5, 0.5)))
                  .translated((0.0, 0.0, h + 0.035)),
                  ellipsoid((0.03, 0.012, 0.02), 12, 6).translated((0.01, 0.0, h + 0.055))])
    label = cylinder(r + 0.0008, h * 0.5, 32, capped=False).translated((0.0, 0.0, h * 0.25))
    return [ObjectPart("body", body, linear_color(color, rng)), ObjectPart("label", label, linear_color("blue", rng)),
            ObjectPart("cap", cap, linear_color("white", rng)), ObjectPart("lid", flap, linear_color("white", rng)),
            ObjectPart("wet_towel", wipe, linear_color("off_white", rng, 0.02))]


@_builder("tissue_box", "light_blue")
def _tissue_box(rng: np.random.Generator, color: str) -> list[ObjectPart]:
    sx, sy, sz = jittered(rng, 0.23), jittered(rng, 0.12), jittered(rng, 0.09)
    shell = box((sx, sy, sz)).translated((0.0, 0.0, sz / 2))
    slot = plate(sx * 0.5, sy * 0.2, 0.001).translated((0.0, 0.0, sz))
    tissue = extruded_polygon([(-0.05, 0.0), (0.05, 0.0), (0.035, 0.07), (0.0, 0.085), (-0.04, 0.06)], 0.002)
    tissue = tissue.transformed(rotation("x", np.pi / 2 - rng.uniform(0.0, 0.5))).translated((0.0, 0.0, sz))
    return [ObjectPart("body", shell, linear_color(color, rng)),
            ObjectPart("slot", slot, linear_color("dark_grey", rng)),
            ObjectPart("tissue", tissue, linear_color("white", rng, 0.02))]


@_builder("spray_bottle", "purple")
def _spray_bottle(rng: np.random.Generator, color: str) -> list[ObjectPart]:
    """A trigger spray bottle: body, screw cap, sprayer head, trigger and nozzle (facing +x)."""
    r, h = jittered(rng, 0.04), jittered(rng, 0.17)
    body = lathe([(0.0, 0.0), (r, 0.0), (r, h), (r * 0.55, h + 0.025), (0.0, h + 0.025)], 28)
    cr = r * 0.58
    cap = cylinder(cr, 0.02, 20).translated((0.0, 0.0, h + 0.022))
    top = h + 0.042
    head = rounded_box((0.085, 0.034, 0.04), 0.01).translated((0.018, 0.0, top + 0.02))
    nozzle = box((0.016, 0.016, 0.016)).translated((0.068, 0.0, top + 0.026))
    trigger = extruded_polygon([(0.0, 0.0), (0.014, 0.0), (0.02, -0.055), (0.008, -0.06)], 0.016)
    trigger = trigger.transformed(rotation("x", np.pi / 2)).translated((0.038, 0.0, top - 0.002))
    trigger_col = linear_color(_pick(rng, ["white", "black", "grey"]), rng)
    label = cylinder(r + 0.0008, h * 0.45, 28, capped=False).translated((0.0, 0.0, h * 0.25))
    return [ObjectPart("body", body, linear_color(color, rng)),
            ObjectPart("label", label, linear_color(_pick(rng, ["white", "cream"]), rng)),
            ObjectPart("cap", cap, trigger_col), ObjectPart("head", head, trigger_col),
            ObjectPart("trigger", trigger, trigger_col), ObjectPart("nozzle", nozzle, linear_color("dark_grey", rng))]
