"""Object choice from size knowledge and flat-object detection under uneven table lighting."""

from __future__ import annotations

import numpy as np
import pytest
import yaml

from partseg_ros.backends.registry import create_backend
from partseg_ros.backends.shapegrasp.decomposition import decompose
from partseg_ros.backends.shapegrasp.matching import object_fit
from partseg_ros.backends.shapegrasp.segmentation import SegmentationConfig, flat_object_pixels, segment_objects
from partseg_ros.backends.shapegrasp.table import backproject, fit_table_plane
from partseg_ros.language.knowledge_base import DEFAULT_KB_PATH, load_knowledge_base, parse_knowledge_base
from partseg_ros.types import GroundingRequest
from shapegrasp_scenes import KNIFE_HANDLE, kitchen_scene, two_knives_scene


@pytest.fixture(scope="module")
def kb():
    return load_knowledge_base()


def test_lit_far_side_of_a_table_is_not_a_flat_object():
    """A table twice as bright at the far edge as at the near one, with one white card on it."""
    h, w = 120, 160
    level = np.linspace(0.5, 1.0, h)[:, None, None] * np.array([150.0, 110.0, 80.0])  # wood, lit from the back
    rgb = np.broadcast_to(level, (h, w, 3)).copy()
    rgb[50:62, 70:90] = 250.0  # the card
    rgb = rgb.astype(np.uint8)
    near_plane = np.ones((h, w), bool)
    found = flat_object_pixels(rgb, near_plane, near_plane, SegmentationConfig())
    assert found[52:60, 72:88].all()
    found[50:62, 70:90] = False
    assert found.mean() < 0.01


def test_variant_is_chosen_by_patient_or_name(kb):
    knife = kb.objects["knife"]
    assert knife.variant_for("knife", "bread")[0].name == "bread knife"
    assert knife.variant_for("knife", "boxes")[0].name == "box cutter"
    variant, why = knife.variant_for("steak knife", "")
    assert variant.name == "steak knife" and "names" in why
    assert knife.variant_for("knife", "apple")[0] is None


def test_variant_needs_a_size():
    raw = yaml.safe_load(DEFAULT_KB_PATH.read_text())
    raw["objects"]["knife"]["variants"]["odd knife"] = {"for": ["cheese"]}
    with pytest.raises(ValueError, match="size_m"):
        parse_knowledge_base(raw)


def test_middle_extent_separates_a_mug_from_a_knife(kb):
    scene = kitchen_scene(seed=2)
    points = backproject(scene.depth_m, scene.intrinsics)
    plane = fit_table_plane(points)
    clusters = segment_objects(points, scene.rgb, plane)
    by_object = {}
    for cluster in clusters:
        ids, counts = np.unique(scene.object_ids[cluster.mask], return_counts=True)
        by_object[int(ids[np.argmax(counts)])] = decompose(cluster)
    mug, knife = by_object[1], by_object[2]
    assert 0.06 < mug.middle_extent_m < 0.13  # 8 cm body, 10 cm tall
    assert knife.middle_extent_m < 0.04  # 2.5 cm wide blade
    # The width term makes the knife a poor mug even though its length would pass.
    assert object_fit(kb.objects["mug"], knife).score < object_fit(kb.objects["mug"], mug).score
    assert any("width" in r for r in object_fit(kb.objects["knife"], knife).reasons)


@pytest.fixture(scope="module")
def knives():
    return two_knives_scene(seed=4)


@pytest.fixture(scope="module")
def backend():
    backend = create_backend("shapegrasp", use_embeddings=False)
    backend.load()
    return backend


@pytest.mark.parametrize("instruction, object_id, kind",
                         [("cut the bread", 1, "bread knife"), ("cut the box", 2, "box cutter")])
def test_the_knife_that_suits_the_patient_is_chosen(backend, knives, instruction, object_id, kind):
    result = backend.ground(GroundingRequest(knives.rgb, instruction, knives.depth_m, knives.intrinsics))
    assert result.instances, result.explanation
    mask = result.instances[0].mask
    on_object = (knives.object_ids[mask] == object_id).mean()
    assert on_object > 0.8, result.explanation
    handle = (knives.part_ids == KNIFE_HANDLE) & (knives.object_ids == object_id)
    assert (mask & handle).sum() / max((mask | handle).sum(), 1) > 0.4, result.explanation
    assert kind in result.explanation
