"""Open-vocabulary box detectors (OWLv2, Grounding DINO) behind one small interface.

Both load through transformers' ``from_pretrained`` with the PIL image
processors (torchvision is not required). OWLv2 keeps image and text towers
apart, so its image features are cached per frame and its text embeddings per
phrase; Grounding DINO fuses text into the image encoder, so only whole
(image, phrase) answers can be reused.
"""

from __future__ import annotations

import abc
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from partseg_ros.backends.runtime import ComputeCache, RuntimeProfile, image_key

LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class Detection:
    """A box (x_min, y_min, x_max, y_max) in pixels of the queried image, with its phrase score in [0, 1]."""

    box: tuple[float, float, float, float]
    score: float

    @property
    def center(self) -> tuple[float, float]:
        return ((self.box[0] + self.box[2]) / 2.0, (self.box[1] + self.box[3]) / 2.0)

    @property
    def area(self) -> float:
        return max(0.0, self.box[2] - self.box[0]) * max(0.0, self.box[3] - self.box[1])

    def shifted(self, dx: float, dy: float) -> "Detection":
        x0, y0, x1, y1 = self.box
        return Detection((x0 + dx, y0 + dy, x1 + dx, y1 + dy), self.score)


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of (N, 4) and (M, 4) xyxy boxes."""
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(-1)
    area_a = np.clip(a[:, 2:] - a[:, :2], 0, None).prod(-1)
    area_b = np.clip(b[:, 2:] - b[:, :2], 0, None).prod(-1)
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-9)


def non_max_suppression(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> list[int]:
    """Indices kept by greedy NMS, best score first."""
    order = list(np.argsort(-scores, kind="stable"))
    keep: list[int] = []
    while order:
        best = order.pop(0)
        keep.append(int(best))
        if order:
            ious = box_iou(boxes[[best]], boxes[order])[0]
            order = [i for i, iou in zip(order, ious) if iou <= iou_threshold]
    return keep


def _to_detections(boxes_xyxy: np.ndarray, scores: np.ndarray, width: int, height: int,
                   threshold: float, max_detections: int, nms_iou: float) -> list[Detection]:
    boxes = boxes_xyxy.astype(np.float64).copy()
    boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, width)
    boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, height)
    valid = (scores >= threshold) & (boxes[:, 2] - boxes[:, 0] >= 1) & (boxes[:, 3] - boxes[:, 1] >= 1)
    idx = np.flatnonzero(valid)
    if idx.size == 0:
        return []
    kept = non_max_suppression(boxes[idx], scores[idx], nms_iou)[:max_detections]
    return [Detection(tuple(float(v) for v in boxes[idx[k]]), float(scores[idx[k]])) for k in kept]


class OpenVocabularyDetector(abc.ABC):
    """Phrase -> boxes on an RGB image, best first."""

    kind: str = "detector"

    def __init__(self, model, processor, runtime: RuntimeProfile, cache_size: int = 4,
                 nms_iou: float = 0.5, max_detections: int = 10) -> None:
        self.model = model.to(runtime.device, runtime.dtype).eval()
        self.processor, self.runtime = processor, runtime
        self.nms_iou, self.max_detections = nms_iou, max_detections
        self.image_cache: ComputeCache = ComputeCache(cache_size)
        self.text_cache: ComputeCache = ComputeCache(max(cache_size, 16))

    @classmethod
    @abc.abstractmethod
    def from_pretrained(cls, directory: Path, runtime: RuntimeProfile, **kwargs) -> "OpenVocabularyDetector":
        """Model and processor from a checkpoint directory, as published."""

    @abc.abstractmethod
    def detect(self, rgb: np.ndarray, phrase: str, threshold: float) -> list[Detection]:
        """Boxes for ``phrase`` with score >= threshold, after NMS, best first."""


class Owlv2Detector(OpenVocabularyDetector):
    """OWLv2: per-patch boxes scored by similarity to a text query embedding."""

    kind = "owlv2"

    def __init__(self, model, processor, runtime: RuntimeProfile, **kwargs) -> None:
        super().__init__(model, processor, runtime, **kwargs)
        self.max_text_length = int(self.model.config.text_config.max_position_embeddings)

    @classmethod
    def from_pretrained(cls, directory: Path, runtime: RuntimeProfile, **kwargs) -> "Owlv2Detector":
        from transformers import Owlv2ForObjectDetection, Owlv2Processor

        processor = Owlv2Processor.from_pretrained(Path(directory))
        model = Owlv2ForObjectDetection.from_pretrained(Path(directory), dtype=runtime.dtype)
        return cls(model, processor, runtime, **kwargs)

    def _image_state(self, rgb: np.ndarray):
        """Patch features and their boxes: everything that depends on the image alone."""
        pixels = self.processor.image_processor(images=rgb, return_tensors="pt")["pixel_values"]
        pixels = pixels.to(self.runtime.device, self.runtime.dtype)
        feature_map = self.model.image_embedder(pixel_values=pixels)[0]
        b, h, w, d = feature_map.shape
        feats = feature_map.reshape(b, h * w, d)
        boxes = self.model.box_predictor(feats, feature_map)  # (1, N, 4) cxcywh in the padded square
        return feats, boxes

    def _text_state(self, phrase: str):
        tokens = self.processor.tokenizer([phrase], padding="max_length", truncation=True,
                                          max_length=self.max_text_length, return_tensors="pt")
        tokens = {k: v.to(self.runtime.device) for k, v in tokens.items() if k in ("input_ids", "attention_mask")}
        return self.model.owlv2.get_text_features(**tokens).pooler_output  # (1, D)

    def detect(self, rgb: np.ndarray, phrase: str, threshold: float) -> list[Detection]:
        import torch

        with torch.inference_mode():
            feats, boxes = self.image_cache.get_or_compute(image_key(rgb), lambda: self._image_state(rgb))
            query = self.text_cache.get_or_compute(phrase, lambda: self._text_state(phrase))
            query_mask = torch.ones(1, 1, dtype=torch.bool, device=feats.device)
            logits = self.model.class_predictor(feats, query[None].to(feats.dtype), query_mask)[0]
            scores = torch.sigmoid(logits[0, :, 0].float()).cpu().numpy()
            cxcywh = boxes[0].float().cpu().numpy()
        height, width = rgb.shape[:2]
        side = max(height, width)  # OWLv2 pads to a square at the bottom/right before resizing
        xyxy = np.concatenate([cxcywh[:, :2] - cxcywh[:, 2:] / 2, cxcywh[:, :2] + cxcywh[:, 2:] / 2], axis=1) * side
        return _to_detections(xyxy, scores, width, height, threshold, self.max_detections, self.nms_iou)


class GroundingDinoDetector(OpenVocabularyDetector):
    """Grounding DINO: queries scored against the text tokens; text and image are fused.

    ``scoring='all_tokens'`` (default) scores a query by its best match over
    every text position, as transformers' ``post_process_grounded_object_detection``
    does, so thresholds mean what they mean for the published model;
    ``'phrase_tokens'`` takes the best match over the phrase's own tokens only
    (not [CLS]/[SEP]/'.'), which is never higher and so needs lower thresholds.
    """

    kind = "grounding_dino"
    SCORINGS = ("all_tokens", "phrase_tokens")

    def __init__(self, model, processor, runtime: RuntimeProfile, scoring: str = "all_tokens", **kwargs) -> None:
        if scoring not in self.SCORINGS:
            raise ValueError(f"Grounding DINO scoring must be one of {self.SCORINGS}, got {scoring!r}")
        super().__init__(model, processor, runtime, **kwargs)
        self.scoring = scoring

    @classmethod
    def from_pretrained(cls, directory: Path, runtime: RuntimeProfile, **kwargs) -> "GroundingDinoDetector":
        from transformers import GroundingDinoForObjectDetection, GroundingDinoProcessor

        processor = GroundingDinoProcessor.from_pretrained(Path(directory))
        model = GroundingDinoForObjectDetection.from_pretrained(Path(directory), dtype=runtime.dtype)
        return cls(model, processor, runtime, **kwargs)

    def _answer(self, rgb: np.ndarray, phrase: str):
        import torch

        text = phrase.strip().rstrip(".") + "."
        inputs = self.processor(images=rgb, text=text, return_tensors="pt")
        inputs = {k: (v.to(self.runtime.device, self.runtime.dtype) if v.is_floating_point()
                      else v.to(self.runtime.device))
                  for k, v in inputs.items() if isinstance(v, torch.Tensor)}
        outputs = self.model(**inputs)
        ids = inputs["input_ids"][0]
        logits = outputs.logits[0, :, : ids.shape[0]].float().sigmoid()
        if self.scoring == "phrase_tokens":
            tokenizer = self.processor.tokenizer
            special = set(tokenizer.all_special_ids) | set(tokenizer.convert_tokens_to_ids(["."]))
            phrase_tokens = torch.tensor([int(t) not in special for t in ids], device=ids.device)
            logits = logits[:, phrase_tokens] if phrase_tokens.any() else logits
        scores = logits.max(dim=-1).values
        return scores.cpu().numpy(), outputs.pred_boxes[0].float().cpu().numpy()

    def detect(self, rgb: np.ndarray, phrase: str, threshold: float) -> list[Detection]:
        import torch

        with torch.inference_mode():
            scores, cxcywh = self.image_cache.get_or_compute((image_key(rgb), phrase),
                                                             lambda: self._answer(rgb, phrase))
        height, width = rgb.shape[:2]
        scale = np.array([width, height, width, height], dtype=np.float64)
        xyxy = np.concatenate([cxcywh[:, :2] - cxcywh[:, 2:] / 2, cxcywh[:, :2] + cxcywh[:, 2:] / 2], axis=1) * scale
        return _to_detections(xyxy, scores, width, height, threshold, self.max_detections, self.nms_iou)


DETECTORS: dict[str, type[OpenVocabularyDetector]] = {
    "owlv2": Owlv2Detector,
    "grounding_dino": GroundingDinoDetector,
}


def detector_kind_for(directory: Path, requested: Optional[str] = None) -> str:
    """The detector family: as requested, else read from the checkpoint's config.json model_type."""
    if requested and requested != "auto":
        if requested not in DETECTORS:
            raise ValueError(f"unknown detector {requested!r}; choose one of {sorted(DETECTORS)}")
        return requested
    import json

    model_type = json.loads((Path(directory) / "config.json").read_text()).get("model_type", "")
    if model_type == "owlv2":
        return "owlv2"
    if model_type == "grounding-dino":
        return "grounding_dino"
    raise ValueError(f"checkpoint {directory} has model_type {model_type!r}; "
                     "expected an OWLv2 or Grounding DINO checkpoint")
