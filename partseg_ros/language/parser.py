"""Instruction -> structured mentions (actions, objects, parts, attributes).

Rule-based and explainable: knowledge-base phrases are spotted longest-first;
a word that could be a verb or a noun ("spray", "hammer", "plug") is read as a
verb at the start of a clause and as a noun after a determiner. Clauses such
as "if I want to pour water" (purpose) and "which part should I hold"
(interaction) are told apart because they pick the object and the part
respectively.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional

from partseg_ros.language.knowledge_base import KnowledgeBase
from partseg_ros.language.text import (
    SIZE_WORDS,
    STOPWORDS,
    Mention,
    canonical_words,
    colour_word,
    spot_phrases,
    tokens,
)

REQUEST_MODALS = frozenset("can could would will".split())
SUBJECTS = frozenset("i you we he she they it someone somebody who what where how why".split())
DETERMINERS = frozenset("the a an my your this that these those its their his her our some".split())
# Those after which an unlisted word is taken for an object's name ("pick up the stapler"); not "some", whose
# noun is mostly a substance ("pour some water").
NOUN_DETERMINERS = frozenset("the a an my this that".split())
CLAUSE_STARTS = frozenset("to please i you we can could would should will and then or so let also just".split())
QUESTION_STARTS = frozenset("which what where how identify describe find show segment locate point highlight".split())
GRASP_VERBS = frozenset(["pick up", "give"])  # actions whose affordance is simply holding
INSTRUMENT_MARKERS = frozenset(["with", "using", "from"])  # words before the tool or the source of an action
PURPOSE_MARKERS = (("want", "to"), ("need", "to"), ("order", "to"), ("like", "to"), ("wish", "to"), ("trying", "to"))


@dataclass
class ObjectDescription:
    """The noun phrase naming an object, with its modifiers."""

    mention: Mention
    colours: list[str] = field(default_factory=list)
    size: Optional[str] = None
    modifiers: list[str] = field(default_factory=list)  # other words before the noun ("meyers", "cleaning")

    @property
    def start(self) -> int:
        """Index of the noun phrase's first word (its colours, size and other modifiers come before the noun)."""
        return self.mention.start - len(self.colours) - len(self.modifiers) - (1 if self.size else 0)

    @property
    def phrase(self) -> str:
        words = self.colours + ([self.size] if self.size else []) + self.modifiers + [self.mention.surface]
        return " ".join(words)


@dataclass
class ParsedInstruction:
    text: str
    words: list[str]
    actions: list[Mention]
    objects: list[ObjectDescription]
    parts: list[Mention]
    is_question: bool
    purpose: Optional[Mention]  # action of an "if I want to X" / "to X" clause
    interaction: Optional[Mention]  # action of a "which part should I X" clause
    unknown: list[tuple[int, str]]  # content words no rule recognised

    def is_instrument(self, description: ObjectDescription) -> bool:
        """True when the object's noun phrase follows "with", "using" or "from" ("cut it with the knife")."""
        return follows_determiner(self.words, description.start, INSTRUMENT_MARKERS,
                                  skippable=lambda i: self.words[i] in DETERMINERS)

    @property
    def main_action(self) -> Optional[Mention]:
        if self.purpose is not None:
            return self.purpose
        return self.actions[0] if self.actions else None


def follows_determiner(words: list[str], index: int, determiners: frozenset[str] = DETERMINERS,
                       skippable: Optional[Callable[[int], bool]] = None) -> bool:
    """True when the word at ``index`` follows a determiner, over the words between that ``skippable`` accepts
    (by position; colour and size words by default: "the red stapler")."""
    if skippable is None:
        def skippable(i: int) -> bool:
            return bool(colour_word(words[i])) or words[i] in SIZE_WORDS
    i = index - 1
    while i >= 0 and words[i] not in determiners and skippable(i):
        i -= 1
    return i >= 0 and words[i] in determiners


def _is_polite_request(words: list[str]) -> bool:
    """ "can you cut the bread?" asks for the act, as "cut the bread" does; "can you show which part cuts?" asks."""
    opener = [w for w in words[:3] if w != "please"]
    return (len(opener) >= 2 and opener[0] in REQUEST_MODALS and opener[1] == "you"
            and not any(w in QUESTION_STARTS or w in ("part", "parts") for w in words[2:]))


def _is_auxiliary(words: list[str], mention: Mention) -> bool:
    """True for an object name that is a function word used as one here: "can you ...", "so I can type".

    "the can", "a soda can", "the can you see" and a terse "pick up can" keep the object.
    """
    if mention.end - mention.start != 1 or words[mention.start] not in STOPWORDS:
        return False
    if follows_determiner(words, mention.start):
        return False
    before = words[mention.start - 1] if mention.start > 0 else ""
    after = words[mention.end] if mention.end < len(words) else ""
    return before in SUBJECTS or after in SUBJECTS


