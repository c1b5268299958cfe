"""Model sizes for InstructSAM: the published 2B architecture and a tiny one, plus an offline tokenizer.

The 2B values follow Qwen/Qwen3-VL-2B-Instruct's published config.json (the
paper's MLLM) and transformers' ``Sam3Config()`` defaults (facebook/sam3's
detector); K = 10 queries is the paper's choice (table 6). Random weights of
these shapes give real latency figures without any download. The tokenizer
built here is byte-level with Qwen's and InstructSAM's special tokens; it
tokenises differently from Qwen's (more tokens per word), which barely
changes the sequence length that image tokens dominate.
"""

from __future__ import annotations

from typing import Optional, Union

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast, Qwen3VLConfig, Sam3Config

from partseg_ros.backends.instructsam.model import (
    IM_END_TOKEN,
    IM_START_TOKEN,
    IMAGE_PAD_TOKEN,
    MASK_END_TOKEN,
    MASK_START_TOKEN,
    REF_END_TOKEN,
    REF_START_TOKEN,
    SEG_TOKEN,
    VISION_END_TOKEN,
    VISION_START_TOKEN,
    InstructSamModel,
    InstructSamSettings,
)

SPECIAL_TOKENS = (
    "<|endoftext|>", IM_START_TOKEN, IM_END_TOKEN, REF_START_TOKEN, REF_END_TOKEN, VISION_START_TOKEN,
    VISION_END_TOKEN, IMAGE_PAD_TOKEN, "<|video_pad|>", SEG_TOKEN, MASK_START_TOKEN, MASK_END_TOKEN,
)
SIZES = ("2B", "tiny")


def build_offline_tokenizer() -> PreTrainedTokenizerFast:
    """Byte-level tokenizer (256 byte tokens, no merges) with the special tokens InstructSAM needs."""
    byte_symbols = pre_tokenizers.ByteLevel.alphabet()
    vocab = {symbol: index for index, symbol in enumerate(sorted(byte_symbols))}
    core = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    core.decoder = decoders.ByteLevel()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, eos_token="<|im_end|>", pad_token="<|endoftext|>")
    tokenizer.add_special_tokens({"additional_special_tokens": list(SPECIAL_TOKENS)})
    return tokenizer


def qwen3_vl_config(size: str, tokenizer: PreTrainedTokenizerFast) -> Qwen3VLConfig:
    vocab = tokenizer.get_vocab()
    ids = dict(
        image_token_id=vocab[IMAGE_PAD_TOKEN],
        video_token_id=vocab["<|video_pad|>"],
        vision_start_token_id=vocab[VISION_START_TOKEN],
        vision_end_token_id=vocab[VISION_END_TOKEN],
    )
    if size == "2B":
        text = dict(
            vocab_size=151936, hidden_size=2048, intermediate_size=6144, num_hidden_layers=28,
            num_attention_heads=16, num_key_value_heads=8, head_dim=128, max_position_embeddings=262144,
            rope_parameters=dict(rope_type="default", rope_theta=5000000.0, mrope_section=[24, 20, 20],
                                 mrope_interleaved=True),
        )
        vision = dict(
            depth=24, hidden_size=1024, intermediate_size=4096, num_heads=16, out_hidden_size=2048,
            patch_size=16, spatial_merge_size=2, temporal_patch_size=2, num_position_embeddings=2304,
            deepstack_visual_indexes=[5, 11, 17],
        )
        return Qwen3VLConfig(text_config=text, vision_config=vision, tie_word_embeddings=True, **ids)
    if size == "tiny":
        text = dict(
            vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=2, head_dim=8, max_position_embeddings=2048,
            rope_parameters=dict(rope_type="default", rope_theta=10000.0, mrope_section=[2, 1, 1],
                                 mrope_interleaved=True),
        )
        vision = dict(
            depth=2, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=32, patch_size=16,
            spatial_merge_size=2, temporal_patch_size=2, num_position_embeddings=64, deepstack_visual_indexes=[0],
        )
        return Qwen3VLConfig(text_config=text, vision_config=vision, tie_word_embeddings=True, **ids)
    raise ValueError(f"unknown size {size!r}; choose one of {SIZES}")


