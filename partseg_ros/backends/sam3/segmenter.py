"""SAM 3 with a text (concept) prompt: image + noun phrase -> instance masks.

Used by the zero-shot pipeline to segment a resolved part phrase, and shares
the image encoding cache so several phrases on one frame encode it once.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Union

import numpy as np
import torch
from transformers import AutoTokenizer, Sam3Model
from transformers.utils import is_torchvision_available

from partseg_ros.backends.checkpoints import resolve_checkpoint
from partseg_ros.backends.runtime import ComputeCache, image_key
from partseg_ros.backends.sam3.decoding import decode_with_text, encode_image
from partseg_ros.backends.sam3.postprocessing import (
    SAM3_MASK_THRESHOLD,
    SAM3_SCORE_THRESHOLD,
    Sam3Instance,
    select_instances,
)
from partseg_ros.backends.sam3.preprocessing import Sam3ImageTransform

SAM3_REQUIRED_FILES = ("config.json", "model.safetensors|model.safetensors.index.json", "tokenizer.json|vocab.json")
# Sam3Processor pads every concept prompt to this many CLIP tokens.
SAM3_TEXT_LENGTH = 32


def box_prompts_available() -> bool:
    """Box prompts go through ``torchvision.ops.roi_align`` inside transformers' SAM 3 geometry encoder."""
    return is_torchvision_available()


class Sam3Segmenter:
    """A loaded ``Sam3Model`` plus its CLIP tokenizer, preprocessing and caches."""

    def __init__(
        self,
        model: Sam3Model,
        tokenizer,
        transform: Optional[Sam3ImageTransform] = None,
        cache_size: int = 2,
    ) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.transform = transform or Sam3ImageTransform(image_size=model.config.image_size)
        self.image_cache: ComputeCache = ComputeCache(cache_size)
        self.text_cache: ComputeCache = ComputeCache(max(cache_size, 8))

    @classmethod
    def from_pretrained(
        cls,
        checkpoint: Union[str, Path],
        device: Union[str, torch.device] = "cpu",
        dtype: torch.dtype = torch.float32,
        parameter: str = "sam3_checkpoint",
    ) -> "Sam3Segmenter":
        """Load SAM 3 from a local directory or a hub id already in the Hugging Face cache.

        The directory needs config.json, the weights and the CLIP tokenizer
        files, as in ``facebook/sam3``; a missing one raises
        ``CheckpointNotFoundError`` saying where it looked.
        """
        directory = resolve_checkpoint(
            str(checkpoint),
            what="SAM 3",
            parameter=parameter,
            required_files=SAM3_REQUIRED_FILES,
            how_to="SAM 3 weights are gated: accept the licence at https://huggingface.co/facebook/sam3 first.",
        )
        model = Sam3Model.from_pretrained(str(directory), dtype=dtype).to(device)
        tokenizer = AutoTokenizer.from_pretrained(str(directory))
        transform = Sam3ImageTransform.from_pretrained_dir(directory, image_size=model.config.image_size)
        return cls(model, tokenizer, transform)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    @torch.inference_mode()
    def encode_image(self, rgb: np.ndarray):
        """Backbone features of ``rgb``, computed once per distinct image content."""
        return self.image_cache.get_or_compute(
            image_key(rgb),
            lambda: encode_image(self.model, self.transform(rgb, device=self.device, dtype=self.dtype)),
        )

    @torch.inference_mode()
    def encode_phrase(self, phrase: str):
        """CLIP text features of a concept prompt, computed once per distinct phrase."""

        def compute():
            tokens = self.tokenizer(
                [phrase], padding="max_length", max_length=SAM3_TEXT_LENGTH, truncation=True, return_tensors="pt"
            )
            input_ids = tokens["input_ids"].to(self.device)
            attention_mask = tokens["attention_mask"].to(self.device)
            return self.model.get_text_features(input_ids=input_ids, attention_mask=attention_mask), attention_mask

        return self.text_cache.get_or_compute(phrase, compute)

    @torch.inference_mode()
    def segment_text(
        self,
        rgb: np.ndarray,
        phrase: str,
        score_threshold: float = SAM3_SCORE_THRESHOLD,
        mask_threshold: float = SAM3_MASK_THRESHOLD,
        nms_iou_threshold: Optional[float] = None,
        max_instances: Optional[int] = None,
    ) -> list[Sam3Instance]:
        """All instances of ``phrase`` in ``rgb``, best first, masks at the image's resolution.

        Defaults are the official post-processing (score 0.3, mask probability
        0.5 after the sigmoid and upsampling, no NMS), so answers match what
        facebook/sam3 gives through transformers' processor.
        """
        vision_embeds = self.encode_image(rgb)
        text_embeds, attention_mask = self.encode_phrase(phrase)
        mask_logits, scores, boxes = decode_with_text(self.model, vision_embeds, text_embeds, attention_mask)
        return select_instances(
            mask_logits,
            scores,
            boxes,
            rgb.shape[:2],
            score_threshold=score_threshold,
            mask_threshold=mask_threshold,
            nms_iou_threshold=nms_iou_threshold,
            max_instances=max_instances,
            mask_space="probabilities",
        )
