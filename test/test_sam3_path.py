"""SAM 3 without torchvision: our preprocessing, query decoding, text prompts and post-processing.

The real transformers ``Sam3Model`` (tiny random config) runs in every test
here. Where torchvision decides what can run, the test checks which case
holds and asserts the behaviour of that case, so nothing is silently skipped.
"""

from __future__ import annotations

import importlib
import inspect
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from transformers import Sam3Model
from transformers.models.sam3 import modeling_sam3
from transformers.utils import is_torchvision_available

from partseg_ros.backends.base import CheckpointNotFoundError
from partseg_ros.backends.instructsam.presets import sam3_config
from partseg_ros.backends.sam3.decoding import _decoder_layer_without_presence, decode_with_queries, encode_image
from partseg_ros.backends.sam3.postprocessing import mask_nms, select_instances
from partseg_ros.backends.sam3.preprocessing import Sam3ImageTransform
from partseg_ros.backends.sam3.segmenter import Sam3Segmenter, box_prompts_available
from tiny_models_instructsam import save_tiny_sam3, single_torch_thread, textured_image


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    with single_torch_thread():
        yield


@pytest.fixture(scope="module")
def tiny_sam3() -> Sam3Model:
    torch.manual_seed(0)
    return Sam3Model(sam3_config("tiny")).eval()


def test_transform_resizes_and_normalises_like_the_released_processor():
    transform = Sam3ImageTransform(image_size=56)
    grey = np.full((30, 40, 3), 191, dtype=np.uint8)
    pixels = transform(grey)
    assert pixels.shape == (1, 3, 56, 56)
    assert torch.allclose(pixels, torch.full_like(pixels, (191 / 255 - 0.5) / 0.5), atol=1e-6)
    split = np.zeros((20, 40, 3), dtype=np.uint8)
    split[:, 20:] = 255
    pixels = transform(split)[0, 0]
    assert pixels[:, :20].max() < -0.9 and pixels[:, 36:].min() > 0.9


def test_transform_reads_the_checkpoint_preprocessor_config(tmp_path):
    (tmp_path / "preprocessor_config.json").write_text(
        json.dumps({"size": {"height": 84, "width": 84}, "image_mean": [0.1, 0.2, 0.3], "image_std": [1, 1, 1]})
    )
    transform = Sam3ImageTransform.from_pretrained_dir(tmp_path)
    assert transform.image_size == 84 and tuple(transform.mean) == (0.1, 0.2, 0.3)
    pixels = transform(np.zeros((10, 10, 3), dtype=np.uint8))
    assert torch.allclose(pixels[0, :, 0, 0], torch.tensor([-0.1, -0.2, -0.3]))


def test_sam3_image_processor_needs_torchvision_and_ours_matches_it_when_present():
    """Why this package has its own preprocessing, checked on whichever machine runs it."""
    if not is_torchvision_available():
        # transformers' SAM 3 image processor imports torchvision at module level
        with pytest.raises(ImportError):
            importlib.import_module("transformers.models.sam3.image_processing_sam3")
        return
    from transformers import Sam3ImageProcessor

    rgb = textured_image(90, 120, seed=3)
    reference = Sam3ImageProcessor(size={"height": 112, "width": 112})(images=rgb, return_tensors="pt")
    ours = Sam3ImageTransform(image_size=112)(rgb)
    # theirs rounds the resized uint8 image; ours resizes in float
    assert (reference["pixel_values"] - ours).abs().max() < 2.5 / 255 / 0.5


def test_only_box_prompts_need_torchvision():
    """transformers' SAM 3 model uses torchvision in exactly one place: ROI-align for box prompts."""
    source = inspect.getsource(modeling_sam3)
    uses = [line.strip() for line in source.splitlines() if "torchvision." in line and "import" not in line]
    assert uses == ["sampled_features = torchvision.ops.roi_align("]
    assert "torchvision" in inspect.getsource(modeling_sam3.Sam3GeometryEncoder._encode_boxes)
    assert box_prompts_available() == is_torchvision_available()


def test_box_prompt_behaviour_matches_torchvision_presence(tiny_sam3):
    pixels = Sam3ImageTransform(image_size=112)(textured_image())
    ids = torch.tensor([[0, 5, 6, 1]])
    boxes = torch.tensor([[[0.5, 0.5, 0.4, 0.4]]])
    with torch.no_grad():
        if box_prompts_available():
            out = tiny_sam3(pixel_values=pixels, input_ids=ids, input_boxes=boxes)
            assert out.pred_masks.shape[:2] == (1, 8)
        else:
            with pytest.raises(NameError, match="torchvision"):
                tiny_sam3(pixel_values=pixels, input_ids=ids, input_boxes=boxes)
            # the same call without boxes runs: text prompts do not touch torchvision
            out = tiny_sam3(pixel_values=pixels, input_ids=ids)
            assert out.pred_masks.shape[:2] == (1, 8)


