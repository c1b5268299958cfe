"""The InstructSAM part-grounding backend (config name ``instructsam``)."""

from __future__ import annotations

import time
from typing import Any, Optional

from partseg_ros.backends.base import PartGroundingBackend
from partseg_ros.types import GroundingRequest, GroundingResult, PartInstance

WARMUP_INSTRUCTION = "segment the handle of the cup"
# A Qwen3-VL image token covers 32x32 pixels; the Jetson profile bounds the LLM image to this many pixels.
JETSON_MAX_LLM_PIXELS = 640 * 480


class InstructSamBackend(PartGroundingBackend):
    """Image + instruction -> the instances InstructSAM's query slots find, masks at input resolution.

    Options: ``checkpoint`` (local directory or hub id, default the published
    ``CircleRadon/InstructSAM-2B``), ``device`` ('auto', 'cpu', 'cuda',
    'cuda:N'), ``dtype`` ('auto', 'fp32', 'fp16', 'bf16'), ``profile``
    ('default', 'jetson', 'auto'), ``max_input_side``, ``max_phrases`` (4),
    ``max_llm_pixels`` (bound on the language model's image, set by the Jetson
    profile). The rest default to the authors' inference
    (``inference.UPSTREAM_INFERENCE``, README "InstructSAM, SAM 3 and Grounding
    DINO: upstream choices"): ``presence_threshold`` 0.3 (slot presence
    probability needed to report an instance; the authors use 0.5 only for
    robot referring expressions), ``mask_threshold`` (mask logit, 0.0),
    ``nms_iou_threshold`` (None: no extra NMS; a float enables mask NMS),
    ``max_new_tokens`` (1024), ``prompt_style`` ('upstream', 'sentence',
    'phrase', 'raw'), ``phrase_wrapping`` ('inference' wraps the phrase in
    ref markers, 'training' does not) and ``generation_positions`` ('mrope',
    training-style, or 'text', 1-D). ``ground_with_phrase`` conditions on a
    known target phrase instead of generating one.
    """

    name = "instructsam"

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.predictor = None
        self.runtime = None

    def _load(self) -> None:
        from partseg_ros.backends.instructsam.checkpoint_layout import PUBLISHED_CHECKPOINT, load_instructsam_checkpoint
        from partseg_ros.backends.instructsam.inference import UPSTREAM_INFERENCE, InstructSamPredictor
        from partseg_ros.backends.instructsam.inputs import LlmImageEncoder, image_processor_settings
        from partseg_ros.backends.runtime import resolve_runtime
        from partseg_ros.backends.sam3.preprocessing import Sam3ImageTransform

        opts = self.options
        self.runtime = resolve_runtime(
            device=opts.get("device", "auto"),
            dtype=opts.get("dtype", "auto"),
            profile=opts.get("profile", "default"),
            max_input_side=opts.get("max_input_side"),
        )
        model, tokenizer, directory = load_instructsam_checkpoint(
            opts.get("checkpoint", PUBLISHED_CHECKPOINT), device=self.runtime.device, dtype=self.runtime.dtype
        )
        max_pixels = opts.get("max_llm_pixels")
        if max_pixels is None and self.runtime.max_input_side:
            max_pixels = JETSON_MAX_LLM_PIXELS if self.runtime.name == "jetson" else self.runtime.max_input_side**2
        self.predictor = InstructSamPredictor(
            model,
            tokenizer,
            llm_images=LlmImageEncoder(image_processor_settings(directory), max_pixels=max_pixels),
            detector_transform=Sam3ImageTransform.from_pretrained_dir(
                directory, image_size=model.sam3.config.image_size
            ),
            presence_threshold=float(opts.get("presence_threshold", UPSTREAM_INFERENCE["presence_threshold"])),
            mask_threshold=float(opts.get("mask_threshold", UPSTREAM_INFERENCE["mask_threshold"])),
            nms_iou_threshold=_optional_float(opts.get("nms_iou_threshold", UPSTREAM_INFERENCE["nms_iou_threshold"])),
            max_new_tokens=int(opts.get("max_new_tokens", UPSTREAM_INFERENCE["max_new_tokens"])),
            prompt_style=str(opts.get("prompt_style", UPSTREAM_INFERENCE["prompt_style"])),
            phrase_wrapping=str(opts.get("phrase_wrapping", UPSTREAM_INFERENCE["phrase_wrapping"])),
            generation_positions=str(opts.get("generation_positions", UPSTREAM_INFERENCE["generation_positions"])),
            max_phrases=int(opts.get("max_phrases", 4)),
        )

    def warmup(self) -> None:
        """One full pass (prefill, query block, SAM 3) on a dummy frame; its cache entries are dropped."""
        from partseg_ros.backends.runtime import dummy_rgb

        self.load()
        self.predictor.predict(dummy_rgb(240, 320), WARMUP_INSTRUCTION, phrase="handle")
        self.predictor.llm_image_cache.clear()
        self.predictor.detector_image_cache.clear()

    def _ground(self, request: GroundingRequest) -> GroundingResult:
        return self.ground_with_phrase(request, None)

    def ground_with_phrase(self, request: GroundingRequest, phrase: Optional[str]) -> GroundingResult:
        """Ground ``request``; a given ``phrase`` replaces the generated target phrase (paper's phrase conditioning)."""
        self.load()
        start = time.perf_counter()
        prediction = self.predictor.predict(request.rgb, request.instruction, phrase=phrase)
        instances: list[PartInstance] = []
        for grounded in prediction.phrases:
            for found in grounded.instances:
                mask = found.mask
                if request.object_mask_hint is not None:
                    mask = mask & request.object_mask_hint.astype(bool)
                    if not mask.any():
                        continue
                instances.append(
                    PartInstance(
                        mask=mask,
                        score=found.score,
                        object_label="",
                        part_label=grounded.phrase,
                        explanation=f"InstructSAM slot {found.slot} for '{grounded.phrase}'",
                    )
                )
        instances.sort(key=lambda inst: inst.score, reverse=True)
        timings = dict(prediction.timings_ms)
        timings["total"] = (time.perf_counter() - start) * 1000.0
        return GroundingResult(
            instances=instances,
            backend=self.name,
            part_label=prediction.phrases[0].phrase if prediction.phrases else "",
            explanation=prediction.answer,
            timings_ms=timings,
        )



def _optional_float(value: Any) -> Optional[float]:
    """A threshold that may be switched off: None, 'none' or '' (a ROS parameter string) mean off."""
    if value is None or (isinstance(value, str) and value.strip().lower() in ("", "none", "null", "off")):
        return None
    return float(value)
