"""Scoring, protocols, aggregation and the report on small hand-built RGB-D tasks.

The backend here is a test backend that really computes its answer from the
image (it segments the pixels of the colour the instruction names), so the
scores below follow from the pixels, not from canned output.
"""

import json

import numpy as np
import pytest

from partseg_ros.backends.base import PartGroundingBackend
from partseg_ros.evaluation.aggregate import build_summary
from partseg_ros.evaluation.records import PROTOCOL_FULL, PROTOCOL_ORACLE_OBJECT
from partseg_ros.evaluation.report import PUBLISHED_NOTE, write_report
from partseg_ros.evaluation.runner import EvaluationSettings, TaskEvaluator
from partseg_ros.evaluation.tasks import EvalTask
from partseg_ros.types import CameraIntrinsics, GroundingRequest, GroundingResult, PartInstance

COLORS = {"red": (200, 30, 30), "blue": (30, 60, 200), "green": (40, 180, 60), "yellow": (220, 210, 40)}
H, W = 48, 64
K = CameraIntrinsics(fx=60.0, fy=60.0, cx=31.5, cy=23.5, width=W, height=H)


class ColorWordBackend(PartGroundingBackend):
    """Test backend: segments the pixels whose colour the instruction names (within the hint, if any).

    Option ``tolerance``: largest L1 distance in RGB to the named colour (default 30).
    """

    name = "color_word"

    def _ground(self, request: GroundingRequest) -> GroundingResult:
        words = request.instruction.lower().split()
        color = next((c for c in COLORS if c in words), None)
        if color is None:
            return GroundingResult(instances=[], backend=self.name)
        distance = np.abs(request.rgb.astype(int) - np.array(COLORS[color])).sum(axis=2)
        mask = distance < float(self.options.get("tolerance", 30))
        if request.object_mask_hint is not None:
            mask &= request.object_mask_hint
        if not mask.any():
            return GroundingResult(instances=[], backend=self.name)
        return GroundingResult(instances=[PartInstance(mask, 1.0, "thing", f"{color} part")], backend=self.name)


BACKEND_SPEC = f"{__name__}:ColorWordBackend"


def _scene():
    """Two objects on a table plane 0.5 m away: a mug (blue body, red handle), a knife (green blade, yellow handle)."""
    rgb = np.full((H, W, 3), 120, np.uint8)
    object_ids = np.zeros((H, W), np.uint8)
    part_ids = np.zeros((H, W), np.uint8)
    for (r0, r1, c0, c1), obj, part, color in (
        ((10, 30, 8, 22), 1, 1, "blue"),
        ((14, 24, 22, 28), 1, 2, "red"),
        ((30, 36, 34, 50), 2, 3, "green"),
        ((30, 36, 50, 60), 2, 4, "yellow"),
    ):
        rgb[r0:r1, c0:c1] = COLORS[color]
        object_ids[r0:r1, c0:c1] = obj
        part_ids[r0:r1, c0:c1] = part
    depth = np.full((H, W), 0.5, np.float32)
    depth[object_ids > 0] = 0.46  # objects stand in front of the table
    return rgb, depth, object_ids, part_ids


def _tasks():
    rgb, depth, object_ids, part_ids = _scene()
    specs = [
        # task_id, instruction, has_target, object, part, object id, part id
        ("mug", "pick up the mug by the red handle", True, "mug", "handle", 1, 2),
        ("knife", "hold the knife by its yellow handle", True, "knife", "handle", 2, 4),
        ("wrong", "cut with the green blade please", True, "knife", "handle", 2, 4),  # backend picks the blade
        ("none", "pour from the purple teapot", False, "", "", 0, 0),
    ]
    tasks = []
    for index, (task_id, instruction, has_target, obj, part, oid, pid) in enumerate(specs):
        tasks.append(
            EvalTask(
                bag="synthetic",
                sample_index=index,
                scene="tabletop",
                view="0",
                task_id=task_id,
                instruction=instruction,
                has_target=has_target,
                target_object=obj,
                target_part=part,
                rgb=rgb,
                depth_m=depth,
                intrinsics=K,
                target_part_mask=(part_ids == pid) if has_target else np.zeros((H, W), bool),
                target_object_mask=(object_ids == oid) if has_target else np.zeros((H, W), bool),
                stamp_ns=index,
            )
        )
    return tasks


