"""The default backend: geometric parts from RGB-D plus an instruction reasoner.

No learned vision weights: the table is found and removed, objects are the
clusters left on it, each object is cut into simple parts (shape, position,
size, colour), the instruction is resolved against the written knowledge base
(partseg_ros.language), and the knowledge base's part signatures say which
geometric piece is the part the task needs. Every result carries the chain of
reasons that produced it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple, Optional

import numpy as np
from scipy import ndimage

from partseg_ros.backends.base import PartGroundingBackend, config_from_options
from partseg_ros.backends.shapegrasp.decomposition import (
    Decomposition,
    DecompositionConfig,
    ambiguous_posture,
    decompose,
)
from partseg_ros.backends.shapegrasp.matching import (
    ObjectFit,
    colour_fit,
    object_fit,
    range_fit,
    score_part,
    variant_fit,
)
from partseg_ros.backends.reasoning import (
    begin_grounding,
    build_reasoner,
    empty_result,
    object_candidates,
)
from partseg_ros.backends.shapegrasp.proposals import propose_objects, to_full_resolution
from partseg_ros.backends.shapegrasp.segmentation import ObjectCluster, SegmentationConfig
from partseg_ros.language.reasoner import Candidate, InstructionResolution, PartReasoner
from partseg_ros.types import GroundingRequest, GroundingResult, PartInstance


@dataclass(frozen=True)
class ShapeGraspConfig:
    """Every option of the backend (``backend_options.*``, ``--backend-option``), checked at construction."""

    knowledge_base: Optional[str] = None  # YAML path; None = the shipped knowledge base
    language_model: Optional[str] = None  # "module:function" or a local OpenAI-compatible URL
    language_model_options: dict = field(default_factory=dict)
    use_embeddings: bool = True  # all-MiniLM-L6-v2 sentence embeddings in the reasoner
    min_object_fit: float = 0.3  # below it the requested object counts as absent
    # A requested colour, counting related names at half weight, must cover at least this share of the object:
    # a few red pixels from a neighbour do not make "the red sunglasses".
    min_colour_share: float = 0.25
    stride: int = 2  # geometry runs on every stride-th pixel (4x fewer points at 2); masks come back at full size
    device: str = "auto"  # accepted as every backend's; the geometry runs on the CPU whatever it says
    segmentation: SegmentationConfig = field(default_factory=SegmentationConfig)
    decomposition: DecompositionConfig = field(default_factory=DecompositionConfig)


class ScoredChoice(NamedTuple):
    """One (object in view, knowledge-base candidate) pairing with its score before the kind term."""

    cluster: ObjectCluster
    decomposition: Decomposition
    candidate: Candidate
    fit: ObjectFit
    colour: float
    posterior: float
    cluster_no: int
    score: float


def _softmax_share(score: float, rivals: list[float], sharpness: float = 8.0) -> float:
    """Share of a fit among itself and its rivals' fits (soft arg-max)."""
    values = np.array([score] + list(rivals)) * sharpness
    values = np.exp(values - values.max())
    return float(values[0] / values.sum())


