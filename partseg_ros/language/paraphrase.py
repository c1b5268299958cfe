"""Instructions generated from the knowledge base, in paraphrase families, for validation.

Each family is a way people phrase the same request; validation reports
them apart so that a family the rules were never tuned on shows up as its
own figure. The part a task wants is fixed here, by the family, from the
knowledge base's grasp preferences (or the part the wording names), not by
asking the reasoner, so the reasoner can be wrong about it.

Families: ``imperative`` ("pick up the mug"), ``named_part`` ("hold the mug by
its handle"), ``question`` ("where should I grab the mug?"), ``goal`` ("I want
to carry the mug"), each optionally with a colour ("the blue mug").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from partseg_ros.language.knowledge_base import ObjectEntry

FAMILIES = ("imperative", "named_part", "question", "goal")
# Families whose wording the knowledge base's rules were written with, and those held back to test them.
SEEN_FAMILIES = ("imperative", "named_part")
HELD_BACK_FAMILIES = ("question", "goal")

_TEMPLATES = {
    "imperative": ("pick up the {obj}", "grab the {obj}", "hand me the {obj}", "bring me the {obj}",
                   "take the {obj}"),
    "named_part": ("hold the {obj} by the {part}", "grab the {part} of the {obj}", "pick up the {obj} by its {part}"),
    "question": ("where should I grab the {obj}?", "which part of the {obj} do I hold to pick it up?",
                 "how do I hold the {obj}?", "could you pick up the {obj}?"),
    "goal": ("I want to carry the {obj}", "I need the {obj}, please pass it", "I'd like to move the {obj}",
             "get the {obj} for me so I can use it"),
}


@dataclass(frozen=True)
class GeneratedInstruction:
    text: str
    family: str
    part: str  # knowledge-base part the task wants


def instruction_for(entry: ObjectEntry, name: str, family: str, rng: np.random.Generator,
                    colour: Optional[str] = None, named_part: Optional[str] = None) -> GeneratedInstruction:
    """An instruction asking for object ``entry`` (called ``name``) in ``family``."""
    obj = f"{colour.replace('_', ' ')} {name}" if colour else name
    templates = _TEMPLATES[family]
    text = str(templates[int(rng.integers(len(templates)))])
    if family == "named_part":
        part = named_part or entry.grasp_part.name
        return GeneratedInstruction(text.format(obj=obj, part=part), family, part)
    return GeneratedInstruction(text.format(obj=obj), family, entry.grasp_part.name)
