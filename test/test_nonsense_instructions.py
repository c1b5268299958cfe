"""Instructions nothing in the knowledge base recognises get no target, with the reason (issue 15, item 7).

Before, "😀😀😀" resolved to "best match for '' is 'can'": an empty query ranked
every object and the best one won.
"""

import pytest

from partseg_ros.backends.registry import create_backend
from partseg_ros.language.knowledge_base import load_knowledge_base
from partseg_ros.language.reasoner import PartReasoner
from partseg_ros.scene.render import render_study_view
from partseg_ros.types import GroundingRequest

NONSENSE = ["😀😀😀", "\x80\x80", "Nimm die Tasse und gieß Wasser ein", "...", "1234"]


@pytest.fixture(scope="module")
def reasoner():
    return PartReasoner(load_knowledge_base())


@pytest.mark.parametrize("text", NONSENSE)
def test_reasoner_resolves_nonsense_to_nothing(reasoner, text):
    resolution = reasoner.resolve(text)
    assert resolution.kb_object == "" and resolution.part_name == "" and not resolution.candidates
    assert "not understood" in resolution.explanation


def test_shapegrasp_gives_no_target_for_nonsense_but_answers_a_task():
    view = render_study_view("kitchen", 0, seed=0, width=160, height=120)
    backend = create_backend("shapegrasp", device="cpu")
    backend.load()

    def ground(text):
        return backend.ground(GroundingRequest(rgb=view.rgb, instruction=text, depth_m=view.depth_m,
                                               intrinsics=view.intrinsics))

    for text in NONSENSE:
        result = ground(text)
        assert result.no_target and "not understood" in result.explanation, (text, result.explanation)
    assert not ground("pick up the mug").no_target
