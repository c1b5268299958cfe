"""Language side of partseg: instruction parsing, the knowledge base, the part reasoner.

Usable by every backend without ROS or images::

    from partseg_ros.language import resolve_instruction
    r = resolve_instruction("uncork the wine")
    r.kb_object, r.part_name, r.part_phrase, r.reasons
"""

from __future__ import annotations

from typing import Optional, Sequence

from partseg_ros.language.knowledge_base import KnowledgeBase, ObjectEntry, PartEntry, load_knowledge_base
from partseg_ros.language.reasoner import Candidate, InstructionResolution, PartReasoner
from partseg_ros.language.shared import process_wide

__all__ = [
    "Candidate",
    "InstructionResolution",
    "KnowledgeBase",
    "ObjectEntry",
    "PartEntry",
    "PartReasoner",
    "default_reasoner",
    "load_knowledge_base",
    "resolve_instruction",
]


@process_wide
def default_reasoner() -> PartReasoner:
    """Process-wide reasoner over the packaged knowledge base with the offline embeddings."""
    return PartReasoner()


def resolve_instruction(instruction: str, visible_objects: Optional[Sequence[str]] = None) -> InstructionResolution:
    """Instruction -> action, object, part, affordance and reasons (see PartReasoner.resolve)."""
    return default_reasoner().resolve(instruction, visible_objects)
