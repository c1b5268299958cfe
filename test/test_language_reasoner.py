"""The knowledge base, the instruction parser and the part reasoner (lexicon path, no model weights)."""

from __future__ import annotations

import json

import pytest

from partseg_ros.language.knowledge_base import load_knowledge_base, parse_knowledge_base
from partseg_ros.language.llm_hook import load_hook, parse_answer
from partseg_ros.language.parser import parse_instruction
from partseg_ros.language.reasoner import PartReasoner


@pytest.fixture(scope="module")
def kb():
    return load_knowledge_base()


@pytest.fixture(scope="module")
def reasoner(kb):
    return PartReasoner(kb, embedder=None)


def test_knowledge_base_covers_the_instructpart_vocabulary(kb):
    assert len(kb.objects) >= 48
    assert len(kb.part_names) >= 44
    assert len(kb.affordances) >= 30
    assert len(kb.actions) >= 37
    for obj in kb.objects.values():
        assert obj.size_m[0] < obj.size_m[1], obj.name
        if any(p.graspable and "hold" in p.affordances for p in obj.parts):
            assert "hold" in obj.grasp_part.affordances or "grip" in obj.grasp_part.affordances, obj.name
        for part in obj.parts:
            assert set(part.affordances) <= set(kb.affordances), (obj.name, part.name)


def test_knowledge_base_rejects_unknown_shapes():
    data = {
        "affordances": {"hold": "hold it"},
        "actions": {"pick up": {"affordance": "hold"}},
        "objects": {"thing": {"parts": {"knob": {"shape": "hexagon"}}}},
    }
    with pytest.raises(ValueError, match="unknown shape"):
        parse_knowledge_base(data)


def test_knowledge_base_rejects_undeclared_affordance():
    data = {"affordances": {}, "actions": {"pick up": {"affordance": "hold"}}, "objects": {}}
    with pytest.raises(ValueError, match="not declared"):
        parse_knowledge_base(data)


def test_parser_reads_verb_and_noun_uses_of_the_same_word(kb):
    parsed = parse_instruction("spray the purple cleaning spray", kb)
    assert [a.canonical for a in parsed.actions] == ["spray"]
    assert len(parsed.objects) == 1
    description = parsed.objects[0]
    assert description.mention.canonical == "spray bottle"
    assert description.colours == ["purple"]


def test_parser_separates_purpose_and_interaction(kb):
    parsed = parse_instruction("If I want to pour water, which part should I hold?", kb)
    assert parsed.is_question
    assert parsed.purpose is not None and parsed.purpose.canonical == "pour"
    assert parsed.interaction is not None and parsed.interaction.canonical == "pick up"


@pytest.mark.parametrize(
    "instruction, obj, part",
    [
        ("pick up the blue mug", "mug", "handle"),
        ("uncork the wine", "wine bottle", "cork"),
        ("give the daisy", "flower", "stem"),
        ("open the saucepan", "saucepan", "knob"),
        ("close the box", "box", "lid"),
        ("wear the black sunglasses", "sunglasses", "earhook"),
        ("eat the red lollipop", "lollipop", "stick"),
        ("hang the camera", "camera", "strap"),
        ("plug in the power strip", "power strip", "plug"),
        # a trigger sprayer opens at the screw cap under its head (the generator builds one); it sprays by the trigger
        ("unscrew the spray bottle", "spray bottle", "cap"),
        ("spray the cleaning spray", "spray bottle", "trigger"),
        ("pick up the knife by its blade", "knife", "blade"),
        ("Where is the handle of the scissors that can be held in this image?", "scissors", "handle"),
    ],
)
def test_reasoner_resolves_object_and_part(reasoner, instruction, obj, part):
    resolution = reasoner.resolve(instruction)
    assert (resolution.kb_object, resolution.part_name) == (obj, part), resolution.reasons
    assert resolution.reasons


