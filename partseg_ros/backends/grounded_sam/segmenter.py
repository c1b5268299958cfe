"""Box-prompted SAM (transformers ``SamModel``) with the image embedding cached per frame.

SAM's image encoder is the expensive part (seconds on CPU); the prompt
encoder and mask decoder are milliseconds. The object box and the part box of
one request, and every new instruction on the same frame, reuse one embedding.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from partseg_ros.backends.runtime import ComputeCache, RuntimeProfile, image_key


class SamBoxSegmenter:
    """Boxes in pixels of an image -> masks at that image's resolution plus SAM's predicted IoU."""

    def __init__(self, model, processor, runtime: RuntimeProfile, cache_size: int = 4) -> None:
        self.runtime, self.processor = runtime, processor
        self.model = model.to(runtime.device, runtime.dtype).eval()
        self.embedding_cache: ComputeCache = ComputeCache(cache_size)

    @classmethod
    def from_pretrained(cls, directory: Path, runtime: RuntimeProfile, cache_size: int = 4) -> "SamBoxSegmenter":
        """SamModel and SamProcessor from a checkpoint directory (facebook/sam-vit-* layout)."""
        from transformers import SamModel, SamProcessor

        processor = SamProcessor.from_pretrained(Path(directory))
        return cls(SamModel.from_pretrained(Path(directory), dtype=runtime.dtype), processor, runtime, cache_size)

    def _embed(self, rgb: np.ndarray):
        inputs = self.processor.image_processor(images=rgb, return_tensors="pt")
        pixels = inputs["pixel_values"].to(self.runtime.device, self.runtime.dtype)
        embeddings = self.model.get_image_embeddings(pixel_values=pixels)
        return embeddings, inputs["original_sizes"], inputs["reshaped_input_sizes"]

    def segment(self, rgb: np.ndarray, boxes: Sequence[Sequence[float]]) -> tuple[np.ndarray, np.ndarray]:
        """(N, H, W) bool masks and (N,) IoU predictions clipped to [0, 1] for N xyxy boxes."""
        import torch

        if len(boxes) == 0:
            return np.zeros((0,) + rgb.shape[:2], dtype=bool), np.zeros(0, dtype=np.float32)
        with torch.inference_mode():
            embeddings, original, reshaped = self.embedding_cache.get_or_compute(image_key(rgb),
                                                                                 lambda: self._embed(rgb))
            (h, w), (rh, rw) = original[0].tolist(), reshaped[0].tolist()
            scale = torch.tensor([rw / w, rh / h, rw / w, rh / h], dtype=torch.float32)
            prompt = torch.as_tensor(np.asarray(boxes, dtype=np.float32)) * scale
            out = self.model(
                image_embeddings=embeddings,
                input_boxes=prompt[None].to(self.runtime.device, self.runtime.dtype),
                multimask_output=False,
            )
            logits = self.processor.image_processor.post_process_masks(
                out.pred_masks.float().cpu(), original, reshaped, binarize=False
            )[0]  # (N, 1, H, W)
            masks = (logits[:, 0] > 0.0).numpy()
            ious = out.iou_scores[0, :, 0].float().clamp(0.0, 1.0).cpu().numpy()
        return masks, ious
