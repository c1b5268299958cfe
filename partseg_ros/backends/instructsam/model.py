"""InstructSAM (arXiv 2605.26102): a Qwen3-VL language model drives SAM 3 through K instance queries.

The sequence the language model sees (paper eq. 2) is

    [image tokens; instruction; <ref_start> phrase <ref_end>; <mask_start>; q_1 .. q_K; <mask_end>]

where q_k are learnable embeddings written over K placeholder tokens. Text is
causal; the K query positions additionally see each other (hybrid attention,
section 3.2.2), so the slots can split the target set among themselves. The
final hidden states of the slots go through an MLP into SAM 3's detector
query space and replace SAM 3's learned object queries; the phrase tokens go
through a second MLP and condition SAM 3's fusion encoder (section 3.2.3).
Each slot's dot-product score against the phrase is its presence logit, so
thresholding gives a variable-size, possibly empty, instance set.

The query blocks see each other but not the ``<mask_end>`` after them, as in
the published training mask; the authors' generation code additionally lets
the slots see ``<mask_end>`` at inference, a one-token difference not
reproduced here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn as nn
from transformers import Qwen3VLConfig, Qwen3VLForConditionalGeneration, Sam3Config, Sam3Model

from partseg_ros.backends.sam3.decoding import Sam3QueryOutputs, decode_with_queries

# Special tokens of the published checkpoint (DCDmllm/InstructSAM, instructsam/constants.py).
SEG_TOKEN = "[SEG]"
REF_START_TOKEN = "<|object_ref_start|>"
REF_END_TOKEN = "<|object_ref_end|>"
MASK_START_TOKEN = "<|mask_start|>"
MASK_END_TOKEN = "<|mask_end|>"
# Qwen chat/vision tokens used to build the prompt.
IM_START_TOKEN = "<|im_start|>"
IM_END_TOKEN = "<|im_end|>"
VISION_START_TOKEN = "<|vision_start|>"
VISION_END_TOKEN = "<|vision_end|>"
IMAGE_PAD_TOKEN = "<|image_pad|>"


@dataclass
class InstructSamSettings:
    """InstructSAM's own hyper-parameters and special token ids (stored next to the Qwen3-VL config)."""

    num_queries: int = 10
    detector_hidden_size: int = 256
    query_token_id: int = -1
    mask_start_token_id: int = -1
    mask_end_token_id: int = -1
    ref_start_token_id: int = -1
    ref_end_token_id: int = -1
    max_phrase_tokens: int = 32
    bce_loss_weight: float = 2.0
    dice_loss_weight: float = 0.5
    presence_loss_weight: float = 1.0

    def validate(self) -> None:
        required = ("query_token_id", "mask_start_token_id", "mask_end_token_id", "ref_start_token_id",
                    "ref_end_token_id")
        for name in required:
            if getattr(self, name) < 0:
                raise ValueError(f"InstructSAM setting {name} is not set")


def projection_mlp(in_dim: int, out_dim: int) -> nn.Sequential:
    """Linear-ReLU-Linear, the shape of the paper's "lightweight MLP" (indices 0 and 2 hold weights)."""
    return nn.Sequential(nn.Linear(in_dim, in_dim), nn.ReLU(), nn.Linear(in_dim, out_dim), nn.Dropout(0.0))


def detector_without_text_encoder(config: Sam3Config) -> Sam3Model:
    """SAM 3 minus its CLIP text tower and its decoder presence token, as in the authors' detector.

    The text tower is replaced by projected LLM phrase tokens; the presence
    token is dropped (see ``drop_presence_token``).

    Building the 24-layer CLIP encoder only to delete it would cost seconds and
    ~1.4 GB at real size, so the model is built with a zero-layer text config of
    the same width (keeping ``text_projection``'s shape, which the published
    checkpoint carries) and the text tower is then removed.
    """
    data = config.to_dict()
    text = dict(data["text_config"])
    text.update(num_hidden_layers=0, vocab_size=1, max_position_embeddings=1, intermediate_size=1)
    text.pop("bos_token_id", None), text.pop("eos_token_id", None), text.pop("pad_token_id", None)
    data["text_config"] = text
    data.pop("transformers_version", None)
    model = Sam3Model(Sam3Config.from_dict(data))
    model.text_encoder = None
    drop_presence_token(model)
    return model


# The DETR decoder's global presence token, which the authors' copy of SAM 3 comments out
# (DCDmllm/InstructSAM@1ec37cc, instructsam/models/sam3/modeling_sam3.py, Sam3DetrDecoder.__init__).
PRESENCE_MODULES = ("presence_token", "presence_head", "presence_layer_norm")


