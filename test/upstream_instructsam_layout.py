"""The parameter layout of the authors' InstructSAM checkpoints, written down from their code.

Source: github.com/DCDmllm/InstructSAM at commit ``UPSTREAM_COMMIT``, read by
hand (nothing copied):

* ``instructsam/models/instructsam.py``: ``InstructSAMForConditionalGeneration``
  is transformers' ``Qwen3VLForConditionalGeneration`` whose inner model
  (``model.``) also holds ``mask_queries``, ``text_hidden_fcs.0`` and
  ``mask_hidden_fcs.0`` (Linear, ReLU, Linear, Dropout: indices 0 and 2 carry
  weights) and ``grounding_model`` (``segmentation_decoder.py``: a
  ``SegmentationDecoder`` whose ``.model`` is their own ``Sam3Model``);
* ``instructsam/models/sam3/modeling_sam3.py``: their ``Sam3Model`` has no
  ``text_encoder`` (commented out) and their ``Sam3DetrDecoder`` has no
  ``presence_token``, ``presence_head`` or ``presence_layer_norm`` (commented out);
  everything else keeps transformers' names.

The lists below are those module names. ``{}`` stands for a layer index (the
number of layers comes from the config). This file deliberately does not use
partseg's checkpoint writer: a checkpoint built from it catches partseg's
model drifting away from the authors' layout. Tensor shapes are taken from
transformers' stock classes at the same config, because the authors' classes
keep transformers' shapes for every tensor they keep.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Optional

import torch
from safetensors.torch import save_file
from transformers import PreTrainedTokenizerFast, Qwen3VLConfig, Qwen3VLForConditionalGeneration, Sam3Config, Sam3Model

UPSTREAM_REPO = "DCDmllm/InstructSAM"
UPSTREAM_COMMIT = "1ec37cc9c3435474749dd7883665d955f4848773"

_ATTN = ("q_proj", "k_proj", "v_proj", "o_proj")


def _linear(prefix: str) -> list[str]:
    return [f"{prefix}.weight", f"{prefix}.bias"]


def _attention(prefix: str) -> list[str]:
    return [name for proj in _ATTN for name in _linear(f"{prefix}.{proj}")]


def _mlp(prefix: str, layers: int) -> list[str]:
    """Their ``Sam3DecoderMLP``: ``layer1`` .. ``layerN``."""
    return [name for i in range(1, layers + 1) for name in _linear(f"{prefix}.layer{i}")]


def _encoder_layer(prefix: str) -> list[str]:
    """``Sam3GeometryEncoderLayer`` / ``Sam3DetrEncoderLayer``: the same four blocks."""
    return (
        _attention(f"{prefix}.self_attn") + _attention(f"{prefix}.cross_attn")
        + _linear(f"{prefix}.mlp.fc1") + _linear(f"{prefix}.mlp.fc2")
        + [n for k in (1, 2, 3) for n in _linear(f"{prefix}.layer_norm{k}")]
    )


# Their Sam3Model, one entry per parameter; "{}" is a repeated layer's index.
UPSTREAM_SAM3_DETECTOR = (
    # vision_encoder: ViT backbone + FPN neck
    ["vision_encoder.backbone.embeddings.patch_embeddings.projection.weight",
     "vision_encoder.backbone.embeddings.position_embeddings"]
    + _linear("vision_encoder.backbone.layer_norm")
    + _attention("vision_encoder.backbone.layers.{}.attention")
    + _linear("vision_encoder.backbone.layers.{}.layer_norm1")
    + _linear("vision_encoder.backbone.layers.{}.layer_norm2")
    + _linear("vision_encoder.backbone.layers.{}.mlp.fc1") + _linear("vision_encoder.backbone.layers.{}.mlp.fc2")
    + _linear("vision_encoder.neck.fpn_layers.{}.proj1") + _linear("vision_encoder.neck.fpn_layers.{}.proj2")
    + _linear("vision_encoder.neck.fpn_layers.{}.scale_layers.{}")
    # text_projection stays although the CLIP tower is gone
    + _linear("text_projection")
    # geometry encoder (box/point prompts)
    + ["geometry_encoder.label_embed.weight", "geometry_encoder.cls_embed.weight"]
    + _linear("geometry_encoder.boxes_direct_project") + _linear("geometry_encoder.boxes_pool_project")
    + _linear("geometry_encoder.boxes_pos_enc_project") + _linear("geometry_encoder.vision_layer_norm")
    + _linear("geometry_encoder.final_proj") + _linear("geometry_encoder.prompt_layer_norm")
    + _encoder_layer("geometry_encoder.layers.{}") + _linear("geometry_encoder.output_layer_norm")
    # DETR encoder
    + _encoder_layer("detr_encoder.layers.{}")
    # DETR decoder: NO presence_token / presence_head / presence_layer_norm
    + _attention("detr_decoder.layers.{}.self_attn") + _linear("detr_decoder.layers.{}.self_attn_layer_norm")
    + _attention("detr_decoder.layers.{}.text_cross_attn")
    + _linear("detr_decoder.layers.{}.text_cross_attn_layer_norm")
    + _attention("detr_decoder.layers.{}.vision_cross_attn")
    + _linear("detr_decoder.layers.{}.vision_cross_attn_layer_norm")
    + _linear("detr_decoder.layers.{}.mlp.fc1") + _linear("detr_decoder.layers.{}.mlp.fc2")
    + _linear("detr_decoder.layers.{}.mlp_layer_norm")
    + _linear("detr_decoder.output_layer_norm") + _mlp("detr_decoder.box_head", 3)
    + ["detr_decoder.query_embed.weight", "detr_decoder.reference_points.weight"]
    + _mlp("detr_decoder.ref_point_head", 2) + _mlp("detr_decoder.box_rpb_embed_x", 2)
    + _mlp("detr_decoder.box_rpb_embed_y", 2)
    # mask decoder
    + _linear("mask_decoder.pixel_decoder.conv_layers.{}") + _linear("mask_decoder.pixel_decoder.norms.{}")
    + _linear("mask_decoder.mask_embedder.layers.{}") + _linear("mask_decoder.instance_projection")
    + _linear("mask_decoder.semantic_projection") + _attention("mask_decoder.prompt_cross_attn")
    + _linear("mask_decoder.prompt_cross_attn_norm")
    # scoring
    + _mlp("dot_product_scoring.text_mlp", 2) + _linear("dot_product_scoring.text_mlp_out_norm")
    + _linear("dot_product_scoring.text_proj") + _linear("dot_product_scoring.query_proj")
)
# What the authors commented out of transformers' Sam3Model (so their checkpoint lacks it).
UPSTREAM_SAM3_DROPPED = ("text_encoder.", "detr_decoder.presence_token.", "detr_decoder.presence_head.",
                         "detr_decoder.presence_layer_norm.")

# The heads InstructSAM adds to the Qwen3-VL inner model.
UPSTREAM_INSTRUCTSAM_HEADS = (
    ["model.mask_queries"]
    + _linear("model.text_hidden_fcs.0.0") + _linear("model.text_hidden_fcs.0.2")
    + _linear("model.mask_hidden_fcs.0.0") + _linear("model.mask_hidden_fcs.0.2")
)
UPSTREAM_DETECTOR_PREFIX = "model.grounding_model.model."

# transformers' Qwen3VLForConditionalGeneration (which the authors subclass), tied lm_head left out.
UPSTREAM_QWEN3_VL = (
    ["model.visual.patch_embed.proj.weight", "model.visual.patch_embed.proj.bias", "model.visual.pos_embed.weight"]
    + _linear("model.visual.blocks.{}.norm1") + _linear("model.visual.blocks.{}.norm2")
    + _linear("model.visual.blocks.{}.attn.qkv") + _linear("model.visual.blocks.{}.attn.proj")
    + _linear("model.visual.blocks.{}.mlp.linear_fc1") + _linear("model.visual.blocks.{}.mlp.linear_fc2")
    + _linear("model.visual.merger.norm") + _linear("model.visual.merger.linear_fc1")
    + _linear("model.visual.merger.linear_fc2")
    + _linear("model.visual.deepstack_merger_list.{}.norm")
    + _linear("model.visual.deepstack_merger_list.{}.linear_fc1")
    + _linear("model.visual.deepstack_merger_list.{}.linear_fc2")
    + ["model.language_model.embed_tokens.weight", "model.language_model.norm.weight"]
    + [f"model.language_model.layers.{{}}.{name}.weight" for name in (
        "input_layernorm", "post_attention_layernorm", "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
        "self_attn.o_proj", "self_attn.q_norm", "self_attn.k_norm", "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj")]
)


def _pattern(template: str) -> re.Pattern:
    return re.compile("^" + re.escape(template).replace(r"\{\}", r"\d+") + "$")


def _expand(templates: list[str], stock: dict[str, torch.Size]) -> dict[str, torch.Size]:
    """Every stock key matched by an upstream template, with its shape; each template must match."""
    found: dict[str, torch.Size] = {}
    for template in templates:
        pattern = _pattern(template)
        hits = {k: v for k, v in stock.items() if pattern.match(k)}
        if not hits:
            raise AssertionError(f"upstream name {template!r} has no tensor in transformers' class at this config")
        found.update(hits)
    return found


def upstream_shapes(vlm_config: Qwen3VLConfig, sam3_config: Sam3Config, num_queries: int) -> dict[str, torch.Size]:
    """Every tensor name of an upstream checkpoint at these configs, with its shape."""
    sam3_config = Sam3Config.from_dict(sam3_config.to_dict())
    sam3_config.detr_decoder_config.num_queries = num_queries  # the authors size the decoder to K
    with torch.device("meta"):
        detector = Sam3Model(sam3_config)
        vlm = Qwen3VLForConditionalGeneration(vlm_config)
    shapes = _expand(UPSTREAM_QWEN3_VL, {k: v.shape for k, v in vlm.state_dict().items()})
    detector_shapes = {k: v.shape for k, v in detector.named_parameters()}
    for key, shape in _expand(UPSTREAM_SAM3_DETECTOR, detector_shapes).items():
        shapes[UPSTREAM_DETECTOR_PREFIX + key] = shape
    width, out_dim = vlm_config.text_config.hidden_size, sam3_config.detr_decoder_config.hidden_size
    for head in ("text_hidden_fcs", "mask_hidden_fcs"):
        shapes[f"model.{head}.0.0.weight"] = torch.Size([width, width])
        shapes[f"model.{head}.0.0.bias"] = torch.Size([width])
        shapes[f"model.{head}.0.2.weight"] = torch.Size([out_dim, width])
        shapes[f"model.{head}.0.2.bias"] = torch.Size([out_dim])
    shapes["model.mask_queries"] = torch.Size([num_queries, width])
    assert set(UPSTREAM_INSTRUCTSAM_HEADS) <= set(shapes)
    return shapes


def write_upstream_checkpoint(
    directory: Path,
    vlm_config: Qwen3VLConfig,
    sam3_config: Sam3Config,
    tokenizer: PreTrainedTokenizerFast,
    num_queries: int,
    seed: int = 0,
    sam3_dir: Optional[Path] = None,
) -> dict[str, torch.Tensor]:
    """A checkpoint directory as the authors' ``save_pretrained`` lays it out; returns the tensors written.

    config.json is the Qwen3-VL config plus the authors' fields (``max_seg_nums``,
    ``out_dim``, the ``*_token_index`` ids, ``seg_encoder``/``seg_decoder`` and
    ``mask_decoder_model``, the path of the SAM 3 checkpoint their loader reads
    the detector config from), with no partseg-only entry.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    sam3_dir = Path(sam3_dir) if sam3_dir is not None else directory.parent / "sam3_base"
    sam3_dir.mkdir(parents=True, exist_ok=True)
    sam3_data = sam3_config.to_dict()
    sam3_data.pop("transformers_version", None)
    (sam3_dir / "config.json").write_text(json.dumps(sam3_data))
    vocab = tokenizer.get_vocab()
    config = vlm_config.to_dict()
    config.pop("transformers_version", None)
    config.update(
        architectures=["InstructSAMForConditionalGeneration"],
        max_seg_nums=num_queries,
        out_dim=sam3_config.detr_decoder_config.hidden_size,
        seg_token_index=vocab["[SEG]"],
        seg_start_token_index=vocab["<|mask_start|>"],
        seg_end_token_index=vocab["<|mask_end|>"],
        ref_start_token_index=vocab["<|object_ref_start|>"],
        ref_end_token_index=vocab["<|object_ref_end|>"],
        seg_encoder="sam3",
        seg_decoder="sam3",
        mask_decoder_model=str(sam3_dir),
        bce_loss_weight=2.0,
        dice_loss_weight=0.5,
        cls_loss_weight=1.0,
    )
    (directory / "config.json").write_text(json.dumps(config, indent=2))
    generator = torch.Generator().manual_seed(seed)
    tensors = {
        key: (torch.randn(tuple(shape), generator=generator) * 0.05).contiguous()
        for key, shape in sorted(upstream_shapes(vlm_config, sam3_config, num_queries).items())
    }
    save_file(tensors, str(directory / "model.safetensors"), metadata={"format": "pt"})
    tokenizer.save_pretrained(str(directory))
    return tensors
