"""The shapegrasp backend end to end on a ray-cast scene: instruction + RGB-D -> part mask with reasons."""

from __future__ import annotations

import numpy as np
import pytest

from partseg_ros.backends.registry import create_backend
from partseg_ros.types import GroundingRequest
from shapegrasp_scenes import FLOWER_STEM, KNIFE_HANDLE, MUG_HANDLE, kitchen_scene


@pytest.fixture(scope="module")
def scene():
    return kitchen_scene(seed=5)


@pytest.fixture(scope="module")
def backend():
    backend = create_backend("shapegrasp", use_embeddings=False)
    backend.load()
    return backend


def _iou(mask, truth):
    return (mask & truth).sum() / max((mask | truth).sum(), 1)


def _ground(backend, scene, instruction, hint=None):
    return backend.ground(GroundingRequest(scene.rgb, instruction, scene.depth_m, scene.intrinsics, hint))


@pytest.mark.parametrize(
    "instruction, part_id, label",
    [
        ("pick up the mug", MUG_HANDLE, "handle"),
        ("give the flower", FLOWER_STEM, "stem"),
        ("cut the bread", KNIFE_HANDLE, "handle"),
    ],
)
def test_grounds_the_task_part(backend, scene, instruction, part_id, label):
    result = _ground(backend, scene, instruction)
    assert len(result.instances) == 1, result.explanation
    instance = result.instances[0]
    assert instance.mask.shape == scene.depth_m.shape
    assert result.part_label == label
    assert _iou(instance.mask, scene.part_ids == part_id) > 0.5, result.explanation
    assert "piece" in instance.explanation and "geometry:" in instance.explanation
    assert set(result.timings_ms) >= {"language", "table", "objects", "parts", "grounding"}


def test_reasoner_question_without_part_name(backend, scene):
    result = _ground(backend, scene, "If I want to cut something, which part should I hold?")
    assert result.object_label == "knife"
    assert _iou(result.union_mask(scene.depth_m.shape), scene.part_ids == KNIFE_HANDLE) > 0.5


def test_wrong_colour_means_no_target(backend, scene):
    result = _ground(backend, scene, "pick up the green mug")
    assert result.no_target
    assert "no object in view fits" in result.explanation


def test_object_the_knowledge_base_does_not_know_means_no_target(backend, scene):
    result = _ground(backend, scene, "pick up the stapler")
    assert result.no_target
    assert "not an object in the knowledge base" in result.explanation


def test_object_hint_restricts_to_that_object(backend, scene):
    hint = scene.object_ids == 2  # the knife, whatever the instruction calls it
    result = _ground(backend, scene, "pick up the knife", hint=hint)
    mask = result.union_mask(scene.depth_m.shape)
    assert not (mask & ~hint).any()
    assert _iou(mask, scene.part_ids == KNIFE_HANDLE) > 0.5


def test_depth_is_required(backend, scene):
    with pytest.raises(ValueError, match="depth"):
        backend.ground(GroundingRequest(scene.rgb, "pick up the mug"))


def test_empty_table_gives_no_target(backend):
    from shapegrasp_scenes import render, table

    empty = render([table()], seed=1)
    result = backend.ground(GroundingRequest(empty.rgb, "pick up the mug", empty.depth_m, empty.intrinsics))
    assert result.no_target
    assert not np.any(result.union_mask(empty.depth_m.shape))


def test_odd_image_size_keeps_the_input_resolution(backend, scene):
    from partseg_ros.types import CameraIntrinsics

    k = scene.intrinsics
    cropped = CameraIntrinsics(k.fx, k.fy, k.cx, k.cy, k.width - 1, k.height - 1)
    rgb = np.ascontiguousarray(scene.rgb[:-1, :-1])
    result = backend.ground(GroundingRequest(rgb, "give the flower", scene.depth_m[:-1, :-1], cropped))
    assert result.instances and result.instances[0].mask.shape == rgb.shape[:2]
    truth = scene.part_ids[:-1, :-1] == FLOWER_STEM
    assert _iou(result.instances[0].mask, truth) > 0.5