def test_question_without_object_or_part_chooses_a_pouring_vessels_handle(reasoner):
    resolution = reasoner.resolve("If I want to pour water, which part should I hold?")
    assert resolution.part_name == "handle"
    assert "pour" in reasoner.kb.objects[resolution.kb_object].uses
    assert resolution.mode == "grasp"
    assert resolution.patient == "water"
    assert all(c.part_name for c in resolution.candidates)


def test_tool_action_on_a_patient_picks_the_tool_handle(reasoner):
    resolution = reasoner.resolve("cut the bread")
    assert resolution.kb_object in {"knife", "scissors", "wire cutter"}
    assert resolution.part_name == "handle"  # the blade cuts, the robot holds the handle
    assert resolution.patient == "bread"


@pytest.mark.parametrize("instruction, obj, part", [
    ("drink some wine from the glass", "wine glass", "stem"),  # the source, not the wine's bottle
    ("clean the table with the spray", "spray bottle", None),  # the instrument is never the patient
    ("cut the bread with the knife", "knife", "handle"),
])
def test_an_object_named_as_instrument_or_source_is_the_one_to_grasp(reasoner, instruction, obj, part):
    resolution = reasoner.resolve(instruction)
    assert resolution.kb_object == obj
    assert part is None or resolution.part_name == part


@pytest.mark.parametrize("instruction, obj", [
    ("can you hand me the mug?", "mug"),
    ("grab the knife so I can cut the bread", "knife"),
    ("where can I hold the kettle?", "kettle"),
    ("can you give me the can?", "can"),
    ("pick up the soda can", "can"),
    ("pick up can", "can"),
    ("pick up the can you see", "can"),  # after a determiner it is the noun, whatever follows
    ("hand me the red can I left there", "can"),
])
def test_the_modal_can_is_not_the_object_can(reasoner, instruction, obj):
    assert reasoner.resolve(instruction).kb_object == obj


@pytest.mark.parametrize("instruction, obj", [
    ("pick up the scissor", "scissors"), ("hand me the plier", "wire cutter"), ("grab the sunglass", "sunglasses"),
    ("pick up the glass", "wine glass"),  # a word listed as it is keeps its own meaning
])
def test_a_noun_listed_only_in_the_plural_is_read_in_the_singular(reasoner, instruction, obj):
    assert reasoner.resolve(instruction).kb_object == obj


@pytest.mark.parametrize("noun", ["whisk", "mop"])
def test_a_verb_in_a_nouns_place_is_an_unknown_object_not_a_second_action(reasoner, noun):
    resolution = reasoner.resolve(f"pick up the {noun}")  # both are listed only as verbs (stir, wipe)
    assert resolution.unknown_object == noun
    assert resolution.kb_object == ""


@pytest.mark.parametrize("polite, imperative", [
    ("can you cut the bread?", "cut the bread"),
    ("could you hand me the knife?", "hand me the knife"),
    ("would you please open the wine bottle?", "open the wine bottle"),
])
def test_a_request_phrased_as_a_question_wants_what_the_imperative_wants(reasoner, polite, imperative):
    asked, told = reasoner.resolve(polite), reasoner.resolve(imperative)
    assert (asked.mode, asked.kb_object, asked.part_name) == (told.mode, told.kb_object, told.part_name)
    assert asked.mode == "grasp"
    assert reasoner.resolve("can you show me which part of the knife cuts?").mode == "function"


def test_a_part_the_named_object_lacks_selects_the_kind_that_has_it(reasoner):
    resolution = reasoner.resolve("pull the cork out of the bottle")  # a plain bottle has no cork
    assert (resolution.kb_object, resolution.part_name) == ("wine bottle", "cork")
    assert reasoner.resolve("pick up the bottle").kb_object == "bottle"  # no part named: the plain kind stays


def test_question_about_function_picks_the_functional_part(reasoner):
    resolution = reasoner.resolve(
        "If I want to use the knife to cut the carrots, which part in the picture should be used?")
    assert (resolution.kb_object, resolution.part_name, resolution.mode) == ("knife", "blade", "function")


