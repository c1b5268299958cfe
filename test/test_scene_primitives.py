"""Mesh builders produce closed, consistently wound solids of the right size."""

import numpy as np
import pytest

from partseg_ros.scene import primitives as P


def signed_volume(mesh: P.Mesh) -> float:
    """Divergence theorem: only a closed, consistently wound mesh gives the true volume."""
    a, b, c = (mesh.vertices[mesh.triangles[:, i]] for i in range(3))
    return float(np.einsum("ij,ij->i", a, np.cross(b, c)).sum() / 6.0)


@pytest.mark.parametrize(
    "mesh, expected",
    [
        (P.cylinder(0.05, 0.1, 64), np.pi * 0.05**2 * 0.1),
        (P.box((0.1, 0.2, 0.3)), 0.1 * 0.2 * 0.3),
        (P.sphere(0.1, 64, 32), 4.0 / 3.0 * np.pi * 0.1**3),
        (P.frustum(0.05, 0.0, 0.12, 64), np.pi * 0.05**2 * 0.12 / 3.0),
        (P.capsule(0.02, 0.1, 48, 12), np.pi * 0.02**2 * 0.06 + 4.0 / 3.0 * np.pi * 0.02**3),
        (P.tube(0.05, 0.04, 0.1, 64), np.pi * (0.05**2 - 0.04**2) * 0.1),
        (P.torus(0.1, 0.02, segments=96, sides=32), 2 * np.pi**2 * 0.1 * 0.02**2),
        (P.rounded_box((0.1, 0.08, 0.06), 0.01, 32, 16),
         0.1 * 0.08 * 0.06 - (8 - 4 * np.pi / 3) * 0.01**3 - (4 - np.pi) * 0.01**2 * (0.08 + 0.06 + 0.04)),
        (P.extruded_polygon(P.superellipse(0.05, 0.03, 2.0, 256), 0.01), np.pi * 0.05 * 0.03 * 0.01),
    ],
)
def test_closed_solids_have_their_volume(mesh, expected):
    assert mesh.triangles.min() >= 0 and mesh.triangles.max() < len(mesh.vertices)
    assert abs(abs(signed_volume(mesh)) - expected) < 0.03 * expected


def test_bent_tube_follows_its_path_at_its_radius():
    path = np.array([[0.0, 0.0, 0.0], [0.1, 0.0, 0.0], [0.2, 0.05, 0.02], [0.25, 0.12, 0.02]])
    tube = P.bent_tube(path, 0.01, sides=16, capped=False)
    # Each ring of 16 vertices lies at the radius around its path point.
    rings = tube.vertices.reshape(len(path), 16, 3)
    distances = np.linalg.norm(rings - path[:, None, :], axis=2)
    np.testing.assert_allclose(distances, 0.01, rtol=1e-6)


def test_transforms_and_merge():
    a = P.box((0.1, 0.1, 0.1))
    b = a.translated((1.0, 0.0, 0.0)).rotated("z", np.pi / 2)
    lo, hi = b.bounds
    np.testing.assert_allclose((lo + hi) / 2, [0.0, 1.0, 0.0], atol=1e-12)
    merged = P.merge([a, b])
    assert len(merged.vertices) == 16 and merged.triangles.max() == 15
    seg = P.segment_between((0, 0, 0), (0.0, 0.3, 0.4), 0.01)
    np.testing.assert_allclose(np.abs(signed_volume(seg)), np.pi * 0.01**2 * 0.5, rtol=0.03)  # 16-gon section
