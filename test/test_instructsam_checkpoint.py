"""Checkpoints in the published InstructSAM layout: key names, config fields, loading through the backend.

The published weights cannot be downloaded here; these tests write a tiny
random checkpoint with the published key names (read from the authors'
code, see checkpoint_layout's docstring) and load it the way users will.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from partseg_ros.backends.base import CheckpointNotFoundError
from partseg_ros.backends.instructsam.checkpoint_layout import (
    from_published_key,
    load_instructsam_checkpoint,
    to_published_key,
)
from partseg_ros.backends.instructsam.inference import InstructSamPredictor
from partseg_ros.backends.registry import create_backend
from partseg_ros.types import GroundingRequest
from tiny_models_instructsam import (
    TINY_QUERIES,
    save_tiny_instructsam,
    single_torch_thread,
    textured_image,
    tiny_llm_images,
)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    with single_torch_thread():
        yield


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    return save_tiny_instructsam(tmp_path_factory.mktemp("instructsam") / "ckpt", seed=3)


def test_saved_checkpoint_uses_the_published_key_names_and_config_fields(saved):
    directory, model = saved
    keys = set(load_file(str(directory / "model.safetensors")))
    for expected in (
        "model.mask_queries",
        "model.mask_hidden_fcs.0.0.weight",
        "model.mask_hidden_fcs.0.2.bias",
        "model.text_hidden_fcs.0.0.weight",
        "model.text_hidden_fcs.0.2.weight",
        "model.language_model.embed_tokens.weight",
        "model.language_model.layers.0.self_attn.q_proj.weight",
        "model.visual.patch_embed.proj.weight",
        "model.grounding_model.model.vision_encoder.backbone.embeddings.patch_embeddings.projection.weight",
        "model.grounding_model.model.detr_decoder.query_embed.weight",
        "model.grounding_model.model.detr_decoder.reference_points.weight",
        "model.grounding_model.model.dot_product_scoring.query_proj.weight",
        "model.grounding_model.model.text_projection.weight",
    ):
        assert expected in keys, expected
    assert not any(k.startswith("model.grounding_model.model.text_encoder.") for k in keys), "no CLIP tower"
    assert "lm_head.weight" not in keys  # tied to the embeddings, as in Qwen3-VL-2B
    config = json.loads((directory / "config.json").read_text())
    assert config["model_type"] == "qwen3_vl"
    assert config["max_seg_nums"] == TINY_QUERIES and config["out_dim"] == 32
    vocab = json.loads((directory / "tokenizer.json").read_text())["added_tokens"]
    by_name = {t["content"]: t["id"] for t in vocab}
    assert config["seg_token_index"] == by_name["[SEG]"]
    assert config["seg_start_token_index"] == by_name["<|mask_start|>"]
    assert config["ref_end_token_index"] == by_name["<|object_ref_end|>"]


def test_key_mapping_round_trips_and_accepts_older_qwen_prefixes():
    for ours in ("vlm.model.visual.blocks.0.attn.qkv.weight", "mask_queries", "query_projector.2.bias",
                 "sam3.mask_decoder.instance_projection.weight", "vlm.lm_head.weight"):
        assert from_published_key(to_published_key(ours)) == ours
    assert from_published_key("visual.merger.linear_fc1.weight") == "vlm.model.visual.merger.linear_fc1.weight"
    assert (
        from_published_key("model.layers.3.mlp.up_proj.weight")
        == "vlm.model.language_model.layers.3.mlp.up_proj.weight"
    )
    assert from_published_key("optimizer.state") is None


def test_loaded_checkpoint_reproduces_the_saved_model(saved):
    directory, original = saved
    loaded, tokenizer, _ = load_instructsam_checkpoint(str(directory))
    for name, tensor in original.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor), name
    rgb = textured_image(40, 56, seed=8)
    outputs = []
    for model in (original, loaded):
        predictor = InstructSamPredictor(model, tokenizer, llm_images=tiny_llm_images(), presence_threshold=0.0)
        grounded = predictor.predict(rgb, "grab the knob", phrase="knob").phrases[0]
        outputs.append((grounded.slot_scores, [i.mask for i in grounded.instances]))
    assert np.allclose(outputs[0][0], outputs[1][0], atol=1e-6)
    assert all(np.array_equal(a, b) for a, b in zip(outputs[0][1], outputs[1][1]))


def test_backend_loads_from_a_directory_and_answers_at_input_resolution(saved):
    directory, _ = saved
    backend = create_backend("instructsam", checkpoint=str(directory), device="cpu", presence_threshold=0.0,
                             nms_iou_threshold=None)
    assert not backend.loaded
    backend.warmup()  # loads, runs once, and leaves no cached frame behind
    assert backend.loaded and len(backend.predictor.llm_image_cache) == 0
    rgb = textured_image(50, 66, seed=2)
    result = backend.ground_with_phrase(GroundingRequest(rgb=rgb, instruction="open the drawer"), "drawer")
    assert backend.loaded and result.backend == "instructsam"
    assert result.instances and all(i.mask.shape == (50, 66) for i in result.instances)
    assert result.part_label == "drawer" and "total" in result.timings_ms
    scores = [i.score for i in result.instances]
    assert scores == sorted(scores, reverse=True)
    hint = np.zeros((50, 66), dtype=bool)
    hint[10:30, 20:40] = True
    hinted = backend.ground_with_phrase(
        GroundingRequest(rgb=rgb, instruction="open the drawer", object_mask_hint=hint), "drawer"
    )
    assert all(not (i.mask & ~hint).any() for i in hinted.instances)
    # no phrase given: the random model generates text; whatever it says, the answer is well formed
    free = backend.ground(GroundingRequest(rgb=rgb, instruction="open the drawer"))
    assert all(i.mask.shape == (50, 66) for i in free.instances)


def test_missing_checkpoint_error_names_the_checkpoint_and_how_to_get_it(tmp_path):
    backend = create_backend("instructsam", checkpoint="CircleRadon/InstructSAM-2B", device="cpu")
    with pytest.raises(CheckpointNotFoundError) as error:
        backend.load()
    message = str(error.value)
    assert "InstructSAM" in message and "CircleRadon/InstructSAM-2B" in message
    assert "checkpoint" in message and "download" in message
    with pytest.raises(CheckpointNotFoundError, match="no such directory"):
        load_instructsam_checkpoint(str(tmp_path / "absent"))


def test_strict_loading_names_missing_and_unexpected_tensors(saved, tmp_path):
    directory, _ = saved
    broken = tmp_path / "broken"
    broken.mkdir()
    for item in directory.iterdir():
        if item.name != "model.safetensors":
            (broken / item.name).write_bytes(item.read_bytes())
    state = load_file(str(directory / "model.safetensors"))
    state["model.mask_hidden_fcs.0.9.weight"] = state.pop("model.mask_hidden_fcs.0.2.weight")
    save_file(state, str(broken / "model.safetensors"))
    with pytest.raises(ValueError, match=r"query_projector\.2\.weight") as error:
        load_instructsam_checkpoint(str(broken))
    assert "unexpected" in str(error.value)
    model, _, _ = load_instructsam_checkpoint(str(broken), strict=False)
    assert model.query_projector[0].weight.shape == (32, 32)


def test_token_ids_in_config_must_agree_with_the_tokenizer(saved, tmp_path):
    directory, _ = saved
    clash = tmp_path / "clash"
    clash.mkdir()
    for item in directory.iterdir():
        (clash / item.name).write_bytes(item.read_bytes())
    config = json.loads((clash / "config.json").read_text())
    config["seg_token_index"] += 1
    (clash / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="seg|query_token_id"):
        load_instructsam_checkpoint(str(clash))
