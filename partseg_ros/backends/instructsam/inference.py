"""InstructSAM inference: generate the target phrase, run the query bank, decode masks with SAM 3.

One request is a single language-model pass with a KV cache: the prompt is
prefilled, the answer is generated greedily, and each time the model closes a
target phrase (``<ref_end>``) the query block ``<mask_start> q_1..q_K
<mask_end>`` is appended under the hybrid mask; the K slot states are kept
and generation goes on until ``<|im_end|>`` or ``<|endoftext|>``. All phrases
are then decoded by SAM 3 in one batch over one cached image encoding. A
caller that already knows the phrase (an evaluator's part label) can force it.

Defaults follow the authors' inference (DCDmllm/InstructSAM@1ec37cc:
``instructsam/__init__.py`` ``mm_infer_segmentation``, the evaluation scripts
and ``models/utils.py`` ``get_phrase_ids_by_start_end``), see
``UPSTREAM_INFERENCE``. One deliberate exception, switchable: positions.
The authors' ``generate`` path appears (read from their code, not run) to
give image tokens 1-D positions, while their training uses Qwen3-VL's
multimodal rotary positions; partseg keeps the training-style positions
(``generation_positions='mrope'``) and offers ``'text'`` for the other.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Optional

import numpy as np
import torch
from transformers import DynamicCache

from partseg_ros.backends.instructsam.inputs import PROMPT_STYLES, LlmImageEncoder, PromptBuilder, instruction_prompt
from partseg_ros.backends.instructsam.model import (
    IM_END_TOKEN,
    MASK_END_TOKEN,
    REF_END_TOKEN,
    REF_START_TOKEN,
    InstructSamModel,
)
from partseg_ros.backends.runtime import ComputeCache, Stopwatch, image_key
from partseg_ros.backends.sam3.postprocessing import Sam3Instance, select_instances
from partseg_ros.backends.sam3.preprocessing import Sam3ImageTransform

ENDOFTEXT_TOKEN = "<|endoftext|>"
PHRASE_WRAPPINGS = ("inference", "training")
GENERATION_POSITIONS = ("mrope", "text")

# The authors' inference settings and where they come from (DCDmllm/InstructSAM@1ec37cc).
UPSTREAM_INFERENCE = MappingProxyType({
    # evaluation/eval_reasonseg.py, eval_inst2seg.py, eval_refcoco_ap.py --threshold 0.3
    # (eval_roborefit.py uses 0.5 for robot referring expressions: one object, fewer false positives)
    "presence_threshold": 0.3,
    # no NMS anywhere in their post-processing; slots are kept as scored
    "nms_iou_threshold": None,
    # instructsam/__init__.py mm_infer_segmentation: max_new_tokens=1024 (room for a reasoning answer)
    "max_new_tokens": 1024,
    # evaluation scripts: suffix for sentences, template for phrases
    "prompt_style": "upstream",
    # models/utils.py get_phrase_ids_by_start_end: [<ref_start>, phrase, <ref_end>] into SAM 3
    "phrase_wrapping": "inference",
    # partseg's choice (training-style mRoPE), see the module docstring
    "generation_positions": "mrope",
    # SAM 3 masks: logits upsampled bilinearly, thresholded at 0 (infer.py: pred_masks > 0)
    "mask_threshold": 0.0,
})

@dataclass
class GroundedPhrase:
    """A phrase the model resolved and the instances its query slots found (possibly none)."""

    phrase: str
    instances: list[Sam3Instance]
    slot_scores: np.ndarray  # (K,) presence probability of every slot, kept or not


@dataclass
class InstructSamPrediction:
    answer: str
    phrases: list[GroundedPhrase]
    timings_ms: dict[str, float] = field(default_factory=dict)


class InstructSamPredictor:
    """A loaded model plus tokenizer, preprocessing, thresholds and per-image caches."""

    def __init__(
        self,
        model: InstructSamModel,
        tokenizer,
        llm_images: Optional[LlmImageEncoder] = None,
        detector_transform: Optional[Sam3ImageTransform] = None,
        presence_threshold: float = UPSTREAM_INFERENCE["presence_threshold"],
        mask_threshold: float = UPSTREAM_INFERENCE["mask_threshold"],
        nms_iou_threshold: Optional[float] = UPSTREAM_INFERENCE["nms_iou_threshold"],
        max_new_tokens: int = UPSTREAM_INFERENCE["max_new_tokens"],
        max_phrases: int = 4,
        cache_size: int = 2,
        prompt_style: str = UPSTREAM_INFERENCE["prompt_style"],
        phrase_wrapping: str = UPSTREAM_INFERENCE["phrase_wrapping"],
        generation_positions: str = UPSTREAM_INFERENCE["generation_positions"],
    ) -> None:
        if prompt_style not in PROMPT_STYLES:
            raise ValueError(f"prompt_style must be one of {PROMPT_STYLES}, got {prompt_style!r}")
        if phrase_wrapping not in PHRASE_WRAPPINGS:
            raise ValueError(f"phrase_wrapping must be one of {PHRASE_WRAPPINGS}, got {phrase_wrapping!r}")
        if generation_positions not in GENERATION_POSITIONS:
            raise ValueError(f"generation_positions must be one of {GENERATION_POSITIONS}, "
                             f"got {generation_positions!r}")
        self.model = model.eval()
        self.prompts = PromptBuilder(tokenizer, model.settings.num_queries)
        self.llm_images = llm_images or LlmImageEncoder()
        self.detector_transform = detector_transform or Sam3ImageTransform(image_size=model.sam3.config.image_size)
        self.presence_threshold = presence_threshold
        self.mask_threshold = mask_threshold
        self.nms_iou_threshold = nms_iou_threshold
        self.max_new_tokens = max_new_tokens
        self.max_phrases = max_phrases
        self.prompt_style = prompt_style
        self.phrase_wrapping = phrase_wrapping
        self.generation_positions = generation_positions
        self.llm_image_cache: ComputeCache = ComputeCache(cache_size)
        self.detector_image_cache: ComputeCache = ComputeCache(cache_size)
        # Qwen3-VL's generation_config stops on both <|im_end|> and <|endoftext|>
        stop = {self.prompts.ids[IM_END_TOKEN]}
        vocab = tokenizer.get_vocab()
        if ENDOFTEXT_TOKEN in vocab:
            stop.add(int(vocab[ENDOFTEXT_TOKEN]))
        eos = getattr(tokenizer, "eos_token_id", None)
        if eos is not None:
            stop.add(int(eos))
        self.stop_ids = stop

    @property
    def device(self) -> torch.device:
        return self.model.mask_queries.device

    def _llm_image(self, rgb: np.ndarray, key: str):
        def compute():
            image = self.llm_images(rgb)
            pixel_values = image.pixel_values.to(self.device, self.model.vlm.dtype)
            grid = image.grid_thw.to(self.device)
            embeds, deepstack = self.model.encode_image_for_llm(pixel_values, grid)
            return image, embeds, deepstack

        return self.llm_image_cache.get_or_compute(key, compute)

    def _detector_image(self, rgb: np.ndarray, key: str):
        return self.detector_image_cache.get_or_compute(
            key,
            lambda: self.model.encode_image_for_detector(
                self.detector_transform(rgb, device=self.device, dtype=self.model.sam3.dtype)
            ),
        )

    def _chunk_positions(self, start: torch.Tensor, length: int) -> torch.Tensor:
        steps = torch.arange(length, device=self.device)
        return (start.view(1, -1, 1) + steps.view(1, 1, -1)).expand(3, -1, -1)

    @torch.inference_mode()
    def predict(self, rgb: np.ndarray, instruction: str, phrase: Optional[str] = None) -> InstructSamPrediction:
        watch = Stopwatch(self.device)
        key = image_key(rgb)
        ids = self.prompts.ids
        with watch.span("llm_image_encoder"):
            image, image_embeds, deepstack = self._llm_image(rgb, key)
        prefix = self.prompts.prompt_ids(instruction_prompt(instruction, self.prompt_style), image.num_tokens)
        answer: list[int] = []
        if phrase is not None:
            answer = [ids[REF_START_TOKEN]] + self.prompts.phrase_ids(phrase) + [ids[REF_END_TOKEN]]
        input_ids = torch.tensor([prefix + answer], device=self.device)
        grid = image.grid_thw.to(self.device)
        blocks: list[tuple[list[int], torch.Tensor]] = []
        with watch.span("language_model"):
            cache = DynamicCache(config=self.model.vlm.config.text_config)
            if self.generation_positions == "text":
                start = torch.zeros(1, dtype=torch.long, device=self.device)
                positions = self._chunk_positions(start, input_ids.shape[1])
            else:
                positions = self.model.position_ids(input_ids, grid, None)
            state = self.model.run_language_model(
                input_ids, positions, image_embeds, deepstack, past_key_values=cache, use_cache=True
            )
            last = int(input_ids[0, -1])
            generated = 0
            while True:
                if last == ids[REF_END_TOKEN]:
                    block = torch.tensor([self.prompts.query_block_ids()], device=self.device)
                    state = self.model.run_language_model(
                        block, self._chunk_positions(state.next_position, block.shape[1]),
                        past_key_values=cache, use_cache=True,
                    )
                    phrase_tokens = _last_phrase(answer, ids[REF_START_TOKEN], ids[MASK_END_TOKEN])
                    blocks.append((phrase_tokens, self.model.query_states(block, state.hidden)[0]))
                    answer += block[0].tolist()
                    if phrase is not None or len(blocks) >= self.max_phrases:
                        break
                if generated >= self.max_new_tokens:
                    break
                token = int(state.logits_last[0].argmax())
                if token in self.stop_ids:
                    break
                answer.append(token)
                generated += 1
                state = self.model.run_language_model(
                    torch.tensor([[token]], device=self.device),
                    self._chunk_positions(state.next_position, 1),
                    past_key_values=cache, use_cache=True,
                )
                last = token
        prediction = InstructSamPrediction(answer=self.prompts.tokenizer.decode(answer), phrases=[])
        if blocks:
            with watch.span("detector_image_encoder"):
                vision_embeds = self._detector_image(rgb, key)
            with watch.span("detector_decoder"):
                phrase_tokens = [torch.tensor(self.phrase_condition(p), dtype=torch.long) for p, _ in blocks]
                outputs = self.model.decode_slots(vision_embeds, torch.stack([q for _, q in blocks]), phrase_tokens)
                scores = outputs.slot_logits.float().sigmoid()
                for index, (tokens, _) in enumerate(blocks):
                    instances = select_instances(
                        outputs.mask_logits[index],
                        scores[index],
                        outputs.boxes_xyxy[index],
                        rgb.shape[:2],
                        score_threshold=self.presence_threshold,
                        mask_threshold=self.mask_threshold,
                        nms_iou_threshold=self.nms_iou_threshold,
                        mask_space="logits",  # the authors' infer.py: upsampled logits > 0
                    )
                    prediction.phrases.append(
                        GroundedPhrase(self.prompts.decode(tokens), instances, scores[index].cpu().numpy())
                    )
        prediction.timings_ms = watch.timings_ms
        return prediction

    def phrase_condition(self, phrase_tokens: list[int]) -> list[int]:
        """Tokens that condition SAM 3 on a phrase: wrapped in ref markers as the authors' inference does
        (``'inference'``), or the phrase alone as in their training data pipeline (``'training'``)."""
        if self.phrase_wrapping == "inference":
            return self.prompts.wrap_phrase(phrase_tokens)
        return list(phrase_tokens)


def _last_phrase(answer: list[int], ref_start_id: int, mask_end_id: int) -> list[int]:
    """Tokens between the last ``<ref_start>`` and the closing ``<ref_end>`` (which ends ``answer``).

    A model that closes a phrase it never opened gets everything it generated
    since the previous query block as its phrase.
    """
    body = answer[:-1]
    openers = [i for i, token in enumerate(body) if token in (ref_start_id, mask_end_id)]
    return body[openers[-1] + 1:] if openers else body
