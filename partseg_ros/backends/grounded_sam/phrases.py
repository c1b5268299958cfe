"""Instruction -> (object phrase, part phrase) for the detector queries.

The project's language module (``partseg_ros.language.resolve_instruction``)
is the authority; this module adapts its answer to the two phrases the
Grounded-SAM pipeline needs, and keeps a small syntactic fallback for when
that resolver is unavailable or cannot name an object, so the zero-shot path
still answers "the handle of the mug" or "pick the mug by its handle".
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Optional, Sequence

LOG = logging.getLogger(__name__)

# Verbs and fillers that never name the thing to detect.
_ACTION_WORDS = frozenset(
    """pick grab grasp hold take lift carry open close pour cut slice press push pull turn twist rotate
    uncork unscrew screw remove hand give bring move put place set drink sip fill wipe clean scoop stir
    hang use locate find show segment point highlight touch tap squeeze flip hit hammer write brush
    sweep spray plug unplug water let get""".split()
)
# Prepositions that separate "<object> <prep> <part>" ("the mug by its handle").
_OBJECT_THEN_PART = ("by", "at", "from", "using", "via", "with")


@dataclass(frozen=True)
class InstructionPhrases:
    """What to ask the detector for; an empty part phrase means "the whole object"."""

    object_phrase: str
    part_phrase: str
    source: str  # "language resolver" (partseg_ros.language) or "fallback parser"


def instruction_phrases(instruction: str, visible_objects: Optional[Sequence[str]] = None) -> InstructionPhrases:
    """Object and part phrases for ``instruction``, preferring the project's language resolver."""
    resolved = _from_language_module(instruction, visible_objects)
    if resolved is not None and resolved.object_phrase:
        return resolved
    return parse_object_and_part(instruction)


def _from_language_module(instruction: str, visible_objects: Optional[Sequence[str]]) -> Optional[InstructionPhrases]:
    """Object words as the instruction says them ("blue mug") and the resolved part name ("handle").

    The part is queried on a crop around the object, so its bare name is the
    cleanest detector prompt; the reasoner has already picked which part the task needs.
    """
    try:
        from partseg_ros.language import resolve_instruction
    except ImportError:
        return None
    try:
        resolution = resolve_instruction(instruction,
                                         visible_objects=list(visible_objects) if visible_objects else None)
    except Exception as exc:  # the fallback parser still gives the detector something to look for
        LOG.warning("resolve_instruction failed on %r (%s); using the fallback parser", instruction, exc)
        return None
    object_phrase = resolution.object_phrase or resolution.object_name or resolution.kb_object
    part_phrase = resolution.part_name or resolution.named_part
    return InstructionPhrases(object_phrase.replace("_", " ").strip(), part_phrase.replace("_", " ").strip(),
                              "language resolver")


def _content_words(words: Sequence[str]) -> list[str]:
    from partseg_ros.language.text import STOPWORDS

    return [w for w in words if w not in STOPWORDS and w not in _ACTION_WORDS]


def _noun_chunk(words: Sequence[str], from_end: bool) -> str:
    """The last (or first) run of up to two content words: a crude noun phrase."""
    content = _content_words(words)
    if not content:
        return ""
    return " ".join(content[-2:] if from_end else content[:2])


def parse_object_and_part(instruction: str) -> InstructionPhrases:
    """Syntactic fallback: "<part> of <object>", "<object> by/at/with <part>", "<object>'s <part>", else object only."""
    from partseg_ros.language.text import tokens

    raw = instruction.lower()
    words = tokens(instruction)
    if "of" in words:
        i = words.index("of")
        part, obj = _noun_chunk(words[:i], from_end=True), _noun_chunk(words[i + 1 :], from_end=False)
        if part and obj:
            return InstructionPhrases(obj, part, "fallback parser")
    for prep in _OBJECT_THEN_PART:
        if prep in words:
            i = words.index(prep)
            obj, part = _noun_chunk(words[:i], from_end=True), _noun_chunk(words[i + 1 :], from_end=False)
            if part and obj:
                return InstructionPhrases(obj, part, "fallback parser")
    if "'s " in raw or "\u2019s " in raw:
        owner, _, rest = raw.replace("\u2019", "'").partition("'s ")
        obj, part = _noun_chunk(tokens(owner), from_end=True), _noun_chunk(tokens(rest), from_end=False)
        if part and obj:
            return InstructionPhrases(obj, part, "fallback parser")
    content = _content_words(words)
    if len(content) >= 2 and _is_known_part(content[-1]):  # "the mug handle"
        return InstructionPhrases(content[-2], content[-1], "fallback parser")
    return InstructionPhrases(" ".join(content[-2:]), "", "fallback parser")


def _is_known_part(word: str) -> bool:
    """Whether the packaged knowledge base lists ``word`` as a part phrase (never fatal)."""
    try:
        from partseg_ros.language.knowledge_base import load_knowledge_base

        return load_knowledge_base().part_for_phrase(word) is not None
    except Exception:  # a missing or broken knowledge base only weakens the fallback
        return False