def drop_presence_token(model: Sam3Model) -> None:
    """Remove the decoder's presence token and head, as the published InstructSAM detector has none.

    Why: InstructSAM scores each slot by its own dot product with the phrase
    (``decode_with_queries`` never runs the presence token), and the authors'
    checkpoint carries no presence tensors; keeping transformers' 9 presence
    parameters makes a strict load of the published weights fail.
    """
    for name in PRESENCE_MODULES:
        if hasattr(model.detr_decoder, name):
            delattr(model.detr_decoder, name)


def hybrid_attention_mask(
    query_positions: torch.Tensor,
    key_valid: Optional[torch.Tensor] = None,
    past_length: int = 0,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """4D additive mask (B, 1, L, past + L): causal for text, bidirectional inside each query block.

    ``query_positions`` (B, L) bool marks the instance-query tokens of the new
    chunk; each contiguous run of them is one block whose members see each
    other. ``key_valid`` (B, past + L) bool marks non-padding keys. Earlier
    (cached) positions are always visible. Allowed entries are 0, blocked ones
    the dtype's most negative value, the form the attention kernels add to scores.
    """
    batch, length = query_positions.shape
    device = query_positions.device
    rows = torch.arange(length, device=device)[:, None] + past_length
    cols = torch.arange(past_length + length, device=device)[None, :]
    allowed = (cols <= rows).unsqueeze(0).expand(batch, -1, -1).clone()
    starts = query_positions & ~torch.nn.functional.pad(query_positions, (1, 0))[:, :-1]
    block = torch.where(query_positions, torch.cumsum(starts.long(), dim=1), torch.zeros_like(starts, dtype=torch.long))
    same_block = (block[:, :, None] == block[:, None, :]) & (block[:, :, None] > 0)
    allowed[:, :, past_length:] |= same_block
    if key_valid is not None:
        allowed &= key_valid[:, None, :].bool()
        # a padding row that sees nothing would give NaNs; let it see itself
        diagonal = torch.zeros_like(allowed)
        diagonal[:, torch.arange(length, device=device), torch.arange(length, device=device) + past_length] = True
        allowed |= diagonal & ~allowed.any(-1, keepdim=True)
    mask = torch.zeros(allowed.shape, dtype=dtype, device=device)
    mask.masked_fill_(~allowed, torch.finfo(dtype).min)
    return mask[:, None]


@dataclass
class LanguageState:
    """Hidden states of one language-model pass plus what is needed to continue it."""

    hidden: torch.Tensor
    logits_last: torch.Tensor
    past_key_values: object
    next_position: torch.Tensor  # (B,) the text position the next token takes


class InstructSamModel(nn.Module):
    """Qwen3-VL + query bank + projections + SAM 3 detector, as one module."""

    def __init__(self, vlm_config: Qwen3VLConfig, sam3_config: Sam3Config, settings: InstructSamSettings) -> None:
        super().__init__()
        settings.validate()
        self.settings = settings
        self.vlm = Qwen3VLForConditionalGeneration(vlm_config)
        width = vlm_config.text_config.hidden_size
        # the authors start the bank at zeros; small random values break the symmetry between slots
        # when training from scratch, and a loaded checkpoint overwrites either
        self.mask_queries = nn.Parameter(torch.randn(settings.num_queries, width) * 0.02)
        self.query_projector = projection_mlp(width, settings.detector_hidden_size)
        self.phrase_projector = projection_mlp(width, settings.detector_hidden_size)
        # as published: the detector's reference points are sized to the query bank
        sam3_config.detr_decoder_config.num_queries = settings.num_queries
        self.sam3 = detector_without_text_encoder(sam3_config)
        if self.sam3.config.detr_decoder_config.hidden_size != settings.detector_hidden_size:
            raise ValueError("detector_hidden_size must equal SAM 3's DETR decoder width")

    # ----------------------------------------------------------------- language side
    @property
    def qwen(self):
        return self.vlm.model

    def encode_image_for_llm(self, pixel_values: torch.Tensor, image_grid_thw: torch.Tensor):
        """Qwen3-VL vision tower: merged patch embeddings and deepstack features for one image."""
        out = self.qwen.get_image_features(pixel_values, image_grid_thw, return_dict=True)
        embeds = torch.cat(out.pooler_output, dim=0)
        deepstack = [torch.cat(f, dim=0) for f in out.deepstack_features]
        return embeds, deepstack

    def embed_sequence(
        self, input_ids: torch.Tensor, image_embeds: Optional[torch.Tensor] = None
    ) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        """Token embeddings with image features scattered in and query slots written over their placeholders."""
        embeds = self.qwen.get_input_embeddings()(input_ids)
        image_positions = None
        if image_embeds is not None:
            image_positions = input_ids == self.vlm.config.image_token_id
            if int(image_positions.sum()) != image_embeds.shape[0]:
                count = int(image_positions.sum())
                raise ValueError(f"{count} image tokens but {image_embeds.shape[0]} image features")
            embeds = embeds.masked_scatter(image_positions[..., None], image_embeds.to(embeds.dtype))
        query_positions = input_ids == self.settings.query_token_id
        num_slots = int(query_positions.sum())
        if num_slots:
            if num_slots % self.settings.num_queries:
                raise ValueError(f"{num_slots} query placeholders is not a multiple of K={self.settings.num_queries}")
            bank = self.mask_queries.to(embeds.dtype).repeat(num_slots // self.settings.num_queries, 1)
            embeds = embeds.masked_scatter(query_positions[..., None], bank)
        return embeds, image_positions

    def position_ids(
        self, input_ids: torch.Tensor, image_grid_thw: Optional[torch.Tensor], attention_mask: Optional[torch.Tensor]
    ) -> torch.Tensor:
        """Qwen3-VL multimodal rotary positions (3, B, L); query slots count as text tokens."""
        token_types = (input_ids == self.vlm.config.image_token_id).int()
        positions, _ = self.qwen.get_rope_index(
            input_ids, mm_token_type_ids=token_types, image_grid_thw=image_grid_thw, attention_mask=attention_mask
        )
        return positions

    def run_language_model(
        self,
        input_ids: torch.Tensor,
        positions: torch.Tensor,
        image_embeds: Optional[torch.Tensor] = None,
        deepstack: Optional[list[torch.Tensor]] = None,
        key_valid: Optional[torch.Tensor] = None,
        past_key_values=None,
        use_cache: bool = False,
    ) -> LanguageState:
        """One pass of the decoder over ``input_ids`` (a new chunk when ``past_key_values`` is given)."""
        embeds, image_positions = self.embed_sequence(input_ids, image_embeds)
        past_length = past_key_values.get_seq_length() if past_key_values is not None else 0
        mask = hybrid_attention_mask(
            input_ids == self.settings.query_token_id, key_valid=key_valid, past_length=past_length, dtype=embeds.dtype
        )
        outputs = self.qwen.language_model(
            inputs_embeds=embeds,
            attention_mask=mask,
            position_ids=positions,
            past_key_values=past_key_values,
            use_cache=use_cache,
            visual_pos_masks=image_positions if image_embeds is not None else None,
            deepstack_visual_embeds=deepstack if image_embeds is not None else None,
        )
        hidden = outputs.last_hidden_state
        return LanguageState(
            hidden=hidden,
            logits_last=self.vlm.lm_head(hidden[:, -1]),
            past_key_values=outputs.past_key_values,
            next_position=positions.amax(dim=(0, 2)) + 1,
        )

    # ----------------------------------------------------------------- detector side
    def phrase_features(self, phrase_ids: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Projected phrase token embeddings (N, P, C) and their validity mask (N, P), P = max_phrase_tokens."""
        length = self.settings.max_phrase_tokens
        embedding = self.qwen.get_input_embeddings()
        device = embedding.weight.device
        ids = torch.zeros(len(phrase_ids), length, dtype=torch.long, device=device)
        valid = torch.zeros(len(phrase_ids), length, dtype=torch.bool, device=device)
        for row, tokens in enumerate(phrase_ids):
            tokens = tokens[:length]
            ids[row, : tokens.numel()] = tokens.to(device)
            valid[row, : tokens.numel()] = True
        # an empty phrase still needs one key to attend to; the paper's ablation uses token id 0
        valid[:, 0] = True
        return self.phrase_projector(embedding(ids)), valid

    def decode_slots(
        self, vision_embeds, query_states: torch.Tensor, phrase_ids: list[torch.Tensor]
    ) -> Sam3QueryOutputs:
        """Project slot states (N, K, D) and phrases into SAM 3 and decode masks, boxes and presence logits."""
        queries = self.query_projector(query_states).to(self.sam3.dtype)
        prompt, prompt_valid = self.phrase_features(phrase_ids)
        return decode_with_queries(self.sam3, vision_embeds, prompt.to(self.sam3.dtype), prompt_valid, queries)

    def encode_image_for_detector(self, pixel_values: torch.Tensor):
        return self.sam3.get_vision_features(pixel_values=pixel_values)

    def query_states(self, input_ids: torch.Tensor, hidden: torch.Tensor) -> torch.Tensor:
        """Final hidden states of every query block, (num_blocks, K, D), in sequence order."""
        positions = input_ids == self.settings.query_token_id
        return hidden[positions].reshape(-1, self.settings.num_queries, hidden.shape[-1])


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