@pytest.fixture(scope="module")
def records():
    evaluator = TaskEvaluator(EvaluationSettings(backend=BACKEND_SPEC))
    out = []
    for task in _tasks():
        out.extend(evaluator.evaluate(task))
    return out


def test_protocols_build_the_right_requests():
    task = _tasks()[0]
    assert task.request(PROTOCOL_FULL).object_mask_hint is None
    hint = task.request(PROTOCOL_ORACLE_OBJECT).object_mask_hint
    assert hint is not None and np.array_equal(hint, task.target_object_mask)
    with pytest.raises(ValueError):
        task.request("nonsense")


def test_records_score_each_task(records):
    by_id = {(r.task_id, r.protocol): r for r in records}
    assert len(records) == 8
    mug = by_id[("mug", PROTOCOL_FULL)]
    assert mug.iou == pytest.approx(1.0) and mug.mask_success
    # The grasp region of a flat patch at 0.46 m centred on the handle projects onto the handle.
    assert mug.grasp_status == "ok" and mug.grasp_point_success
    wrong = by_id[("wrong", PROTOCOL_FULL)]
    assert wrong.iou == 0.0 and not wrong.mask_success and not wrong.grasp_point_success
    none = by_id[("none", PROTOCOL_FULL)]
    assert none.prediction_empty and none.iou == 1.0 and none.grasp_status == "no instance"
    assert all(r.latency_ms > 0 for r in records)


def test_summary_matches_hand_computed_values(records):
    summary = build_summary(records)
    full = summary[PROTOCOL_FULL]["overall"]
    assert full["num_tasks"] == 4 and full["num_targeted"] == 3 and full["num_no_target"] == 1
    assert full["part_selection_mask"] == pytest.approx(2 / 3)
    assert full["part_selection_grasp_point"] == pytest.approx(2 / 3)
    assert full["giou"] == pytest.approx(2 / 3)
    # cIoU: both 60 px handles matched; the 96 px blade against the 60 px knife handle adds 156 to the union.
    assert full["ciou"] == pytest.approx((60 + 60) / (60 + 60 + 96 + 60))
    assert full["p50_95"] == pytest.approx(2 / 3)
    assert full["no_target_accuracy"] == 1.0 and full["false_empty_rate"] == 0.0
    assert full["giou_all"] == pytest.approx(3 / 4)
    assert set(summary) == {PROTOCOL_FULL, PROTOCOL_ORACLE_OBJECT}
    assert [row["task_id"] for row in summary[PROTOCOL_FULL]["per_task"]] == ["knife", "mug", "none", "wrong"]


def test_evaluation_is_deterministic(records):
    evaluator = TaskEvaluator(EvaluationSettings(backend=BACKEND_SPEC))
    again = [r for task in _tasks() for r in evaluator.evaluate(task)]
    assert [r.scores() for r in again] == [r.scores() for r in records]