class ShapeGraspBackend(PartGroundingBackend):
    """Options: the fields of ShapeGraspConfig; an unknown name fails at construction with the closest valid one."""

    name = "shapegrasp"

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.config = config_from_options(ShapeGraspConfig, options, self.name)
        self.reasoner: Optional[PartReasoner] = None
        self.segmentation_config = self.config.segmentation
        self.decomposition_config = self.config.decomposition
        self.min_object_fit = float(self.config.min_object_fit)
        self.min_colour_share = float(self.config.min_colour_share)

    def _load(self) -> None:
        self.reasoner = build_reasoner(self.config.knowledge_base, self.config.language_model,
                                       self.config.language_model_options, self.config.use_embeddings)

    def warmup(self) -> None:
        self.load()
        self.reasoner.prepare()
        self.reasoner.resolve("pick up the mug")

    # ------------------------------------------------------------------ main

    def _ground(self, request: GroundingRequest) -> GroundingResult:
        start = begin_grounding(self.name, self.reasoner, request, "it finds objects in 3D")
        resolution, timings, lap = start.resolution, start.clock.timings, start.clock.lap
        if start.refusal:
            return self._empty(resolution, start.refusal, timings)
        stride = max(1, int(self.config.stride))
        proposals = propose_objects(request, stride, self.segmentation_config, lap)
        if proposals is None:
            return self._empty(resolution, "no table plane found in the depth image", timings)
        plane, depth, clusters = proposals.plane, proposals.depth, proposals.clusters
        lap("objects")
        if not clusters:
            return self._empty(resolution, "no object found on the table", timings)
        # Each object is read in its likely posture, and in the other one too when the shape is ambiguous.
        readings = []
        for cluster in clusters:
            first = decompose(cluster, self.decomposition_config)
            options = [first]
            if ambiguous_posture(cluster, self.decomposition_config):
                other = "lying" if first.posture == "upright" else "upright"
                options.append(decompose(cluster, self.decomposition_config, posture=other))
            readings.append(options)
        lap("parts")

        choice = self._choose_object(resolution, clusters, readings, oracle=request.object_mask_hint is not None)
        if choice is None:
            wanted = resolution.object_phrase or resolution.kb_object
            return self._empty(resolution, f"no object in view fits '{wanted}'", timings)
        cluster, decomposition, candidate, fit, object_reasons, score = choice
        part_indices, part_reasons = self._choose_part(candidate, fit, decomposition)
        mask = self._part_mask(cluster, decomposition, part_indices, depth.shape)
        mask = to_full_resolution(mask, request, plane, stride)
        if request.object_mask_hint is not None:
            mask &= request.object_mask_hint.astype(bool)
        lap("grounding")

        reasons = list(resolution.reasons) + object_reasons + part_reasons
        reasons.append("geometry: " + decomposition.describe())
        explanation = "; ".join(reasons)
        instance = PartInstance(
            mask=mask,
            score=float(np.clip(score, 0.0, 1.0)),
            object_label=candidate.object_name,
            part_label=candidate.part_name,
            explanation=explanation,
        )
        return GroundingResult(
            instances=[instance] if mask.any() else [],
            backend=self.name,
            object_label=candidate.object_name,
            part_label=candidate.part_name,
            explanation=explanation,
            timings_ms=timings,
        )

    # ------------------------------------------------------------------ steps

    def _candidates(self, resolution: InstructionResolution) -> list[Candidate]:
        return object_candidates(self.reasoner, resolution)

    def _choose_object(self, resolution: InstructionResolution, clusters: list[ObjectCluster],
                       readings: list[list[Decomposition]], oracle: bool):
        """Best (cluster, candidate) by prior x recognition x colour x kind agreement; None when nothing fits.

        Recognition mixes the absolute fit of the cluster to the requested
        object with how much better it fits that object than the other
        tabletop objects of the knowledge base (so a book does not pass for a
        dish brush just because both are the right size).
        """
        colours = list(resolution.object_attributes.get("colours") or [])
        kb = self.reasoner.kb
        candidates = self._candidates(resolution)
        # A named kind ("bread knife") or the thing acted on ("cut the bread") narrows the expected size.
        variants = {
            c.object_name: kb.objects[c.object_name].variant_for(resolution.object_phrase, resolution.patient)
            for c in candidates
        }
        scored: list[ScoredChoice] = []
        for cluster_no, (cluster, options) in enumerate(zip(clusters, readings)):
            colour = colour_fit(colours, cluster.colour_hist)
            fits: dict[str, tuple[ObjectFit, Decomposition]] = {}
            for candidate in candidates:
                fit, decomposition = max(
                    ((object_fit(kb.objects[candidate.object_name], d), d) for d in options), key=lambda t: t[0].score
                )
                fits[candidate.object_name] = (fit, decomposition)
            rivals = self._rival_scores(options, exclude=set(fits))
            for candidate in candidates:
                fit, decomposition = fits[candidate.object_name]
                posterior = _softmax_share(fit.score, rivals)
                recognition = 0.5 * fit.score + 0.5 * posterior
                colour_term = 1.0 if not colours else 0.3 + 0.7 * colour
                score = recognition * (0.5 + 0.5 * candidate.score) * colour_term
                scored.append(ScoredChoice(cluster, decomposition, candidate, fit, colour, posterior, cluster_no,
                                           score))
        if not scored:
            return None
        kind_terms = self._kind_terms(scored, variants, readings)
        best = max(zip(scored, kind_terms), key=lambda t: t[0].score * t[1])
        (cluster, decomposition, candidate, fit, colour, posterior, _, score), kind_term = best
        score *= kind_term
        if not oracle:
            # The colour already weighs in the score: when even the best object lacks it, nothing in view fits.
            if fit.score < self.min_object_fit:
                return None
            if colours and colour < self.min_colour_share:
                return None
        reasons = [f"object {cluster.index} chosen as the {candidate.object_name} "
                   f"(fit {fit.score:.2f}, {posterior:.0%} against other objects)"]
        variant, variant_reason = variants[candidate.object_name]
        if variant is not None:
            sized = ("its size fits that kind best among the likely ones in view" if kind_term > 0.97
                     else "another likely object is closer to that kind's size" if kind_term < 1.0
                     else "no likely object in view clearly has that kind's size")
            reasons.append(f"{variant_reason}, so a {variant.name} is looked for: {sized}")
        reasons += fit.reasons
        if colours:
            reasons.append(f"{' and '.join(colours)} covers {colour:.0%} of it")
        return cluster, decomposition, candidate, fit, reasons, score

    @staticmethod
    def _kind_terms(scored: list[ScoredChoice], variants: dict, readings: list[list[Decomposition]],
                    tie_share: float = 0.9, weight: float = 0.3, clear_fit: float = 0.8) -> list[float]:
        """Factor favouring the object whose size fits the asked-for kind (a bread knife among knives).

        The kind only ranks objects that are already about equally likely to be
        the object (within ``tie_share`` of the best score for that object), only
        when one of those clearly has the kind's size (``clear_fit``), and
        relative to the best-sized of them: a lone steak knife is still used
        to "cut the bread", and a knife-like flower a little longer than the
        knife does not win on size.
        """
        terms = [1.0] * len(scored)
        for name, (variant, _) in variants.items():
            if variant is None:
                continue
            rows = [i for i, item in enumerate(scored) if item.candidate.object_name == name]
            if not rows:
                continue
            top = max(scored[i].score for i in rows)
            likely = [i for i in rows if scored[i].score >= tie_share * top]
            sizes = {i: max(variant_fit(variant, d) for d in readings[scored[i].cluster_no]) for i in likely}
            best_size = max(sizes.values())
            if best_size < clear_fit:
                continue  # nothing in view clearly has that kind's size: the kind cannot tell them apart
            for i in likely:
                terms[i] = 1.0 - weight + weight * sizes[i] / max(best_size, 1e-6)
            for i in set(rows) - set(likely):
                terms[i] = 1.0 - weight
        return terms

    def _rival_scores(self, options: list[Decomposition], exclude: set[str], keep: int = 8) -> list[float]:
        """Fits of the best other tabletop objects: the cheap size/posture test picks them, the full fit scores them."""
        kb = self.reasoner.kb
        longest = max(d.longest_m for d in options)
        middle = max(d.middle_extent_m for d in options)
        height = max(d.height_m for d in options)
        rough = []
        for entry in kb.objects.values():
            if entry.name in exclude or entry.size_m[0] > 0.5:
                continue
            # Every extent the knowledge base gives is used, so ties on length alone do not fall to file order.
            size = range_fit(longest, *entry.size_m)
            size += range_fit(middle, *entry.width_m) if entry.width_m else 0.5
            size += range_fit(height, *entry.height_m) if entry.height_m else 0.5
            posture = 1.0 if entry.posture == "any" or any(d.posture == entry.posture for d in options) else 0.4
            rough.append((size + posture, entry))
        rough.sort(key=lambda t: -t[0])
        return [object_fit(entry, options[0]).score for _, entry in rough[:keep]]

    def _choose_part(self, candidate: Candidate, fit: ObjectFit,
                     decomposition: Decomposition) -> tuple[list[int], list[str]]:
        entry = self.reasoner.kb.objects[candidate.object_name]
        target = entry.part(candidate.part_name)
        indices = list(fit.assignment.parts_for.get(candidate.part_name, []))
        if not indices and decomposition.parts:
            # No piece was assigned to this part (too few pieces): take the piece that fits it best.
            scores = [score_part(target, g, decomposition.parts).score for g in decomposition.parts]
            indices = [decomposition.parts[int(np.argmax(scores))].index]
        reasons = []
        for index in indices:
            why = fit.assignment.scores.get((candidate.part_name, index))
            detail = ", ".join(why.reasons) if why and why.reasons else "best remaining piece"
            reasons.append(f"piece {index} is the {candidate.part_name}: {detail}")
        if len(decomposition.parts) == 1:
            reasons.append("the object did not split into pieces: the whole object is used")
        return indices, reasons

    @staticmethod
    def _part_mask(cluster: ObjectCluster, decomposition: Decomposition, indices: list[int],
                   size: tuple[int, int]) -> np.ndarray:
        """Mask of the chosen pieces; object pixels without depth join the nearest piece."""
        rows = slice(max(int(cluster.pixels[:, 0].min()) - 2, 0), int(cluster.pixels[:, 0].max()) + 3)
        cols = slice(max(int(cluster.pixels[:, 1].min()) - 2, 0), int(cluster.pixels[:, 1].max()) + 3)
        labels = np.full(size, -1, dtype=np.int32)
        for part in decomposition.parts:
            px = cluster.pixels[part.point_idx]
            labels[px[:, 0], px[:, 1]] = part.index
        window = labels[rows, cols]
        # Holes in the object (missing depth) belong to it: close small gaps, then fill enclosed ones.
        object_window = ndimage.binary_fill_holes(
            ndimage.binary_closing(cluster.mask[rows, cols] | (window >= 0), structure=np.ones((3, 3), bool))
        )
        if (object_window & (window < 0)).any() and (window >= 0).any():
            _, (ri, ci) = ndimage.distance_transform_edt(window < 0, return_indices=True)
            window = np.where(object_window, window[ri, ci], -1)
        mask = np.zeros(size, dtype=bool)
        mask[rows, cols] = np.isin(window, indices)
        return mask

    def _empty(self, resolution: InstructionResolution, why: str, timings: dict[str, float]) -> GroundingResult:
        return empty_result(self.name, resolution, why, timings)
