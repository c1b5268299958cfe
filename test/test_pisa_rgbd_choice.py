"""How pisa_rgbd picks one object and one knowledge-base candidate from the network's presence scores."""

from __future__ import annotations

import numpy as np
import pytest

from partseg_ros.backends.pisa_rgbd.backend import PisaRgbdConfig, choose_object

# "cut the bread" on the study's knives table: the language ranks knife > wire cutter > scissors;
# objects 0..2 are a bread knife, a box cutter and a steak knife (presence measured on that scene).
LANGUAGE_SCORES = np.array([0.925, 0.845, 0.83])
PRESENCE = np.array([
    [0.68, 0.52, 0.55],  # bread knife
    [0.23, 0.86, 0.55],  # box cutter: looks a bit like a wire cutter
    [0.03, 0.08, 0.05],  # steak knife
])


def test_first_present_keeps_the_language_choice_when_that_object_is_in_view():
    assert choose_object(PRESENCE, LANGUAGE_SCORES, "first_present", threshold=0.3) == (0, 0)


def test_joint_rule_lets_a_confident_lookalike_outvote_the_named_tool():
    assert choose_object(PRESENCE, LANGUAGE_SCORES, "joint", threshold=0.3) == (1, 1)


def test_first_present_falls_through_to_the_next_candidate_when_the_first_is_absent():
    absent_knife = PRESENCE.copy()
    absent_knife[:, 0] = 0.1
    assert choose_object(absent_knife, LANGUAGE_SCORES, "first_present", threshold=0.3) == (1, 1)


def test_when_nothing_passes_the_best_joint_guess_is_returned_for_the_caller_to_reject():
    faint = PRESENCE * 0.2
    obj, cand = choose_object(faint, LANGUAGE_SCORES, "first_present", threshold=0.3)
    assert (obj, cand) == (1, 1)
    assert faint[obj, cand] < 0.3


def test_unknown_rule_is_rejected_by_the_config():
    with pytest.raises(ValueError, match="candidate_choice"):
        PisaRgbdConfig.from_options({"candidate_choice": "vote"})


def test_learned_objects_follow_the_training_kinds_in_knowledge_base_terms():
    from partseg_ros.backends.pisa_rgbd.vocabulary import learned_kb_objects

    learned = learned_kb_objects(["mug", "bread_knife", "connector_cable", "clorox_box", "steak"])
    assert learned == {"mug", "knife", "cable connector", "box"}  # reordered words, head noun; steak is no object


@pytest.fixture(scope="module")
def mug_scene():
    from partseg_ros.scene.randomised import DomainSettings, random_scene, render_randomised

    domain = DomainSettings.training()
    view, _ = render_randomised(random_scene(101, domain, kinds=["mug", "block", "bowl"]), domain, view_seed=0)
    return view


def _ground(instruction: str, view, **options):
    from partseg_ros.backends.registry import create_backend
    from partseg_ros.types import GroundingRequest

    backend = create_backend("pisa_rgbd", **options)
    return backend.ground(GroundingRequest(view.rgb, instruction, view.depth_m, view.intrinsics))


def test_an_object_the_network_never_learned_is_not_answered_by_its_presence_score(mug_scene):
    """The shipped model never saw a wrench: asked anyway, it would name whichever object looks closest."""
    rules = _ground("pick up the wrench", mug_scene)
    assert "not trained on a wrench" in rules.explanation
    assert "geometric rules answer" in rules.explanation
    refused = _ground("pick up the wrench", mug_scene, unlearned_object="no_target")
    assert refused.instances == [] and "not trained on a wrench" in refused.explanation
    learned = _ground("pick up the mug", mug_scene)
    assert "not trained" not in learned.explanation and learned.part_label == "handle"
