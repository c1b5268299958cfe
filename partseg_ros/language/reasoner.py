"""From an instruction to (object, part, affordance) with the reasons why.

The reasoner reads the parse (partseg_ros.language.parser) against the
knowledge base:

1. the action sets the affordance ("uncork" -> pull, hints the cork);
2. the object is the one named, or, when the named thing is only the patient
   of a tool action ("cut the bread"), a tool that affords the action; with no
   object named, the objects that afford the purpose ("if I want to pour
   water") are the candidates;
3. the part is the one named, else the action's hinted part, else the part
   that affords the action; when the robot has to *grasp* to perform the task
   and that part is not graspable (a blade, a spout), the object's grasp part.

Words the knowledge base does not list are matched to its entries with
sentence embeddings; a stronger local language model can be plugged in.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence

import numpy as np

from partseg_ros.language.knowledge_base import (
    GRASP_AFFORDANCES,
    KnowledgeBase,
    ObjectEntry,
    PartEntry,
    load_knowledge_base,
    part_for_task,
)
from partseg_ros.language.llm_hook import LanguageModelHook, build_prompt, parse_answer
from partseg_ros.language.parser import (
    GRASP_VERBS,
    NOUN_DETERMINERS,
    ObjectDescription,
    ParsedInstruction,
    follows_determiner,
    parse_instruction,
)
from partseg_ros.language.text import Mention, normalise

log = logging.getLogger(__name__)

DEFAULT_ACTION = "pick up"
USES_BONUS = 0.4  # an object made for the action outranks one that merely can do it


@dataclass
class Candidate:
    """One possible (object, part) answer with its prior score in [0, 1]."""

    object_name: str
    part_name: str
    score: float


@dataclass
class InstructionResolution:
    """What an instruction asks for, in knowledge-base terms, with the reasons."""

    instruction: str
    action: str  # knowledge-base action name ("" if none could be found)
    affordance: str
    mode: str  # "grasp": the part to hold to do the task; "function": the part that does it
    object_name: str  # visible label when visible_objects were given, else the KB object name
    kb_object: str  # knowledge-base object name ("" if unknown)
    object_phrase: str  # the words naming the object, e.g. "blue mug"
    object_attributes: dict[str, object]  # colours: list[str], size: str|None, modifiers: list[str]
    part_name: str
    part_phrase: str  # e.g. "handle of the blue mug", ready for a detector prompt
    named_part: str = ""  # the part the instruction names explicitly, if any
    patient: str = ""  # the thing acted on when the object is a tool ("bread")
    unknown_object: str = ""  # an object the instruction names that the knowledge base does not know ("banana")
    in_view: Optional[bool] = None  # None when no visible objects were given
    visible_index: Optional[int] = None
    candidates: list[Candidate] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)

    @property
    def explanation(self) -> str:
        return "; ".join(self.reasons)


class PartReasoner:
    """Rule-based reasoner over the knowledge base, with embedding fallback and an optional LLM hook."""

    def __init__(
        self,
        kb: Optional[KnowledgeBase] = None,
        embedder: object = "shared",
        language_model: Optional[LanguageModelHook | Callable[[str], str]] = None,
        similarity_threshold: float = 0.5,
        object_alias_threshold: float = 0.75,
    ) -> None:
        self.kb = kb or load_knowledge_base()
        if embedder == "shared":
            from partseg_ros.language.embeddings import shared_embedder

            embedder = shared_embedder()
        self.embedder = embedder  # None: lexicon only
        self.language_model = language_model
        self.similarity_threshold = similarity_threshold
        # An unknown noun stands in for a known object only when it is nearly a synonym: below this, sentence
        # embeddings pair "smartphone" with fruit and "tongs" with a spoon.
        self.object_alias_threshold = object_alias_threshold
        self._object_phrases = [(p, o.name) for o in self.kb.objects.values() for p in o.phrases]
        self._action_phrases = [(p, a.name) for a in self.kb.actions.values() for p in a.phrases]
        self._phrase_matrix: Optional[tuple[np.ndarray, np.ndarray]] = None

    def prepare(self) -> None:
        """Encode every knowledge-base phrase now, so the first instruction is as fast as the rest."""
        if self.embedder is None:
            return
        self._object_phrase_matrix()
        self.embedder.encode([p for p, _ in self._action_phrases])

    # --- embedding helpers -------------------------------------------------

    def _nearest(self, query: str, table: list[tuple[str, str]], names: Optional[set[str]] = None) -> tuple[str, float]:
        """Best (canonical name, cosine) of a query against (phrase, name) pairs."""
        if self.embedder is None or not table:
            return "", 0.0
        rows = [(p, n) for p, n in table if names is None or n in names]
        if not rows:
            return "", 0.0
        sims = self.embedder.similarity([query], [p for p, _ in rows])[0]
        best = int(np.argmax(sims))
        return rows[best][1], float(sims[best])

    def _object_phrase_matrix(self) -> tuple[np.ndarray, np.ndarray]:
        """Embeddings of every object phrase (encoded once, in one batch) and the object index of each row."""
        if self._phrase_matrix is None:
            names = list(self.kb.objects)
            vectors = self.embedder.encode([p for p, _ in self._object_phrases])
            owner = np.array([names.index(n) for _, n in self._object_phrases])
            self._phrase_matrix = (vectors, owner)
        return self._phrase_matrix

    def _rank_objects(
        self, query: str, entries: Sequence[ObjectEntry], action: Optional[str] = None
    ) -> list[tuple[ObjectEntry, float]]:
        """Entries ranked by what they are made for (KB ``uses``) and by similarity of the query to their phrases."""
        best_sim: dict[str, float] = {}
        if self.embedder is not None:
            vectors, owner = self._object_phrase_matrix()
            sims = vectors @ self.embedder.encode([query])[0]
            names = list(self.kb.objects)
            per_object = np.full(len(names), -1.0)
            np.maximum.at(per_object, owner, sims)
            best_sim = {n: float(v) for n, v in zip(names, per_object)}
        scored = []
        for index, entry in enumerate(entries):
            prior = USES_BONUS if action and action in entry.uses else 0.0
            sim = best_sim.get(entry.name, 0.5 - 0.5 * index / max(len(entries), 1))  # file order without embeddings
            scored.append((entry, min(1.0, prior + (1.0 - USES_BONUS) * max(sim, 0.0))))
        return sorted(scored, key=lambda t: -t[1])

    # --- steps -------------------------------------------------------------

    def _action(self, parsed: ParsedInstruction, reasons: list[str]) -> tuple[Optional[Mention], Optional[str]]:
        main = parsed.main_action
        if main is not None:
            return main, None
        # No listed verb: try unknown words at the start of a clause ("decork the wine").
        for index, word in parsed.unknown:
            if index == 0 or parsed.words[index - 1] in ("to", "please", "i", "you", "and"):
                name, sim = self._nearest(word, self._action_phrases)
                if sim >= self.similarity_threshold:
                    reasons.append(f"'{word}' read as action '{name}' (embedding similarity {sim:.2f})")
                    return Mention("action", name, index, index + 1, word, via="embedding"), word
        return None, None

    def _named_object(
        self, parsed: ParsedInstruction, action: str, affordance: str, needs_tool: bool, reasons: list[str]
    ) -> tuple[Optional[ObjectDescription], str]:
        """The object the instruction names, and the phrase of a named object the knowledge base does not know.

        An unknown noun after a determiner is read as the nearest known object
        only when it is nearly a synonym. Otherwise, when the action is a plain
        grasp that no object is made for ("pick up the banana"), nothing but the
        noun says what to look for, so it is reported unknown rather than
        swapped for whatever is similar. An action some objects are made for
        keeps those as candidates: "give me the peony" still finds the flower,
        and in "pour the water" the noun is the contents.
        """
        if parsed.objects:
            # prefer the one that can do the action ("use the knife to cut the bread"), and among those one named
            # as the instrument or source ("drink the wine from the glass": the glass, not the wine's bottle);
            # a plain grasp takes its direct object ("take the spoon from the bowl": the spoon)
            marked = [d for d in parsed.objects if parsed.is_instrument(d)] if action not in GRASP_VERBS else []
            for description in marked + [d for d in parsed.objects if d not in marked]:
                if self.kb.objects[description.mention.canonical].parts_affording(affordance):
                    return description, ""
            return parsed.objects[0], ""
        if needs_tool:  # "cut the bread": an unknown noun is what the tool acts on
            return None, ""
        for index, word in parsed.unknown:
            if follows_determiner(parsed.words, index, NOUN_DETERMINERS):
                phrase = self._noun_phrase(parsed, index)
                name, sim = self._nearest(phrase, self._object_phrases)
                if sim >= self.object_alias_threshold:
                    reasons.append(f"'{phrase}' read as object '{name}' (embedding similarity {sim:.2f})")
                    return ObjectDescription(Mention("object", name, index, index + 1, word, via="embedding")), ""
                if affordance in GRASP_AFFORDANCES and not any(action in o.uses for o in self.kb.objects.values()):
                    closest = f" (closest: '{name}', similarity {sim:.2f})" if name else ""
                    reasons.append(
                        f"'{phrase}' is not an object in the knowledge base{closest}; "
                        "add it to knowledge_base.yaml to ground it"
                    )
                    return None, phrase
        return None, ""

    @staticmethod
    def _named_part(entry: ObjectEntry, parts: list[Mention]) -> Optional[PartEntry]:
        """The first of the instruction's part mentions that ``entry`` has, by the words used or their canonical
        name."""
        for mention in parts:
            part = entry.part_by_phrase(mention.surface) or entry.part(mention.canonical)
            if part is not None:
                return part
        return None

    def _kind_with_part(self, entry: ObjectEntry, named: ObjectDescription, parts: list[Mention],
                        reasons: list[str]) -> ObjectEntry:
        """A more specific kind the noun also names that has the part asked for, else ``entry``.

        "the cork of the bottle": a plain bottle has no cork, a wine bottle has one, and "bottle" names both.
        Only kinds whose name or synonym ends in the very noun are considered, so no unrelated object is swapped in.
        """
        noun = named.mention.surface
        for other in self.kb.objects.values():
            if other is entry or self._named_part(other, parts) is None:
                continue
            if any(phrase == noun or phrase.endswith(" " + noun) for phrase in other.phrases):
                reasons.append(f"a {entry.name} has no {parts[0].surface}; a {other.name} is also a '{noun}' "
                               f"and has one")
                named.mention = Mention("object", other.name, named.mention.start, named.mention.end,
                                        named.mention.surface, via=named.mention.via)
                return other
        return entry

    @staticmethod
    def _noun_phrase(parsed: ParsedInstruction, index: int) -> str:
        """Consecutive unknown words from index on ("the ornate carafe" -> "ornate carafe")."""
        unknown = dict(parsed.unknown)
        words = []
        while index in unknown:
            words.append(unknown[index])
            index += 1
        return " ".join(words)

    def _ranking_query(self, parsed: ParsedInstruction, action: Optional[Mention], patient: str) -> str:
        """What to compare candidate objects with: an unknown noun phrase after a determiner, else the action."""
        for index, _ in parsed.unknown:
            if follows_determiner(parsed.words, index, NOUN_DETERMINERS) and not patient:
                return self._noun_phrase(parsed, index)
        verb = action.surface if action else ""
        return f"{verb} {patient}".strip() or normalise(parsed.text)

    def _patient_noun(self, parsed: ParsedInstruction, action: Optional[Mention]) -> str:
        if action is None:
            return ""
        after = [(i, w) for i, w in parsed.unknown if i >= action.end]
        after += [(m.start, m.surface) for m in parsed.parts if m.start >= action.end]  # "cut the wire"
        return min(after)[1] if after else ""

    def _part_for(
        self, entry: ObjectEntry, action: Optional[str], affordance: str, mode: str,
        explicit: list[Mention], reasons: Optional[list[str]],
    ) -> PartEntry:
        def say(text: str) -> None:
            if reasons is not None:
                reasons.append(text)

        named_part = self._named_part(entry, explicit)
        if named_part is not None:
            say(f"the instruction names the {named_part.name}")
            return named_part
        part, why = part_for_task(entry, self.kb.actions.get(action or ""), affordance, mode)
        say(why)
        return part

    def part_for_object(self, resolution: InstructionResolution, object_name: str) -> str:
        """The part this resolution's task needs on another object (a backend may recognise a different one)."""
        entry = self.kb.objects[object_name]
        explicit: list[Mention] = []
        if resolution.named_part:
            explicit = [Mention("part", resolution.named_part, 0, 0, resolution.named_part)]
        return self._part_for(entry, resolution.action, resolution.affordance, resolution.mode, explicit, None).name

    # --- main entry --------------------------------------------------------

    def resolve(self, instruction: str, visible_objects: Optional[Sequence[str]] = None) -> InstructionResolution:
        reasons: list[str] = []
        parsed = parse_instruction(instruction, self.kb)
        if not (parsed.actions or parsed.objects or parsed.parts):
            # Emoji, undecodable bytes, a language the parser does not read: no target,
            # rather than the object most similar to an empty query.
            reasons.append(f"nothing in {instruction!r} is a known action, object or part: not understood")
            return InstructionResolution(
                instruction=instruction, action="", affordance="", mode="grasp", object_name="", kb_object="",
                object_phrase="", object_attributes={"colours": [], "size": None, "modifiers": []}, part_name="",
                part_phrase="", unknown_object=instruction, reasons=reasons,
            )
        action_mention, _ = self._action(parsed, reasons)
        action_entry = self.kb.actions.get(action_mention.canonical) if action_mention else None
        if action_entry is None:
            action_entry = self.kb.actions[DEFAULT_ACTION]
            reasons.append(f"no action recognised: assume '{DEFAULT_ACTION}'")
        else:
            reasons.append(f"action '{action_entry.name}' (from '{action_mention.surface}') "
                           f"-> affordance '{action_entry.affordance}'")

        mode = "grasp"
        part_affordance = action_entry.affordance
        if parsed.is_question:
            interaction = parsed.interaction
            if interaction is not None and interaction.canonical in GRASP_VERBS:
                mode = "grasp"
                reasons.append(f"asks which part to '{interaction.surface}': the part to hold")
            else:
                mode = "function"
                if interaction is not None:
                    part_affordance = self.kb.actions[interaction.canonical].affordance
                reasons.append(f"asks which part does '{part_affordance}'")

        # ----- object
        named, unknown_object = self._named_object(
            parsed, action_entry.name, action_entry.affordance, action_entry.needs_tool, reasons
        )
        patient = ""
        tool_candidates: list[tuple[ObjectEntry, float]] = []
        entry: Optional[ObjectEntry] = self.kb.objects.get(named.mention.canonical) if named else None
        if (entry is not None and action_mention is not None and action_mention.via == "embedding"
                and not entry.parts_affording(action_entry.affordance)):
            # A verb the knowledge base does not list was only guessed ("flush" ~ "wipe"); the object was named.
            # Trust the noun: asking for another object because of a guessed verb answers a task nobody set.
            reasons.append(f"a {entry.name} cannot '{action_entry.affordance}', and '{action_mention.surface}' was "
                           f"only guessed to mean '{action_entry.name}': the named {entry.name} is the object, "
                           f"held as for '{DEFAULT_ACTION}'")
            action_entry, action_mention = self.kb.actions[DEFAULT_ACTION], None
            part_affordance = action_entry.affordance
        if entry is not None and parsed.parts and self._named_part(entry, parsed.parts) is None:
            entry = self._kind_with_part(entry, named, parsed.parts, reasons)
        if (entry is not None and action_entry.needs_tool and not entry.parts_affording(action_entry.affordance)
                and not parsed.is_instrument(named)):  # "clean it with the spray": the spray is the tool
            patient = named.mention.surface
            reasons.append(f"a {entry.name} cannot '{action_entry.affordance}': it is what the action is done to")
            entry, named = None, None
        if entry is None and not unknown_object:
            explicit_part_objects = [
                o for o in self.kb.objects.values()
                if any(o.part_by_phrase(m.surface) for m in parsed.parts)
            ] if parsed.parts and not action_entry.needs_tool else []
            pool = (explicit_part_objects or self.kb.objects_affording(action_entry.affordance)
                    or list(self.kb.objects.values()))
            patient = patient or self._patient_noun(parsed, action_mention)
            query = self._ranking_query(parsed, action_mention, patient)
            tool_candidates = self._rank_objects(query, pool, action_entry.name)
            if tool_candidates:
                entry = tool_candidates[0][0]
                reasons.append(
                    f"no object named: objects that afford '{action_entry.affordance}' are candidates, "
                    f"best match for '{query}' is '{entry.name}'"
                )

        # ----- visible objects
        object_name = entry.name if entry else ""
        in_view: Optional[bool] = None
        visible_index: Optional[int] = None
        if visible_objects is not None:
            in_view, visible_index, entry, object_name = self._match_visible(
                visible_objects, entry, named, tool_candidates, reasons
            )

        # ----- part
        part = (
            self._part_for(entry, action_entry.name, part_affordance, mode, parsed.parts, reasons)
            if entry is not None
            else None
        )
        description = named
        attributes: dict[str, object] = {
            "colours": list(description.colours) if description else [],
            "size": description.size if description else None,
            "modifiers": list(description.modifiers) if description else [],
        }
        object_phrase = description.phrase if description else (entry.name if entry else unknown_object)

        candidates: list[Candidate] = []
        if tool_candidates:
            for cand, score in tool_candidates[:8]:
                cand_part = self._part_for(cand, action_entry.name, part_affordance, mode, parsed.parts, None)
                candidates.append(Candidate(cand.name, cand_part.name, score))
        elif entry is not None and part is not None:
            candidates.append(Candidate(entry.name, part.name, 1.0))

        resolution = InstructionResolution(
            instruction=instruction,
            action=action_entry.name,
            affordance=part_affordance,
            mode=mode,
            object_name=object_name,
            kb_object=entry.name if entry else "",
            object_phrase=object_phrase,
            object_attributes=attributes,
            part_name=part.name if part else "",
            part_phrase=f"{part.name} of the {object_phrase}" if part and object_phrase else "",
            named_part=parsed.parts[0].surface if parsed.parts else "",
            patient=patient,
            unknown_object=unknown_object,
            in_view=in_view,
            visible_index=visible_index,
            candidates=candidates,
            reasons=reasons,
        )
        if self.language_model is not None:
            self._consult_language_model(resolution, visible_objects)
        return resolution

    def _match_visible(
        self,
        visible: Sequence[str],
        entry: Optional[ObjectEntry],
        named: Optional[ObjectDescription],
        tool_candidates: list[tuple[ObjectEntry, float]],
        reasons: list[str],
    ) -> tuple[bool, Optional[int], Optional[ObjectEntry], str]:
        """Pick the visible label the instruction refers to; (in_view, index, entry, label)."""
        visible_entries: list[Optional[ObjectEntry]] = [self.entry_for_label(label) for label in visible]
        wanted = [entry] if tool_candidates == [] else [c for c, _ in tool_candidates]
        colours = named.colours if named else []
        for want in wanted:
            if want is None:
                continue
            matches = [i for i, e in enumerate(visible_entries) if e is not None and e.name == want.name]
            if matches:
                if colours:
                    coloured = [i for i in matches if any(c in normalise(visible[i]).split() for c in colours)]
                    matches = coloured or matches
                index = matches[0]
                reasons.append(f"'{visible[index]}' in view is a {want.name}")
                return True, index, want, visible[index]
        if named is not None and self.embedder is not None and visible:
            sims = self.embedder.similarity([named.phrase], [normalise(v) for v in visible])[0]
            index = int(np.argmax(sims))
            if sims[index] >= self.similarity_threshold:
                reasons.append(f"'{visible[index]}' in view is the closest to '{named.phrase}' "
                               f"(similarity {sims[index]:.2f})")
                return True, index, visible_entries[index] or entry, visible[index]
        label = entry.name if entry else (named.mention.surface if named else "")
        reasons.append(f"no object in view matches '{label}'")
        return False, None, entry, label

    def entry_for_label(self, label: str) -> Optional[ObjectEntry]:
        """Knowledge-base object for a detector label ("blue mug" -> mug), lexicon first, then embeddings."""
        words = normalise(label).split()
        for length in range(len(words), 0, -1):
            for start in range(0, len(words) - length + 1):
                entry = self.kb.object_for_phrase(" ".join(words[start : start + length]))
                if entry is not None:
                    return entry
        name, sim = self._nearest(" ".join(words), self._object_phrases)
        return self.kb.objects[name] if name and sim >= self.similarity_threshold else None

    def _consult_language_model(self, resolution: InstructionResolution, visible: Optional[Sequence[str]]) -> None:
        names = [c.object_name for c in resolution.candidates] or list(self.kb.objects)
        if resolution.kb_object and resolution.kb_object not in names:
            names.insert(0, resolution.kb_object)
        options = {n: [p.name for p in self.kb.objects[n].parts] for n in names}
        prompt = build_prompt(resolution.instruction, options, list(visible) if visible is not None else None)
        try:
            answer = parse_answer(self.language_model(prompt))
        except Exception as exc:  # a user's model server may be down: keep the rule-based answer
            resolution.reasons.append(f"language model failed ({type(exc).__name__}); kept the rule-based answer")
            log.warning("language model hook failed: %s", exc)
            return
        if answer is None or answer.object not in options or answer.part not in options[answer.object]:
            resolution.reasons.append("language model reply not usable; kept the rule-based answer")
            return
        resolution.kb_object = answer.object
        if visible is None:
            resolution.object_name = answer.object
        resolution.part_name = answer.part
        if answer.affordance in self.kb.affordances:
            resolution.affordance = answer.affordance
        resolution.part_phrase = f"{answer.part} of the {resolution.object_phrase or answer.object}"
        resolution.reasons.append(f"language model chose the {answer.part} of the {answer.object}: {answer.reason}")
