"""Instructions generated from the knowledge base, in paraphrase families, for validation.

Each family is a way people phrase the same request; validation reports
them apart so that a family the rules were never tuned on shows up as its
own figure. The part a task wants is fixed here, by the family, from the
knowledge base's grasp preferences (or the part the wording names), not by
asking the reasoner, so the reasoner can be wrong about it.

Families: ``imperative`` ("pick up the mug"), ``named_part`` ("hold the mug by
its handle"), ``question`` ("where should I grab the mug?"), ``goal`` ("I want
to carry the mug"), ``task`` (one of the object's uses, the part only implied:
"uncork the wine bottle", "use the knife to cut"), each optionally with a colour
("the blue mug"). A task's part is the knowledge base's policy for that action
(:func:`~partseg_ros.language.knowledge_base.part_for_task`): what is tested is
whether the wording is read as that action on that object.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from partseg_ros.language.knowledge_base import ActionEntry, ObjectEntry, part_for_task

FAMILIES = ("imperative", "named_part", "question", "goal", "task")
# Families whose wording the knowledge base's rules were written with, and those held back to test them.
SEEN_FAMILIES = ("imperative", "named_part")
HELD_BACK_FAMILIES = ("question", "goal", "task")
# Uses a task-family instruction does not name: a plain grasp is the imperative family's, and "eat" names food and
# dishes alike, which people word differently ("eat the ice cream", "eat from the bowl").
UNNAMED_USES = ("pick up", "give", "eat")

_TEMPLATES = {
    "imperative": ("pick up the {obj}", "grab the {obj}", "hand me the {obj}", "bring me the {obj}",
                   "take the {obj}"),
    "named_part": ("hold the {obj} by the {part}", "grab the {part} of the {obj}", "pick up the {obj} by its {part}"),
    "question": ("where should I grab the {obj}?", "which part of the {obj} do I hold to pick it up?",
                 "how do I hold the {obj}?", "could you pick up the {obj}?"),
    "goal": ("I want to carry the {obj}", "I need the {obj}, please pass it", "I'd like to move the {obj}",
             "get the {obj} for me so I can use it"),
}

# A use done *with* the object (an instrument) or done *to* it; some verbs need their own words to sound as people
# say them.
_INSTRUMENT_TEMPLATES = ("use the {obj} to {verb}", "{verb} with the {obj}", "I need to {verb}, hand me the {obj}")
_DIRECT_TEMPLATES = ("{task}", "please {task}", "I want to {task}")
_TASK_PHRASES = {"drink": "drink from the {obj}", "pour": "pour from the {obj}", "type": "type on the {obj}",
                 "scroll": "scroll with the {obj}", "dispense": "pull a tissue out of the {obj}",
                 "sit": "sit on the {obj}", "hang": "hang up the {obj}", "wear": "put on the {obj}"}


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


def _is_instrument(entry: ObjectEntry, action: ActionEntry) -> bool:
    """Whether the use is done *with* the object: a tool action it has a part for ("cut" with a knife's blade), or
    an action on a part the object lacks and no part of it to hold does ("uncork" with a corkscrew, whose worm
    pulls but is not held; a bulb's screw base is held and twists, so "twist" is done to the bulb)."""
    affording = entry.parts_affording(action.affordance)
    if action.needs_tool:
        return bool(affording)
    return (bool(action.part_hints) and not any(p.graspable for p in affording)
            and not any(entry.part(hint) for hint in action.part_hints))


def task_actions(entry: ObjectEntry, actions: dict[str, ActionEntry]) -> list[ActionEntry]:
    """The uses of ``entry`` a task-family instruction can name: known actions beyond a plain grasp, leaving out a
    tool's action on a vessel it is done in ("stir" for a saucepan: the spoon is what is held)."""
    usable = [actions[use] for use in entry.uses if use in actions and use not in UNNAMED_USES]
    return [a for a in usable if not a.needs_tool or a.name in _TASK_PHRASES or _is_instrument(entry, a)]


def task_instruction(entry: ObjectEntry, name: str, action: ActionEntry, rng: np.random.Generator,
                     colour: Optional[str] = None) -> GeneratedInstruction:
    """An instruction asking to do ``action`` with or to object ``entry`` (called ``name``), its part implied."""
    obj = f"{colour.replace('_', ' ')} {name}" if colour else name
    if action.name not in _TASK_PHRASES and _is_instrument(entry, action):
        template = _INSTRUMENT_TEMPLATES[int(rng.integers(len(_INSTRUMENT_TEMPLATES)))]
        text = template.format(obj=obj, verb=action.name)
    else:
        task = _TASK_PHRASES.get(action.name, "{verb} the {obj}").format(obj=obj, verb=action.name)
        text = _DIRECT_TEMPLATES[int(rng.integers(len(_DIRECT_TEMPLATES)))].format(task=task)
    part, _ = part_for_task(entry, action, action.affordance, "grasp")
    return GeneratedInstruction(text, "task", part.name)
