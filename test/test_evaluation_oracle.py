"""Oracle-object protocol with several acceptable objects (issue 13, evaluator bugs).

"pick up the mug" with two mugs in view: any mug is right. The oracle hint
used to be the union of both mugs, which a geometric backend decomposes as
one two-handled object; now each mug is its own hint mask. The scene is
ray-cast, written into a real benchmark bag and read back through the
evaluator, and the real shapegrasp backend answers.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from partseg_ros.bags.reader import read_benchmark
from partseg_ros.bags.writer import BenchmarkFrame, TaskAnnotation, write_benchmark
from partseg_ros.evaluation.records import PROTOCOL_FULL, PROTOCOL_ORACLE_OBJECT
from partseg_ros.evaluation.runner import EvaluationSettings, TaskEvaluator
from partseg_ros.evaluation.tasks import iter_tasks
from partseg_ros.types import GroundingRequest
from shapegrasp_scenes import MUG_BODY, MUG_HANDLE, mug, render, table

H, W = 6, 8


def _rgb() -> np.ndarray:
    return np.zeros((H, W, 3), np.uint8)


def _masks() -> tuple[np.ndarray, np.ndarray]:
    a, b = np.zeros((H, W), bool), np.zeros((H, W), bool)
    a[1:3, 1:3] = True
    b[3:5, 5:7] = True
    return a, b


def test_hints_fill_in_their_union():
    a, b = _masks()
    request = GroundingRequest(_rgb(), "pick up the mug", object_mask_hints=[a, b])
    assert len(request.object_mask_hints) == 2
    assert np.array_equal(request.object_mask_hint, a | b)


def test_single_hint_still_works_and_becomes_one_entry():
    a, _ = _masks()
    request = GroundingRequest(_rgb(), "pick up the mug", object_mask_hint=a.astype(np.uint8))
    assert len(request.object_mask_hints) == 1 and np.array_equal(request.object_mask_hints[0], a)
    assert GroundingRequest(_rgb(), "pick up the mug").object_mask_hints is None


def test_empty_hint_list_is_an_oracle_with_nothing_to_give():
    request = GroundingRequest(_rgb(), "pick up the mug", object_mask_hints=())
    assert request.object_mask_hints == () and not request.object_mask_hint.any()
    assert request.object_mask_hint.shape == (H, W)


def test_hints_are_validated():
    a, b = _masks()
    with pytest.raises(ValueError, match="hint 1 shape"):
        GroundingRequest(_rgb(), "x", object_mask_hints=(a, np.zeros((H, W + 1), bool)))
    with pytest.raises(ValueError, match="union"):
        GroundingRequest(_rgb(), "x", object_mask_hint=a, object_mask_hints=(a, b))
    with pytest.raises(ValueError, match="sequence"):
        GroundingRequest(_rgb(), "x", object_mask_hints=a)


@pytest.fixture(scope="module")
def two_mug_bag(tmp_path_factory) -> Path:
    """A bag with one frame: a blue mug (object 1) and a red mug (object 2); "pick up the mug" accepts either."""
    view = render([table()] + mug(1, -0.12, 0.05, 0.6) + mug(2, 0.12, 0.0, 2.4, colour=(0.7, 0.1, 0.1)), seed=1)
    object_names = ["background", "mug_a", "mug_b"]
    part_names = ["background", "mug_a/body", "mug_a/handle", "mug_b/body", "mug_b/handle"]
    part_ids = np.zeros(view.part_ids.shape, np.uint16)
    for object_id in (1, 2):
        on = view.object_ids == object_id
        part_ids[on & (view.part_ids == MUG_BODY)] = 2 * object_id - 1
        part_ids[on & (view.part_ids == MUG_HANDLE)] = 2 * object_id
    task = TaskAnnotation("mug", "pick up the mug", ("mug_a", "mug_b"), ("handle",), (2, 4))
    frame = BenchmarkFrame(
        scene="two_mugs", rgb=view.rgb, depth_m=view.depth_m, intrinsics=view.intrinsics,
        object_ids=view.object_ids.astype(np.uint16), part_ids=part_ids, object_names=object_names,
        part_names=part_names, tasks=[task],
    )
    path = tmp_path_factory.mktemp("oracle") / "two_mugs"
    write_benchmark(path, [frame])
    return path


def test_oracle_request_gives_each_acceptable_object_separately(two_mug_bag):
    (task,) = list(iter_tasks(two_mug_bag))
    request = task.request(PROTOCOL_ORACLE_OBJECT)
    hints = request.object_mask_hints
    assert len(hints) == 2
    # One hint per mug, each exactly that mug's pixels.
    (sample,) = list(read_benchmark(two_mug_bag))
    assert np.array_equal(hints[0], sample.object_ids == 1) and np.array_equal(hints[1], sample.object_ids == 2)
    assert np.array_equal(request.object_mask_hint, task.target_object_mask)
    assert task.request(PROTOCOL_FULL).object_mask_hints is None


def test_shapegrasp_picks_one_mug_under_the_oracle(two_mug_bag):
    """Given the union, shapegrasp decomposed both mugs as one object and missed both handles (IoU 0.0005)."""
    (task,) = list(iter_tasks(two_mug_bag))
    evaluator = TaskEvaluator(
        EvaluationSettings(backend="shapegrasp", backend_options={"use_embeddings": False},
                           protocols=(PROTOCOL_ORACLE_OBJECT,), overlays=False)
    )
    (record,) = evaluator.evaluate(task)
    assert record.mask_success and record.iou >= 0.5, record
    assert record.predicted_part == "handle"
