"""Procedural triangle meshes for the synthetic tabletop objects.

Everything here is plain numpy and returns a :class:`Mesh` (a named tuple of
vertices (N, 3) float64 and triangles (M, 3) int64), so a mesh unpacks as
``vertices, triangles = cylinder(...)``. Meshes are built in a local frame
with z up; the object builders place and combine them. Winding is
consistent (counter-clockwise seen from outside) where it is cheap to keep,
but the ray caster does not depend on it.
"""

from __future__ import annotations

from typing import Iterable, NamedTuple, Sequence

import numpy as np

TWO_PI = 2.0 * np.pi


class Mesh(NamedTuple):
    vertices: np.ndarray
    triangles: np.ndarray

    def transformed(self, matrix: np.ndarray) -> "Mesh":
        """Apply a 4x4 homogeneous transform."""
        return Mesh(self.vertices @ matrix[:3, :3].T + matrix[:3, 3], self.triangles)

    def translated(self, offset: Sequence[float]) -> "Mesh":
        return Mesh(self.vertices + np.asarray(offset, dtype=np.float64), self.triangles)

    def scaled(self, factors: float | Sequence[float]) -> "Mesh":
        return Mesh(self.vertices * np.asarray(factors, dtype=np.float64), self.triangles)

    def rotated(self, axis: str | Sequence[float], angle: float) -> "Mesh":
        return self.transformed(rotation(axis, angle))

    @property
    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        return self.vertices.min(axis=0), self.vertices.max(axis=0)


def rotation(axis: str | Sequence[float], angle: float) -> np.ndarray:
    """4x4 rotation about "x", "y", "z" or an arbitrary axis vector (Rodrigues)."""
    if isinstance(axis, str):
        axis = {"x": (1.0, 0.0, 0.0), "y": (0.0, 1.0, 0.0), "z": (0.0, 0.0, 1.0)}[axis]
    k = np.asarray(axis, dtype=np.float64)
    k = k / np.linalg.norm(k)
    kx = np.array([[0.0, -k[2], k[1]], [k[2], 0.0, -k[0]], [-k[1], k[0], 0.0]])
    out = np.eye(4)
    out[:3, :3] = np.eye(3) + np.sin(angle) * kx + (1.0 - np.cos(angle)) * kx @ kx
    return out


def translation(offset: Sequence[float]) -> np.ndarray:
    out = np.eye(4)
    out[:3, 3] = offset
    return out


def merge(meshes: Iterable[Mesh]) -> Mesh:
    """Concatenate meshes into one (no welding)."""
    verts, tris, offset = [], [], 0
    for mesh in meshes:
        verts.append(mesh.vertices)
        tris.append(mesh.triangles + offset)
        offset += len(mesh.vertices)
    if not verts:
        return Mesh(np.zeros((0, 3)), np.zeros((0, 3), dtype=np.int64))
    return Mesh(np.concatenate(verts), np.concatenate(tris).astype(np.int64))


def _grid_triangles(rows: int, cols: int, wrap_cols: bool) -> np.ndarray:
    """Triangles of a rows x cols vertex grid (row-major), optionally closed across columns."""
    n_cols = cols if wrap_cols else cols - 1
    r = np.arange(rows - 1)[:, None]
    c = np.arange(n_cols)[None, :]
    a = r * cols + c
    b = r * cols + (c + 1) % cols
    d = (r + 1) * cols + c
    e = (r + 1) * cols + (c + 1) % cols
    tris = np.concatenate([np.stack([a, b, e], -1).reshape(-1, 3), np.stack([a, e, d], -1).reshape(-1, 3)])
    return tris.astype(np.int64)


def lathe(profile: Sequence[tuple[float, float]], segments: int = 32, arc: float = TWO_PI) -> Mesh:
    """Surface of revolution about z from a (radius, z) profile, bottom to top.

    Profile points with radius 0 become poles, so a profile that starts and
    ends on the axis yields a closed solid (a bottle, a bowl with a floor...).
    A partial ``arc`` leaves the sides open.
    """
    prof = np.asarray(profile, dtype=np.float64)
    full = arc >= TWO_PI - 1e-9
    n_theta = segments if full else segments + 1
    theta = np.linspace(0.0, arc, n_theta, endpoint=not full)
    radius, height = prof[:, 0:1], prof[:, 1:2]
    verts = np.stack(
        [radius * np.cos(theta)[None, :], radius * np.sin(theta)[None, :],
         np.broadcast_to(height, (len(prof), n_theta))],
        axis=-1,
    ).reshape(-1, 3)
    tris = _grid_triangles(len(prof), n_theta, wrap_cols=full)
    return Mesh(verts, tris)


def cylinder(radius: float, height: float, segments: int = 32, capped: bool = True) -> Mesh:
    """Solid cylinder standing on z=0."""
    if capped:
        return lathe([(0.0, 0.0), (radius, 0.0), (radius, height), (0.0, height)], segments)
    return lathe([(radius, 0.0), (radius, height)], segments)


