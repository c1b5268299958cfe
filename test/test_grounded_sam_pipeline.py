"""Zero-shot Grounded-SAM: tiny OWLv2 / Grounding DINO + SAM saved, reloaded by path, run to masks."""

from __future__ import annotations

import numpy as np
import pytest

import tiny_models
from partseg_ros.backends.base import CheckpointNotFoundError
from partseg_ros.backends.grounded_sam.backend import GroundedSamBackend
from partseg_ros.backends.grounded_sam.detectors import (
    Detection,
    GroundingDinoDetector,
    Owlv2Detector,
    box_iou,
    detector_kind_for,
    non_max_suppression,
)
from partseg_ros.backends.grounded_sam.phrases import parse_object_and_part
from partseg_ros.backends.registry import create_backend
from partseg_ros.types import GroundingRequest

H, W = 60, 80


@pytest.fixture(scope="module", autouse=True)
def _single_thread():
    with tiny_models.torch_threads(1):
        yield


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("gsam")
    return {
        "owlv2": str(tiny_models.save_tiny_owlv2(root / "owlv2")),
        "grounding_dino": str(tiny_models.save_tiny_grounding_dino(root / "gdino")),
        "sam": str(tiny_models.save_tiny_sam(root / "sam")),
    }


def _rgb(seed: int, h: int = H, w: int = W) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _backend(dirs, detector="owlv2", **kw) -> GroundedSamBackend:
    kw.setdefault("object_threshold", 0.0)
    kw.setdefault("part_threshold", 0.0)
    return create_backend("grounded_sam", detector=dirs[detector], sam=dirs["sam"], device="cpu", **kw)


def _check_instances(result, shape=(H, W)):
    for inst in result.instances:
        assert inst.mask.shape == shape and inst.mask.dtype == bool and inst.mask.any()
        assert 0.0 <= inst.score <= 1.0
        x0, y0, x1, y1 = inst.box
        assert 0 <= x0 <= x1 < shape[1] and 0 <= y0 <= y1 < shape[0]


@pytest.mark.parametrize("detector", ["owlv2", "grounding_dino"])
def test_pipeline_runs_to_masks_at_input_resolution(dirs, detector):
    backend = _backend(dirs, detector)
    result = backend.ground(GroundingRequest(_rgb(0), "pick up the mug by its handle"))
    assert backend.detector.kind == detector
    assert result.backend == "grounded_sam" and result.object_label == "mug" and result.part_label == "handle"
    assert len(result.instances) == 1
    _check_instances(result)
    inst = result.instances[0]
    assert inst.object_label == "mug" and inst.part_label == "handle"
    assert ("found inside it" in inst.explanation) or ("not found inside it" in inst.explanation)
    assert {"object", "part", "total"} <= set(result.timings_ms)


def test_processors_load_without_torchvision(dirs):
    backend = _backend(dirs)
    backend.load()
    assert type(backend.detector.processor.image_processor).__name__ == "Owlv2ImageProcessorPil"
    assert type(backend.sam.processor.image_processor).__name__ == "SamImageProcessorPil"


def test_results_are_deterministic_across_loads(dirs):
    rgb = _rgb(1)
    a = _backend(dirs).ground(GroundingRequest(rgb, "grasp the handle of the kettle"))
    b = _backend(dirs).ground(GroundingRequest(rgb, "grasp the handle of the kettle"))
    assert [i.score for i in a.instances] == [i.score for i in b.instances]
    assert np.array_equal(a.union_mask((H, W)), b.union_mask((H, W)))


def test_no_object_found_gives_an_empty_answer(dirs):
    result = _backend(dirs, object_threshold=1.01).ground(GroundingRequest(_rgb(2), "open the bottle cap"))
    assert result.no_target and "no 'bottle' found" in result.explanation


