"""SAM 3 masks and Grounding DINO scores match the official transformers post-processing.

SAM 3's reference below is the recipe of transformers 5.23
``Sam3ImageProcessor.post_process_instance_segmentation`` (not importable here:
that module needs torchvision): score > 0.3, sigmoid, bilinear upsampling,
> 0.5, no NMS. Grounding DINO's reference is transformers' own
``post_process_grounded_object_detection``, called on the same outputs.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import tiny_models
from partseg_ros.backends.grounded_sam.backend import GroundedSamBackend
from partseg_ros.backends.grounded_sam.detectors import GroundingDinoDetector
from partseg_ros.backends.runtime import resolve_runtime
from partseg_ros.backends.sam3.decoding import decode_with_text
from partseg_ros.backends.sam3.postprocessing import select_instances
from partseg_ros.backends.sam3.segmenter import Sam3Segmenter
from tiny_models_instructsam import save_tiny_sam3, single_torch_thread, textured_image


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    with single_torch_thread():
        yield


def official_sam3_masks(mask_logits, scores, size, threshold=0.3, mask_threshold=0.5):
    keep = scores > threshold
    probabilities = mask_logits[keep].sigmoid()
    if len(probabilities):
        probabilities = F.interpolate(probabilities[None], size=size, mode="bilinear", align_corners=False)[0]
    return keep.nonzero().flatten(), probabilities > mask_threshold


def test_probability_masks_follow_the_official_recipe_where_logit_masks_differ():
    logits = torch.tensor([[[-6.0, 2.0], [-6.0, 2.0]]])  # one slot, a sharp left/right edge
    scores = torch.tensor([0.9])
    _, reference = official_sam3_masks(logits, scores, (8, 8))
    ours = select_instances(logits, scores, None, (8, 8), score_threshold=0.3, mask_threshold=0.5,
                            mask_space="probabilities")
    assert np.array_equal(ours[0].mask, reference[0].numpy())
    by_logits = select_instances(logits, scores, None, (8, 8), score_threshold=0.3, mask_threshold=0.0,
                                 mask_space="logits")
    assert by_logits[0].mask.sum() < ours[0].mask.sum(), "boundary pixels differ between the two recipes"
    with pytest.raises(ValueError):
        select_instances(logits, scores, None, (8, 8), mask_space="sigmoid")


def test_segmenter_defaults_are_the_official_thresholds_without_nms(tmp_path):
    directory = save_tiny_sam3(tmp_path / "sam3", seed=1)
    segmenter = Sam3Segmenter.from_pretrained(directory)
    with torch.no_grad():  # presence about 0.8, so scores sit near 0.4: between the official 0.3 and 0.5
        segmenter.model.detr_decoder.presence_head.layer3.bias.fill_(1.4)
        segmenter.model.mask_decoder.mask_embedder.layers[-1].weight.mul_(300.0)
    rgb = textured_image(45, 70, seed=4)
    found = segmenter.segment_text(rgb, "mug handle")
    with torch.inference_mode():
        text, attention = segmenter.encode_phrase("mug handle")
        mask_logits, scores, _ = decode_with_text(segmenter.model, segmenter.encode_image(rgb), text, attention)
    slots, masks = official_sam3_masks(mask_logits, scores, (45, 70))
    assert 0.3 < float(scores.min()) and float(scores.max()) < 0.5
    expected = {int(s): m.numpy() for s, m in zip(slots, masks) if m.any()}
    assert len(expected) >= 2 and sorted(i.slot for i in found) == sorted(expected)
    assert all(np.array_equal(i.mask, expected[i.slot]) for i in found)


def test_grounded_sam_thresholds_default_per_scoring_component():
    assert GroundedSamBackend(segmenter="sam3").object_threshold == 0.3
    assert GroundedSamBackend().part_threshold == 0.1
    assert GroundedSamBackend(segmenter="sam3", part_threshold=0.2).part_threshold == 0.2


def test_grounding_dino_scores_match_transformers_post_processing(tmp_path):
    directory = tiny_models.save_tiny_grounding_dino(tmp_path / "gdino")
    with tiny_models.torch_threads(1):
        detector = GroundingDinoDetector.from_pretrained(directory, resolve_runtime("cpu"))
        rgb = np.random.default_rng(3).integers(0, 256, (50, 90, 3), dtype=np.uint8)
        with torch.inference_mode():  # as detect() calls it
            ours, _ = detector._answer(rgb, "mug handle")
        inputs = detector.processor(images=rgb, text="mug handle.", return_tensors="pt")
        with torch.inference_mode():
            outputs = detector.model(**inputs)
        reference = detector.processor.post_process_grounded_object_detection(
            outputs, inputs["input_ids"], threshold=0.0, text_threshold=0.0, target_sizes=[(50, 90)]
        )[0]["scores"]
        assert np.allclose(np.sort(ours), np.sort(reference.numpy()), atol=1e-6)
        phrase_only = GroundingDinoDetector(detector.model, detector.processor, resolve_runtime("cpu"),
                                            scoring="phrase_tokens")
        with torch.inference_mode():
            lower, _ = phrase_only._answer(rgb, "mug handle")
        assert np.all(lower <= ours + 1e-7) and np.any(lower < ours - 1e-6)
    with pytest.raises(ValueError):
        GroundingDinoDetector(detector.model, detector.processor, resolve_runtime("cpu"), scoring="mean")
