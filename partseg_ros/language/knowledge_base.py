"""The written knowledge base of objects, parts, affordances and actions.

The knowledge lives in a YAML file (``partseg_ros/data/knowledge_base.yaml``)
that users can read and extend; this module only turns it into typed, indexed
records so the reasoner and the geometric backend can query it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Iterable, Optional, Sequence

import yaml

DEFAULT_KB_PATH = Path(__file__).resolve().parent.parent / "data" / "knowledge_base.yaml"

SHAPES = ("cylinder", "box", "ring", "rod", "sphere", "plate", "cone", "blob")
POSITIONS = ("top", "bottom", "middle", "side", "end")
SIZES = ("small", "medium", "large")
GRASP_AFFORDANCES = ("hold", "grip")


@dataclass(frozen=True)
class PartSignature:
    """What a part is expected to look like, in the backend's geometric vocabulary."""

    shapes: tuple[str, ...] = ()
    positions: tuple[str, ...] = ()
    size: Optional[str] = None  # small | medium | large share of the object
    width: Optional[str] = None  # narrow | wide relative to the other parts
    thickness: Optional[str] = None  # thin | thick relative to the other parts
    protruding: Optional[bool] = None


@dataclass(frozen=True)
class PartEntry:
    name: str
    affordances: tuple[str, ...]
    graspable: bool
    signature: PartSignature
    synonyms: tuple[str, ...] = ()
    fragile: bool = False  # breaks when squeezed (bulb glass): held only when no sturdy part will do
    optional: bool = False  # often absent (a teacup's saucer): its absence does not count against the object

    @property
    def phrases(self) -> tuple[str, ...]:
        return (self.name,) + self.synonyms


def sturdy_first(parts: Sequence["PartEntry"]) -> list["PartEntry"]:
    """Parts in preference order with fragile ones moved last: a gripper should not squeeze glass when a sturdy
    part of the same object will do."""
    return sorted(parts, key=lambda p: p.fragile)


def _word_stem(word: str) -> str:
    """Crude singular ("boxes" -> "box", "steaks" -> "steak"; irregular plurals are not handled): enough to match a
    noun list."""
    word = word.lower()
    if word.endswith("es") and word[:-2].endswith(("x", "s", "ch", "sh")):
        return word[:-2]
    return word[:-1] if word.endswith("s") and not word.endswith("ss") else word


@dataclass(frozen=True)
class ObjectVariant:
    """A named kind of an object with its own typical size and the things it is meant for.

    Several knives may lie side by side; "cut the bread" wants the long one
    and "cut the box" the short cutter. When the instruction names the
    variant or one of its patients, the variant's size ranks the objects in
    view that look equally like the object.
    """

    name: str
    size_m: tuple[float, float]
    patients: tuple[str, ...] = ()  # nouns the variant is used on ("bread", "loaf")
    width_m: Optional[tuple[float, float]] = None

    def serves(self, patient: str) -> Optional[str]:
        """Why this variant suits the patient noun ("cut the bread"), or None."""
        patient_words = {_word_stem(w) for w in patient.lower().split()}
        for noun in self.patients:
            if _word_stem(noun) in patient_words:
                return f"a {self.name} is the kind used on {noun}"
        return None


@dataclass(frozen=True)
class ObjectEntry:
    name: str
    synonyms: tuple[str, ...]
    kinds: tuple[str, ...]
    size_m: tuple[float, float]
    posture: str
    parts: tuple[PartEntry, ...]  # in order of preference for a plain grasp
    uses: tuple[str, ...] = ()  # actions the object is made for
    height_m: Optional[tuple[float, float]] = None  # above the table in its usual resting pose
    # Second-largest extent (across the longest one): the same whether the object stands or lies,
    # so it tells a slim bottle from a wide saucepan of the same length.
    width_m: Optional[tuple[float, float]] = None
    variants: tuple[ObjectVariant, ...] = ()

    @property
    def phrases(self) -> tuple[str, ...]:
        return (self.name,) + self.synonyms + self.kinds

    def variant_for(self, phrase: str, patient: str) -> tuple[Optional[ObjectVariant], str]:
        """The variant the instruction asks for (by name first, then by what it acts on) and why."""
        phrase_words = {_word_stem(w) for w in phrase.lower().split()}
        for variant in self.variants:
            if phrase and all(_word_stem(w) in phrase_words for w in variant.name.lower().split()):
                return variant, f"the instruction names a {variant.name}"
        for variant in self.variants:
            why = variant.serves(patient)
            if why:
                return variant, why
        return None, ""

    def part(self, name: str) -> Optional[PartEntry]:
        for part in self.parts:
            if part.name == name:
                return part
        return None

    def part_by_phrase(self, phrase: str) -> Optional[PartEntry]:
        for part in self.parts:
            if phrase in part.phrases:
                return part
        return None

    def parts_affording(self, affordance: str) -> list[PartEntry]:
        return [p for p in self.parts if affordance in p.affordances]

    @property
    def grasp_part(self) -> PartEntry:
        """The part a robot holds by default: the first sturdy graspable part that affords holding."""
        preferred = sturdy_first(self.parts)
        for part in preferred:
            if part.graspable and any(a in part.affordances for a in GRASP_AFFORDANCES):
                return part
        for part in preferred:
            if part.graspable:
                return part
        return self.parts[0]


