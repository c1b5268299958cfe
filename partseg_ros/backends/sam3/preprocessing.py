"""SAM 3 image preprocessing in plain torch (the transformers processor needs torchvision).

Mirrors what ``Sam3ImageProcessor`` does: resize the whole image (no aspect
preservation, no padding) to the model's square input size with antialiased
bilinear interpolation, scale to [0, 1], and normalise with the processor's
mean/std (0.5/0.5 for the released SAM 3). One difference: the torchvision
path resizes uint8 tensors and so rounds to integers before normalising; here
the resize runs in float, which differs by under 1/255 per pixel.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np
import torch
import torch.nn.functional as F

# Defaults of the released SAM 3 processor (facebook/sam3, preprocessor_config.json).
SAM3_IMAGE_MEAN = (0.5, 0.5, 0.5)
SAM3_IMAGE_STD = (0.5, 0.5, 0.5)


@dataclass(frozen=True)
class Sam3ImageTransform:
    """RGB uint8 HxWx3 -> normalised (1, 3, S, S) pixel values for ``Sam3Model``."""

    image_size: int = 1008
    mean: Sequence[float] = SAM3_IMAGE_MEAN
    std: Sequence[float] = SAM3_IMAGE_STD

    @classmethod
    def from_pretrained_dir(
        cls, directory: Union[str, Path], image_size: Optional[int] = None
    ) -> "Sam3ImageTransform":
        """Read size/mean/std from a ``preprocessor_config.json`` when the checkpoint has one."""
        path = Path(directory) / "preprocessor_config.json"
        fields: dict = {}
        if path.is_file():
            data = json.loads(path.read_text())
            size = data.get("size") or {}
            if isinstance(size, dict) and "height" in size:
                fields["image_size"] = int(size["height"])
            if data.get("image_mean") is not None:
                fields["mean"] = tuple(float(v) for v in data["image_mean"])
            if data.get("image_std") is not None:
                fields["std"] = tuple(float(v) for v in data["image_std"])
        if image_size is not None:
            fields["image_size"] = int(image_size)
        return cls(**fields)

    def __call__(
        self, rgb: np.ndarray, device: Union[str, torch.device] = "cpu", dtype: torch.dtype = torch.float32
    ) -> torch.Tensor:
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise ValueError(f"expected HxWx3 uint8 RGB, got {rgb.shape} {rgb.dtype}")
        image = torch.from_numpy(np.ascontiguousarray(rgb)).to(device)
        image = image.permute(2, 0, 1).unsqueeze(0).to(torch.float32)
        if image.shape[-2:] != (self.image_size, self.image_size):
            image = F.interpolate(
                image, size=(self.image_size, self.image_size), mode="bilinear", align_corners=False, antialias=True
            )
        mean = torch.tensor(self.mean, dtype=torch.float32, device=image.device).view(1, 3, 1, 1)
        std = torch.tensor(self.std, dtype=torch.float32, device=image.device).view(1, 3, 1, 1)
        return ((image / 255.0 - mean) / std).to(dtype)
