"""The language side the knowledge-based backends share: building the reasoner, candidates, empty answers.

``shapegrasp`` and ``pisa_rgbd`` resolve an instruction the same way (the
knowledge base, sentence embeddings for unknown words, an optional local
language model) and must say "no target" the same way, so these live once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from partseg_ros.backends.base import StageClock
from partseg_ros.language.reasoner import Candidate, InstructionResolution, PartReasoner
from partseg_ros.types import GroundingRequest, GroundingResult


def build_reasoner(knowledge_base: Optional[str], language_model: Optional[str], language_model_options: dict,
                   use_embeddings: bool) -> PartReasoner:
    """The reasoner over the knowledge base; the sentence embedder is the process-wide one, loaded now."""
    from partseg_ros.language.knowledge_base import load_knowledge_base
    from partseg_ros.language.llm_hook import load_hook

    kb = load_knowledge_base(knowledge_base)
    hook = load_hook(language_model, **(language_model_options or {}))
    embedder: object = None
    if use_embeddings:
        from partseg_ros.language.embeddings import shared_embedder

        embedder = shared_embedder()
        embedder.load()
    return PartReasoner(kb, embedder=embedder, language_model=hook)


def object_candidates(reasoner: PartReasoner, resolution: InstructionResolution,
                      limit: Optional[int] = None) -> list[Candidate]:
    """The resolution's candidates, or every known object with the part the instruction implies for it."""
    if resolution.candidates:
        return resolution.candidates[:limit] if limit else list(resolution.candidates)
    kb = reasoner.kb
    return [Candidate(name, reasoner.part_for_object(resolution, name), 0.5) for name in kb.objects]


def unknown_object_reason(resolution: InstructionResolution) -> Optional[str]:
    """Why there is no target when the instruction names an object nobody described; None otherwise.

    Neither geometry nor a network trained on known kinds can tell an unknown thing from the known ones;
    guessing would hand the planner a wrong object.
    """
    if resolution.unknown_object:
        return f"no knowledge of what a {resolution.unknown_object} looks like"
    return None


def empty_result(backend: str, resolution: InstructionResolution, why: str,
                 timings: dict[str, float]) -> GroundingResult:
    """A "no target" answer that keeps the resolution's object and part and the chain of reasons."""
    explanation = "; ".join(list(resolution.reasons) + [why])
    return GroundingResult(instances=[], backend=backend, object_label=resolution.kb_object,
                           part_label=resolution.part_name, explanation=explanation, timings_ms=timings)


@dataclass
class GroundingStart:
    """Where a knowledge-based backend stands once the instruction is read: its clock, the resolution, and
    ``refusal`` (why nothing can be answered) when the instruction names an object nobody described."""

    clock: StageClock
    resolution: InstructionResolution
    refusal: Optional[str]


def begin_grounding(backend: str, reasoner: PartReasoner, request: GroundingRequest, why_3d: str) -> GroundingStart:
    """The first steps both knowledge-based backends take, in the same order and with the same refusals.

    Both find objects in 3D, so a request without depth or a camera is a caller's
    error (``why_3d`` says what the backend does with them), not "no target".
    """
    if request.depth_m is None or request.camera is None:
        raise ValueError(f"the {backend} backend needs depth_m and a camera (camera= or intrinsics=; {why_3d})")
    clock = StageClock()
    resolution = reasoner.resolve(request.instruction)
    clock.lap("language")
    return GroundingStart(clock, resolution, unknown_object_reason(resolution))
