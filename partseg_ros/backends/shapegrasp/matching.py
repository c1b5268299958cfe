"""Matching geometry to the knowledge base: which object is it, which piece is which part.

Both scores are sums of small, named agreements (size within the object's
typical range, posture, a part at the expected position, protruding or not,
narrower or thicker than its siblings...), so the explanation of a choice is
the list of agreements that made it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np
from scipy.optimize import linear_sum_assignment

from partseg_ros.backends.shapegrasp.colour import colour_agreement
from partseg_ros.backends.shapegrasp.decomposition import Decomposition, GeometricPart
from partseg_ros.language.knowledge_base import ObjectEntry, ObjectVariant, PartEntry

SHAPE_SIMILARITY = {
    frozenset(("rod", "cylinder")): 0.5,
    frozenset(("cylinder", "cone")): 0.4,
    frozenset(("sphere", "blob")): 0.7,
    frozenset(("box", "blob")): 0.4,
    frozenset(("plate", "box")): 0.3,
    frozenset(("ring", "rod")): 0.4,
    frozenset(("cylinder", "box")): 0.3,
    frozenset(("sphere", "cylinder")): 0.3,
    frozenset(("cone", "rod")): 0.3,
    frozenset(("plate", "blob")): 0.3,
}
POSITION_SIMILARITY = {  # upright objects say top/bottom where lying ones say end
    frozenset(("end", "top")): 0.6,
    frozenset(("end", "bottom")): 0.6,
    frozenset(("side", "end")): 0.3,
    frozenset(("middle", "bottom")): 0.3,
    frozenset(("middle", "top")): 0.2,
    frozenset(("side", "top")): 0.3,
}
SIZE_SHARE = {"small": (0.0, 0.3), "medium": (0.15, 0.65), "large": (0.4, 1.0)}
WEIGHTS = {"position": 1.0, "protruding": 1.2, "width": 0.9, "thickness": 0.9, "shape": 0.7, "size": 0.6}


@dataclass
class PartScore:
    score: float
    reasons: list[str] = field(default_factory=list)


def _rank_word(values: np.ndarray, index: int, low: str, high: str) -> Optional[str]:
    """'low'/'high' when the part is clearly the smallest/largest of its siblings on that measure."""
    if len(values) < 2:
        return None
    v = values[index]
    others = np.delete(values, index)
    if v <= others.min() * 0.8:
        return low
    if v >= others.max() * 1.25:
        return high
    return None


def score_part(signature_part: PartEntry, part: GeometricPart, siblings: list[GeometricPart]) -> PartScore:
    """Agreement of one geometric part with one knowledge-base part signature."""
    sig = signature_part.signature
    result = PartScore(0.0)

    def add(key: str, value: float, text: str) -> None:
        result.score += WEIGHTS[key] * value
        if value > 0:
            result.reasons.append(text)

    if sig.positions:
        sim = max(1.0 if part.position == p else POSITION_SIMILARITY.get(frozenset((part.position, p)), -1.0)
                  for p in sig.positions)
        add("position", sim, f"at the {part.position}")
    if sig.protruding is not None:
        add("protruding", 1.0 if part.protruding == sig.protruding else -1.0,
            "protrudes from the body" if part.protruding else "part of the main body")
    if sig.shapes:
        sim = max(1.0 if part.shape == s else SHAPE_SIMILARITY.get(frozenset((part.shape, s)), -0.4)
                  for s in sig.shapes)
        add("shape", sim, f"{part.shape}-shaped")
    if sig.size:
        lo, hi = SIZE_SHARE[sig.size]
        inside = lo <= part.share <= hi
        add("size", 1.0 if inside else -0.6, f"{sig.size} ({part.share:.0%} of the object)")
    index = siblings.index(part)
    if sig.width:
        word = _rank_word(np.array([p.width_m for p in siblings]), index, "narrow", "wide")
        if word is not None:
            compared = "narrower" if word == "narrow" else "wider"
            add("width", 1.0 if word == sig.width else -1.0, f"{compared} than the other parts")
    if sig.thickness:
        word = _rank_word(np.array([p.thickness_m for p in siblings]), index, "thin", "thick")
        if word is not None:
            compared = "thinner" if word == "thin" else "thicker"
            add("thickness", 1.0 if word == sig.thickness else -1.0, f"{compared} than the other parts")
    return result


@dataclass
class PartAssignment:
    """Which geometric parts the knowledge-base parts were matched to."""

    parts_for: dict[str, list[int]]  # KB part name -> geometric part indices
    scores: dict[tuple[str, int], PartScore]
    fit: float  # mean best agreement of the KB parts (structure fit of the object)


def assign_parts(entry: ObjectEntry, decomposition: Decomposition) -> PartAssignment:
    """One-to-one best assignment (Hungarian), then leftover pieces join the part they fit best."""
    geo = decomposition.parts
    kb_parts = list(entry.parts)
    scores = {(k.name, g.index): score_part(k, g, geo) for k in kb_parts for g in geo}
    if geo:
        matrix = np.array([[scores[(k.name, g.index)].score for g in geo] for k in kb_parts])
    else:
        matrix = np.zeros((len(kb_parts), 0))
    parts_for: dict[str, list[int]] = {k.name: [] for k in kb_parts}
    if matrix.size == 0:
        return PartAssignment(parts_for, scores, -1.0)
    rows, cols = linear_sum_assignment(-matrix)
    assigned = set()
    for r, c in zip(rows, cols):
        parts_for[kb_parts[r].name].append(geo[c].index)
        assigned.add(c)
    for c, g in enumerate(geo):
        if c not in assigned:
            r = int(np.argmax(matrix[:, c]))
            parts_for[kb_parts[r].name].append(g.index)
    # Structure fit: how well the matched pieces agree, penalising required KB parts that found no piece. An
    # optional part (a teacup's saucer) counts only when a piece took it, and only if that piece fits it at all.
    kept = [(r, c) for r, c in zip(rows, cols) if not (kb_parts[r].optional and matrix[r, c] <= 0)]
    matched = [matrix[r, c] for r, c in kept]
    matched_rows = {r for r, _ in kept}
    counted = [k for i, k in enumerate(kb_parts) if not k.optional or i in matched_rows]
    missing = len(counted) - len(matched)
    max_score = sum(WEIGHTS.values())
    fit = (sum(matched) - 0.5 * missing * max_score * 0.3) / (max(len(counted), 1) * max_score)
    return PartAssignment(parts_for, scores, float(fit))


@dataclass
class ObjectFit:
    score: float
    reasons: list[str]
    assignment: PartAssignment


def range_fit(value: float, lo: float, hi: float, sharpness: float = 2.0) -> float:
    """1 inside [lo, hi], falling off with the log-ratio outside (faster with a higher sharpness)."""
    if value <= 0:
        return 0.0
    if lo <= value <= hi:
        return 1.0
    ratio = lo / value if value < lo else value / hi
    return float(np.exp(-sharpness * np.log(ratio)))


def object_fit(entry: ObjectEntry, decomposition: Decomposition) -> ObjectFit:
    """How well a cluster's geometry fits a knowledge-base object (0..1-ish) and why."""
    reasons = []
    longest = decomposition.longest_m
    size = range_fit(longest, *entry.size_m)
    if size > 0.8:
        reasons.append(f"its size ({longest * 100:.0f} cm) is typical of a {entry.name}")
    posture = 1.0
    if entry.posture in ("upright", "lying"):
        posture = 1.0 if decomposition.posture == entry.posture else 0.4
        if posture == 1.0:
            reasons.append(f"it {'stands upright' if entry.posture == 'upright' else 'lies on the table'}")
    height = 1.0
    if entry.height_m is not None:
        height = range_fit(decomposition.height_m, *entry.height_m)
        if height > 0.8:
            reasons.append(f"its height ({decomposition.height_m * 100:.0f} cm) is typical of a {entry.name}")
    assignment = assign_parts(entry, decomposition)
    structure = float(np.clip((1.0 + assignment.fit) / 2.0, 0.0, 1.0))
    if entry.width_m is None:
        score = 0.3 * size + 0.2 * height + 0.15 * posture + 0.35 * structure
        return ObjectFit(score, reasons, assignment)
    # The middle extent does not change with posture; one view sees only part of an object's depth, so the
    # range is widened a little before it is compared.
    middle = decomposition.middle_extent_m
    width = range_fit(middle, entry.width_m[0] * 0.8, entry.width_m[1] * 1.2)
    if width > 0.8:
        reasons.append(f"its width ({middle * 100:.0f} cm) is typical of a {entry.name}")
    else:
        reasons.append(f"its width ({middle * 100:.0f} cm) is unusual for a {entry.name}")
    score = 0.25 * size + 0.2 * width + 0.15 * height + 0.1 * posture + 0.3 * structure
    return ObjectFit(score, reasons, assignment)


def colour_fit(colours: list[str], hist: np.ndarray) -> float:
    """Mean agreement of the requested colour words with a region's colour histogram (1 if none asked)."""
    if not colours:
        return 1.0
    return float(np.mean([colour_agreement(hist, c) for c in colours]))


def variant_fit(variant: ObjectVariant, decomposition: Decomposition) -> float:
    """How well a cluster's size fits a named kind of an object (a bread knife among knives).

    Kinds of one object differ mainly in size, so the fit falls off three times faster outside the range than
    an object's own size fit does.
    """
    fit = range_fit(decomposition.longest_m, *variant.size_m, sharpness=6.0)
    if variant.width_m is not None:
        fit *= range_fit(decomposition.middle_extent_m, variant.width_m[0] * 0.8, variant.width_m[1] * 1.2,
                         sharpness=6.0)
    return fit
