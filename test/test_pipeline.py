"""The one per-frame pipeline the node and the evaluator share: backend, then grasp regions, with stage timings.

On a ray-cast study scene with the real shapegrasp backend, and with small
test backends (module:Class names) where a case needs a backend that
misbehaves or counts its loads.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

from partseg_ros.backends.base import PartGroundingBackend, config_from_options
from partseg_ros.evaluation.runner import EvaluationSettings, TaskEvaluator
from partseg_ros.geometry.grasp_region import compute_grasp_region
from partseg_ros.pipeline import STAGE_GEOMETRY, STAGE_INFERENCE, PartPipeline
from partseg_ros.scene.render import render_study_view
from partseg_ros.types import GroundingRequest, GroundingResult, PartInstance

TEAPOT_TASK = "pick up the teapot"


@pytest.fixture(scope="module")
def view():
    return render_study_view("kitchen", 0, seed=0, width=320, height=240)


@pytest.fixture(scope="module")
def pipeline():
    pipeline = PartPipeline.build("shapegrasp", {"use_embeddings": False, "device": "cpu"})
    pipeline.load(warmup=False)
    return pipeline


def _request(view, instruction: str = TEAPOT_TASK, depth: bool = True) -> GroundingRequest:
    return GroundingRequest(view.rgb, instruction, view.depth_m if depth else None, view.intrinsics)


def test_backend_then_grasp_regions_with_stage_timings(view, pipeline):
    run = pipeline.run(_request(view))
    instances = run.grounding.instances
    assert instances, run.grounding.explanation
    assert len(run.regions) == len(instances)
    top, region = instances[0], run.regions[0]
    assert region.ok, region.status_reason
    # The region is the top instance's: every kept pixel lies on its mask ...
    rows, cols = region.pixels[:, 0], region.pixels[:, 1]
    assert len(rows) > 0 and top.mask[rows, cols].all()
    # ... and it is what the geometry gives for that mask on that frame.
    direct = compute_grasp_region(top.mask, view.depth_m, view.intrinsics, rgb=view.rgb)
    np.testing.assert_allclose(region.centroid, direct.centroid)
    assert set(run.stages_ms) == {STAGE_INFERENCE, STAGE_GEOMETRY}
    assert run.inference_ms > 0 and run.geometry_ms > 0
    assert run.union_mask().shape == view.rgb.shape[:2] and run.union_mask()[top.mask].all()


def test_max_regions_keeps_the_best_instances_only(view, pipeline):
    full = pipeline.run(_request(view))
    capped = pipeline.run(_request(view), max_regions=1)
    assert len(full.regions) >= 1 and len(capped.regions) == 1
    np.testing.assert_allclose(capped.regions[0].centroid, full.regions[0].centroid)


def test_no_depth_means_no_regions():
    # Brightest-block answers from colour alone, so the only thing missing is the 3D context.
    pipeline = PartPipeline.build("traffic_backends:BrightestBlockBackend")
    rgb = np.zeros((48, 64, 3), np.uint8)
    rgb[:6, :8] = 255
    run = pipeline.run(GroundingRequest(rgb, "anything"))
    assert len(run.grounding.instances) == 1 and run.regions == []
    assert run.geometry_ms >= 0 and run.inference_ms > 0


class WrongSizeBackend(PartGroundingBackend):
    """Answers with a mask of half the image's size: a backend bug the pipeline must not pass on."""

    name = "wrong_size"

    def _ground(self, request: GroundingRequest) -> GroundingResult:
        h, w = request.image_size
        return GroundingResult([PartInstance(np.ones((h // 2, w // 2), bool), 1.0, "o", "p")], self.name)


def test_a_mask_of_another_size_is_refused(view):
    pipeline = PartPipeline.build(f"{__name__}:WrongSizeBackend")
    with pytest.raises(ValueError, match=r"\(120, 160\) mask for a \(240, 320\) image"):
        pipeline.run(_request(view))


@dataclass
class _CountingConfig:
    threshold: float = 0.5


class LoadCountingBackend(PartGroundingBackend):
    """Checks its options like every backend does, and counts how often its model was loaded."""

    name = "load_counting"
    loads = 0

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.config = config_from_options(_CountingConfig, options, self.name)

    def _load(self) -> None:
        LoadCountingBackend.loads += 1

    def _ground(self, request: GroundingRequest) -> GroundingResult:
        return GroundingResult([], self.name)


def test_option_typos_fail_before_the_model_loads():
    spec = f"{__name__}:LoadCountingBackend"
    LoadCountingBackend.loads = 0
    with pytest.raises(ValueError, match=r"unknown grasp option\(s\): min_pionts \(did you mean min_points\?\)"):
        PartPipeline.build(spec, {}, {"min_pionts": 3})
    with pytest.raises(ValueError, match=r"unknown load_counting option\(s\): treshold \(did you mean threshold\?\)"):
        PartPipeline.build(spec, {"treshold": 0.1})
    assert LoadCountingBackend.loads == 0
    pipeline = PartPipeline.build(spec, {"threshold": 0.1}, {"min_points": 12})
    assert pipeline.grasp_config.min_points == 12 and pipeline.backend.config.threshold == 0.1
    pipeline.load()
    assert LoadCountingBackend.loads == 1


def test_the_evaluator_answers_through_the_pipeline():
    evaluator = TaskEvaluator(EvaluationSettings(backend=f"{__name__}:LoadCountingBackend",
                                                 grasp_options={"min_points": 12}))
    assert isinstance(evaluator.pipeline, PartPipeline)
    assert evaluator.pipeline.grasp_config.min_points == 12 and evaluator.backend.loaded
