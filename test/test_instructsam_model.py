"""InstructSAM's hybrid attention, query bank and end-to-end inference on a tiny random model."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from partseg_ros.backends.instructsam.inference import InstructSamPredictor, _last_phrase
from partseg_ros.backends.instructsam.inputs import PromptBuilder
from partseg_ros.backends.instructsam.model import hybrid_attention_mask
from tiny_models_instructsam import (
    TINY_QUERIES,
    single_torch_thread,
    textured_image,
    tiny_instructsam,
    tiny_llm_images,
)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    with single_torch_thread():
        yield


@pytest.fixture(scope="module")
def tiny():
    return tiny_instructsam(seed=0)


def test_hybrid_mask_is_causal_for_text_and_bidirectional_inside_each_query_block():
    queries = torch.tensor([[0, 0, 1, 1, 1, 0, 1, 1, 0]], dtype=torch.bool)
    mask = hybrid_attention_mask(queries)
    assert mask.shape == (1, 1, 9, 9)
    allowed = mask[0, 0] == 0
    expected = torch.tril(torch.ones(9, 9, dtype=torch.bool))
    for block in ([2, 3, 4], [6, 7]):
        for i in block:
            for j in block:
                expected[i, j] = True
    assert torch.equal(allowed, expected)
    assert mask[0, 0, 2, 4] == 0 and mask[0, 0, 4, 2] == 0  # queries see each other both ways
    assert mask[0, 0, 1, 2] == torch.finfo(torch.float32).min  # text never sees ahead
    assert mask[0, 0, 5, 6] < 0  # text after a block does not see the next block
    assert mask[0, 0, 2, 6] < 0  # blocks do not see later blocks


def test_hybrid_mask_with_cache_and_padding():
    queries = torch.tensor([[1, 1, 0], [1, 1, 0]], dtype=torch.bool)
    valid = torch.ones(2, 5, dtype=torch.bool)
    valid[1, 4] = False  # last position of row 1 is padding
    mask = hybrid_attention_mask(queries, key_valid=valid, past_length=2)
    allowed = mask[:, 0] == 0
    assert allowed.shape == (2, 3, 5)
    assert allowed[0, 0].tolist() == [True, True, True, True, False]  # first query sees cache + other query
    assert allowed[0, 2].tolist() == [True] * 5
    assert allowed[1, 2].tolist() == [True, True, True, True, False]  # padding key hidden
    assert torch.isfinite(mask).all()


def test_language_model_queries_attend_to_each_other_and_text_not_to_the_future(tiny):
    """Perturbing one token shows what reads it: the LM consumes the 4D mask we build."""
    model, tokenizer = tiny
    prompts = PromptBuilder(tokenizer, TINY_QUERIES)
    ids = prompts.prompt_ids("open the lid", 0)[:6] + prompts.answer_ids("lid")
    input_ids = torch.tensor([ids])
    positions = torch.arange(len(ids)).view(1, 1, -1).expand(3, 1, -1)
    slots = (input_ids[0] == model.settings.query_token_id).nonzero().flatten()
    first, last = int(slots[0]), int(slots[-1])
    with torch.no_grad():
        base = model.run_language_model(input_ids, positions).hidden[0]
        original = model.mask_queries.data.clone()
        model.mask_queries.data[-1] += 1.0  # changes only the last slot's input
        changed = model.run_language_model(input_ids, positions).hidden[0]
        model.mask_queries.data.copy_(original)
        text_changed = input_ids.clone()
        text_changed[0, 3] = int(input_ids[0, 3]) + 1
        text_out = model.run_language_model(text_changed, positions).hidden[0]
    assert not torch.allclose(changed[first], base[first], atol=1e-6), "earlier slot must see a later slot"
    assert torch.allclose(changed[:first], base[:first], atol=1e-6), "text before the block cannot see the slots"
    assert not torch.allclose(changed[last + 1], base[last + 1], atol=1e-6), "<mask_end> sees the slots"
    assert torch.allclose(text_out[:3], base[:3], atol=1e-6), "text does not see the future"
    assert not torch.allclose(text_out[4], base[4], atol=1e-6)


def test_query_bank_fills_every_placeholder_and_rejects_partial_blocks(tiny):
    model, tokenizer = tiny
    prompts = PromptBuilder(tokenizer, TINY_QUERIES)
    ids = torch.tensor([prompts.answer_ids("mug")])
    embeds, _ = model.embed_sequence(ids)
    slots = ids[0] == model.settings.query_token_id
    assert torch.allclose(embeds[0, slots], model.mask_queries)
    with pytest.raises(ValueError, match="multiple of K"):
        model.embed_sequence(ids[:, :-3])


def test_predict_with_a_forced_phrase_returns_masks_at_input_resolution(tiny):
    model, tokenizer = tiny
    predictor = InstructSamPredictor(model, tokenizer, llm_images=tiny_llm_images(), presence_threshold=0.0,
                                     nms_iou_threshold=None)
    rgb = textured_image(48, 64, seed=4)
    prediction = predictor.predict(rgb, "pick up the mug by the handle", phrase="handle")
    assert len(prediction.phrases) == 1
    grounded = prediction.phrases[0]
    assert grounded.phrase == "handle"
    assert grounded.slot_scores.shape == (TINY_QUERIES,)
    assert ((grounded.slot_scores >= 0) & (grounded.slot_scores <= 1)).all()
    assert grounded.instances and all(i.mask.shape == (48, 64) for i in grounded.instances)
    assert "handle" in prediction.answer and "[SEG]" in prediction.answer
    assert set(prediction.timings_ms) >= {"language_model", "detector_decoder"}
    # a new instruction on the same frame reuses both image encodings
    predictor.predict(rgb, "open the lid", phrase="lid")
    assert predictor.llm_image_cache.hits == 1 and predictor.detector_image_cache.hits == 1


def test_presence_threshold_gives_a_variable_possibly_empty_set(tiny):
    model, tokenizer = tiny
    rgb = textured_image(48, 64, seed=5)
    counts = []
    for threshold in (0.0, None, 1.0):
        predictor = InstructSamPredictor(model, tokenizer, llm_images=tiny_llm_images(), nms_iou_threshold=None,
                                         presence_threshold=0.0 if threshold is None else threshold)
        grounded = predictor.predict(rgb, "find the cup", phrase="cup").phrases[0]
        if threshold is None:  # a threshold between the slot scores keeps exactly the slots above it
            middle = float(np.median(grounded.slot_scores))
            predictor.presence_threshold = middle
            grounded = predictor.predict(rgb, "find the cup", phrase="cup").phrases[0]
            expected = {k for k, s in enumerate(grounded.slot_scores) if s > middle}
            assert {i.slot for i in grounded.instances} <= expected
        counts.append(len(grounded.instances))
    assert counts[2] == 0
    assert counts[0] >= counts[1] >= counts[2]


def test_generation_runs_a_query_block_when_the_model_closes_a_phrase(tiny):
    """Bias the LM head so greedy decoding writes `<ref_start> mug <ref_end>` then `<|im_end|>`."""
    model, tokenizer = tiny
    predictor = InstructSamPredictor(model, tokenizer, llm_images=tiny_llm_images(), presence_threshold=0.0)
    ids = predictor.prompts.ids
    plan = [ids["<|object_ref_start|>"]] + predictor.prompts.phrase_ids("mug") + [ids["<|object_ref_end|>"],
                                                                                   ids["<|im_end|>"]]
    calls = {"n": 0}
    original_head = model.vlm.lm_head

    class ScriptedHead(torch.nn.Module):
        """Real LM head plus a bias that makes the scripted token the argmax, step by step."""

        def forward(self, hidden):
            logits = original_head(hidden)
            step = min(calls["n"], len(plan) - 1)
            if hidden.dim() == 2:
                # one call per step; query blocks do not advance the script
                if calls.get("skip"):
                    calls["skip"] = False
                else:
                    logits[..., plan[step]] += 1e4
                    calls["n"] += 1
                    if plan[step] == ids["<|object_ref_end|>"]:
                        calls["skip"] = True
            return logits

    model.vlm.lm_head = ScriptedHead()
    try:
        prediction = predictor.predict(textured_image(seed=6), "pick up the mug")
    finally:
        model.vlm.lm_head = original_head
    assert [g.phrase for g in prediction.phrases] == ["mug"]
    assert prediction.answer.count("[SEG]") == TINY_QUERIES


def test_last_phrase_takes_the_tokens_after_the_last_ref_start():
    assert _last_phrase([5, 1, 7, 8, 2], ref_start_id=1, mask_end_id=3) == [7, 8]
    assert _last_phrase([9, 9, 2], ref_start_id=1, mask_end_id=3) == [9, 9]
    # an unopened second phrase starts after the previous query block
    assert _last_phrase([1, 7, 2, 4, 4, 3, 6, 6, 2], ref_start_id=1, mask_end_id=3) == [6, 6]


def test_2b_preset_has_the_published_parameter_counts():
    """Qwen3-VL-2B is ~2.1B parameters (0.41B vision); SAM 3's detector without CLIP ~0.49B."""
    from partseg_ros.backends.instructsam.model import count_parameters
    from partseg_ros.backends.instructsam.presets import build_instructsam_model

    with torch.device("meta"):
        model, _ = build_instructsam_model("2B")
    assert 2.0e9 < count_parameters(model.vlm) < 2.3e9
    assert 0.38e9 < count_parameters(model.vlm.model.visual) < 0.43e9
    assert model.sam3.config.image_size == 1008 and model.settings.num_queries == 10
    assert model.query_projector[2].out_features == 256 and model.mask_queries.shape == (10, 2048)


def test_benchmark_builder_returns_a_working_predictor():
    from partseg_ros.backends.instructsam.presets import build_instructsam_for_benchmark

    predictor = build_instructsam_for_benchmark("tiny", device="cpu", dtype=torch.float32)
    prediction = predictor.predict(textured_image(seed=11), "cut with the knife", phrase="blade")
    assert [g.phrase for g in prediction.phrases] == ["blade"]
    assert prediction.timings_ms["language_model"] > 0 and prediction.timings_ms["detector_decoder"] > 0
