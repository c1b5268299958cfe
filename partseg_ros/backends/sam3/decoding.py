"""SAM 3 detector passes: with externally supplied queries (InstructSAM) and with a text prompt.

InstructSAM does not change SAM 3's weights; it replaces the DETR decoder's
learned query embeddings by LLM-conditioned queries and drops the global
presence token, so that each slot's dot-product score is its own presence
score. transformers' ``Sam3DetrDecoder.forward`` always uses its own
``query_embed``, so ``decode_with_queries`` drives the decoder's layers and
heads itself, with the same per-layer steps (sine embedding of the reference
boxes, box relative-position bias, iterative box refinement). Nothing here
touches torchvision: only box prompts (``Sam3GeometryEncoder``) need
``torchvision.ops.roi_align``, and neither path uses them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from transformers import Sam3Model
from transformers.masking_utils import create_bidirectional_mask
from transformers.models.sam3.modeling_sam3 import box_cxcywh_to_xyxy, inverse_sigmoid


@dataclass
class Sam3QueryOutputs:
    """Per-slot outputs of one detector pass; Q slots per image."""

    mask_logits: torch.Tensor  # (B, Q, h, w) at the pixel decoder's resolution
    slot_logits: torch.Tensor  # (B, Q) last decoder layer, before the sigmoid
    boxes_xyxy: torch.Tensor  # (B, Q, 4) normalised to [0, 1]
    layer_slot_logits: torch.Tensor  # (L, B, Q) every decoder layer, for auxiliary losses


def encode_image(model: Sam3Model, pixel_values: torch.Tensor):
    """Vision backbone + FPN; the result can be reused for any number of prompts."""
    return model.get_vision_features(pixel_values=pixel_values)


def _decoder_layer_without_presence(
    layer,
    hidden: torch.Tensor,
    query_pos: torch.Tensor,
    text_features: torch.Tensor,
    vision_features: torch.Tensor,
    vision_pos_encoding: torch.Tensor,
    text_cross_attn_mask: Optional[torch.Tensor],
    vision_cross_attn_mask: Optional[torch.Tensor],
) -> torch.Tensor:
    """One ``Sam3DetrDecoderLayer`` step over the slots alone.

    The stock layer's forward assumes a presence token in row 0 (it pads the
    positional embedding for it); InstructSAM has no presence token, so the
    layer's own sub-modules are applied in the same order (self-attention,
    cross-attention to the prompt, to the image with the box bias, MLP; each
    residual and post-norm) without that row.
    """
    with_pos = hidden + query_pos
    attended, _ = layer.self_attn(query=with_pos, key=with_pos, value=hidden, attention_mask=None)
    hidden = layer.self_attn_layer_norm(hidden + layer.self_attn_dropout(attended))
    attended, _ = layer.text_cross_attn(
        query=hidden + query_pos, key=text_features, value=text_features, attention_mask=text_cross_attn_mask
    )
    hidden = layer.text_cross_attn_layer_norm(hidden + layer.text_cross_attn_dropout(attended))
    attended, _ = layer.vision_cross_attn(
        query=hidden + query_pos,
        key=vision_features + vision_pos_encoding,
        value=vision_features,
        attention_mask=vision_cross_attn_mask,
    )
    hidden = layer.vision_cross_attn_layer_norm(hidden + layer.vision_cross_attn_dropout(attended))
    hidden = layer.mlp_layer_norm(hidden + layer.mlp_dropout(layer.mlp(hidden)))
    return hidden


def _run_decoder_with_queries(
    model: Sam3Model,
    queries: torch.Tensor,
    encoder_outputs,
    prompt_mask: Optional[torch.Tensor],
) -> tuple[torch.Tensor, torch.Tensor]:
    decoder = model.detr_decoder
    batch_size, num_slots, _ = queries.shape
    if num_slots > decoder.reference_points.num_embeddings:
        raise ValueError(
            f"{num_slots} queries but the detector has {decoder.reference_points.num_embeddings} reference points"
        )
    reference = decoder.reference_points.weight[:num_slots].sigmoid().unsqueeze(0).expand(batch_size, -1, -1)
    text_cross_attn_mask = None
    if prompt_mask is not None:
        text_cross_attn_mask = create_bidirectional_mask(
            config=decoder.config,
            inputs_embeds=queries,
            attention_mask=prompt_mask,
            encoder_hidden_states=encoder_outputs.text_features,
        )
    spatial_shapes = encoder_outputs.spatial_shapes
    hidden = queries
    layer_states = []
    boxes = reference
    for layer in decoder.layers:
        query_pos = decoder.ref_point_head(decoder.position_encoding.encode_boxes(reference))
        position_bias = None
        if spatial_shapes is not None and spatial_shapes.shape[0] == 1:
            position_bias = decoder._get_rpb_matrix(reference, (spatial_shapes[0, 0], spatial_shapes[0, 1]))
        hidden = _decoder_layer_without_presence(
            layer,
            hidden,
            query_pos=query_pos,
            text_features=encoder_outputs.text_features,
            vision_features=encoder_outputs.last_hidden_state,
            vision_pos_encoding=encoder_outputs.pos_embeds_flattened,
            text_cross_attn_mask=text_cross_attn_mask,
            vision_cross_attn_mask=position_bias,
        )
        normed = decoder.output_layer_norm(hidden)
        boxes = (decoder.box_head(normed) + inverse_sigmoid(reference)).sigmoid()
        reference = boxes.detach()
        layer_states.append(normed)
    return torch.stack(layer_states), boxes


def decode_with_queries(
    model: Sam3Model,
    vision_embeds,
    prompt_features: torch.Tensor,
    prompt_mask: Optional[torch.Tensor],
    queries: torch.Tensor,
) -> Sam3QueryOutputs:
    """Run SAM 3's fusion encoder, DETR decoder and mask head with ``queries`` as the object queries.

    ``prompt_features`` (B, P, C) condition the image features (InstructSAM: the
    projected phrase tokens), ``prompt_mask`` (B, P) bool marks valid prompt
    tokens, ``queries`` (B, Q, C) are the projected instance slots.
    """
    fpn_states = vision_embeds.fpn_hidden_states[:-1]
    fpn_positions = vision_embeds.fpn_position_encoding[:-1]
    if prompt_features.shape[0] != queries.shape[0]:
        raise ValueError("prompt features and queries must have the same batch size")
    if fpn_states[-1].shape[0] != queries.shape[0]:
        fpn_states = tuple(f.expand(queries.shape[0], -1, -1, -1) for f in fpn_states)
        fpn_positions = tuple(p.expand(queries.shape[0], -1, -1, -1) for p in fpn_positions)
    encoder_outputs = model.detr_encoder(
        vision_features=[fpn_states[-1]],
        text_features=prompt_features,
        vision_pos_embeds=[fpn_positions[-1]],
        text_mask=prompt_mask,
    )
    layer_states, boxes = _run_decoder_with_queries(model, queries, encoder_outputs, prompt_mask)
    layer_slot_logits = model.dot_product_scoring(
        decoder_hidden_states=layer_states, text_features=encoder_outputs.text_features, text_mask=prompt_mask
    ).squeeze(-1)
    mask_outputs = model.mask_decoder(
        decoder_queries=layer_states[-1],
        backbone_features=list(fpn_states),
        encoder_hidden_states=encoder_outputs.last_hidden_state,
        prompt_features=prompt_features,
        prompt_mask=prompt_mask,
    )
    return Sam3QueryOutputs(
        mask_logits=mask_outputs.pred_masks,
        slot_logits=layer_slot_logits[-1],
        boxes_xyxy=box_cxcywh_to_xyxy(boxes),
        layer_slot_logits=layer_slot_logits,
    )


def decode_with_text(model: Sam3Model, vision_embeds, text_embeds, attention_mask: torch.Tensor):
    """SAM 3's own concept-prompt pass; returns (mask_logits, scores, boxes_xyxy) for one image.

    Scores combine each query's logit with the global presence token, as the
    released post-processing does.
    """
    outputs = model(vision_embeds=vision_embeds, text_embeds=text_embeds, attention_mask=attention_mask)
    scores = outputs.pred_logits.sigmoid()
    if outputs.presence_logits is not None:
        scores = scores * outputs.presence_logits.sigmoid()
    return outputs.pred_masks[0], scores[0], outputs.pred_boxes[0]

