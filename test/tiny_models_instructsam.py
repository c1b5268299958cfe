"""Tiny random InstructSAM and SAM 3 models with offline tokenizers, saved the way users' checkpoints are.

Shapes come from ``partseg_ros.backends.instructsam.presets`` ('tiny'): the
same classes and wiring as the published models, a few dozen channels wide,
so a full pass takes milliseconds on CPU.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast, Sam3Model

from partseg_ros.backends.instructsam.checkpoint_layout import save_instructsam_checkpoint
from partseg_ros.backends.instructsam.inputs import LlmImageEncoder
from partseg_ros.backends.instructsam.model import InstructSamModel
from partseg_ros.backends.instructsam.presets import build_instructsam_model, sam3_config

TINY_LLM_MAX_PIXELS = 64 * 64
TINY_QUERIES = 4


def tiny_instructsam(seed: int = 0) -> tuple[InstructSamModel, PreTrainedTokenizerFast]:
    model, tokenizer = build_instructsam_model("tiny", num_queries=TINY_QUERIES, seed=seed)
    return model.eval(), tokenizer


def tiny_llm_images() -> LlmImageEncoder:
    return LlmImageEncoder(max_pixels=TINY_LLM_MAX_PIXELS)


def save_tiny_instructsam(directory: Path, seed: int = 0) -> tuple[Path, InstructSamModel]:
    """A tiny random checkpoint in the published InstructSAM layout; returns its directory and the model."""
    model, tokenizer = tiny_instructsam(seed)
    save_instructsam_checkpoint(
        model, directory, tokenizer=tokenizer, image_processor_settings=tiny_llm_images().settings
    )
    return Path(directory), model


def tiny_clip_tokenizer() -> PreTrainedTokenizerFast:
    """Word-level stand-in for SAM 3's CLIP tokenizer: a handful of words, pad = end of text."""
    words = ["<|startoftext|>", "<|endoftext|>", "[UNK]", "the", "a", "mug", "handle", "red", "square", "cup",
             "lid", "knob", "drawer", "blade", "of"]
    core = Tokenizer(models.WordLevel(vocab={w: i for i, w in enumerate(words)}, unk_token="[UNK]"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(
        tokenizer_object=core, bos_token="<|startoftext|>", eos_token="<|endoftext|>", pad_token="<|endoftext|>",
        unk_token="[UNK]",
    )


def save_tiny_sam3(directory: Path, seed: int = 0) -> Path:
    """A tiny random ``Sam3Model`` and tokenizer saved with ``save_pretrained``, like facebook/sam3's layout."""
    torch.manual_seed(seed)
    model = Sam3Model(sam3_config("tiny")).eval()
    model.save_pretrained(str(directory))
    tiny_clip_tokenizer().save_pretrained(str(directory))
    return Path(directory)


def textured_image(height: int = 48, width: int = 64, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(height, width, 3), dtype=np.uint8)


@contextmanager
def single_torch_thread():
    """Tiny tensors run fastest on one thread, and far faster on a shared 2-core machine, where
    intra-op worker threads spin against other processes (measured: 0.2 s vs 7 s per training step)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
