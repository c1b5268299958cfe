"""Colour layers versus parts: a label stays on the body, a cap of the same width is its own part."""

from __future__ import annotations

import numpy as np

from partseg_ros.backends.shapegrasp.decomposition import DecompositionConfig, decompose, split_shape_then_colour
from partseg_ros.backends.shapegrasp.segmentation import segment_objects
from partseg_ros.backends.shapegrasp.table import backproject, fit_table_plane
from shapegrasp_scenes import BOTTLE_BODY, BOTTLE_CAP, BOTTLE_LABEL, bottle_scene

CONFIG = DecompositionConfig()
WHITE = np.array([0.0, 0.0, 0.45]) * CONFIG.colour_weight
GREEN = np.array([-0.3, 0.1, 0.2]) * CONFIG.colour_weight
RED = np.array([0.5, 0.25, 0.2]) * CONFIG.colour_weight


def _profile(colours: list[tuple[np.ndarray, int]], radius: float = 0.035):
    colour = np.concatenate([np.tile(c, (n, 1)) for c, n in colours])
    geometry = np.full((len(colour), 1), np.log(radius))
    return geometry, colour, np.ones(len(colour))


def test_band_between_the_same_colour_is_a_layer():
    geometry, colour, weights = _profile([(GREEN, 20), (WHITE, 20), (GREEN, 24)])
    assert split_shape_then_colour(geometry, colour, weights, CONFIG) == [(0, 64)]


def test_differently_coloured_end_is_a_part():
    geometry, colour, weights = _profile([(GREEN, 56), (RED, 8)])
    assert split_shape_then_colour(geometry, colour, weights, CONFIG) == [(0, 56), (56, 64)]


def test_colour_patch_short_of_the_end_is_not_a_part():
    geometry, colour, weights = _profile([(GREEN, 2), (RED, 6), (GREEN, 56)])
    assert split_shape_then_colour(geometry, colour, weights, CONFIG) == [(0, 64)]


def test_width_change_splits_even_without_colour_change():
    geometry, colour, weights = _profile([(GREEN, 64)])
    geometry[40:] = np.log(0.012)  # a neck
    assert split_shape_then_colour(geometry, colour, weights, CONFIG) == [(0, 40), (40, 64)]


def test_rendered_bottle_keeps_its_label_and_loses_its_cap():
    scene = bottle_scene(seed=1)
    points = backproject(scene.depth_m, scene.intrinsics)
    clusters = segment_objects(points, scene.rgb, fit_table_plane(points))
    cluster = max(clusters, key=lambda c: int((scene.object_ids[c.mask] == 1).sum()))
    truth = scene.part_ids[cluster.pixels[:, 0], cluster.pixels[:, 1]]
    assert (truth == BOTTLE_LABEL).sum() > 200 and (truth == BOTTLE_CAP).sum() > 50

    decomposition = decompose(cluster, posture="upright")
    owner = np.full(len(truth), -1)
    for part in decomposition.parts:
        owner[part.point_idx] = part.index

    def main_part(part_id: int) -> tuple[int, float]:
        labels, counts = np.unique(owner[truth == part_id], return_counts=True)
        return int(labels[np.argmax(counts)]), float(counts.max() / counts.sum())

    body, body_purity = main_part(BOTTLE_BODY)
    label, label_purity = main_part(BOTTLE_LABEL)
    cap, cap_purity = main_part(BOTTLE_CAP)
    assert label == body, decomposition.describe()
    assert label_purity > 0.9 and body_purity > 0.8
    assert cap != body and cap_purity > 0.7, decomposition.describe()
    cap_part = decomposition.parts[cap]
    assert cap_part.position == "top"
    # The cap part is mostly cap: the body did not leak into it.
    assert (truth[cap_part.point_idx] == BOTTLE_CAP).mean() > 0.7