def sam3_config(size: str) -> Sam3Config:
    if size == "2B":
        return Sam3Config()
    if size == "tiny":
        return Sam3Config(
            vision_config=dict(
                backbone_config=dict(
                    model_type="sam3_vit_model", hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                    num_attention_heads=2, image_size=112, patch_size=14, window_size=4, global_attn_indexes=[1],
                    pretrain_image_size=56,
                ),
                fpn_hidden_size=32,
                backbone_feature_sizes=[[32, 32], [16, 16], [8, 8]],
            ),
            text_config=dict(
                model_type="clip_text_model", vocab_size=64, hidden_size=32, intermediate_size=64,
                projection_dim=32, num_hidden_layers=1, num_attention_heads=2, max_position_embeddings=32,
                bos_token_id=0, eos_token_id=1, pad_token_id=1,
            ),
            geometry_encoder_config=dict(hidden_size=32, num_layers=1, num_attention_heads=2, intermediate_size=64),
            detr_encoder_config=dict(hidden_size=32, num_layers=1, num_attention_heads=2, intermediate_size=64),
            detr_decoder_config=dict(hidden_size=32, num_layers=2, num_queries=8, num_attention_heads=2,
                                     intermediate_size=64),
            mask_decoder_config=dict(hidden_size=32, num_attention_heads=2),
        )
    raise ValueError(f"unknown size {size!r}; choose one of {SIZES}")


def build_instructsam_model(
    size: str = "tiny", num_queries: int = 10, tokenizer: Optional[PreTrainedTokenizerFast] = None, seed: int = 0
) -> tuple[InstructSamModel, PreTrainedTokenizerFast]:
    """A randomly initialised InstructSAM of the given size and its (offline) tokenizer."""
    tokenizer = tokenizer or build_offline_tokenizer()
    vocab = tokenizer.get_vocab()
    sam3 = sam3_config(size)
    settings = InstructSamSettings(
        num_queries=num_queries,
        detector_hidden_size=sam3.detr_decoder_config.hidden_size,
        query_token_id=vocab[SEG_TOKEN],
        mask_start_token_id=vocab[MASK_START_TOKEN],
        mask_end_token_id=vocab[MASK_END_TOKEN],
        ref_start_token_id=vocab[REF_START_TOKEN],
        ref_end_token_id=vocab[REF_END_TOKEN],
    )
    torch.manual_seed(seed)
    return InstructSamModel(qwen3_vl_config(size, tokenizer), sam3, settings), tokenizer


def build_instructsam_for_benchmark(
    size: str = "2B",
    device: Union[str, torch.device] = "cpu",
    dtype: torch.dtype = torch.float32,
    num_queries: int = 10,
    max_pixels: Optional[int] = None,
):
    """An ``InstructSamPredictor`` with random weights at ``size`` for latency measurements.

    Random weights never close a phrase on their own, so time it with a forced
    phrase (``predictor.predict(rgb, instruction, phrase=...)``): one prefill,
    one query block and one SAM 3 pass, i.e. everything but the few greedy
    steps that generate the phrase.
    """
    from partseg_ros.backends.instructsam.inference import InstructSamPredictor
    from partseg_ros.backends.instructsam.inputs import LlmImageEncoder

    with torch.device(device):
        model, tokenizer = build_instructsam_model(size, num_queries=num_queries)
    model = model.to(device=device, dtype=dtype)
    images = LlmImageEncoder(max_pixels=max_pixels if max_pixels is not None else (None if size == "2B" else 64 * 64))
    return InstructSamPredictor(model, tokenizer, llm_images=images)
