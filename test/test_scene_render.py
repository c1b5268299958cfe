"""Scenes and renders: seeded determinism, exact labels, the study's tasks resolvable."""

import numpy as np
import pytest

from partseg_ros.scene.objects import make_object, object_kinds
from partseg_ros.scene.raycast import LabelledMesh, raycast
from partseg_ros.scene.render import render_study_view
from partseg_ros.scene.scenes import (
    STUDY_SCENE_NAMES,
    STUDY_SCENES,
    build_scene,
    footprint_points,
    load_study_tasks,
)


@pytest.fixture(scope="module")
def mugs_view():
    return render_study_view("mugs", view_index=1, seed=5, width=320, height=240)


def test_study_has_48_tasks_over_12_scenes_and_extra_no_target_tasks():
    tasks = load_study_tasks()
    assert len(tasks) == 48
    assert {t.scene for t in tasks} == set(STUDY_SCENE_NAMES) and len(STUDY_SCENE_NAMES) == 12
    assert all(t.has_target and t.parts and t.reason for t in tasks)
    assert len({t.task_id for t in tasks}) == 48
    extra = load_study_tasks(include_no_target=True)
    no_target = [t for t in extra if not t.has_target]
    assert len(extra) == 48 + len(no_target) and len(no_target) >= 12


@pytest.mark.parametrize("name", STUDY_SCENE_NAMES)
def test_every_scene_builds_with_its_task_targets_and_no_overlap(name):
    scene = build_scene(name, seed=11, include_no_target=True)
    assert {o.instance for o in scene.objects} >= {t for task in scene.tasks for t in task.targets}
    assert len({o.instance for o in scene.objects}) == len(scene.objects)
    cells = [set(map(tuple, np.floor(footprint_points(o) / 0.005).astype(int))) for o in scene.objects]
    for i in range(len(cells)):
        for j in range(i + 1, len(cells)):
            assert not cells[i] & cells[j], f"{scene.objects[i].instance} overlaps {scene.objects[j].instance}"
    # Objects rest on the table.
    for obj in scene.objects:
        assert abs(min(p.mesh.vertices[:, 2].min() for p in obj.parts)) < 1e-9


def test_no_target_tasks_ask_for_something_absent():
    for task in load_study_tasks(include_no_target=True):
        if task.has_target:
            continue
        spec = STUDY_SCENES[task.scene]
        labels = {s.instance.replace("_", " ") for s in spec.objects + spec.distractors}
        assert not any(label in task.instruction for label in labels), task


def test_colours_follow_the_task_wording():
    rng = np.random.default_rng(0)
    blue = np.array(make_object("mug", rng, "blue_mug", "blue").part("body").color)
    red = np.array(make_object("lollipop", rng, "red_lollipop", "red").part("candy").color)
    assert blue[2] > 2 * blue[0] and red[0] > 3 * red[2]


def test_all_object_kinds_build_with_named_parts():
    for kind in object_kinds():
        obj = make_object(kind, np.random.default_rng(3))
        assert obj.parts and len(set(obj.part_names)) == len(obj.part_names)
        assert obj.footprint_radius < 0.3 and 0.0 < obj.height < 0.35


def test_render_is_deterministic_from_the_seed(mugs_view):
    again = render_study_view("mugs", view_index=1, seed=5, width=320, height=240)
    for field in ("rgb", "depth_m", "depth_clean_m", "object_ids", "part_ids"):
        np.testing.assert_array_equal(getattr(mugs_view, field), getattr(again, field))
    other = render_study_view("mugs", view_index=1, seed=6, width=320, height=240)
    assert not np.array_equal(other.rgb, mugs_view.rgb)


def test_render_shapes_and_types(mugs_view):
    v = mugs_view
    assert v.rgb.shape == (240, 320, 3) and v.rgb.dtype == np.uint8
    assert v.depth_m.dtype == np.float32 and v.object_ids.dtype == np.uint16
    assert (v.intrinsics.width, v.intrinsics.height) == (320, 240)
    assert np.isnan(v.depth_m).any() and np.isfinite(v.depth_m).mean() > 0.7  # dropouts, mostly valid
    assert len(v.tasks) == 5 and all(v.task_part_mask(t).sum() > 0 for t in v.tasks)
    # The blue mug looks blue where it is labelled.
    blue_id = v.object_names.index("blue_mug")
    pixels = v.rgb[v.object_ids == blue_id].astype(float).mean(axis=0)
    assert pixels[2] > pixels[0] + 40


def test_labelled_pixels_lie_on_their_parts_mesh(mugs_view):
    """Re-cast each labelled part alone: its depth must match the labelled pixels exactly."""
    v = mugs_view
    scene = build_scene("mugs", 5)
    meshes = scene.labelled_meshes()
    for task in v.tasks[:3]:
        for pid in task.target_part_ids:
            mask = v.part_ids == pid
            if not mask.any():
                continue
            mesh = next(m for m in meshes if m.part_id == pid)
            alone = raycast([LabelledMesh(mesh.vertices, mesh.triangles, 1, 1)], v.intrinsics, v.world_from_camera)
            np.testing.assert_allclose(alone.depth[mask], v.depth_clean_m[mask], atol=1e-4)
            # Noisy depth stays near the surface where it is valid (a few mm at < 1 m).
            noisy = v.depth_m[mask]
            ok = np.isfinite(noisy)
            assert np.median(np.abs(noisy[ok] - v.depth_clean_m[mask][ok])) < 0.006


def test_every_study_target_is_visible_in_three_views():
    for name in ("pasta",):
        for view in range(3):
            v = render_study_view(name, view, seed=2, width=320, height=240)
            for task in v.tasks:
                assert v.task_part_mask(task).sum() >= 8, (name, view, task.task_id)


def test_docs_table_mirrors_the_yaml():
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "docs" / "study_tasks.md").read_text()
    rows = {line.split("|")[1].strip(): line for line in text.splitlines() if line.startswith("| ")}
    for task in load_study_tasks(include_no_target=True):
        row = rows[task.task_id]
        assert task.instruction in row and task.reason in row
        assert all(t in row for t in task.targets) and all(p in row for p in task.parts)
