"""Small text utilities: tokens, word forms, and longest-match phrase spotting.

Deliberately simple and deterministic so every parse can be explained; the
sentence-embedding model is only consulted for words these rules do not know.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# Colour words the backend's colour naming can produce (see shapegrasp.colour).
COLOUR_WORDS: tuple[str, ...] = (
    "red", "orange", "yellow", "green", "blue", "purple", "pink", "brown",
    "black", "white", "grey", "silver", "gold", "beige", "teal", "cyan",
)
COLOUR_ALIASES: dict[str, str] = {
    "gray": "grey", "violet": "purple", "magenta": "pink", "navy": "blue", "turquoise": "teal",
    "tan": "beige", "cream": "beige", "golden": "gold", "metal": "silver", "metallic": "silver",
    "steel": "silver", "lime": "green", "maroon": "red", "crimson": "red", "dark": "", "light": "",
}
SIZE_WORDS: dict[str, str] = {
    "small": "small", "little": "small", "tiny": "small", "mini": "small", "short": "small",
    "big": "large", "large": "large", "huge": "large", "tall": "large", "long": "large", "giant": "large",
}
STOPWORDS = frozenset(
    """a an the this that these those it its it's i me my we our you your he she they them their
    please can could would should will shall may might must do does did to of for in on at by with from
    into onto up out off over under and or but if then so which what where who how when part parts
    picture image photo scene here there is are was were be been being am want need like use used using
    some any one ones all both each other another just now also very again thing something""".split()
)

_TOKEN_RE = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")


def normalise(text: str) -> str:
    """Lower case, possessives dropped, punctuation to spaces."""
    text = text.lower().replace("\u2019", "'")
    text = re.sub(r"'s\b", "", text)
    return " ".join(_TOKEN_RE.findall(text))


def tokens(text: str) -> list[str]:
    return normalise(text).split()


def word_forms(word: str) -> list[str]:
    """The word and the base forms it may inflect from (plural, -ing, -ed), most likely first; last, its plural."""
    forms = [word]
    if word.endswith("ies") and len(word) > 4:
        forms.append(word[:-3] + "y")
    if word.endswith("es") and len(word) > 3:
        forms.append(word[:-2])
    if word.endswith("s") and not word.endswith("ss") and len(word) > 3:
        forms.append(word[:-1])
    if word.endswith("ing") and len(word) > 5:
        stem = word[:-3]
        forms += [stem, stem + "e"]
        if len(stem) > 2 and stem[-1] == stem[-2]:
            forms.append(stem[:-1])
    if word.endswith("ed") and len(word) > 4:
        stem = word[:-2]
        forms += [stem, stem + "e", word[:-1]]
        if len(stem) > 2 and stem[-1] == stem[-2]:
            forms.append(stem[:-1])
    forms += [word + "s", word + "es"]  # nouns listed only in the plural: "scissor" -> "scissors", "sunglass"
    return forms


def canonical_words(words: list[str], vocabulary: set[str]) -> list[str]:
    """Map each word to its first form found in the vocabulary (else keep it)."""
    out = []
    for word in words:
        out.append(next((f for f in word_forms(word) if f in vocabulary), word))
    return out


@dataclass(frozen=True)
class Mention:
    """A phrase of the instruction recognised as a knowledge-base entry."""

    kind: str  # object | action | part | affordance
    canonical: str  # the knowledge-base name
    start: int  # token span [start, end)
    end: int
    surface: str  # the words as they appear (after normalisation)
    via: str = "lexicon"  # lexicon | embedding


def spot_phrases(words: list[str], table: dict[str, str], kind: str, max_len: int = 4) -> list[Mention]:
    """Non-overlapping longest-first matches of the table's phrases in the word list."""
    mentions: list[Mention] = []
    taken = [False] * len(words)
    for length in range(min(max_len, len(words)), 0, -1):
        for start in range(0, len(words) - length + 1):
            if any(taken[start : start + length]):
                continue
            phrase = " ".join(words[start : start + length])
            if phrase in table:
                mentions.append(Mention(kind, table[phrase], start, start + length, phrase))
                for i in range(start, start + length):
                    taken[i] = True
    return sorted(mentions, key=lambda m: m.start)


def colour_word(word: str) -> str | None:
    if word in COLOUR_WORDS:
        return word
    alias = COLOUR_ALIASES.get(word)
    return alias or None