def test_part_not_found_falls_back_to_the_object_with_a_lower_score(dirs):
    rgb = _rgb(3)
    backend = _backend(dirs, part_threshold=1.01, part_fallback_factor=0.5)
    fallback = backend.ground(GroundingRequest(rgb, "pick up the mug by its handle"))
    assert len(fallback.instances) == 1
    inst = fallback.instances[0]
    assert "part 'handle' not found" in inst.explanation and "whole object" in inst.explanation
    _check_instances(fallback)
    best = backend.detector.detect(rgb, "mug", 0.0)[0]  # the object mask is SAM's answer to the best object box
    masks, _ = backend.sam.segment(rgb, [best.box])
    assert np.array_equal(inst.mask, masks[0])


def test_object_mask_hint_replaces_the_object_detection(dirs):
    from partseg_ros.backends.runtime import image_key

    hint = np.zeros((H, W), bool)
    hint[10:50, 20:70] = True
    rgb = _rgb(4)
    backend = _backend(dirs, part_threshold=1.01, part_fallback_factor=0.4)
    result = backend.ground(GroundingRequest(rgb, "pick up the mug by its handle", object_mask_hint=hint))
    assert np.array_equal(result.instances[0].mask, hint)
    assert result.instances[0].score == pytest.approx(0.4)  # the hint is certain; the missing part lowers it
    assert "given object mask" in result.explanation
    assert image_key(rgb) not in backend.detector.image_cache  # the full frame was never searched for the object
    found = _backend(dirs, crop_margin=0.1).ground(
        GroundingRequest(rgb, "pick up the mug by its handle", object_mask_hint=hint))
    region = np.zeros((H, W), bool)
    region[6:54, 15:75] = True  # the hint's box grown by 10 % on each side
    for inst in found.instances:
        assert not (inst.mask & ~region).any() and (inst.mask & hint).any()


def test_caches_reuse_image_and_text_state_without_changing_answers(dirs):
    cached, fresh = _backend(dirs), _backend(dirs, cache_size=0)
    rgb_a, rgb_b = _rgb(5), _rgb(6)
    cached.ground(GroundingRequest(rgb_a, "pick up the mug by its handle"))
    sam_misses = cached.sam.embedding_cache.misses
    again = cached.ground(GroundingRequest(rgb_a.copy(), "grasp the knife by the handle"))
    assert cached.sam.embedding_cache.misses == sam_misses  # same frame: SAM embedding reused
    assert cached.detector.image_cache.hits >= 1
    cached.ground(GroundingRequest(rgb_b, "grasp the knife by the handle"))
    assert cached.detector.text_cache.hits >= 1  # same phrases on a new frame: text embeddings reused
    ref = fresh.ground(GroundingRequest(rgb_a, "grasp the knife by the handle"))
    assert np.array_equal(again.union_mask((H, W)), ref.union_mask((H, W)))
    assert [i.score for i in again.instances] == [i.score for i in ref.instances]


def test_jetson_profile_bounds_work_but_not_the_output(dirs):
    backend = _backend(dirs, profile="jetson", max_input_side=40)
    result = backend.ground(GroundingRequest(_rgb(7, 90, 120), "pick up the mug by its handle"))
    assert backend.runtime.max_input_side == 40
    _check_instances(result, (90, 120))


def test_missing_weights_name_the_checkpoint_and_the_fix(dirs, tmp_path):
    with pytest.raises(CheckpointNotFoundError,
                       match="(?s)open-vocabulary detector.*backend_options.detector.*--backend-option detector="):
        GroundedSamBackend(detector=str(tmp_path / "none"), sam=dirs["sam"], device="cpu").load()
    with pytest.raises(CheckpointNotFoundError, match="(?s)SAM checkpoint 'facebook/sam-vit-base'.*hf download"):
        GroundedSamBackend(detector=dirs["owlv2"], device="cpu").load()


