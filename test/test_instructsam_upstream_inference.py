"""InstructSAM inference follows the authors' (DCDmllm/InstructSAM@1ec37cc): prompt, phrase wrapping, defaults.

Every test drives the real tiny model; hooks only record what the model's own
modules receive.
"""

from __future__ import annotations

import pytest
import torch

from partseg_ros.backends.instructsam.inference import UPSTREAM_INFERENCE, InstructSamPredictor
from partseg_ros.backends.instructsam.inputs import instruction_prompt, is_bare_phrase
from partseg_ros.backends.registry import create_backend
from tiny_models_instructsam import (
    save_tiny_instructsam,
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


class _Recorder:
    """Records the token ids the model's embedding table is asked for (prompt chunks and phrase rows)."""

    def __init__(self, model) -> None:
        self.calls: list[torch.Tensor] = []
        self.handle = model.qwen.get_input_embeddings().register_forward_pre_hook(self._record)

    def _record(self, _module, args):
        self.calls.append(args[0].detach().clone())

    def close(self) -> None:
        self.handle.remove()


def test_upstream_prompt_forms():
    assert instruction_prompt("Which part of the kettle do I hold to pour?") == (
        "Which part of the kettle do I hold to pour? Please output the segmentation mask."
    )
    assert instruction_prompt("pick up the mug") == "pick up the mug Please output the segmentation mask."
    assert instruction_prompt("The handle of the mug") == "Please segment the 'the handle of the mug' in the image."
    assert instruction_prompt("knife blade") == "Please segment the 'knife blade' in the image."
    assert instruction_prompt("pick up the mug", style="raw") == "pick up the mug"
    # never appended twice
    assert instruction_prompt("find it. Please output the segmentation mask.").count("Please output") == 1
    assert is_bare_phrase("left drawer knob") and not is_bare_phrase("open the drawer")
    with pytest.raises(ValueError):
        instruction_prompt("x", style="chat")


def test_prompt_sent_to_the_model_carries_the_upstream_suffix(tiny):
    model, tokenizer = tiny
    predictor = InstructSamPredictor(model, tokenizer, llm_images=tiny_llm_images(), presence_threshold=0.0)
    recorder = _Recorder(model)
    try:
        predictor.predict(textured_image(seed=3), "pick up the mug", phrase="mug")
    finally:
        recorder.close()
    prompt = tokenizer.decode(recorder.calls[0][0].tolist())
    assert "pick up the mug Please output the segmentation mask." in prompt


def test_sam3_is_conditioned_on_the_phrase_wrapped_in_ref_markers_by_default(tiny):
    model, tokenizer = tiny
    ids = tokenizer.get_vocab()
    phrase = tokenizer("mug", add_special_tokens=False)["input_ids"]
    rows = {}
    for wrapping in ("inference", "training"):
        predictor = InstructSamPredictor(model, tokenizer, llm_images=tiny_llm_images(), phrase_wrapping=wrapping)
        recorder = _Recorder(model)
        try:
            predictor.predict(textured_image(seed=4), "pick up the mug", phrase="mug")
        finally:
            recorder.close()
        # the phrase rows have the fixed width max_phrase_tokens
        (row,) = [c for c in recorder.calls if c.shape[-1] == model.settings.max_phrase_tokens]
        rows[wrapping] = row[0].tolist()
    wrapped = [ids["<|object_ref_start|>"]] + phrase + [ids["<|object_ref_end|>"]]
    assert rows["inference"][: len(wrapped)] == wrapped
    assert rows["training"][: len(phrase)] == phrase
    assert InstructSamPredictor(model, tokenizer).phrase_wrapping == "inference"


def test_defaults_are_the_authors_inference_settings(tiny, tmp_path):
    model, tokenizer = tiny
    predictor = InstructSamPredictor(model, tokenizer)
    assert predictor.presence_threshold == 0.3
    assert predictor.nms_iou_threshold is None
    assert predictor.max_new_tokens >= 1024
    assert tokenizer.get_vocab()["<|endoftext|>"] in predictor.stop_ids
    assert predictor.generation_positions == "mrope"
    directory, _ = save_tiny_instructsam(tmp_path / "ckpt")
    backend = create_backend("instructsam", checkpoint=str(directory), device="cpu")
    backend.load()
    loaded = backend.predictor
    assert (loaded.presence_threshold, loaded.nms_iou_threshold, loaded.max_new_tokens) == (0.3, None, 1024)
    assert loaded.prompt_style == "upstream" and loaded.phrase_wrapping == "inference"
    assert dict(UPSTREAM_INFERENCE)["presence_threshold"] == 0.3
    switched = create_backend("instructsam", checkpoint=str(directory), device="cpu", nms_iou_threshold="none",
                              generation_positions="text", presence_threshold=0.5)
    switched.load()
    assert switched.predictor.nms_iou_threshold is None and switched.predictor.generation_positions == "text"


def _scripted(model, plan: list[int], ref_end: int):
    """Bias the real LM head so greedy decoding follows ``plan`` (query blocks do not advance it)."""
    original = model.vlm.lm_head
    state = {"n": 0, "skip": False}

    class ScriptedHead(torch.nn.Module):
        def forward(self, hidden):
            logits = original(hidden)
            if hidden.dim() == 2:
                if state["skip"]:
                    state["skip"] = False
                else:
                    token = plan[min(state["n"], len(plan) - 1)]
                    logits[..., token] += 1e4
                    state["n"] += 1
                    state["skip"] = token == ref_end
            return logits

    return original, ScriptedHead()


def _generate(model, tokenizer, plan: list[int], **options):
    predictor = InstructSamPredictor(model, tokenizer, llm_images=tiny_llm_images(), presence_threshold=0.0,
                                     **options)
    original, head = _scripted(model, plan, predictor.prompts.ids["<|object_ref_end|>"])
    model.vlm.lm_head = head
    try:
        return predictor.predict(textured_image(seed=6), "which part do I hold to pour?")
    finally:
        model.vlm.lm_head = original


def test_generation_stops_on_endoftext(tiny):
    model, tokenizer = tiny
    ids = tokenizer.get_vocab()
    mug = tokenizer("mug", add_special_tokens=False)["input_ids"]
    cup = tokenizer("cup", add_special_tokens=False)["input_ids"]
    plan = ([ids["<|object_ref_start|>"]] + mug + [ids["<|object_ref_end|>"], ids["<|endoftext|>"],
            ids["<|object_ref_start|>"]] + cup + [ids["<|object_ref_end|>"], ids["<|im_end|>"]])
    prediction = _generate(model, tokenizer, plan)
    assert [g.phrase for g in prediction.phrases] == ["mug"]


def test_a_long_reasoning_answer_still_reaches_its_phrase(tiny):
    """100 tokens of reasoning before the phrase: the old 64-token budget ended the answer before it."""
    model, tokenizer = tiny
    ids = tokenizer.get_vocab()
    filler = tokenizer("a", add_special_tokens=False)["input_ids"] * 100
    spout = tokenizer("spout", add_special_tokens=False)["input_ids"]
    plan = filler + [ids["<|object_ref_start|>"]] + spout + [ids["<|object_ref_end|>"], ids["<|im_end|>"]]
    prediction = _generate(model, tokenizer, plan)
    assert [g.phrase for g in prediction.phrases] == ["spout"]


def test_generation_positions_are_switchable(tiny):
    model, tokenizer = tiny
    seen = {}
    for mode in ("mrope", "text"):
        captured = []
        handle = model.qwen.language_model.register_forward_pre_hook(
            lambda _m, _a, kwargs, captured=captured: captured.append(kwargs["position_ids"].clone()), with_kwargs=True
        )
        try:
            predictor = InstructSamPredictor(model, tokenizer, llm_images=tiny_llm_images(),
                                             generation_positions=mode)
            predictor.predict(textured_image(seed=7), "grab the knob", phrase="knob")
        finally:
            handle.remove()
        seen[mode] = captured[0][:, 0]  # prefill, (3, L)
    length = seen["text"].shape[-1]
    assert torch.equal(seen["text"], torch.arange(length).expand(3, -1))
    # multimodal rotary positions: the image grid gives the height/width rows their own values
    assert not torch.equal(seen["mrope"][1], seen["mrope"][2])
    with pytest.raises(ValueError):
        InstructSamPredictor(model, tokenizer, generation_positions="1d")
