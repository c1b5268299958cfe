"""The generated validation's task family: a use of the object, worded as people say it, its part only implied."""

from __future__ import annotations

import numpy as np
import pytest

from partseg_ros.language.knowledge_base import load_knowledge_base, part_for_task
from partseg_ros.language.paraphrase import HELD_BACK_FAMILIES, task_actions, task_instruction


@pytest.fixture(scope="module")
def kb():
    return load_knowledge_base()


@pytest.mark.parametrize("obj, action, words, part", [
    ("wine bottle", "uncork", "uncork the wine bottle", "cork"),  # done to the object, on the hinted part
    ("light bulb", "twist", "twist the light bulb", "screw base"),  # its held screw base does the twisting
    ("corkscrew", "uncork", "the corkscrew", "handle"),  # done with it: the worm pulls, the handle is held
    ("knife", "cut", "the knife", "handle"),  # a tool: the blade cuts, the handle is held
    ("mug", "drink", "drink from the mug", "handle"),
])
def test_task_wording_and_implied_part(kb, obj: str, action: str, words: str, part: str) -> None:
    entry = kb.objects[obj]
    texts = {task_instruction(entry, obj, kb.actions[action], np.random.default_rng(seed)).text for seed in range(12)}
    generated = task_instruction(entry, obj, kb.actions[action], np.random.default_rng(0))
    assert generated.family == "task" and generated.part == part
    assert all(words in text for text in texts), texts
    if kb.actions[action].needs_tool or obj == "corkscrew":  # an instrument is never what the verb is done to
        assert not any(text.startswith(f"{action} the {obj}") for text in texts), texts
    assert "task" in HELD_BACK_FAMILIES


def test_a_tools_action_on_the_vessel_it_works_in_is_not_a_task_for_the_vessel(kb) -> None:
    """Stirring is listed among a saucepan's uses, but the spoon is what is held: no saucepan task names it."""
    assert "stir" in kb.objects["saucepan"].uses
    assert [a.name for a in task_actions(kb.objects["saucepan"], kb.actions)] == []
    assert "stir" in [a.name for a in task_actions(kb.objects["spoon"], kb.actions)]


def test_plain_grasps_are_left_to_the_imperative_family(kb) -> None:
    names = {a.name for entry in kb.objects.values() for a in task_actions(entry, kb.actions)}
    assert names and not names & {"pick up", "give"}


def test_reasoner_reads_every_generated_task_as_that_use(kb) -> None:
    """Every use of every kind the generator builds, in each wording, resolves to that object and implied part."""
    from partseg_ros.backends.pisa_rgbd.vocabulary import spoken
    from partseg_ros.language.reasoner import PartReasoner
    from partseg_ros.scene.objects import object_kinds

    reasoner = PartReasoner(kb)
    rng = np.random.default_rng(7)
    asked, wrong = 0, []
    for kind in object_kinds():
        entry = kb.object_for_phrase(spoken(kind))
        for action in task_actions(entry, kb.actions) if entry is not None else []:
            for _ in range(3):
                generated = task_instruction(entry, spoken(kind), action, rng)
                resolution = reasoner.resolve(generated.text)
                asked += 1
                if (resolution.kb_object, resolution.part_name) != (entry.name, generated.part):
                    wrong.append((generated.text, resolution.kb_object, resolution.part_name))
    assert asked >= 60
    assert wrong == []


def test_the_part_policy_is_the_reasoners(kb) -> None:
    """The validation's truth and the reasoner's answer come from one policy: a question about what does the task
    gets the part that does it, a task the robot grasps for gets a part it can hold."""
    knife, cut = kb.objects["knife"], kb.actions["cut"]
    assert part_for_task(knife, cut, cut.affordance, "function")[0].name == "blade"
    part, why = part_for_task(knife, cut, cut.affordance, "grasp")
    assert part.name == "handle" and "not for grasping" in why


def test_validation_asks_task_family_instructions_with_their_part_as_the_target(kb) -> None:
    from partseg_ros.evaluation.generalisation import SEED_BASE, regime_domain, tasks_for_scene
    from partseg_ros.scene.randomised import random_scene, render_randomised

    domain = regime_domain("in_distribution")
    seed = SEED_BASE["in_distribution"] + 3  # a scene whose draw holds task-family questions
    randomised = random_scene(seed, domain)
    view, _ = render_randomised(randomised, domain, view_seed=0)
    tasks = tasks_for_scene(randomised, view, np.random.default_rng([seed, 0x5641]), kb)
    drink = [t for t in tasks if t["family"] == "task" and t["instruction"] == "drink from the mug"]
    assert len(drink) == 1
    handle_ids = [i for i, name in enumerate(view.part_names) if name.startswith("mug") and name.endswith("/handle")]
    assert handle_ids and drink[0]["mask"].any()
    assert np.isin(view.part_ids[drink[0]["mask"]], handle_ids).all()
