"""The learned backend: geometric object proposals, a PISA-style network over their RGB-D crops.

Steps for one frame:

1. the instruction is resolved against the knowledge base (the same reasoner
   as ``shapegrasp``): which object, which of its parts, which colour;
2. the table plane and the object clusters on it are found (the same
   proposal code as ``shapegrasp``);
3. every cluster is cropped and encoded once; the phrase "the <part> of the
   <object>" is asked of every crop: the decoder answers with a presence
   score (is this that object?) and a part mask;
4. the object with the highest presence, weighted by colour agreement when
   the instruction names a colour, wins; when no crop's presence reaches
   ``presence_threshold`` the answer is "no target" with the reason.

Recognition and part masks are learned (from generated data, see
``train.py``); only the proposals and the language resolution are rules.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Callable, Optional

import numpy as np

from partseg_ros.backends.base import PartGroundingBackend, config_from_options
from partseg_ros.backends.pisa_rgbd.crops import (
    CropWindow,
    crop_inputs,
    height_above_plane,
    paste_crop,
    square_window,
    window_focal_px,
)
from partseg_ros.backends.pisa_rgbd.vocabulary import learned_kb_objects, learned_name, query_text
from partseg_ros.backends.reasoning import begin_grounding, build_reasoner, empty_result, object_candidates
from partseg_ros.backends.shapegrasp.colour import colour_histogram
from partseg_ros.backends.shapegrasp.matching import colour_fit
from partseg_ros.backends.shapegrasp.proposals import depth_hole_proposals, propose_objects
from partseg_ros.backends.shapegrasp.segmentation import SegmentationConfig
from partseg_ros.geometry.filters import guided_filter
from partseg_ros.language.reasoner import Candidate, InstructionResolution
from partseg_ros.types import GroundingRequest, GroundingResult, PartInstance


CANDIDATE_CHOICES = ("first_present", "joint")
UNLEARNED_OBJECT_ANSWERS = ("shapegrasp", "no_target", "network")
MASK_REFINEMENTS = ("none", "guided")


@dataclass(frozen=True)
class PisaRgbdConfig:
    """Every threshold of the backend; set through ``backend_options``."""

    checkpoint: Optional[str] = None  # model folder or hub id; None = the model shipped with partseg
    # More model folders or hub ids whose presence and part probabilities are averaged with the checkpoint's
    # (same crop rules): independently trained networks err on different crops. Each costs one more network pass.
    # Empty: three runs together won on the in-distribution validation but not held back, and cost three
    # training hours (README, stop 28).
    ensemble: tuple[str, ...] = ()
    device: str = "auto"
    dtype: str = "auto"
    stride: int = 2  # geometry runs on every stride-th pixel
    # below it for every object in view: no target (chosen on the in-distribution validation, README)
    presence_threshold: float = 0.4
    # part probability that counts as part: a thin part's cells straddle its edges and sit below 0.5 (0.5 before;
    # 0.4 won 5 targeted tasks of 332, lost none, on the in-distribution validation, README)
    mask_threshold: float = 0.4
    colour_weight: float = 0.7  # how much a named colour's agreement weighs in the choice (0 = ignored)
    min_colour_share: float = 0.2  # a named colour must cover at least this share of the chosen object
    max_proposals: int = 12  # largest clusters kept (a cluttered table is cut here)
    # Propose objects that returned no depth from their colour against the table (segmentation.hole_* options);
    # the network sees RGB where depth clustering sees nothing.
    depth_hole_proposals: bool = True
    # Crop side as a multiple of the proposal's box plus margin; training drew it from 0.9-1.25, so a larger
    # window (more context around a proposal that lost part of its object) stays within what the network saw.
    crop_scale: float = 1.0
    # Test-time mirroring: mirror_presence asks every phrase of every object's mirrored crop too and averages the
    # presences, so the choice of object rests on two views of it (one more encoder pass over all crops, about
    # 35 ms a frame on the CPU); mirror_average averages the chosen part mask with the mirrored crop's, flipped
    # back (free after mirror_presence's pass, one small pass otherwise). Off: on the in-distribution validation
    # both together won 2 targeted tasks net on one 60-scene sample and none on a second (README).
    mirror_average: bool = False
    mirror_presence: bool = False
    # Snap the part mask's edges to the image's: "guided" filters the upsampled part probability (one value per
    # mask cell, several pixels wide) with the colour crop and the height above the table (refine_height_weight
    # guide units per metre) as guide, over refine_radius_cells mask cells; refine_eps is the guide variance
    # treated as noise. Chosen on the in-distribution validation (README, "The learned backend"); "none" is off.
    mask_refinement: str = "guided"
    refine_radius_cells: float = 1.5
    refine_eps: float = 0.001
    refine_height_weight: float = 10.0
    # The filter fits its edges on a grid of this many pixels per mask cell (a close-up object's larger window
    # is subsampled to it, the fast guided filter) so its cost stays bounded on an HD camera.
    refine_pixels_per_cell: float = 2.0
    part_reach: float = 1.0 / 16.0  # a part may extend this share of the crop side past its proposal...
    part_min_height_m: float = 0.003  # ...on pixels standing at least this high above the table
    candidate_limit: int = 8  # knowledge-base candidates asked when the instruction names no object
    # "first_present": the language's ranking of candidates decides what is wanted, the network only
    # whether (and where) it is in view; "joint": presence x language score, the network may overrule
    candidate_choice: str = "first_present"
    # An object the network never saw in training (not among the model's training kinds) is answered by
    # "shapegrasp" (geometric rules over the knowledge base), "no_target", or "network" (ask it anyway).
    unlearned_object: str = "shapegrasp"
    # Refuse the rules' pick (no target) when the network takes it for an object it knows, at presence_threshold:
    # asked for a wrench, the rules would hand over the wire cutters. Off: the network takes objects it never
    # saw for known ones just as readily (an unseen apple is a "tape measure" at 0.9), so the veto also
    # refused every right answer on the held-back kinds (README, "The learned backend").
    veto_known_objects: bool = False
    knowledge_base: Optional[str] = None
    language_model: Optional[str] = None
    use_embeddings: bool = True

    @classmethod
    def from_options(cls, options: dict[str, Any]) -> "PisaRgbdConfig":
        config = config_from_options(cls, options, "pisa_rgbd",
                                     ignore=("segmentation", "language_model_options", "name"))
        for name in ("presence_threshold", "mask_threshold", "colour_weight", "min_colour_share"):
            value = getattr(config, name)
            if not 0.0 <= float(value) <= 1.0:
                raise ValueError(f"pisa_rgbd option {name} must lie in [0, 1], got {value}")
        if config.candidate_choice not in CANDIDATE_CHOICES:
            raise ValueError(f"pisa_rgbd option candidate_choice must be one of {', '.join(CANDIDATE_CHOICES)}, "
                             f"got {config.candidate_choice!r}")
        if config.unlearned_object not in UNLEARNED_OBJECT_ANSWERS:
            raise ValueError(f"pisa_rgbd option unlearned_object must be one of {', '.join(UNLEARNED_OBJECT_ANSWERS)}, "
                             f"got {config.unlearned_object!r}")
        if config.mask_refinement not in MASK_REFINEMENTS:
            raise ValueError(f"pisa_rgbd option mask_refinement must be one of {', '.join(MASK_REFINEMENTS)}, "
                             f"got {config.mask_refinement!r}")
        if float(config.refine_radius_cells) <= 0.0 or float(config.refine_eps) <= 0.0 \
                or float(config.refine_pixels_per_cell) <= 0.0 or float(config.refine_height_weight) < 0.0:
            raise ValueError("pisa_rgbd options refine_radius_cells, refine_eps and refine_pixels_per_cell must be "
                             "positive, refine_height_weight at least 0")
        if int(config.stride) < 1 or int(config.max_proposals) < 1:
            raise ValueError("pisa_rgbd options stride and max_proposals must be at least 1")
        members = config.ensemble
        members = (members,) if isinstance(members, str) else tuple(members or ())
        if not all(isinstance(m, str) and m for m in members):
            raise ValueError(f"pisa_rgbd option ensemble takes model folders or hub ids, got {config.ensemble!r}")
        config = replace(config, ensemble=members)
        if not 0.5 <= float(config.crop_scale) <= 2.0:
            raise ValueError(f"pisa_rgbd option crop_scale must lie in [0.5, 2], got {config.crop_scale}")
        return config


def object_noun(resolution: InstructionResolution, candidate: Candidate, kb) -> str:
    """The most specific name of the candidate the instruction gives that training used: its variant or kind, else
    its own name (words training never saw, such as a brand, are left out: :func:`learned_name`)."""
    entry = kb.objects.get(candidate.object_name)
    if entry is None:
        return candidate.object_name
    if candidate.object_name == resolution.kb_object:
        variant, _ = entry.variant_for(resolution.object_phrase, resolution.patient)
        if variant is not None:
            return variant.name
        colours = set(resolution.object_attributes.get("colours") or [])
        words = [w for w in resolution.object_phrase.lower().split() if w not in colours]
        phrase = " ".join(words)
        if phrase and any(p.endswith(phrase) for p in entry.phrases):
            return phrase
        learned = learned_name(phrase, entry, kb)
        if learned is not None:
            return learned
    else:
        variant, _ = entry.variant_for("", resolution.patient)
        if variant is not None:
            return variant.name
    return entry.name


class PisaRgbdBackend(PartGroundingBackend):
    """Options: see :class:`PisaRgbdConfig`; ``segmentation`` takes the proposal settings of ``shapegrasp``."""

    name = "pisa_rgbd"

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.config = PisaRgbdConfig.from_options(options)
        self.segmentation_config = SegmentationConfig(**options.get("segmentation", {}))
        self.reasoner = None
        self.model = None
        self.crop_settings = None
        self.model_record: dict = {}
        self.learned_objects: Optional[frozenset[str]] = None  # None: the model folder does not say
        self.rules_backend: Optional[PartGroundingBackend] = None

    def _load(self) -> None:
        import torch

        from partseg_ros.backends.pisa_rgbd.checkpoint import load_ensemble
        from partseg_ros.backends.runtime import select_device, select_dtype
        from partseg_ros.language.embeddings import shared_embedder

        self.device = select_device(self.config.device)
        self.dtype = select_dtype(self.device, self.config.dtype)
        self.models, self.crop_settings, self.model_record = load_ensemble(
            self.config.checkpoint, self.device, self.dtype, extra=self.config.ensemble)
        self.model = self.models[0]
        self.reasoner = build_reasoner(self.config.knowledge_base, self.config.language_model,
                                       self.options.get("language_model_options", {}), self.config.use_embeddings)
        self.embedder = shared_embedder()  # phrases are embedded even when the reasoner does without
        self.embedder.load()
        self._torch = torch
        trained_kinds = ((self.model_record.get("record") or {}).get("training") or {}).get("kinds")
        if trained_kinds:
            self.learned_objects = learned_kb_objects(trained_kinds, self.reasoner.kb)
        if self.config.unlearned_object == "shapegrasp":
            from partseg_ros.backends.shapegrasp.backend import ShapeGraspBackend

            self.rules_backend = ShapeGraspBackend(
                knowledge_base=self.config.knowledge_base, language_model=self.config.language_model,
                language_model_options=self.options.get("language_model_options", {}),
                use_embeddings=self.config.use_embeddings, stride=self.config.stride,
                segmentation=self.segmentation_config)

    def warmup(self) -> None:
        self.load()
        self.reasoner.prepare()
        size = self.crop_settings.size
        self._run(np.zeros((1, self.model.config.in_channels, size, size), np.float32), np.zeros((1, 2), np.float32),
                  [(0, query_text("handle", "mug"))])
        if self.rules_backend is not None:  # else the first request for an unlearned object pays its start-up
            self.rules_backend.warmup()

    # ------------------------------------------------------------------ main

    def _run(self, crops: np.ndarray, scalars: np.ndarray,
             asks: list[tuple[int, str]]) -> tuple[np.ndarray, np.ndarray]:
        """(mask probabilities (Q, s, s), presence probabilities (Q,)) for (crop index, phrase) pairs, the mean
        over the ensemble's models."""
        torch = self._torch
        text = torch.from_numpy(self.embedder.encode([t for _, t in asks])).to(self.device, self.dtype)
        crop_tensor = torch.from_numpy(crops).to(self.device, self.dtype)
        scalar_tensor = torch.from_numpy(scalars).to(self.device, self.dtype)
        index = torch.tensor([i for i, _ in asks], device=self.device)
        mask_sum, presence_sum = 0.0, 0.0
        with torch.inference_mode():
            for model in self.models:
                masks, presence = model.decode(model.encode(crop_tensor, scalar_tensor), index, text)
                mask_sum = mask_sum + torch.sigmoid(masks.float())
                presence_sum = presence_sum + torch.sigmoid(presence.float())
        count = len(self.models)
        return (mask_sum / count).cpu().numpy(), (presence_sum / count).cpu().numpy()

    def _ground(self, request: GroundingRequest) -> GroundingResult:
        cfg = self.config
        start = begin_grounding(self.name, self.reasoner, request, "it crops objects found in 3D")
        resolution, timings, lap = start.resolution, start.clock.timings, start.clock.lap
        if start.refusal:
            return self._empty(resolution, start.refusal, timings)
        candidates = object_candidates(self.reasoner, resolution, cfg.candidate_limit)
        if not candidates:
            return self._empty(resolution, "the instruction names no object or action partseg knows", timings)
        wanted = candidates[0].object_name
        if self.learned_objects is not None and wanted not in self.learned_objects \
                and cfg.unlearned_object != "network":
            return self._unlearned(request, resolution, candidates, timings)
        oracle = request.object_mask_hints is not None
        found = self.object_proposals(request, lap)
        if isinstance(found, str):
            return self._empty(resolution, found, timings)
        masks, height = found
        windows, crops, scalars = self._crops(request, masks, height)
        kb = self.reasoner.kb
        phrases = [query_text(c.part_name, object_noun(resolution, c, kb)) for c in candidates]
        asks = [(i, p) for i in range(len(masks)) for p in phrases]
        crop_batch, scalar_batch = np.stack(crops), np.stack(scalars)
        part_probs, presence = self._run(crop_batch, scalar_batch, asks)
        mirrored_probs = None
        if cfg.mirror_presence:
            mirrored_probs, mirrored_presence = self._run(np.ascontiguousarray(crop_batch[:, :, :, ::-1]),
                                                          scalar_batch, asks)
            presence = 0.5 * (presence + mirrored_presence)
        lap("network")

        colours = list(resolution.object_attributes.get("colours") or [])
        colour_share = [colour_fit(colours, colour_histogram(request.rgb[m])) if colours else 1.0 for m in masks]
        presence = presence.reshape(len(masks), len(candidates))
        prior = np.array([0.5 + 0.5 * c.score for c in candidates])
        colour_term = np.array([1.0 - cfg.colour_weight + cfg.colour_weight * s for s in colour_share])
        score = presence * colour_term[:, None]
        best_obj, best_cand = choose_object(score, prior, cfg.candidate_choice,
                                            cfg.presence_threshold if not oracle else 0.0)
        candidate = candidates[best_cand]
        noun = object_noun(resolution, candidate, kb)
        best_presence = float(presence[best_obj, best_cand])
        if not oracle and best_presence < cfg.presence_threshold:
            return self._empty(resolution, f"no object in view looks like a {noun} (best presence "
                                           f"{best_presence:.2f} < {cfg.presence_threshold:.2f})", timings)
        if not oracle and colours and colour_share[best_obj] < cfg.min_colour_share:
            return self._empty(resolution, f"the {noun} in view is not {' and '.join(colours)} "
                                           f"({colour_share[best_obj]:.0%} of it)", timings)
        ask = best_obj * len(candidates) + best_cand
        crop_prob = part_probs[ask]
        if cfg.mirror_average:
            if mirrored_probs is not None:
                mirrored = mirrored_probs[ask]
            else:
                mirrored = self._run(np.ascontiguousarray(crops[best_obj][None, :, :, ::-1]), scalars[best_obj][None],
                                     [(0, phrases[best_cand])])[0][0]
            crop_prob = 0.5 * (crop_prob + mirrored[:, ::-1])
        prob = paste_crop(crop_prob, windows[best_obj], request.image_size)
        if cfg.mask_refinement == "guided":
            prob = self._refined(prob, request.rgb, height, windows[best_obj], crop_prob.shape[0])
        reach = int(windows[best_obj].side * cfg.part_reach) + 1
        region = masks[best_obj] | (height > cfg.part_min_height_m) & _grown(masks[best_obj], reach)
        part = (prob >= cfg.mask_threshold) & (masks[best_obj] if oracle else region)
        lap("grounding")

        reasons = list(resolution.reasons)
        ranked = np.sort(presence[:, best_cand])[::-1]
        runner_up = f"; next best object {ranked[1]:.2f}" if len(ranked) > 1 else ""
        reasons.append(f"object {best_obj} of {len(masks)} recognised as the {noun} "
                       f"(presence {best_presence:.2f}{runner_up})")
        if colours:
            reasons.append(f"{' and '.join(colours)} covers {colour_share[best_obj]:.0%} of it")
        reasons.append(f"the {candidate.part_name}: {int(part.sum())} pixels "
                       f"at probability >= {cfg.mask_threshold:.2f}")
        explanation = "; ".join(reasons)
        instance = PartInstance(mask=part, score=best_presence, object_label=candidate.object_name,
                                part_label=candidate.part_name, explanation=explanation)
        return GroundingResult(instances=[instance] if part.any() else [], backend=self.name,
                               object_label=candidate.object_name, part_label=candidate.part_name,
                               explanation=explanation, timings_ms=timings)

    def object_proposals(self, request: GroundingRequest, lap: Callable[[str], object] = lambda stage: None
                         ) -> tuple[list[np.ndarray], np.ndarray] | str:
        """(object masks, height above the table) of the frame, or why there are none: the objects the network is
        shown, public for diagnostics (`benchmarks/bench_proposal_recall.py`).

        Under the oracle-object protocol the acceptable objects are the proposals.
        """
        cfg = self.config
        stride = max(1, int(cfg.stride))
        proposals = propose_objects(request, stride, self.segmentation_config, lap)
        if proposals is None:
            return "no table plane found in the depth image"
        plane = proposals.plane
        oracle = request.object_mask_hints is not None
        if oracle:
            masks = [np.asarray(m, dtype=bool) for m in request.object_mask_hints]
        else:
            masks = proposals.full_resolution_masks(request, limit=cfg.max_proposals)
        height = height_above_plane(request.depth_m, request.camera, plane.normal, plane.offset)
        if not oracle and cfg.depth_hole_proposals:
            masks = depth_hole_proposals(request, height, self.segmentation_config, masks)
        masks = [m for m in masks if m.any()]
        lap("objects")
        if not masks:
            return "no object found on the table"
        return masks, height

    def _crops(self, request: GroundingRequest, masks: list[np.ndarray],
               height: np.ndarray) -> tuple[list[CropWindow], list[np.ndarray], list[np.ndarray]]:
        """(windows, input channels, scalars) of every proposal, cut exactly as in training."""
        windows, crops, scalars = [], [], []
        for mask in masks:
            window = square_window(mask, self.crop_settings, np.array([0.0, 0.0, float(self.config.crop_scale)]))
            channels, extra = crop_inputs(request.rgb, request.depth_m, height, mask, window,
                                          window_focal_px(request.camera, window), self.crop_settings)
            windows.append(window)
            crops.append(channels)
            scalars.append(extra)
        return windows, crops, scalars

    def _refined(self, prob: np.ndarray, rgb: np.ndarray, height: np.ndarray, window: CropWindow,
                 mask_cells: int) -> np.ndarray:
        """The part probability with its edges moved onto the colour (and height) edges inside the crop window."""
        cfg = self.config
        x0, y0, x1, y1 = window.inside(*prob.shape)
        if x1 - x0 < 3 or y1 - y0 < 3:
            return prob
        guide = [rgb[y0:y1, x0:x1].astype(np.float32) / 255.0]
        if cfg.refine_height_weight > 0.0:
            guide.append(np.nan_to_num(height[y0:y1, x0:x1, None]) * np.float32(cfg.refine_height_weight))
        cell_px = window.side / max(mask_cells, 1)
        radius = int(round(cfg.refine_radius_cells * cell_px))
        subsample = max(int(cell_px / cfg.refine_pixels_per_cell), 1)
        out = prob.copy()
        out[y0:y1, x0:x1] = guided_filter(np.concatenate(guide, axis=-1), prob[y0:y1, x0:x1], radius,
                                          cfg.refine_eps, subsample)
        return out

    def _unlearned(self, request: GroundingRequest, resolution: InstructionResolution, candidates: list[Candidate],
                   timings: dict[str, float]) -> GroundingResult:
        """The network never saw the wanted object: its presence would only say which known object looks closest."""
        wanted = candidates[0].object_name
        why = f"the network was not trained on a {wanted}"
        if self.rules_backend is None:
            return self._empty(resolution, why, timings)
        answer = self.rules_backend.ground(request)
        if answer.instances and self.config.veto_known_objects and request.object_mask_hints is None:
            acceptable = {c.object_name for c in candidates}  # "a cup" may be answered by the mug in view
            known = self._known_object_at(request, answer.instances[0].mask, self.learned_objects - acceptable)
            if known is not None:
                name, presence = known
                return self._empty(resolution, f"{why}; the object geometric rules take for a {wanted} is one "
                                               f"the network knows (most like a {name}, presence {presence:.2f})",
                                   timings)
        explanation = f"{why}, so geometric rules answer: {answer.explanation}"
        instances = [replace(instance, explanation=explanation) for instance in answer.instances]
        return replace(answer, instances=instances, backend=self.name, explanation=explanation,
                       timings_ms={**timings, **answer.timings_ms})

    def _known_object_at(self, request: GroundingRequest, part_mask: np.ndarray,
                         objects: frozenset[str]) -> Optional[tuple[str, float]]:
        """(object, presence) when the proposal holding ``part_mask`` is one of ``objects`` to the network, else None.

        It is that object when the network would have answered a request for it
        there: presence at or above ``presence_threshold`` for its default grasp part.
        """
        found = self.object_proposals(request)
        if isinstance(found, str) or not objects:
            return None
        masks, height = found
        overlap = [int((m & part_mask).sum()) for m in masks]
        if max(overlap) == 0:
            return None
        holder = int(np.argmax(overlap))
        _, crops, scalars = self._crops(request, [masks[holder]], height)
        kb = self.reasoner.kb
        names = sorted(objects)
        phrases = [query_text(kb.objects[n].grasp_part.name, n) for n in names]
        _, presence = self._run(np.stack(crops), np.stack(scalars), [(0, p) for p in phrases])
        best = int(np.argmax(presence))
        if float(presence[best]) < self.config.presence_threshold:
            return None
        return names[best], float(presence[best])

    def _empty(self, resolution: InstructionResolution, why: str, timings: dict[str, float]) -> GroundingResult:
        return empty_result(self.name, resolution, why, timings)


def choose_object(score: np.ndarray, prior: np.ndarray, rule: str, threshold: float) -> tuple[int, int]:
    """(object, candidate) from presence scores (objects x candidates) and the language's candidate scores.

    Under "first_present" the candidates are tried in the language's order
    and the first one some object answers above ``threshold`` wins: "cut the
    bread" wants a knife, and a box cutter that looks a bit like a wire
    cutter must not outvote a knife that is plainly there. When none passes,
    the joint score picks the best guess (and the caller's threshold then
    answers "no target"). "joint" always takes presence x prior.
    """
    joint = score * prior[None, :]
    if rule == "first_present":
        for candidate in np.argsort(-prior, kind="stable"):
            column = score[:, candidate]
            if column.max() >= threshold:
                return int(np.argmax(column)), int(candidate)
    best_obj, best_cand = np.unravel_index(int(np.argmax(joint)), joint.shape)
    return int(best_obj), int(best_cand)


def _grown(mask: np.ndarray, pixels: int) -> np.ndarray:
    """The proposal grown by a few pixels: a part the proposal cut short may extend just past it."""
    from scipy import ndimage

    return ndimage.binary_dilation(mask, iterations=max(int(pixels), 1))