def _resolve_overlaps(words: list[str], candidates: list[Mention]) -> list[Mention]:
    """Keep longer spans first; between equal spans a verb reading wins at a clause start, a noun after a determiner."""
    chosen: list[Mention] = []
    taken = [False] * len(words)
    adjective_like = {
        i for i, w in enumerate(words) if colour_word(w) or w in SIZE_WORDS or w not in STOPWORDS
    }
    order = sorted(candidates, key=lambda m: (-(m.end - m.start), m.start))
    i = 0
    while i < len(order):
        same = [m for m in order[i:] if (m.start, m.end) == (order[i].start, order[i].end)]
        i += len(same)
        if any(taken[same[0].start : same[0].end]):
            continue
        if len(same) == 1:
            pick = same[0]
        else:
            nominal = follows_determiner(words, same[0].start, skippable=adjective_like.__contains__)
            prefer = ("object", "part") if nominal else ("action", "affordance")
            ranked = sorted(same, key=lambda m: (m.kind not in prefer,
                                                 ("action", "object", "part", "affordance").index(m.kind)))
            pick = ranked[0]
        chosen.append(pick)
        for k in range(pick.start, pick.end):
            taken[k] = True
    return sorted(chosen, key=lambda m: m.start)


def _describe_object(words: list[str], mention: Mention, used: set[int]) -> ObjectDescription:
    description = ObjectDescription(mention)
    i = mention.start - 1
    while i >= 0 and i not in used:
        word = words[i]
        colour = colour_word(word)
        if colour:
            description.colours.insert(0, colour)
        elif word in ("dark", "light", "bright", "pale"):
            pass
        elif word in SIZE_WORDS:
            description.size = SIZE_WORDS[word]
        elif word in DETERMINERS or word in STOPWORDS:
            break
        else:
            description.modifiers.insert(0, word)
        i -= 1
    return description


def _clause_role(words: list[str], mention: Mention) -> str:
    """'purpose', 'interaction' or 'main' for an action mention, from the words before it."""
    before = words[max(0, mention.start - 6) : mention.start]
    joined = " ".join(before)
    if "part" in before or "which" in before or "where" in before:
        if any(w in before for w in ("should", "can", "could", "to", "i", "would", "is", "be")):
            return "interaction"
    for a, b in PURPOSE_MARKERS:
        if f"{a} {b}" in joined:
            return "purpose"
    if len(before) >= 1 and before[-1] in ("to", "for") and mention.start > 2:
        return "purpose"
    if before and before[-1] == "when":
        return "purpose"
    return "main"


def parse_instruction(text: str, kb: KnowledgeBase) -> ParsedInstruction:
    raw_words = tokens(text)
    words = canonical_words(raw_words, kb.vocabulary_words())
    table = kb.phrase_table()
    candidates: list[Mention] = []
    for kind in ("object", "action", "part", "affordance"):
        candidates += spot_phrases(words, table[kind], kind)
    candidates = [m for m in candidates if not (m.kind == "object" and _is_auxiliary(words, m))]
    mentions = _resolve_overlaps(words, candidates)
    # "affordance" words ("cut", "pour") double as verbs; read them as actions when the KB has that action.
    normalised: list[Mention] = []
    for m in mentions:
        if m.kind == "affordance":
            action = kb.action_for_phrase(m.surface)
            m = Mention("action", action.name, m.start, m.end, m.surface) if action else m
        normalised.append(m)
    # A verb with no noun reading after a determiner is a thing the knowledge base does not list ("pick up the
    # whisk", "the mop"): an unknown noun, not a second action.
    mentions = [m for m in normalised if not (m.kind == "action" and follows_determiner(words, m.start))]

    used = {i for m in mentions for i in range(m.start, m.end)}
    actions = [m for m in mentions if m.kind == "action"]
    objects = [_describe_object(words, m, used) for m in mentions if m.kind == "object"]
    parts = [m for m in mentions if m.kind == "part"]
    for obj in objects:
        used.update(range(obj.start, obj.mention.start))

    is_question = text.strip().endswith("?") or (bool(raw_words) and raw_words[0] in QUESTION_STARTS)
    if is_question and _is_polite_request(raw_words):
        is_question = False
    purpose = interaction = None
    for action in actions:
        role = _clause_role(words, action)
        if role == "purpose" and purpose is None:
            purpose = action
        elif role == "interaction" and interaction is None:
            interaction = action
    unknown = [
        (i, w)
        for i, w in enumerate(words)
        if i not in used and w not in STOPWORDS and not colour_word(w) and w not in SIZE_WORDS and not w.isdigit()
    ]
    return ParsedInstruction(text, words, actions, objects, parts, is_question, purpose, interaction, unknown)