@dataclass(frozen=True)
class ActionEntry:
    name: str
    synonyms: tuple[str, ...]
    affordance: str
    needs_tool: bool
    part_hints: tuple[str, ...]

    @property
    def phrases(self) -> tuple[str, ...]:
        return (self.name,) + self.synonyms


def part_for_task(entry: ObjectEntry, action: Optional[ActionEntry], affordance: str, mode: str
                  ) -> tuple[PartEntry, str]:
    """The part of ``entry`` a task needs, with the reason: the knowledge base's policy, kept beside its data so
    the reasoner (which reads the task from wording) and the generated validation (which writes the wording from
    the task) share one answer.

    The action's hinted part first ("uncork" acts on the cork); else the part that affords the task; when the
    robot has to *grasp* to do it (``mode`` "grasp") and that part is not for grasping (a blade, a spout), the
    object's grasp part. ``mode`` "function" asks for the part that does the task, graspable or not.
    """
    for hint in action.part_hints if action is not None else ():
        part = entry.part(hint)
        if part is not None and (mode == "function" or part.graspable):
            return part, f"'{action.name}' acts on the {part.name} of a {entry.name}"
    affording = entry.parts_affording(affordance)
    if mode == "function" and affording:
        return affording[0], f"the {affording[0].name} of a {entry.name} affords '{affordance}'"
    graspable = sturdy_first([p for p in affording if p.graspable])
    if graspable:
        fragile = [p.name for p in affording if p.graspable and p.fragile and p is not graspable[0]]
        spared = f" (the {', '.join(fragile)} is fragile)" if fragile and not graspable[0].fragile else ""
        chosen = graspable[0]
        return chosen, f"the {chosen.name} of a {entry.name} affords '{affordance}' and can be grasped{spared}"
    grasp = entry.grasp_part
    if affording:
        return grasp, (f"the {affording[0].name} of a {entry.name} does '{affordance}' but is not for grasping, "
                       f"so hold the {grasp.name}")
    return grasp, f"no part of a {entry.name} is listed for '{affordance}': take the grasp part, the {grasp.name}"


@dataclass
class KnowledgeBase:
    objects: dict[str, ObjectEntry]
    actions: dict[str, ActionEntry]
    affordances: dict[str, str]  # name -> description
    source: str = ""
    _object_phrases: dict[str, str] = field(default_factory=dict, repr=False)
    _action_phrases: dict[str, str] = field(default_factory=dict, repr=False)
    _part_phrases: dict[str, str] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        # Earlier entries win a shared phrase, so the file's order is the tie-break.
        for obj in self.objects.values():
            for phrase in obj.phrases:
                self._object_phrases.setdefault(phrase, obj.name)
            for part in obj.parts:
                for phrase in part.phrases:
                    self._part_phrases.setdefault(phrase, part.name)
        for action in self.actions.values():
            for phrase in action.phrases:
                self._action_phrases.setdefault(phrase, action.name)

    @property
    def part_names(self) -> list[str]:
        return sorted({p.name for o in self.objects.values() for p in o.parts})

    def object_for_phrase(self, phrase: str) -> Optional[ObjectEntry]:
        name = self._object_phrases.get(phrase)
        return self.objects[name] if name else None

    def action_for_phrase(self, phrase: str) -> Optional[ActionEntry]:
        name = self._action_phrases.get(phrase)
        return self.actions[name] if name else None

    def part_for_phrase(self, phrase: str) -> Optional[str]:
        return self._part_phrases.get(phrase)

    def phrase_table(self) -> dict[str, dict[str, str]]:
        """kind -> phrase -> canonical name, for phrase matching in the parser."""
        return {
            "object": dict(self._object_phrases),
            "action": dict(self._action_phrases),
            "part": dict(self._part_phrases),
            "affordance": {name: name for name in self.affordances},
        }

    def objects_affording(self, affordance: str) -> list[ObjectEntry]:
        return [o for o in self.objects.values() if o.parts_affording(affordance)]

    def vocabulary_words(self) -> set[str]:
        words: set[str] = set()
        for table in self.phrase_table().values():
            for phrase in table:
                words.update(phrase.split())
        return words


