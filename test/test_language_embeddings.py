"""The offline sentence-embedding model and the reasoner's use of it for unlisted words."""

from __future__ import annotations

import numpy as np
import pytest

from partseg_ros.language.embeddings import EmbeddingModelUnavailable, SentenceEmbedder, shared_embedder
from partseg_ros.language.knowledge_base import load_knowledge_base
from partseg_ros.language.reasoner import PartReasoner


@pytest.fixture(scope="module")
def embedder():
    model = shared_embedder()
    try:
        model.load()
    except EmbeddingModelUnavailable as exc:  # pragma: no cover - the project installs it
        pytest.skip(str(exc))
    return model


def test_embeddings_are_unit_vectors_and_semantic(embedder):
    vectors = embedder.encode(["cork", "uncork the wine", "keyboard"])
    assert vectors.shape == (3, 384)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
    sims = vectors @ vectors.T
    assert sims[0, 1] > sims[0, 2]


def test_missing_model_directory_raises(tmp_path):
    with pytest.raises(EmbeddingModelUnavailable):
        SentenceEmbedder(model_dir=tmp_path).load()


def test_unlisted_verb_is_matched_to_an_action(embedder):
    reasoner = PartReasoner(load_knowledge_base(), embedder=embedder)
    resolution = reasoner.resolve("decork the wine")
    assert (resolution.action, resolution.kb_object, resolution.part_name) == ("uncork", "wine bottle", "cork")
    assert any("embedding" in r for r in resolution.reasons)


def test_unlisted_flower_goes_to_the_stem(embedder):
    reasoner = PartReasoner(load_knowledge_base(), embedder=embedder)
    resolution = reasoner.resolve("give me the peony")
    assert (resolution.kb_object, resolution.part_name) == ("flower", "stem"), resolution.reasons


def test_tool_is_ranked_by_the_task(embedder):
    reasoner = PartReasoner(load_knowledge_base(), embedder=embedder)
    resolution = reasoner.resolve("cut the wire")
    assert resolution.kb_object == "wire cutter"
    assert resolution.part_name == "handle"
    pour = reasoner.resolve("If I want to pour water, which part should I hold?")
    assert pour.part_name == "handle"
    assert pour.kb_object in {"kettle", "teapot", "pitcher"}


def test_package_level_api_for_other_backends(embedder):
    from partseg_ros.language import resolve_instruction

    resolution = resolve_instruction("pick up the blue mug", visible_objects=["mug", "blue mug"])
    assert resolution.object_name == "blue mug"
    assert resolution.part_phrase == "handle of the blue mug"
    assert resolution.object_attributes["colours"] == ["blue"]
    assert resolution.explanation


@pytest.mark.parametrize("instruction, obj", [
    ("flush the toilet", "toilet"),  # "flush" guessed as "wipe": the toilet was named, not a towel
    ("toast with the wine glass", "wine glass"),  # "toast" guessed as "cut": not a knife
])
def test_a_named_object_outranks_a_guessed_verb_it_cannot_do(embedder, instruction, obj):
    resolution = PartReasoner(load_knowledge_base(), embedder=embedder).resolve(instruction)
    assert resolution.kb_object == obj
    assert not resolution.patient
    assert resolution.part_name in {p.name for p in load_knowledge_base().objects[obj].parts}
    assert any("only guessed" in r for r in resolution.reasons)


def test_a_listed_verb_still_reads_a_named_object_as_what_the_tool_acts_on(embedder):
    resolution = PartReasoner(load_knowledge_base(), embedder=embedder).resolve("cut the fruit")
    assert resolution.kb_object in {"knife", "scissors", "wire cutter"}
    assert resolution.patient == "fruit"


def test_spraying_a_named_object_wants_the_sprayer(embedder):
    reasoner = PartReasoner(load_knowledge_base(), embedder=embedder)
    resolution = reasoner.resolve("spray the plants")  # "plants" reads as the flower: what is sprayed
    assert (resolution.kb_object, resolution.part_name, resolution.patient) == ("spray bottle", "trigger", "plants")
    assert reasoner.resolve("spray the blue cleaning spray").kb_object == "spray bottle"


@pytest.mark.parametrize("instruction, noun", [("pick up the red stapler", "stapler"),
                                              ("pick up the big blue banana", "banana")])
def test_an_unknown_noun_after_colour_words_is_reported_not_swapped(embedder, instruction, noun):
    resolution = PartReasoner(load_knowledge_base(), embedder=embedder).resolve(instruction)
    assert resolution.unknown_object == noun  # the rules' hammer or fruit would answer a no-target task
    assert resolution.kb_object == ""
