"""A checkpoint laid out as the authors' code writes it (DCDmllm/InstructSAM@1ec37cc) loads strictly and runs.

The checkpoint comes from ``upstream_instructsam_layout``, which lists the
authors' parameter names by hand; partseg's own writer is not involved, so a
drift of partseg's model from the published layout (such as transformers'
presence token, which the authors removed) fails here.
"""

from __future__ import annotations

import pytest
import torch

from partseg_ros.backends.instructsam.checkpoint_layout import load_instructsam_checkpoint, published_state_dict
from partseg_ros.backends.instructsam.inference import InstructSamPredictor
from partseg_ros.backends.instructsam.presets import build_offline_tokenizer, qwen3_vl_config, sam3_config
from tiny_models_instructsam import TINY_QUERIES, single_torch_thread, textured_image, tiny_instructsam, tiny_llm_images
from upstream_instructsam_layout import (
    UPSTREAM_COMMIT,
    UPSTREAM_DETECTOR_PREFIX,
    UPSTREAM_SAM3_DROPPED,
    upstream_shapes,
    write_upstream_checkpoint,
)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    with single_torch_thread():
        yield


@pytest.fixture(scope="module")
def upstream(tmp_path_factory):
    tokenizer = build_offline_tokenizer()
    root = tmp_path_factory.mktemp("upstream")
    tensors = write_upstream_checkpoint(
        root / "InstructSAM-tiny", qwen3_vl_config("tiny", tokenizer), sam3_config("tiny"), tokenizer,
        num_queries=TINY_QUERIES, seed=5, sam3_dir=root / "sam3",
    )
    return root / "InstructSAM-tiny", tensors


def test_fixture_is_keyed_to_the_upstream_commit_and_lacks_what_the_authors_removed(upstream):
    assert UPSTREAM_COMMIT.startswith("1ec37cc")
    _, tensors = upstream
    detector = [k[len(UPSTREAM_DETECTOR_PREFIX):] for k in tensors if k.startswith(UPSTREAM_DETECTOR_PREFIX)]
    assert detector and not [k for k in detector if k.startswith(UPSTREAM_SAM3_DROPPED)]
    assert "detr_decoder.query_embed.weight" in detector


def test_upstream_checkpoint_loads_strictly_with_every_tensor_in_place(upstream):
    directory, tensors = upstream
    model, tokenizer, _ = load_instructsam_checkpoint(str(directory))  # strict: raises on any missing tensor
    assert not hasattr(model.sam3.detr_decoder, "presence_token")
    assert model.settings.num_queries == TINY_QUERIES
    state = published_state_dict(model)
    assert set(state) == set(tensors)
    for key in ("model.mask_queries", "model.mask_hidden_fcs.0.2.weight",
                UPSTREAM_DETECTOR_PREFIX + "detr_decoder.box_head.layer3.weight",
                UPSTREAM_DETECTOR_PREFIX + "vision_encoder.backbone.embeddings.position_embeddings",
                "model.language_model.layers.1.self_attn.q_proj.weight"):
        assert torch.equal(state[key], tensors[key]), key
    predictor = InstructSamPredictor(model, tokenizer, llm_images=tiny_llm_images(), presence_threshold=0.0)
    grounded = predictor.predict(textured_image(40, 56, seed=1), "grab the knob", phrase="knob").phrases[0]
    assert grounded.slot_scores.shape == (TINY_QUERIES,)
    assert all(instance.mask.shape == (40, 56) for instance in grounded.instances)


def test_partseg_writer_produces_exactly_the_upstream_key_set(tmp_path):
    """What partseg saves (fine-tuned weights) must load in the authors' code too: same names, same shapes."""
    model, tokenizer = tiny_instructsam(seed=2)
    ours = {k: v.shape for k, v in published_state_dict(model).items()}
    theirs = upstream_shapes(model.vlm.config, sam3_config("tiny"), TINY_QUERIES)
    assert sorted(set(ours) - set(theirs)) == [] and sorted(set(theirs) - set(ours)) == []
    assert all(ours[k] == theirs[k] for k in ours)
