"""Token sequences and image tensors for InstructSAM's language model.

The prompt follows the Qwen3-VL chat layout for one user turn holding an
image then the instruction (what the published model was trained on); the
answer layout ``<ref_start> phrase <ref_end> <mask_start> [SEG]*K <mask_end>``
is the one of the published training data. Images go through transformers'
PIL-backend Qwen2-VL image processor (the default one needs torchvision) with
Qwen3-VL's patch 16, merge 2 and 0.5/0.5 normalisation.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

import numpy as np
import torch
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

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
)

# Qwen3-VL's preprocessor_config.json values (patch 16, merge 2, mean/std 0.5).
QWEN3_VL_IMAGE_DEFAULTS = {
    "patch_size": 16,
    "temporal_patch_size": 2,
    "merge_size": 2,
    "image_mean": [0.5, 0.5, 0.5],
    "image_std": [0.5, 0.5, 0.5],
    "size": {"shortest_edge": 65536, "longest_edge": 16777216},
}
# What the authors' evaluation sends (DCDmllm/InstructSAM@1ec37cc, evaluation/eval_reasonseg.py,
# eval_roborefit.py, eval_inst2seg.py): sentences get a suffix, bare phrases a template.
SENTENCE_SUFFIX = "Please output the segmentation mask."
PHRASE_TEMPLATE = "Please segment the '{}' in the image."
PROMPT_STYLES = ("upstream", "sentence", "phrase", "raw")
# Words that open a noun phrase ("the handle of the mug") rather than a request ("pick up the mug").
_PHRASE_OPENERS = frozenset(
    "the a an this that these those my your his her its our their some any left right top bottom front back".split()
)
_PROCESSOR_KEYS = ("patch_size", "temporal_patch_size", "merge_size", "image_mean", "image_std", "size")
# The special tokens prompts and answers are built from: a tokenizer without one of them cannot serve the model.
PROMPT_TOKENS = (IM_START_TOKEN, IM_END_TOKEN, VISION_START_TOKEN, VISION_END_TOKEN, IMAGE_PAD_TOKEN,
                 REF_START_TOKEN, REF_END_TOKEN, MASK_START_TOKEN, MASK_END_TOKEN, SEG_TOKEN)


@dataclass
class LlmImage:
    """One image as the Qwen3-VL vision tower wants it."""

    pixel_values: torch.Tensor  # (num_patches, C * temporal * patch * patch)
    grid_thw: torch.Tensor  # (1, 3)
    num_tokens: int  # placeholders in the prompt after patch merging


def image_processor_settings(directory: Optional[Union[str, Path]] = None) -> dict:
    """Qwen image-processor settings: the checkpoint's preprocessor_config.json over Qwen3-VL's defaults."""
    settings = json.loads(json.dumps(QWEN3_VL_IMAGE_DEFAULTS))
    if directory is not None:
        path = Path(directory) / "preprocessor_config.json"
        if path.is_file():
            data = json.loads(path.read_text())
            settings.update({k: data[k] for k in _PROCESSOR_KEYS if k in data})
            if "max_pixels" in data:
                settings["size"]["longest_edge"] = int(data["max_pixels"])
            if "min_pixels" in data:
                settings["size"]["shortest_edge"] = int(data["min_pixels"])
    return settings


def is_bare_phrase(instruction: str) -> bool:
    """True for a noun phrase ("the mug's handle", "knife blade"), False for a sentence or request.

    The authors' benchmarks say which queries are sentences; a robot's
    instruction does not, so: text ending in . ? ! is a sentence; otherwise one
    or two words, or a phrase opening with a determiner or a position word, is
    a bare phrase; anything else ("pick up the mug") is a sentence.
    """
    text = " ".join(instruction.split())
    if not text or text[-1] in ".?!":
        return False
    words = re.findall(r"[A-Za-z']+", text.lower())
    return len(words) <= 2 or (bool(words) and words[0] in _PHRASE_OPENERS)


def instruction_prompt(instruction: str, style: str = "upstream") -> str:
    """The user text sent to the model, in the form the published model was evaluated with.

    ``upstream``: sentences get " Please output the segmentation mask." appended
    and bare phrases become "Please segment the '<phrase>' in the image." (the
    authors' evaluation scripts); ``sentence``/``phrase`` force one form;
    ``raw`` sends the instruction unchanged. Why: a prompt the model never saw
    may make it answer without a ``<ref_start>..<ref_end>`` phrase, hence no masks.
    """
    text = " ".join(instruction.split())
    if style not in PROMPT_STYLES:
        raise ValueError(f"prompt_style must be one of {PROMPT_STYLES}, got {style!r}")
    if style == "raw" or not text:
        return text
    if style == "phrase" or (style == "upstream" and is_bare_phrase(text)):
        return PHRASE_TEMPLATE.format(text[0].lower() + text[1:])
    if SENTENCE_SUFFIX in text:
        return text
    return f"{text} {SENTENCE_SUFFIX}"


class LlmImageEncoder:
    """RGB uint8 -> ``LlmImage``; ``max_pixels`` bounds the token count (the Jetson profile sets it)."""

    def __init__(self, settings: Optional[dict] = None, max_pixels: Optional[int] = None) -> None:
        settings = json.loads(json.dumps(settings or QWEN3_VL_IMAGE_DEFAULTS))
        if max_pixels is not None:
            settings["size"]["longest_edge"] = int(max_pixels)
            settings["size"]["shortest_edge"] = min(settings["size"]["shortest_edge"], int(max_pixels))
        self.settings = settings
        self.processor = Qwen2VLImageProcessorPil(**settings)

    def __call__(self, rgb: np.ndarray) -> LlmImage:
        out = self.processor(images=[rgb], return_tensors="pt")
        grid = out["image_grid_thw"]
        merge = int(self.settings["merge_size"])
        return LlmImage(
            pixel_values=out["pixel_values"], grid_thw=grid, num_tokens=int(grid.prod()) // (merge * merge)
        )

    def to_json(self) -> dict:
        return {"image_processor_type": "Qwen2VLImageProcessor", **self.settings}


class PromptBuilder:
    """Token ids of prompts and answers; fails early when the tokenizer lacks a special token."""

    def __init__(self, tokenizer, num_queries: int) -> None:
        self.tokenizer = tokenizer
        self.num_queries = num_queries
        vocab = tokenizer.get_vocab()
        missing = [t for t in PROMPT_TOKENS if t not in vocab]
        if missing:
            raise ValueError(f"tokenizer lacks InstructSAM special tokens {missing}")
        self.ids = {t: vocab[t] for t in PROMPT_TOKENS}

    def _text(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def prompt_ids(self, instruction: str, num_image_tokens: int) -> list[int]:
        """``<|im_start|>user\\n<vision> image <vision_end> instruction <|im_end|>\\n<|im_start|>assistant\\n``."""
        ids = self.ids
        return (
            [ids[IM_START_TOKEN]] + self._text("user\n")
            + [ids[VISION_START_TOKEN]] + [ids[IMAGE_PAD_TOKEN]] * num_image_tokens + [ids[VISION_END_TOKEN]]
            + self._text(instruction) + [ids[IM_END_TOKEN]] + self._text("\n")
            + [ids[IM_START_TOKEN]] + self._text("assistant\n")
        )

    def phrase_ids(self, phrase: str) -> list[int]:
        return self._text(phrase)

    def wrap_phrase(self, phrase_ids: list[int]) -> list[int]:
        """``<ref_start> phrase <ref_end>``: how the authors' inference conditions SAM 3 on a phrase."""
        return [self.ids[REF_START_TOKEN]] + list(phrase_ids) + [self.ids[REF_END_TOKEN]]

    def query_block_ids(self) -> list[int]:
        """``<mask_start> [SEG]*K <mask_end>``: the placeholders the query bank is written over."""
        ids = self.ids
        return [ids[MASK_START_TOKEN]] + [ids[SEG_TOKEN]] * self.num_queries + [ids[MASK_END_TOKEN]]

    def answer_ids(self, phrase: str) -> list[int]:
        """Teacher-forced answer: ``<ref_start> phrase <ref_end> <mask_start> [SEG]*K <mask_end> <|im_end|>``."""
        ids = self.ids
        return (
            [ids[REF_START_TOKEN]] + self.phrase_ids(phrase) + [ids[REF_END_TOKEN]]
            + self.query_block_ids() + [ids[IM_END_TOKEN]]
        )

    def decode(self, token_ids: list[int]) -> str:
        return self.tokenizer.decode(token_ids, skip_special_tokens=True).strip()
