"""Small PNG overlays of predicted and true parts, for the report.

Made where the masks are (in the worker), so only a few kilobytes travel back
to the process that writes the report.
"""

from __future__ import annotations

import io
from typing import Optional

import numpy as np

TRUE_COLOR = np.array([40, 200, 60], dtype=np.float32)  # green: the target part
PRED_COLOR = np.array([230, 40, 200], dtype=np.float32)  # magenta: the prediction
BOTH_COLOR = np.array([250, 220, 40], dtype=np.float32)  # yellow: where they agree
GRASP_COLOR = (30, 120, 255)


def overlay_image(
    rgb: np.ndarray,
    target_mask: np.ndarray,
    predicted_mask: np.ndarray,
    grasp_pixel: Optional[tuple[int, int]] = None,
    alpha: float = 0.55,
) -> np.ndarray:
    """The image, dimmed, with target (green), prediction (magenta), overlap (yellow) and the grasp point."""
    out = rgb.astype(np.float32) * 0.6
    target_only = target_mask & ~predicted_mask
    pred_only = predicted_mask & ~target_mask
    both = target_mask & predicted_mask
    for region, color in ((target_only, TRUE_COLOR), (pred_only, PRED_COLOR), (both, BOTH_COLOR)):
        out[region] = (1.0 - alpha) * out[region] + alpha * color
    image = np.clip(out, 0, 255).astype(np.uint8)
    if grasp_pixel is not None:
        col, row = grasp_pixel
        h, w = image.shape[:2]
        arm = max(2, min(h, w) // 40)
        image[max(0, row - arm) : min(h, row + arm + 1), max(0, col - 1) : min(w, col + 2)] = GRASP_COLOR
        image[max(0, row - 1) : min(h, row + 2), max(0, col - arm) : min(w, col + arm + 1)] = GRASP_COLOR
    return image


def png_thumbnail(image: np.ndarray, max_width: int = 240) -> bytes:
    """PNG bytes of an RGB image, downscaled to at most ``max_width`` pixels wide."""
    from PIL import Image

    pil = Image.fromarray(image)
    if pil.width > max_width:
        pil = pil.resize((max_width, max(1, round(pil.height * max_width / pil.width))), Image.Resampling.BILINEAR)
    buffer = io.BytesIO()
    pil.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()