def test_report_files_name_every_task(records, tmp_path):
    meta = {"backend": "color_word", "path": "inprocess", "protocols": ["full", "oracle_object"], "bags": ["synthetic"]}
    paths = write_report(records, tmp_path, meta)
    for key in ("json", "markdown", "html", "plot"):
        assert paths[key].is_file() and paths[key].stat().st_size > 0
    assert paths["plot"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    document = json.loads(paths["json"].read_text())
    assert len(document["records"]) == len(records)
    assert {r["method"] for r in document["published_reference"]["results"]} == {"PISA", "ShapeGrasp", "LERF-TOGO"}
    markdown, page = paths["markdown"].read_text(), paths["html"].read_text()
    for record in records:
        assert record.instruction in markdown and record.instruction in page
    assert markdown.count(PUBLISHED_NOTE) >= 3 and page.count(PUBLISHED_NOTE) >= 3
    # Self-contained: images inline, one overlay per record plus the plot.
    assert page.count("data:image/png;base64,") == len(records) + 1
    assert "src='http" not in page and "<link" not in page
    assert len(list((tmp_path / "overlays").glob("*.png"))) == len(records)


def _two_mug_task(predicted_color: str):
    """ "Pick up a mug" with two acceptable mugs: red handle (object 1) and yellow handle (object 2)."""
    rgb, depth, object_ids, part_ids = _scene()
    handles = [(part_ids == 2), (part_ids == 4)]
    return EvalTask(
        bag="synthetic",
        sample_index=0,
        scene="tabletop",
        view="0",
        task_id="any_mug",
        instruction=f"take the {predicted_color} handle",
        has_target=True,
        target_object="mug_a|mug_b",
        target_part="handle",
        rgb=rgb,
        depth_m=depth,
        intrinsics=K,
        target_part_mask=handles[0] | handles[1],
        target_object_mask=object_ids > 0,
        stamp_ns=0,
        alternative_part_masks=tuple(handles),
    )


def test_any_acceptable_object_counts_fully():
    evaluator = TaskEvaluator(EvaluationSettings(backend=BACKEND_SPEC, protocols=(PROTOCOL_FULL,)))
    for color in ("red", "yellow"):
        (record,) = evaluator.evaluate(_two_mug_task(color))
        # Against the union of both handles the IoU would be 0.5; against the chosen mug it is 1.
        assert record.iou == pytest.approx(1.0) and (record.intersection, record.union) == (60, 60)
        assert record.mask_success and record.grasp_point_success


def test_hidden_target_is_counted_not_scored():
    rgb, depth, object_ids, part_ids = _scene()
    hidden = EvalTask(
        bag="synthetic",
        sample_index=0,
        scene="tabletop",
        view="0",
        task_id="hidden",
        instruction="grab the purple handle",
        has_target=True,
        target_object="cup",
        target_part="handle",
        rgb=rgb,
        depth_m=depth,
        intrinsics=K,
        target_part_mask=np.zeros((H, W), bool),
        target_object_mask=np.zeros((H, W), bool),
        stamp_ns=0,
    )
    evaluator = TaskEvaluator(EvaluationSettings(backend=BACKEND_SPEC, protocols=(PROTOCOL_FULL,)))
    records = evaluator.evaluate(hidden) + evaluator.evaluate(_tasks()[0])
    assert not records[0].target_visible
    overall = build_summary(records)[PROTOCOL_FULL]["overall"]
    assert overall["num_target_not_visible"] == 1 and overall["num_targeted"] == 1
    assert overall["giou"] == pytest.approx(1.0)  # only the visible mug task is scored


def test_oracle_protocol_skips_tasks_without_object_labels():
    task = _tasks()[0]
    task.object_mask_known = False
    evaluator = TaskEvaluator(EvaluationSettings(backend=BACKEND_SPEC))
    assert [r.protocol for r in evaluator.evaluate(task)] == [PROTOCOL_FULL]


def test_backend_errors_are_recorded_not_raised():
    class Failing(ColorWordBackend):
        def _ground(self, request):
            raise RuntimeError("weights missing")

    evaluator = TaskEvaluator(EvaluationSettings(backend=BACKEND_SPEC, protocols=(PROTOCOL_FULL,)))
    evaluator.backend = Failing()
    (record,) = evaluator.evaluate(_tasks()[0])
    assert record.error == "RuntimeError: weights missing" and record.prediction_empty and not record.mask_success
    assert build_summary([record])[PROTOCOL_FULL]["overall"]["num_errors"] == 1
