"""Architectures of the published checkpoints the backends load, as transformers configs.

Without hub access the tests and the latency benchmark still need the exact
shapes of the real models: tests shrink these configs (same family, same
wiring, fewer and thinner layers) and the benchmark instantiates them at full
size with random weights. Values follow the checkpoints' published
``config.json``; where transformers' defaults already equal the checkpoint,
only the differences are spelled out.
"""

from __future__ import annotations

from typing import Any, Callable

from transformers import (
    Dinov2Config,
    GroundingDinoConfig,
    LlamaConfig,
    Owlv2Config,
    PretrainedConfig,
    SamConfig,
)


def _dinov2(hidden: int, layers: int, heads: int) -> Dinov2Config:
    return Dinov2Config(
        hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads, image_size=518, patch_size=14
    )


def _sam(hidden: int, layers: int, heads: int, global_attn: list[int]) -> SamConfig:
    return SamConfig(
        vision_config=dict(
            hidden_size=hidden,
            num_hidden_layers=layers,
            num_attention_heads=heads,
            global_attn_indexes=global_attn,
            mlp_dim=hidden * 4,
            output_channels=256,
            image_size=1024,
            patch_size=16,
            window_size=14,
        )
    )


def _owlv2_base() -> Owlv2Config:
    return Owlv2Config(
        text_config=dict(hidden_size=512, intermediate_size=2048, num_hidden_layers=12, num_attention_heads=8),
        vision_config=dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
                           image_size=960, patch_size=16),
        projection_dim=512,
    )


def _owlv2_large() -> Owlv2Config:
    return Owlv2Config(
        text_config=dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12),
        vision_config=dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
                           image_size=1008, patch_size=14),
        projection_dim=768,
    )


def _vicuna_7b() -> LlamaConfig:
    # LISA-7B (which PISA extends) is LLaVA on Vicuna-7B: a LLaMA-7B decoder.
    return LlamaConfig(
        vocab_size=32000,
        hidden_size=4096,
        intermediate_size=11008,
        num_hidden_layers=32,
        num_attention_heads=32,
        num_key_value_heads=32,
        max_position_embeddings=4096,
        rms_norm_eps=1e-5,
    )


def _tinyllama() -> LlamaConfig:
    # A 1.1B model of the same family, for robots without room for 7B.
    return LlamaConfig(
        vocab_size=32000,
        hidden_size=2048,
        intermediate_size=5632,
        num_hidden_layers=22,
        num_attention_heads=32,
        num_key_value_heads=4,
        max_position_embeddings=2048,
        rms_norm_eps=1e-5,
    )


REFERENCE_CONFIGS: dict[str, Callable[[], PretrainedConfig]] = {
    "facebook/dinov2-small": lambda: _dinov2(384, 12, 6),
    "facebook/dinov2-base": lambda: _dinov2(768, 12, 12),
    "facebook/dinov2-large": lambda: _dinov2(1024, 24, 16),
    "facebook/sam-vit-base": lambda: _sam(768, 12, 12, [2, 5, 8, 11]),
    "facebook/sam-vit-large": lambda: _sam(1024, 24, 16, [5, 11, 17, 23]),
    "facebook/sam-vit-huge": lambda: _sam(1280, 32, 16, [7, 15, 23, 31]),
    "google/owlv2-base-patch16-ensemble": _owlv2_base,
    "google/owlv2-large-patch14-ensemble": _owlv2_large,
    # transformers' GroundingDinoConfig defaults are grounding-dino-tiny (Swin-T + BERT-base).
    "IDEA-Research/grounding-dino-tiny": GroundingDinoConfig,
    "lmsys/vicuna-7b-v1.5": _vicuna_7b,
    "TinyLlama/TinyLlama-1.1B-Chat-v1.0": _tinyllama,
}


def reference_config(hub_id: str) -> PretrainedConfig:
    """A fresh config object with the published architecture of ``hub_id``."""
    try:
        return REFERENCE_CONFIGS[hub_id]()
    except KeyError:
        raise KeyError(f"no reference architecture for {hub_id!r}; known: {sorted(REFERENCE_CONFIGS)}") from None


def shrink(config: PretrainedConfig, **overrides: Any) -> PretrainedConfig:
    """Copy of ``config`` with attributes overridden; nested sub-configs take dicts, e.g. vision_config={...}."""
    data = config.to_dict()
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key] = {**data[key], **value}
        else:
            data[key] = value
    data.pop("transformers_version", None)
    for derived in ("stage_names", "out_features", "out_indices"):  # backbone bookkeeping recomputed from depth
        if derived in data and "num_hidden_layers" in overrides:
            data.pop(derived)
    return type(config).from_dict(data)