def frustum(radius_bottom: float, radius_top: float, height: float, segments: int = 32) -> Mesh:
    """Closed cone frustum standing on z=0; radius_top=0 gives a cone."""
    return lathe([(0.0, 0.0), (radius_bottom, 0.0), (radius_top, height), (0.0, height)], segments)


def cone(radius: float, height: float, segments: int = 32) -> Mesh:
    return frustum(radius, 0.0, height, segments)


def tube(outer_radius: float, inner_radius: float, height: float, segments: int = 32, floor: float = 0.0) -> Mesh:
    """Hollow cylinder (cup wall) standing on z=0; ``floor`` > 0 closes the bottom with that thickness."""
    if floor > 0.0:
        profile = [
            (0.0, 0.0), (outer_radius, 0.0), (outer_radius, height), (inner_radius, height),
            (inner_radius, floor), (0.0, floor),
        ]
    else:
        profile = [
            (inner_radius, 0.0), (outer_radius, 0.0), (outer_radius, height), (inner_radius, height),
            (inner_radius, 0.0),
        ]
    return lathe(profile, segments)


def ellipsoid(radii: Sequence[float], segments: int = 24, rings: int = 12) -> Mesh:
    """Ellipsoid centred at the origin."""
    phi = np.linspace(-np.pi / 2, np.pi / 2, rings + 1)
    unit = lathe([(float(np.cos(p)), float(np.sin(p))) for p in phi], segments)
    return unit.scaled(radii)


def sphere(radius: float, segments: int = 24, rings: int = 12) -> Mesh:
    return ellipsoid((radius, radius, radius), segments, rings)


def capsule(radius: float, length: float, segments: int = 20, rings: int = 6) -> Mesh:
    """Capsule along z from 0 to ``length`` (total, including the caps)."""
    straight = max(length - 2 * radius, 0.0)
    phi_lo = np.linspace(-np.pi / 2, 0.0, rings + 1)
    phi_hi = np.linspace(0.0, np.pi / 2, rings + 1)
    profile = [(radius * np.cos(p), radius + radius * np.sin(p)) for p in phi_lo]
    profile += [(radius * np.cos(p), radius + straight + radius * np.sin(p)) for p in phi_hi]
    return lathe(profile, segments)


def box(size: Sequence[float]) -> Mesh:
    """Axis-aligned box centred at the origin with edge lengths ``size``."""
    half = np.asarray(size, dtype=np.float64) / 2.0
    corners = np.array([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)], dtype=np.float64) * half
    # corner index = 4*ix + 2*iy + iz
    faces = [
        (0, 1, 3, 2), (4, 6, 7, 5),  # -x, +x
        (0, 4, 5, 1), (2, 3, 7, 6),  # -y, +y
        (0, 2, 6, 4), (1, 5, 7, 3),  # -z, +z
    ]
    tris = []
    for a, b, c, d in faces:
        tris += [(a, b, c), (a, c, d)]
    return Mesh(corners, np.asarray(tris, dtype=np.int64))


def rounded_box(size: Sequence[float], radius: float, segments: int = 16, rings: int = 8) -> Mesh:
    """Box centred at the origin with edges and corners rounded by ``radius``.

    A sphere split into octants and pushed apart by the inner box size: each
    vertex moves by sign(coordinate) * (half size - radius).
    """
    half = np.asarray(size, dtype=np.float64) / 2.0
    radius = float(min(radius, *half))
    ball = sphere(radius, segments, rings)
    # Triangles that straddle a coordinate plane stretch into the flat faces.
    verts = ball.vertices + np.sign(np.round(ball.vertices, 12)) * (half - radius)
    return Mesh(verts, ball.triangles)


def torus(major_radius: float, minor_radius: float, arc: float = TWO_PI, segments: int = 32, sides: int = 12,
          capped: bool = True) -> Mesh:
    """Torus (or a ring section of ``arc`` radians) in the xy plane, centred at the origin, starting on +x."""
    full = arc >= TWO_PI - 1e-9
    n_u = segments if full else segments + 1
    u = np.linspace(0.0, arc, n_u, endpoint=not full)
    v = np.linspace(0.0, TWO_PI, sides, endpoint=False)
    uu, vv = np.meshgrid(u, v, indexing="ij")
    ring = major_radius + minor_radius * np.cos(vv)
    verts = np.stack([ring * np.cos(uu), ring * np.sin(uu), minor_radius * np.sin(vv)], -1).reshape(-1, 3)
    tris = _grid_triangles(n_u, sides, wrap_cols=True)
    if full:
        tris = np.concatenate([tris, _wrap_rows(n_u, sides)])
        return Mesh(verts, tris)
    mesh = Mesh(verts, tris)
    if capped:
        mesh = _cap_ends(mesh, n_u, sides)
    return mesh


def _wrap_rows(rows: int, cols: int) -> np.ndarray:
    """Triangles joining the last row of a grid to the first (closing a torus)."""
    c = np.arange(cols)
    a = (rows - 1) * cols + c
    b = (rows - 1) * cols + (c + 1) % cols
    d = c
    e = (c + 1) % cols
    return np.concatenate([np.stack([a, b, e], -1), np.stack([a, e, d], -1)]).astype(np.int64)