def _as_tuple(value: object) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    return tuple(str(v) for v in value)


def _parse_part(name: str, spec: dict, part_synonyms: dict[str, tuple[str, ...]]) -> PartEntry:
    signature = PartSignature(
        shapes=_as_tuple(spec.get("shape")),
        positions=_as_tuple(spec.get("position")),
        size=spec.get("size"),
        width=spec.get("width"),
        thickness=spec.get("thickness"),
        protruding=spec.get("protruding"),
    )
    for shape in signature.shapes:
        if shape not in SHAPES:
            raise ValueError(f"part {name!r}: unknown shape {shape!r}; use one of {SHAPES}")
    for position in signature.positions:
        if position not in POSITIONS:
            raise ValueError(f"part {name!r}: unknown position {position!r}; use one of {POSITIONS}")
    return PartEntry(
        name=name,
        affordances=_as_tuple(spec.get("affordances")),
        graspable=bool(spec.get("graspable", True)),
        signature=signature,
        synonyms=part_synonyms.get(name, ()),
        fragile=bool(spec.get("fragile", False)),
        optional=bool(spec.get("optional", False)),
    )


def _parse_variant(name: str, spec: dict) -> ObjectVariant:
    if "size_m" not in spec:
        raise ValueError(f"variant {name!r} needs size_m")
    width = spec.get("width_m")
    return ObjectVariant(
        name=str(name),
        size_m=(float(spec["size_m"][0]), float(spec["size_m"][1])),
        patients=_as_tuple(spec.get("for")),
        width_m=(float(width[0]), float(width[1])) if width else None,
    )


def parse_knowledge_base(data: dict, source: str = "") -> KnowledgeBase:
    """Typed knowledge base from the YAML structure; raises ValueError on inconsistent entries."""
    affordances = {str(k): str(v) for k, v in (data.get("affordances") or {}).items()}
    part_synonyms = {str(k): _as_tuple(v) for k, v in (data.get("part_synonyms") or {}).items()}
    actions: dict[str, ActionEntry] = {}
    for name, spec in (data.get("actions") or {}).items():
        affordance = spec.get("affordance", "hold")
        if affordance not in affordances:
            raise ValueError(f"action {name!r}: affordance {affordance!r} is not declared under affordances")
        actions[name] = ActionEntry(
            name=name,
            synonyms=_as_tuple(spec.get("synonyms")),
            affordance=affordance,
            needs_tool=bool(spec.get("tool", False)),
            part_hints=_as_tuple(spec.get("parts")),
        )
    objects: dict[str, ObjectEntry] = {}
    for name, spec in (data.get("objects") or {}).items():
        parts = tuple(_parse_part(p, s or {}, part_synonyms) for p, s in (spec.get("parts") or {}).items())
        if not parts:
            raise ValueError(f"object {name!r} has no parts")
        for part in parts:
            unknown = set(part.affordances) - set(affordances)
            if unknown:
                raise ValueError(f"{name} {part.name}: affordances {sorted(unknown)} "
                                 "are not declared under affordances")
        size = spec.get("size_m", [0.02, 2.0])
        objects[name] = ObjectEntry(
            name=name,
            synonyms=_as_tuple(spec.get("synonyms")),
            kinds=_as_tuple(spec.get("kinds")),
            size_m=(float(size[0]), float(size[1])),
            posture=str(spec.get("posture", "any")),
            parts=parts,
            uses=_as_tuple(spec.get("uses")),
            height_m=(float(spec["height_m"][0]), float(spec["height_m"][1])) if spec.get("height_m") else None,
            width_m=(float(spec["width_m"][0]), float(spec["width_m"][1])) if spec.get("width_m") else None,
            variants=tuple(_parse_variant(v, vs or {}) for v, vs in (spec.get("variants") or {}).items()),
        )
    return KnowledgeBase(objects=objects, actions=actions, affordances=affordances, source=source)


def load_knowledge_base(path: str | Path | None = None) -> KnowledgeBase:
    """Load a knowledge base file; the packaged one by default (cached)."""
    # The packaged path is already absolute: resolving it again on every call cost a training step about 4%.
    return _load_cached(str(DEFAULT_KB_PATH) if not path else str(Path(path).resolve()))


@lru_cache(maxsize=8)
def _load_cached(path: str) -> KnowledgeBase:
    with open(path, "r", encoding="utf-8") as handle:
        return parse_knowledge_base(yaml.safe_load(handle), source=path)


def describe_object(entry: ObjectEntry, part_names: Iterable[str] | None = None) -> str:
    """One-line text of an object and its parts, for prompts and explanations."""
    parts = [p for p in entry.parts if part_names is None or p.name in part_names]
    return f"{entry.name}: " + ", ".join(f"{p.name} ({'/'.join(p.affordances)})" for p in parts)