def test_detector_kind_is_read_from_the_checkpoint(dirs):
    assert detector_kind_for(dirs["owlv2"]) == "owlv2"
    assert detector_kind_for(dirs["grounding_dino"]) == "grounding_dino"
    with pytest.raises(ValueError, match="model_type 'sam'"):
        detector_kind_for(dirs["sam"])
    with pytest.raises(ValueError):
        detector_kind_for(dirs["owlv2"], "yolo")


@pytest.mark.parametrize("cls,name", [(Owlv2Detector, "owlv2"), (GroundingDinoDetector, "grounding_dino")])
def test_detectors_return_boxes_inside_the_image_best_first(dirs, cls, name):
    from partseg_ros.backends.runtime import resolve_runtime

    detector = cls.from_pretrained(dirs[name], resolve_runtime("cpu"))
    found = detector.detect(_rgb(8, 50, 90), "mug", threshold=0.0)
    assert found, "a zero threshold keeps every valid box"
    scores = [d.score for d in found]
    assert scores == sorted(scores, reverse=True) and all(0 <= s <= 1 for s in scores)
    for d in found:
        x0, y0, x1, y1 = d.box
        assert 0 <= x0 < x1 <= 90 and 0 <= y0 < y1 <= 50
    assert detector.detect(_rgb(8, 50, 90), "mug", threshold=1.01) == []


def test_nms_and_box_geometry():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 10, 10], [20, 20, 30, 30]], float)
    assert box_iou(boxes[:1], boxes[1:2])[0, 0] == pytest.approx(81 / 100)
    assert non_max_suppression(boxes, np.array([0.9, 0.8, 0.7]), 0.5) == [0, 2]
    det = Detection((1.0, 2.0, 5.0, 6.0), 0.5)
    assert det.center == (3.0, 4.0) and det.area == 16.0 and det.shifted(10, 20).box == (11.0, 22.0, 15.0, 26.0)


def test_fallback_phrase_parser():
    assert (parse_object_and_part("grab the handle of the kettle").object_phrase,
            parse_object_and_part("grab the handle of the kettle").part_phrase) == ("kettle", "handle")
    by = parse_object_and_part("pick up the mug by its handle")
    assert (by.object_phrase, by.part_phrase) == ("mug", "handle")
    only = parse_object_and_part("pick up the red mug")
    assert (only.object_phrase, only.part_phrase) == ("red mug", "")


def test_invalid_options():
    with pytest.raises(ValueError):
        GroundedSamBackend(segmenter="sam9")
    with pytest.raises(ValueError):
        GroundedSamBackend(part_fallback_factor=2.0)


def test_sam3_text_prompt_segmenter_option(tmp_path):
    """segmenter='sam3': SAM 3's text prompt segments the object and part phrases (SAM3-Agent style)."""
    from tiny_models_instructsam import save_tiny_sam3

    directory = save_tiny_sam3(tmp_path / "sam3")
    hint = np.zeros((H, W), bool)
    hint[5:55, 10:70] = True
    backend = GroundedSamBackend(segmenter="sam3", sam3=str(directory), device="cpu",
                                 object_threshold=0.0, part_threshold=0.0)
    result = backend.ground(GroundingRequest(_rgb(9), "pick up the mug by its handle", object_mask_hint=hint))
    assert backend.sam3 is not None and backend.detector is None
    _check_instances(result)
    assert len(result.instances) == 1 and result.part_label == "handle"
    inst = result.instances[0]
    if "not found inside it" in inst.explanation:
        assert np.array_equal(inst.mask, hint)
    else:
        assert (inst.mask & hint).any() and inst.mask.sum() <= 0.9 * hint.sum()
    no_obj = backend.ground(GroundingRequest(_rgb(9), "pick up the mug by its handle"))
    _check_instances(no_obj)


def test_phrases_come_from_the_language_resolver_when_it_names_an_object():
    from partseg_ros.backends.grounded_sam.phrases import instruction_phrases

    phrases = instruction_phrases("pick up the mug by its handle")
    assert (phrases.object_phrase, phrases.part_phrase, phrases.source) == ("mug", "handle", "language resolver")
