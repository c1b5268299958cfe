"""PISA as a partseg backend: load the three checkpoints, run one <SEG> mask per instruction.

Loading follows the paths users have: the backbone and the language model
through transformers' ``from_pretrained`` (a directory or a hub id), the
trained head from ``pisa_config.json`` + ``pisa_head.safetensors`` in the
PISA checkpoint directory. The image embedding is cached per image content
and the <SEG> hidden state per instruction, so a new instruction on the same
frame, or the same instruction on a new frame, only pays for the other half.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Optional

from partseg_ros.backends.base import PartGroundingBackend
from partseg_ros.backends.checkpoints import resolve_checkpoint
from partseg_ros.backends.runtime import (
    ComputeCache,
    RuntimeProfile,
    Stopwatch,
    bound_image,
    dummy_rgb,
    image_key,
    resolve_runtime,
    warm_up,
)
from partseg_ros.types import GroundingRequest, GroundingResult, PartInstance

LOG = logging.getLogger(__name__)

DEFAULT_BACKBONE = "facebook/dinov2-large"
#: LISA-7B, which PISA extends, runs LLaVA on Vicuna-7B; any LLaMA-family causal LM loads the same way.
DEFAULT_LANGUAGE_MODEL = "lmsys/vicuna-7b-v1.5"
TRAIN_HINT = "train a PISA head with `python -m partseg_ros.backends.pisa.train --help`"


class PisaBackend(PartGroundingBackend):
    """InstructPart's PISA baseline: frozen DINOv2 + LLaMA-family <SEG> token + SAM-style decoder."""

    name = "pisa"

    def __init__(
        self,
        checkpoint: Optional[str] = None,
        backbone: str = DEFAULT_BACKBONE,
        language_model: str = DEFAULT_LANGUAGE_MODEL,
        device: str = "auto",
        dtype: str = "auto",
        profile: str = "default",
        max_input_side: Optional[int] = None,
        mask_threshold: float = 0.5,
        min_score: float = 0.0,
        cache_size: int = 4,
        **options: Any,
    ) -> None:
        super().__init__(
            checkpoint=checkpoint, backbone=backbone, language_model=language_model, device=device, dtype=dtype,
            profile=profile, max_input_side=max_input_side, mask_threshold=mask_threshold, min_score=min_score,
            cache_size=cache_size, **options,
        )
        if not 0.0 < mask_threshold < 1.0:
            raise ValueError(f"mask_threshold is a probability in (0, 1), got {mask_threshold}")
        self.checkpoint, self.backbone_source, self.language_model_source = checkpoint, backbone, language_model
        self.device_spec, self.dtype_spec, self.profile_spec = device, dtype, profile
        self.max_input_side = max_input_side
        self.mask_threshold, self.min_score = mask_threshold, min_score
        self.image_cache: ComputeCache = ComputeCache(cache_size)
        self.text_cache: ComputeCache = ComputeCache(max(cache_size, 16))
        self.model = None
        self.runtime: Optional[RuntimeProfile] = None

    # ---- loading ----------------------------------------------------------------------------------
    def resolve_paths(self) -> dict[str, Path]:
        """Local directories of the three checkpoints, or CheckpointNotFoundError for the first missing one."""
        from partseg_ros.backends.pisa.model import HEAD_CONFIG, HEAD_WEIGHTS

        return {
            "checkpoint": resolve_checkpoint(
                self.checkpoint, what="PISA head", parameter="checkpoint",
                required_files=(HEAD_CONFIG, HEAD_WEIGHTS), how_to=TRAIN_HINT,
            ),
            "backbone": resolve_checkpoint(
                self.backbone_source, what="PISA backbone (DINOv2)", parameter="backbone",
                required_files=("config.json", "model.safetensors|pytorch_model.bin|model.safetensors.index.json"),
            ),
            "language_model": resolve_checkpoint(
                self.language_model_source, what="PISA language model", parameter="language_model",
                required_files=("config.json", "tokenizer.json|tokenizer.model|tokenizer_config.json"),
            ),
        }

    def _load(self) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer, Dinov2Model

        from partseg_ros.backends.pisa.model import PisaHead, PisaModel

        self.runtime = resolve_runtime(self.device_spec, self.dtype_spec, self.profile_spec, self.max_input_side)
        paths = self.resolve_paths()
        dtype, device = self.runtime.dtype, self.runtime.device
        backbone = Dinov2Model.from_pretrained(paths["backbone"], dtype=dtype)
        language_model = AutoModelForCausalLM.from_pretrained(paths["language_model"], dtype=dtype)
        tokenizer = AutoTokenizer.from_pretrained(paths["language_model"])
        head = PisaHead.load(paths["checkpoint"])
        self.model = PisaModel(backbone, language_model, tokenizer, head).to(device=device, dtype=dtype)
        self.model.train(False)
        LOG.info("PISA loaded on %s from %s", self.runtime.describe(), {k: str(v) for k, v in paths.items()})

    @classmethod
    def from_model(cls, model, runtime: Optional[RuntimeProfile] = None, **options: Any) -> "PisaBackend":
        """Wrap an already built PisaModel (training loops, the latency benchmark)."""
        backend = cls(**options)
        backend.runtime = runtime or resolve_runtime("cpu", "fp32")
        backend.model = model.to(device=backend.runtime.device)
        backend.model.train(False)
        backend._loaded = True
        return backend

    def warmup(self) -> None:
        self.load()
        elapsed = warm_up(lambda: self.ground(GroundingRequest(dummy_rgb(240, 320), "pick up the object")), repeats=2)
        self.image_cache.clear()
        self.text_cache.clear()
        LOG.info("PISA warm-up: %.0f ms per frame", elapsed)

    # ---- inference --------------------------------------------------------------------------------
    def _input_size(self) -> int:
        """Backbone input side: the head's size, capped by the profile's bound, a multiple of the patch."""
        size = self.model.config.image_size
        if self.runtime and self.runtime.max_input_side:
            size = min(size, self.runtime.max_input_side)
        patch = self.model.config.backbone_patch_size
        return max(patch, size // patch * patch)

    def _ground(self, request: GroundingRequest) -> GroundingResult:
        import torch

        from partseg_ros.backends.pisa.model import logits_to_input_resolution

        model = self.model
        watch = Stopwatch(self.runtime.device)
        height, width = request.image_size
        with torch.inference_mode(), watch.span("total"):
            with watch.span("labels"):
                object_label, part_label = _labels_for(request.instruction)
            with watch.span("preprocess"):
                rgb, _ = bound_image(request.rgb, self.runtime.max_input_side)
                prepared = model.prepare_image(rgb, self._input_size())
                prepared.input_hw = (height, width)  # masks go straight back to the request's resolution
            reused_image = reused_text = True

            def encode_image():
                nonlocal reused_image
                reused_image = False
                with watch.span("image_encoder"):
                    return model.encode_image(prepared.pixel_values.to(self.runtime.device))

            def encode_text():
                nonlocal reused_text
                reused_text = False
                with watch.span("language_model"):
                    return model.encode_instruction([request.instruction])

            features = self.image_cache.get_or_compute((image_key(rgb), prepared.pixel_values.shape[-1]), encode_image)
            seg_hidden = self.text_cache.get_or_compute(request.instruction.strip(), encode_text)
            with watch.span("mask_decoder"):
                logits, iou_logit = model.decode(features, seg_hidden, prepared.pixel_values.shape[-1])
            with watch.span("postprocess"):
                prob = torch.sigmoid(logits_to_input_resolution(logits[0], prepared)[0]).cpu().numpy()
                mask = prob > self.mask_threshold
                if request.object_mask_hint is not None:
                    mask &= request.object_mask_hint.astype(bool)
                score = float(torch.sigmoid(iou_logit[0]).item())

        reuse = ", ".join(n for n, r in (("image embedding", reused_image), ("instruction state", reused_text)) if r)
        note = f" (reused cached {reuse})" if reuse else ""
        if not mask.any() or score < self.min_score:
            why = "no pixel above the mask threshold" if not mask.any() else f"score {score:.2f} below {self.min_score}"
            return GroundingResult([], self.name, object_label, part_label, f"PISA found no target: {why}{note}",
                                   watch.timings_ms)
        instance = PartInstance(
            mask=mask, score=score, object_label=object_label, part_label=part_label,
            explanation=f"PISA <SEG> mask, predicted IoU {score:.2f}{note}",
        )
        return GroundingResult([instance], self.name, object_label, part_label, instance.explanation, watch.timings_ms)


def _labels_for(instruction: str) -> tuple[str, str]:
    """Object and part names for the result's labels (from the language module); PISA itself only outputs a mask."""
    try:
        from partseg_ros.backends.grounded_sam.phrases import instruction_phrases
    except ImportError:  # pragma: no cover - same package
        return "", ""
    phrases = instruction_phrases(instruction)
    return phrases.object_phrase, phrases.part_phrase


__all__ = ["PisaBackend", "DEFAULT_BACKBONE", "DEFAULT_LANGUAGE_MODEL"]
