"""Colour words for regions: neutral surfaces are named from their lit side, so shading does not rename them."""

from __future__ import annotations

import numpy as np

from partseg_ros.backends.shapegrasp.colour import colour_agreement, colour_histogram
from shapegrasp_scenes import mug, render, table


def _shaded(albedo: float, shading: np.ndarray) -> np.ndarray:
    """Grey-level pixels of one albedo under the given shading factors (gamma-encoded like a camera)."""
    level = (np.clip(albedo * shading, 0, 1) ** (1 / 2.2) * 255).astype(np.uint8)
    return np.repeat(level[:, None], 3, axis=1)


def test_shaded_side_of_a_white_surface_is_still_white():
    shading = np.linspace(0.2, 1.0, 200)  # from the side facing away from the light to the lit side
    hist = colour_histogram(_shaded(0.95, shading))
    assert colour_agreement(hist, "white") == 1.0
    assert colour_agreement(hist, "grey") < 0.1  # only the "related" credit grey gets from white is absent


def test_highlight_on_a_grey_surface_is_still_grey():
    shading = np.concatenate([np.linspace(0.3, 0.9, 190), np.full(10, 2.5)])  # 5% specular highlight
    hist = colour_histogram(_shaded(0.2, shading))
    assert colour_agreement(hist, "grey") == 1.0
    assert colour_agreement(hist, "white") < 0.1


def test_black_part_of_a_white_object_stays_black():
    white_body = _shaded(0.95, np.linspace(0.4, 1.0, 150))
    black_handle = np.full((50, 3), 20, dtype=np.uint8)
    hist = colour_histogram(np.concatenate([white_body, black_handle]))
    assert abs(colour_agreement(hist, "black") - 0.25) < 0.02
    assert abs(colour_agreement(hist, "white") - 0.75) < 0.02


def test_rendered_white_and_grey_mugs_keep_their_names():
    meshes = ([table()] + mug(1, -0.12, 0.05, 0.6, colour=(0.92, 0.92, 0.92))
              + mug(2, 0.12, 0.05, 2.0, colour=(0.22, 0.22, 0.22)))
    view = render(meshes, noisy=False)
    white = colour_histogram(view.rgb[view.object_ids == 1])
    grey = colour_histogram(view.rgb[view.object_ids == 2])
    assert colour_agreement(white, "white") > 0.9
    assert colour_agreement(grey, "grey") > 0.9
    assert colour_agreement(grey, "white") < 0.5
