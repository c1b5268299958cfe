"""Words for what the generator builds: the phrases a crop is asked about in training and at run time.

The generator names kinds and parts its own way ("bread_knife", "petals");
instructions name them the knowledge base's way ("knife", "blossom") or with
synonyms. Training phrases are drawn from all of these, so the decoder learns
that "the blossom of the flower" and "the petals of the daisy" ask for the
same pixels, and run-time phrases come from the reasoner's knowledge-base
names. A kind's names never include another kind's own name: "knife" is a
bread knife and a steak knife, "steak knife" is only the latter.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Optional, Sequence

from partseg_ros.language.knowledge_base import (
    KnowledgeBase,
    ObjectEntry,
    PartEntry,
    _word_stem,
    load_knowledge_base,
)


def spoken(name: str) -> str:
    return name.replace("_", " ")


def query_text(part: str, obj: str) -> str:
    """The phrase a crop is asked about; the same template in training and at run time."""
    return f"the {spoken(part)} of the {spoken(obj)}"


@dataclass(frozen=True)
class PartGroup:
    """One part a person names, made of one or more generator parts ("blossom" = petals + centre)."""

    name: str
    phrases: tuple[str, ...]
    generator_parts: tuple[str, ...]


@dataclass(frozen=True)
class KindWords:
    kind: str
    kb_object: str  # "" when the knowledge base does not know the kind
    names: tuple[str, ...]  # every phrase that names this kind (first = its own name)
    groups: tuple[PartGroup, ...]


def _entry_for_kind(kind: str, kb: KnowledgeBase) -> Optional[ObjectEntry]:
    return kb.object_for_phrase(spoken(kind))


def _matches(generator_part: str, phrases: tuple[str, ...]) -> bool:
    words = {_word_stem(w) for w in spoken(generator_part).split()}
    for phrase in phrases:
        pw = {_word_stem(w) for w in phrase.split()}
        if pw and (pw <= words or words <= pw):
            return True
    return False


@lru_cache(maxsize=256)
def _kind_words_cached(kind: str, parts: tuple[str, ...], kb_id: int) -> KindWords:
    kb = _KB_BY_ID[kb_id]
    entry = _entry_for_kind(kind, kb)
    own = spoken(kind)
    if entry is None:
        return KindWords(kind, "", (own,), tuple(PartGroup(p, (spoken(p),), (p,)) for p in parts))
    other_kinds = {spoken(k) for k in _generator_kinds()} - {own}
    variant_names = {v.name for v in entry.variants}
    names = [own] + [n for n in entry.phrases if n != own and n not in other_kinds
                     and (n not in variant_names or n == own) and not (set(entry.kinds) & {n} and n != own)]
    groups: dict[str, list[str]] = {}
    phrases: dict[str, tuple[str, ...]] = {}
    # A part the knowledge base lists under the generator's own word is that part: the saucepan's "lid" is its lid,
    # not the knob whose synonym "lid knob" merely contains the word. Word overlap only after that.
    matches = {part: next((p for p in entry.parts if spoken(part) in p.phrases), None)
               or next((p for p in entry.parts if _matches(part, p.phrases)), None) for part in parts}
    body = _body_part(entry)
    if body is not None and all(m is None or m.name != body.name for m in matches.values()):
        def rank(part: str) -> Optional[int]:
            return _body_name_rank(spoken(part), entry, own)

        named = [part for part in parts if matches[part] is None and rank(part) is not None]
        if named:
            matches[min(named, key=rank)] = body  # min keeps the first of equally sure names
    for part in parts:
        match = matches[part]
        key = match.name if match else part
        groups.setdefault(key, []).append(part)
        phrases[key] = tuple(dict.fromkeys((match.phrases if match else ()) + (spoken(part),)))
    ordered = tuple(PartGroup(k, tuple(dict.fromkeys(phrases[k] + tuple(spoken(p) for p in v))), tuple(v))
                    for k, v in groups.items())
    return KindWords(kind, entry.name, tuple(dict.fromkeys(names)), ordered)


def _body_part(entry: ObjectEntry) -> Optional[PartEntry]:
    """The part an instruction means by the object's body: the one named so, else its single large part (a tissue
    box's "box", a plate's "surface"); None when several parts are large and none is called the body."""
    named = entry.part("body")
    if named is not None:
        return named
    large = [p for p in entry.parts if p.signature.size == "large"]
    return large[0] if len(large) == 1 else None


def _body_name_rank(part: str, entry: ObjectEntry, own: str) -> Optional[int]:
    """How surely a generator part the knowledge base does not list is the object's body by its name (lower is
    surer; None: not at all): the object's own name (a one-piece "sponge"), then "body", then another of its
    names ("pot" for the saucepan), then a name's head noun (the teacup's "cup")."""
    if part in (own, entry.name):
        return 0
    if part == "body":
        return 1
    if part in entry.phrases:
        return 2
    if any(name.split()[-1] == part for name in entry.phrases):
        return 3
    return None


_KB_BY_ID: dict[int, KnowledgeBase] = {}


def _generator_kinds() -> list[str]:
    from partseg_ros.scene.objects import object_kinds

    return object_kinds()


def _registered(kb: Optional[KnowledgeBase]) -> int:
    """The key under which the cached lookups find ``kb`` (the packaged knowledge base when None)."""
    kb = kb or load_knowledge_base()
    _KB_BY_ID[id(kb)] = kb
    return id(kb)


def kind_words(kind: str, parts: tuple[str, ...], kb: Optional[KnowledgeBase] = None) -> KindWords:
    """Names and part groups of a generator kind with the given generator part names."""
    return _kind_words_cached(kind, tuple(parts), _registered(kb))


def learned_name(phrase: str, entry: ObjectEntry, kb: Optional[KnowledgeBase] = None) -> Optional[str]:
    """The longest name training used for this object that ``phrase`` ends with, word for word; None if none.

    The words in front of it ("meyers" in "the meyers cleaning spray", a brand) were in no training phrase, so
    they shift the query's sentence embedding to where the decoder never learned a part: asked for "the body of
    the meyers cleaning spray" it painted the sprayer head. Which object is meant the reasoner has settled.
    """
    names = _names_of_entry(entry.name, _registered(kb))
    words = phrase.split()
    tails = (" ".join(words[i:]) for i in range(len(words)))  # longest first
    return next((tail for tail in tails if tail in names), None)


@lru_cache(maxsize=256)
def _names_of_entry(entry_name: str, kb_id: int) -> frozenset[str]:
    kb = _KB_BY_ID[kb_id]
    kinds = (spoken(kind) for kind in _generator_kinds()
             if getattr(_learned_as(kind, kb), "name", None) == entry_name)
    return frozenset(kb.objects[entry_name].phrases) | frozenset(kinds)


def learned_kb_objects(kinds: Sequence[str], kb: Optional[KnowledgeBase] = None) -> frozenset[str]:
    """Knowledge-base objects a model trained on these generator kinds has seen.

    The network's presence score only means something for these: asked about
    a wrench it never saw, it answers for whatever tool looks closest.
    """
    kb = kb or load_knowledge_base()
    entries = (_learned_as(kind, kb) for kind in kinds)
    return frozenset(entry.name for entry in entries if entry is not None)


def _learned_as(kind: str, kb: KnowledgeBase) -> Optional[ObjectEntry]:
    """The knowledge-base object a generator kind's crops teach: the one that names it, else one that shares its
    words (:func:`_entry_sharing_words`); None when none does."""
    return _entry_for_kind(kind, kb) or _entry_sharing_words(kind, kb)


def _entry_sharing_words(kind: str, kb: KnowledgeBase) -> Optional[ObjectEntry]:
    """The entry a person would use for a kind the knowledge base spells otherwise: the same words in
    another order ("connector cable" / "cable connector"), else its head noun ("clorox box" -> "box")."""
    words = spoken(kind).split()
    for entry in kb.objects.values():
        if any(sorted(phrase.split()) == sorted(words) for phrase in entry.phrases):
            return entry
    return kb.object_for_phrase(words[-1]) if len(words) > 1 else None
