"""Colour names for pixels and regions, in the words instructions use.

A pixel is named from HSV: low saturation gives black / grey / white by value,
otherwise the hue sector gives the chromatic name, with dark oranges/reds
called brown and pale reds/magentas called pink. A region's colour is the
histogram of its pixels' names, so "the green martini glass" is the object
whose pixels are most often green, robust to shading and highlights.
"""

from __future__ import annotations

import numpy as np

from partseg_ros.language.text import COLOUR_WORDS

CHROMATIC_SECTORS = (  # hue upper bound (degrees) -> name
    (12.0, "red"),
    (40.0, "orange"),
    (68.0, "yellow"),
    (165.0, "green"),
    (195.0, "teal"),
    (255.0, "blue"),
    (290.0, "purple"),
    (340.0, "pink"),
    (360.0, "red"),
)
NAME_INDEX = {name: i for i, name in enumerate(COLOUR_WORDS)}
# Words that a person might use for the same appearance (a grey glass looks silver).
RELATED = {
    "grey": ("silver",),
    "silver": ("grey", "white"),
    "white": ("silver",),
    "beige": ("white", "yellow", "brown"),
    "brown": ("orange",),
    "teal": ("green", "blue"),
    "cyan": ("teal", "blue"),
    "gold": ("yellow", "orange"),
    "pink": ("red", "purple"),
    "purple": ("pink", "blue"),
}


def rgb_to_hsv(rgb: np.ndarray) -> np.ndarray:
    """(..., 3) uint8 or float 0..1 -> (..., 3) hue degrees, saturation, value in 0..1."""
    x = rgb.astype(np.float32)
    if rgb.dtype == np.uint8:
        x /= 255.0
    r, g, b = x[..., 0], x[..., 1], x[..., 2]
    v = x.max(axis=-1)
    c = v - x.min(axis=-1)
    s = np.where(v > 1e-6, c / np.maximum(v, 1e-6), 0.0)
    safe = np.maximum(c, 1e-6)
    h = np.where(v == r, ((g - b) / safe) % 6.0, np.where(v == g, (b - r) / safe + 2.0, (r - g) / safe + 4.0))
    h = np.where(c > 1e-6, h * 60.0, 0.0)
    return np.stack([h, s, v], axis=-1)


def name_pixels(rgb: np.ndarray) -> np.ndarray:
    """(...,3) colours -> (...) int indices into COLOUR_WORDS."""
    hsv = rgb_to_hsv(rgb)
    h, s, v = hsv[..., 0], hsv[..., 1], hsv[..., 2]
    names = np.full(h.shape, NAME_INDEX["grey"], dtype=np.int16)
    chroma = np.zeros(h.shape, dtype=np.int16)
    lower = 0.0
    for upper, name in CHROMATIC_SECTORS:
        chroma[(h >= lower) & (h < upper)] = NAME_INDEX[name]
        lower = upper
    # Dark warm colours read as brown; pale warm reds as pink.
    warm = (h < 45.0) | (h >= 345.0)
    chroma = np.where(warm & (v < 0.55) & (s > 0.3) & (h >= 12.0), NAME_INDEX["brown"], chroma)
    chroma = np.where(warm & (v >= 0.75) & (s < 0.45) & (s >= 0.2) & (h < 12.0), NAME_INDEX["pink"], chroma)
    chromatic = (s >= 0.25) & (v >= 0.18)
    names = np.where(chromatic, chroma, names)
    achromatic = ~chromatic
    names = np.where(achromatic & (v < 0.2), NAME_INDEX["black"], names)
    names = np.where(achromatic & (v >= 0.2) & (v < 0.78), NAME_INDEX["grey"], names)
    names = np.where(achromatic & (v >= 0.78), NAME_INDEX["white"], names)
    return names


_LUT_BITS = 5
_lut: np.ndarray | None = None


def name_pixels_fast(rgb: np.ndarray) -> np.ndarray:
    """name_pixels through a 32x32x32 lookup table of bin centres (uint8 input)."""
    global _lut
    if _lut is None:
        levels = (np.arange(1 << _LUT_BITS) << (8 - _LUT_BITS)) + (1 << (7 - _LUT_BITS))
        grid = np.stack(np.meshgrid(levels, levels, levels, indexing="ij"), axis=-1).astype(np.uint8)
        _lut = name_pixels(grid)
    q = (rgb >> (8 - _LUT_BITS)).astype(np.intp)
    return _lut[q[..., 0], q[..., 1], q[..., 2]]


WHITE_LIT_VALUE = 0.74  # lit-side brightness (90th percentile of value) above which a neutral surface is white


def name_neutral_by_lit_side(names: np.ndarray, rgb_pixels: np.ndarray, min_pixels: int = 10) -> np.ndarray:
    """Grey/white names of a region's neutral pixels, decided by the brightness of its lit side.

    Shading only darkens: the side of a white mug facing away from the light
    reads grey pixel by pixel, and a highlight on a grey mug reads white. The
    brightest neutral pixels (the 90th percentile) tell which surface it is,
    so the region's grey and white pixels are named alike from them. Black
    (very dark) pixels keep their name: a black handle on a white body stays black.
    """
    grey, white = NAME_INDEX["grey"], NAME_INDEX["white"]
    neutral = (names == grey) | (names == white)
    if int(neutral.sum()) < min_pixels:
        return names
    value = rgb_pixels[neutral].max(axis=-1).astype(np.float32)
    if rgb_pixels.dtype == np.uint8:
        value /= 255.0
    lit = float(np.percentile(value, 90))
    names = names.copy()
    names[neutral] = white if lit >= WHITE_LIT_VALUE else grey
    return names


def colour_histogram(rgb_pixels: np.ndarray) -> np.ndarray:
    """Normalised histogram over COLOUR_WORDS of (N, 3) pixels, neutral names taken from the lit side."""
    if len(rgb_pixels) == 0:
        return np.zeros(len(COLOUR_WORDS))
    names = name_pixels_fast(rgb_pixels) if rgb_pixels.dtype == np.uint8 else name_pixels(rgb_pixels)
    names = name_neutral_by_lit_side(names.ravel(), rgb_pixels.reshape(-1, 3))
    counts = np.bincount(names, minlength=len(COLOUR_WORDS)).astype(np.float64)
    return counts / counts.sum()


def dominant_colour(histogram: np.ndarray) -> str:
    return COLOUR_WORDS[int(np.argmax(histogram))] if histogram.sum() > 0 else ""


def colour_agreement(histogram: np.ndarray, word: str) -> float:
    """How well a region fits a colour word: its share of that colour (plus half the share of related names)."""
    if word not in NAME_INDEX or histogram.sum() == 0:
        return 0.0
    share = float(histogram[NAME_INDEX[word]])
    share += 0.5 * sum(float(histogram[NAME_INDEX[r]]) for r in RELATED.get(word, ()) if r in NAME_INDEX)
    return min(1.0, share)
