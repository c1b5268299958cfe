"""Named colours for the synthetic objects, as the task wording names them.

Palette entries are sRGB (what a person calls "blue"); the renderer shades
in linear RGB, so :func:`linear_color` converts and adds seeded jitter that
keeps the hue recognisable (a "blue mug" stays blue in every seed).
"""

from __future__ import annotations

import numpy as np

# sRGB 0..255. Names are the words the study's tasks use, plus materials.
PALETTE: dict[str, tuple[int, int, int]] = {
    "red": (200, 30, 35),
    "dark_red": (130, 20, 30),
    "pink": (235, 140, 170),
    "orange": (240, 130, 30),
    "yellow": (240, 205, 40),
    "light_yellow": (245, 230, 150),
    "green": (40, 160, 60),
    "light_green": (150, 210, 120),
    "dark_green": (30, 90, 40),
    "blue": (30, 80, 200),
    "light_blue": (120, 170, 230),
    "navy": (25, 35, 90),
    "purple": (120, 50, 160),
    "brown": (110, 70, 40),
    "dark_brown": (70, 40, 25),
    "tan": (205, 165, 110),
    "beige": (225, 205, 170),
    "white": (235, 235, 230),
    "off_white": (220, 215, 200),
    "grey": (128, 128, 132),
    "light_grey": (185, 185, 188),
    "dark_grey": (70, 70, 74),
    "black": (25, 25, 28),
    "silver": (175, 178, 185),
    "steel": (150, 155, 162),
    "brass": (190, 150, 70),
    "cork": (190, 145, 95),
    "wood": (160, 110, 65),
    "glass": (200, 215, 215),
    "cardboard": (185, 140, 90),
    "bread": (195, 135, 70),
    "meat": (140, 50, 40),
    "cream": (245, 225, 190),
    "teal": (30, 140, 140),
}


def srgb_to_linear(srgb: np.ndarray) -> np.ndarray:
    srgb = np.asarray(srgb, dtype=np.float64)
    return np.where(srgb <= 0.04045, srgb / 12.92, ((srgb + 0.055) / 1.055) ** 2.4)


def linear_to_srgb(linear: np.ndarray) -> np.ndarray:
    """sRGB encoding; keeps float32 input in float32 (images are large)."""
    linear = np.asarray(linear)
    if linear.dtype != np.float32:
        linear = linear.astype(np.float64)
    linear = np.clip(linear, 0.0, 1.0)
    encoded = np.where(linear <= 0.0031308, linear * 12.92, 1.055 * np.power(linear, 1.0 / 2.4) - 0.055)
    return encoded.astype(linear.dtype)


def linear_color(name: str, rng: np.random.Generator | None = None, jitter: float = 0.06) -> tuple[float, float, float]:
    """Linear RGB of a palette colour, brightness/tint jittered by about ``jitter`` (sRGB units)."""
    base = np.asarray(PALETTE[name], dtype=np.float64) / 255.0
    if rng is not None and jitter > 0:
        base = base * rng.uniform(1.0 - jitter, 1.0 + jitter) + rng.normal(0.0, jitter / 3.0, 3)
    lin = srgb_to_linear(np.clip(base, 0.0, 1.0))
    return (float(lin[0]), float(lin[1]), float(lin[2]))