def _cap_ends(mesh: Mesh, rows: int, cols: int) -> Mesh:
    """Close the first and last rings of a swept tube with fans around their centres."""
    verts = [mesh.vertices]
    tris = [mesh.triangles]
    n = len(mesh.vertices)
    for row in (0, rows - 1):
        ring = np.arange(cols) + row * cols
        centre = mesh.vertices[ring].mean(axis=0)
        verts.append(centre[None, :])
        c = np.full(cols, n)
        tris.append(np.stack([c, ring, np.roll(ring, -1)], -1))
        n += 1
    return Mesh(np.concatenate(verts), np.concatenate(tris).astype(np.int64))


def bent_tube(points: Sequence[Sequence[float]], radius: float | Sequence[float], sides: int = 12,
              capped: bool = True) -> Mesh:
    """A tube of circular section swept along a 3D polyline (handles, cords, wire).

    ``radius`` may be one value or one per point (tapering). Frames are
    parallel-transported so the tube does not twist.
    """
    pts = np.asarray(points, dtype=np.float64)
    radii = np.broadcast_to(np.asarray(radius, dtype=np.float64), (len(pts),))
    tangents = np.gradient(pts, axis=0)
    tangents /= np.linalg.norm(tangents, axis=1, keepdims=True)
    helper = np.array([0.0, 0.0, 1.0]) if abs(tangents[0, 2]) < 0.9 else np.array([1.0, 0.0, 0.0])
    normal = np.cross(tangents[0], helper)
    normal /= np.linalg.norm(normal)
    v = np.linspace(0.0, TWO_PI, sides, endpoint=False)
    rings = []
    for i, t in enumerate(tangents):
        normal = normal - np.dot(normal, t) * t
        normal /= np.linalg.norm(normal)
        binormal = np.cross(t, normal)
        rings.append(pts[i] + radii[i] * (np.cos(v)[:, None] * normal + np.sin(v)[:, None] * binormal))
    verts = np.concatenate(rings)
    mesh = Mesh(verts, _grid_triangles(len(pts), sides, wrap_cols=True))
    return _cap_ends(mesh, len(pts), sides) if capped else mesh


def extruded_polygon(outline: Sequence[Sequence[float]], thickness: float) -> Mesh:
    """A flat plate: a star-shaped 2D outline in xy extruded along z, centred on z=0.

    Faces are fanned from the outline's centroid, so the outline must be
    star-shaped around it (blades, plates, lids, clips all are).
    """
    poly = np.asarray(outline, dtype=np.float64)
    n = len(poly)
    centre = poly.mean(axis=0)
    half = thickness / 2.0
    bottom = np.column_stack([poly, np.full(n, -half)])
    top = np.column_stack([poly, np.full(n, half)])
    verts = np.concatenate([bottom, top, [[centre[0], centre[1], -half], [centre[0], centre[1], half]]])
    i = np.arange(n)
    j = (i + 1) % n
    cb, ct = 2 * n, 2 * n + 1
    tris = np.concatenate([
        np.stack([np.full(n, cb), j, i], -1),
        np.stack([np.full(n, ct), n + i, n + j], -1),
        np.stack([i, j, n + j], -1),
        np.stack([i, n + j, n + i], -1),
    ])
    return Mesh(verts, tris.astype(np.int64))


def plate(size_x: float, size_y: float, thickness: float) -> Mesh:
    """Thin rectangular plate lying on z=0 (for labels, lids, cards, towels)."""
    return box((size_x, size_y, thickness)).translated((0.0, 0.0, thickness / 2.0))


def superellipse(a: float, b: float, exponent: float = 4.0, points: int = 48) -> np.ndarray:
    """Outline of a rounded rectangle |x/a|^n + |y/b|^n = 1 (for extruded_polygon)."""
    t = np.linspace(0.0, TWO_PI, points, endpoint=False)
    c, s = np.cos(t), np.sin(t)
    x = a * np.sign(c) * np.abs(c) ** (2.0 / exponent)
    y = b * np.sign(s) * np.abs(s) ** (2.0 / exponent)
    return np.column_stack([x, y])


def segment_between(start: Sequence[float], end: Sequence[float], radius: float, segments: int = 16) -> Mesh:
    """A cylinder from point ``start`` to point ``end``."""
    start, end = np.asarray(start, dtype=np.float64), np.asarray(end, dtype=np.float64)
    axis = end - start
    length = float(np.linalg.norm(axis))
    mesh = cylinder(radius, length, segments)
    z = np.array([0.0, 0.0, 1.0])
    direction = axis / length
    rot_axis = np.cross(z, direction)
    if np.linalg.norm(rot_axis) < 1e-9:
        matrix = np.eye(4) if direction[2] > 0 else rotation("x", np.pi)
    else:
        matrix = rotation(rot_axis, float(np.arccos(np.clip(np.dot(z, direction), -1.0, 1.0))))
    matrix[:3, 3] = start
    return mesh.transformed(matrix)