def test_visible_objects_select_the_coloured_instance(reasoner):
    resolution = reasoner.resolve("pick up the grey mug", visible_objects=["blue mug", "grey mug", "plate"])
    assert resolution.in_view is True
    assert resolution.visible_index == 1
    assert resolution.object_name == "grey mug"
    assert resolution.part_phrase == "handle of the grey mug"


def test_absent_object_is_reported_not_in_view(reasoner):
    resolution = reasoner.resolve("pick up the teapot", visible_objects=["plate", "apple"])
    assert resolution.in_view is False
    assert resolution.visible_index is None


def test_language_model_hook_overrides_with_a_valid_answer(kb):
    prompts = []

    def local_model(prompt: str) -> str:
        prompts.append(prompt)
        return 'Sure: {"object": "mug", "part": "body", "affordance": "hold", "reason": "the handle is hot"}'

    resolution = PartReasoner(kb, embedder=None, language_model=local_model).resolve("pick up the mug")
    assert resolution.part_name == "body"
    assert "handle, body" in prompts[0]
    assert any("language model" in r for r in resolution.reasons)


def test_language_model_hook_with_an_unknown_part_is_ignored(kb):
    resolution = PartReasoner(
        kb, embedder=None, language_model=lambda _: json.dumps({"object": "mug", "part": "wings"})
    ).resolve("pick up the mug")
    assert resolution.part_name == "handle"
    assert any("not usable" in r for r in resolution.reasons)


def test_hook_loading_and_answer_parsing():
    assert load_hook(None) is None
    hook = load_hook("json:dumps")
    assert hook({"a": 1}) == '{"a": 1}'
    endpoint = load_hook("http://127.0.0.1:9/v1")
    assert endpoint.url.endswith("/v1/chat/completions")  # built, never called here
    assert parse_answer("no json here") is None
    assert parse_answer('{"object": "Kettle", "part": "Handle"}').part == "handle"
    with pytest.raises(ValueError):
        load_hook("not_a_callable_path")


def test_fragile_part_is_spared_when_a_sturdy_part_can_be_held(reasoner):
    resolution = reasoner.resolve("pick up the lightbulb")
    assert resolution.part_name == "screw base", resolution.reasons
    assert any("fragile" in reason for reason in resolution.reasons)


def test_fragile_part_is_still_named_when_asked_for(reasoner):
    resolution = reasoner.resolve("pick up the lightbulb by the glass bulb")
    assert resolution.part_name == "glass", resolution.reasons


def test_sturdy_parts_come_first_in_the_default_grasp(kb):
    data = {
        "affordances": {"hold": "hold it"},
        "actions": {"pick up": {"affordance": "hold"}},
        "objects": {
            "vase": {
                "size_m": [0.1, 0.4],
                "parts": {
                    "neck": {"affordances": ["hold"], "fragile": True, "shape": ["cylinder"]},
                    "foot": {"affordances": ["hold"], "shape": ["plate"]},
                },
            }
        },
    }
    vase = parse_knowledge_base(data).objects["vase"]
    assert vase.part("neck").fragile and not vase.part("foot").fragile
    assert vase.grasp_part.name == "foot"


def test_unknown_object_for_a_plain_grasp_is_reported_not_guessed(reasoner):
    resolution = reasoner.resolve("pick up the stapler")
    assert resolution.unknown_object == "stapler"
    assert resolution.kb_object == "" and resolution.candidates == []
    assert resolution.object_phrase == "stapler"  # an open-vocabulary detector can still look for it
    assert any("not an object in the knowledge base" in reason for reason in resolution.reasons)


def test_unknown_noun_with_a_purposeful_action_keeps_the_actions_objects(reasoner):
    resolution = reasoner.resolve("give me the peony")
    assert resolution.unknown_object == ""
    assert resolution.kb_object == "flower"