def test_layer_without_presence_row_equals_the_stock_layer_on_the_same_rows(tiny_sam3):
    """Our presence-free decoder step is the stock step; only the stock layer's forced row 0 is dropped."""
    layer = tiny_sam3.detr_decoder.layers[0]
    torch.manual_seed(1)
    rows, width, text_len, pixels = 5, 32, 3, 16
    hidden = torch.randn(1, rows + 1, width)
    query_pos = torch.randn(1, rows, width)
    text = torch.randn(1, text_len, width)
    vision, vision_pos = torch.randn(1, pixels, width), torch.randn(1, pixels, width)
    bias = torch.randn(1, 2, rows + 1, pixels)
    with torch.no_grad():
        stock = layer(hidden, query_pos=query_pos, text_features=text, vision_features=vision,
                      vision_pos_encoding=vision_pos, vision_cross_attn_mask=bias)
        ours = _decoder_layer_without_presence(
            layer, hidden, F.pad(query_pos, (0, 0, 1, 0)), text, vision, vision_pos, None, bias
        )
    assert torch.allclose(stock, ours, atol=1e-5)


def test_decode_with_queries_gives_one_mask_and_score_per_slot_and_backpropagates(tiny_sam3):
    pixels = Sam3ImageTransform(image_size=112)(textured_image())
    with torch.no_grad():
        vision = encode_image(tiny_sam3, pixels)
    queries = torch.randn(2, 6, 32, requires_grad=True)
    prompt = torch.randn(2, 4, 32)
    prompt_valid = torch.tensor([[True, True, False, False], [True, True, True, True]])
    out = decode_with_queries(tiny_sam3, vision, prompt, prompt_valid, queries)
    assert out.mask_logits.shape == (2, 6, 32, 32)
    assert out.slot_logits.shape == (2, 6) and out.boxes_xyxy.shape == (2, 6, 4)
    assert out.layer_slot_logits.shape == (2, 2, 6)
    assert ((out.boxes_xyxy >= 0) & (out.boxes_xyxy <= 1)).all()
    (out.mask_logits.mean() + out.slot_logits.mean()).backward()
    assert queries.grad is not None and queries.grad.abs().sum() > 0
    # a padded prompt token must not matter
    altered = prompt.clone()
    altered[0, 3] += 10.0
    again = decode_with_queries(tiny_sam3, vision, altered, prompt_valid, queries)
    assert torch.allclose(again.slot_logits[0], out.slot_logits[0], atol=1e-5)


def test_select_instances_thresholds_upsamples_and_suppresses_duplicates():
    logits = torch.full((4, 8, 8), -5.0)
    logits[0, :4, :4] = 5.0
    logits[1, :4, :4] = 5.0  # duplicate of slot 0
    logits[2, 4:, 4:] = 5.0
    logits[3, 4:, :4] = 5.0  # below the score threshold
    scores = torch.tensor([0.9, 0.8, 0.7, 0.2])
    found = select_instances(logits, scores, None, (30, 40), score_threshold=0.5, nms_iou_threshold=0.5)
    assert [i.slot for i in found] == [0, 2]
    assert found[0].mask.shape == (30, 40)
    assert found[0].mask[:14, :19].all() and not found[0].mask[16:, :].any()
    assert found[1].box[0] >= 19 and found[1].box[1] >= 14
    assert select_instances(logits, scores, None, (30, 40), score_threshold=0.95) == []
    no_nms = select_instances(logits, scores, None, (30, 40), score_threshold=0.5, nms_iou_threshold=None)
    assert [i.slot for i in no_nms] == [0, 1, 2]


def test_mask_nms_keeps_nested_parts_apart():
    body = torch.zeros(3, 10, 10, dtype=torch.bool)
    body[0, 1:9, 1:9] = True  # object
    body[1, 2:4, 2:4] = True  # small part inside it: low mask IoU, kept
    body[2, 1:9, 1:8] = True  # near copy of the object: suppressed
    keep = mask_nms(body, torch.tensor([0.9, 0.5, 0.8]), iou_threshold=0.7)
    assert keep.tolist() == [0, 1]


def test_segmenter_loads_a_saved_checkpoint_and_segments_a_text_prompt(tmp_path):
    directory = save_tiny_sam3(tmp_path / "sam3")
    segmenter = Sam3Segmenter.from_pretrained(directory)
    rgb = textured_image(45, 70)
    found = segmenter.segment_text(rgb, "mug handle", score_threshold=0.0, nms_iou_threshold=None)
    assert found, "with threshold 0 every non-empty slot is an instance"
    assert all(i.mask.shape == (45, 70) and i.mask.dtype == bool for i in found)
    assert [i.score for i in found] == sorted((i.score for i in found), reverse=True)
    # a second phrase on the same frame reuses the image encoding; the same phrase reuses the text state
    segmenter.segment_text(rgb, "the lid", score_threshold=0.0)
    segmenter.segment_text(textured_image(45, 70, seed=9), "mug handle", score_threshold=0.0)
    assert segmenter.image_cache.hits == 1 and segmenter.image_cache.misses == 2
    assert segmenter.text_cache.hits == 1 and segmenter.text_cache.misses == 2
    assert segmenter.segment_text(rgb, "mug handle", score_threshold=1.0) == []


def test_segmenter_reports_a_missing_checkpoint_clearly(tmp_path):
    with pytest.raises(CheckpointNotFoundError) as error:
        Sam3Segmenter.from_pretrained(tmp_path / "nowhere")
    message = str(error.value)
    assert "SAM 3" in message and "nowhere" in message and "sam3_checkpoint" in message
