"""Zero-shot part grounding with public weights: detector finds the object, SAM segments the part.

The G-SAM baseline of the papers, organised for parts: the instruction is
resolved to an object phrase and a part phrase; an open-vocabulary detector
(OWLv2 or Grounding DINO) boxes the object (or the evaluator's object hint
gives it); SAM segments that box; a second detector query with the part
phrase, run on a crop around the object, boxes the part, and SAM segments it
within the object. With ``segmenter='sam3'`` SAM 3's text prompt segments the
object and part phrases directly instead (the SAM3-Agent style path). If the
part cannot be found, the object mask is returned with a lower score and the
explanation says so.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np

from partseg_ros.backends.base import PartGroundingBackend
from partseg_ros.backends.checkpoints import resolve_checkpoint
from partseg_ros.backends.grounded_sam.detectors import DETECTORS, OpenVocabularyDetector, detector_kind_for
from partseg_ros.backends.grounded_sam.phrases import InstructionPhrases, instruction_phrases
from partseg_ros.backends.runtime import (
    RuntimeProfile,
    Stopwatch,
    bound_image,
    dummy_rgb,
    resize_mask,
    resolve_runtime,
    warm_up,
)
from partseg_ros.backends.sam3.defaults import SAM3_SCORE_THRESHOLD
from partseg_ros.types import GroundingRequest, GroundingResult, PartInstance, mask_box

LOG = logging.getLogger(__name__)

DEFAULT_DETECTOR = "google/owlv2-base-patch16-ensemble"
DEFAULT_SAM = "facebook/sam-vit-base"
DEFAULT_SAM3 = "facebook/sam3"
# Box score needed from OWLv2 / Grounding DINO (low: the part query runs on a crop, where scores are lower).
DETECTOR_THRESHOLD = 0.1
MODEL_FILES = ("config.json", "model.safetensors|pytorch_model.bin|model.safetensors.index.json")


@dataclass
class _Found:
    """An object or part mask in the (possibly downscaled) working image."""

    mask: np.ndarray
    score: float
    box: tuple[float, float, float, float]
    note: str = ""


class GroundedSamBackend(PartGroundingBackend):
    """Instruction -> (object, part) phrases -> detector boxes -> SAM masks."""

    name = "grounded_sam"

    def __init__(
        self,
        detector: str = DEFAULT_DETECTOR,
        detector_type: str = "auto",
        sam: str = DEFAULT_SAM,
        segmenter: str = "sam",
        sam3: str = DEFAULT_SAM3,
        device: str = "auto",
        dtype: str = "auto",
        profile: str = "default",
        max_input_side: Optional[int] = None,
        object_threshold: Optional[float] = None,
        part_threshold: Optional[float] = None,
        detector_scoring: str = "all_tokens",
        part_fallback_factor: float = 0.5,
        crop_margin: float = 0.15,
        max_part_area_ratio: float = 0.9,
        max_instances: int = 1,
        cache_size: int = 4,
        **options: Any,
    ) -> None:
        super().__init__(
            detector=detector, detector_type=detector_type, sam=sam, segmenter=segmenter, sam3=sam3, device=device,
            dtype=dtype, profile=profile, max_input_side=max_input_side, object_threshold=object_threshold,
            part_threshold=part_threshold, detector_scoring=detector_scoring, part_fallback_factor=part_fallback_factor,
            crop_margin=crop_margin, max_part_area_ratio=max_part_area_ratio, max_instances=max_instances,
            cache_size=cache_size, **options,
        )
        if segmenter not in ("sam", "sam3"):
            raise ValueError(f"segmenter must be 'sam' or 'sam3', got {segmenter!r}")
        if not 0.0 <= part_fallback_factor <= 1.0:
            raise ValueError("part_fallback_factor is a factor in [0, 1]")
        if max_instances < 1:
            raise ValueError("max_instances must be >= 1")
        self.detector_source, self.detector_type, self.sam_source = detector, detector_type, sam
        self.segmenter_kind, self.sam3_source = segmenter, sam3
        self.device_spec, self.dtype_spec, self.profile_spec = device, dtype, profile
        self.max_input_side = max_input_side
        # None: the default of the component that scores (SAM 3's official 0.3, else the detector's 0.1)
        default = SAM3_SCORE_THRESHOLD if segmenter == "sam3" else DETECTOR_THRESHOLD
        self.object_threshold = default if object_threshold is None else float(object_threshold)
        self.part_threshold = default if part_threshold is None else float(part_threshold)
        self.detector_scoring = detector_scoring
        self.part_fallback_factor, self.crop_margin = part_fallback_factor, crop_margin
        self.max_part_area_ratio, self.max_instances, self.cache_size = max_part_area_ratio, max_instances, cache_size
        self.runtime: Optional[RuntimeProfile] = None
        self.detector: Optional[OpenVocabularyDetector] = None
        self.sam = None
        self.sam3 = None

    # ---- loading ----------------------------------------------------------------------------------
    def _load(self) -> None:
        self.runtime = resolve_runtime(self.device_spec, self.dtype_spec, self.profile_spec, self.max_input_side)
        if self.segmenter_kind == "sam3":
            from partseg_ros.backends.sam3.segmenter import Sam3Segmenter

            self.sam3 = Sam3Segmenter.from_pretrained(self.sam3_source, self.runtime.device, self.runtime.dtype,
                                                      parameter="sam3")
            LOG.info("Grounded-SAM (SAM 3 text prompts) loaded on %s", self.runtime.describe())
            return
        from partseg_ros.backends.grounded_sam.segmenter import SamBoxSegmenter

        detector_dir = resolve_checkpoint(
            self.detector_source, what="open-vocabulary detector (OWLv2 / Grounding DINO)", parameter="detector",
            required_files=MODEL_FILES + ("preprocessor_config.json|processor_config.json",),
        )
        sam_dir = resolve_checkpoint(
            self.sam_source, what="SAM", parameter="sam",
            required_files=MODEL_FILES + ("preprocessor_config.json|processor_config.json",),
        )
        kind = detector_kind_for(detector_dir, self.detector_type)
        extra = {"scoring": self.detector_scoring} if kind == "grounding_dino" else {}
        self.detector = DETECTORS[kind].from_pretrained(detector_dir, self.runtime, cache_size=self.cache_size, **extra)
        self.sam = SamBoxSegmenter.from_pretrained(sam_dir, self.runtime, cache_size=self.cache_size)
        LOG.info("Grounded-SAM (%s + SAM) loaded on %s", kind, self.runtime.describe())

    @classmethod
    def from_components(cls, detector: OpenVocabularyDetector, sam, runtime: RuntimeProfile,
                        **options: Any) -> "GroundedSamBackend":
        """Wrap already built detector and SAM segmenter (latency benchmark, experiments)."""
        backend = cls(**options)
        backend.runtime, backend.detector, backend.sam = runtime, detector, sam
        backend._loaded = True
        return backend

    def warmup(self) -> None:
        self.load()
        elapsed = warm_up(lambda: self.ground(GroundingRequest(dummy_rgb(240, 320), "the handle of the mug")),
                          repeats=2)
        LOG.info("Grounded-SAM warm-up: %.0f ms per frame", elapsed)

    # ---- inference --------------------------------------------------------------------------------
    def _ground(self, request: GroundingRequest) -> GroundingResult:
        watch = Stopwatch(self.runtime.device)
        height, width = request.image_size
        with watch.span("total"):
            with watch.span("language"):
                phrases = instruction_phrases(request.instruction)
            rgb, _ = bound_image(request.rgb, self.runtime.max_input_side)
            hint = None
            if request.object_mask_hint is not None:
                hint = resize_mask(request.object_mask_hint, rgb.shape[0], rgb.shape[1])
            instances, explanation = self._ground_phrases(rgb, phrases, hint, watch)
            for inst in instances:
                inst.mask = resize_mask(inst.mask, height, width)
                inst.box = mask_box(inst.mask)
        explanation += f" [object '{phrases.object_phrase}', part '{phrases.part_phrase}' from the {phrases.source}]"
        return GroundingResult(instances, self.name, phrases.object_phrase, phrases.part_phrase, explanation,
                               watch.timings_ms)

    def _ground_phrases(self, rgb: np.ndarray, phrases: InstructionPhrases, hint: Optional[np.ndarray],
                        watch: Stopwatch) -> tuple[list[PartInstance], str]:
        obj_name, part_name = phrases.object_phrase, phrases.part_phrase
        if hint is not None and hint.any():
            obj = _Found(hint, 1.0, tuple(float(v) for v in mask_box(hint)))
            obj_note = "object from the given object mask"
        elif not obj_name:
            return [], f"no object could be read from the instruction ({phrases.source})"
        else:
            with watch.span("object"):
                obj = self._find_object(rgb, obj_name)
            if obj is None:
                return [], f"no '{obj_name}' found (threshold {self.object_threshold})"
            obj_note = f"'{obj_name}' found with score {obj.score:.2f}{obj.note}"
        if not part_name:
            inst = PartInstance(obj.mask, obj.score, obj_name, "",
                                explanation=f"{obj_note}; the instruction names no part, whole object returned")
            return [inst], inst.explanation
        with watch.span("part"):
            parts = self._find_parts(rgb, part_name, obj)
        if parts:
            insts = [
                PartInstance(p.mask, obj.score * p.score, obj_name, part_name,
                             explanation=f"{obj_note}; '{part_name}' found inside it with score {p.score:.2f}")
                for p in parts
            ]
            return insts, insts[0].explanation
        score = obj.score * self.part_fallback_factor
        inst = PartInstance(
            obj.mask, score, obj_name, part_name,
            explanation=f"{obj_note}; part '{part_name}' not found inside it, returning the whole object mask "
                        f"with score lowered to {score:.2f}",
        )
        return [inst], inst.explanation

    def _find_object(self, rgb: np.ndarray, phrase: str) -> Optional[_Found]:
        if self.sam3 is not None:
            found = self.sam3.segment_text(rgb, phrase, score_threshold=self.object_threshold, max_instances=1)
            return _Found(found[0].mask, float(found[0].score), found[0].box) if found else None
        detections = self.detector.detect(rgb, phrase, self.object_threshold)
        if not detections:
            return None
        best = detections[0]
        masks, ious = self.sam.segment(rgb, [best.box])
        if masks[0].any():
            return _Found(masks[0], best.score * float(ious[0]), best.box)
        # SAM left the box empty: the box itself is the best object region we have.
        return _Found(_box_mask(rgb.shape[:2], best.box), best.score * self.part_fallback_factor, best.box,
                      note=" (SAM returned an empty mask, using the detector box)")

    def _find_parts(self, rgb: np.ndarray, phrase: str, obj: _Found) -> list[_Found]:
        """Part candidates lying inside the object, best first (at most ``max_instances``)."""
        region = _box_mask(rgb.shape[:2], _expand(obj.box, self.crop_margin, rgb.shape[:2]))
        if self.sam3 is not None:
            found = self.sam3.segment_text(rgb, phrase, score_threshold=self.part_threshold)
            candidates = [_Found(f.mask & region, float(f.score), f.box) for f in found]
        else:
            candidates = [
                _Found(mask & region, det.score * float(iou), det.box)
                for det, mask, iou in self._part_boxes_and_masks(rgb, phrase, obj)
            ]
        object_area = max(1, int(obj.mask.sum()))
        # Masks are already clipped to the object's box (plus margin). A part must touch the object mask
        # (SAM's object mask may miss a thin handle, so it need not lie inside it), and a "part" as large
        # as the whole object is the object again.
        kept = [
            c for c in candidates
            if (c.mask & obj.mask).any() and c.mask.sum() <= self.max_part_area_ratio * object_area
        ]
        return sorted(kept, key=lambda c: -c.score)[: self.max_instances]

    def _part_boxes_and_masks(self, rgb: np.ndarray, phrase: str, obj: _Found):
        """Detector query for the part on a crop around the object, boxes mapped back, then SAM on each."""
        x0, y0, x1, y1 = (int(round(v)) for v in _expand(obj.box, self.crop_margin, rgb.shape[:2]))
        if x1 - x0 < 2 or y1 - y0 < 2:
            return []
        crop = np.ascontiguousarray(rgb[y0:y1, x0:x1])
        detections = [d.shifted(x0, y0) for d in self.detector.detect(crop, phrase, self.part_threshold)]
        detections = [d for d in detections if _inside(d.center, obj.box)]
        if not detections:
            return []
        masks, ious = self.sam.segment(rgb, [d.box for d in detections])
        return list(zip(detections, masks, ious))


def _expand(box, margin: float, shape: tuple[int, int]) -> tuple[float, float, float, float]:
    x0, y0, x1, y1 = box
    dx, dy = (x1 - x0) * margin, (y1 - y0) * margin
    h, w = shape
    return (max(0.0, x0 - dx), max(0.0, y0 - dy), min(float(w), x1 + dx + 1), min(float(h), y1 + dy + 1))


def _inside(point: tuple[float, float], box) -> bool:
    return box[0] <= point[0] <= box[2] + 1 and box[1] <= point[1] <= box[3] + 1


def _box_mask(shape: tuple[int, int], box) -> np.ndarray:
    mask = np.zeros(shape, dtype=bool)
    x0, y0, x1, y1 = (int(round(v)) for v in box)
    mask[max(0, y0) : max(0, y1), max(0, x0) : max(0, x1)] = True
    return mask


__all__ = ["GroundedSamBackend", "DEFAULT_DETECTOR", "DEFAULT_SAM", "DEFAULT_SAM3"]
