"""Training InstructSAM (paper section 3.3): text loss + matched mask losses + per-slot presence loss.

Per sample, the K slot predictions are matched one-to-one to the ground-truth
instances with the Hungarian algorithm (``scipy.optimize.linear_sum_assignment``)
on a cost of mask BCE, mask Dice and presence; matched slots get BCE + Dice
mask losses, every slot gets a presence BCE (target 1 if matched, else 0), so
a no-target sample teaches all slots to stay off. The text loss is the
answer's next-token cross-entropy with the query placeholders and
``<mask_end>`` excluded. SAM 3's image encoder stays frozen, as in both of
the paper's stages.
"""

from __future__ import annotations

import argparse
import logging
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment

from partseg_ros.backends.instructsam.inputs import LlmImageEncoder, PromptBuilder
from partseg_ros.backends.instructsam.model import MASK_END_TOKEN, SEG_TOKEN, InstructSamModel
from partseg_ros.backends.sam3.preprocessing import Sam3ImageTransform

IGNORE = -100
LOG = logging.getLogger(__name__)


@dataclass
class SegmentationSample:
    """One training example: image, instruction, target phrase and instance masks (N, H, W), N may be 0."""

    rgb: np.ndarray
    instruction: str
    phrase: str
    masks: np.ndarray


@dataclass
class LossWeights:
    """Defaults are the published training configuration (bce 2.0, dice 0.5, presence 1.0, text 1.0)."""

    text: float = 1.0
    bce: float = 2.0
    dice: float = 0.5
    presence: float = 1.0


def dice_loss(logits: torch.Tensor, targets: torch.Tensor, eps: float = 1.0) -> torch.Tensor:
    """Per-pair Dice loss of (M, P) logits against (M, P) soft targets -> (M,)."""
    probs = logits.sigmoid()
    numerator = 2 * (probs * targets).sum(-1)
    denominator = probs.sum(-1) + targets.sum(-1)
    return 1 - (numerator + eps) / (denominator + eps)


def matching_cost(
    mask_logits: torch.Tensor, presence_logits: torch.Tensor, targets: torch.Tensor, weights: LossWeights
) -> torch.Tensor:
    """(K, N) cost of giving slot k ground-truth instance n: mask BCE + mask Dice + presence.

    ``mask_logits`` (K, P) and ``targets`` (N, P) are flattened masks at the
    decoder's resolution, ``presence_logits`` (K,).
    """
    pixels = mask_logits.shape[1]
    positive = F.binary_cross_entropy_with_logits(mask_logits, torch.ones_like(mask_logits), reduction="none")
    negative = F.binary_cross_entropy_with_logits(mask_logits, torch.zeros_like(mask_logits), reduction="none")
    bce = (positive @ targets.T + negative @ (1 - targets).T) / pixels
    probs = mask_logits.sigmoid()
    dice = 1 - (2 * probs @ targets.T + 1) / (probs.sum(-1)[:, None] + targets.sum(-1)[None, :] + 1)
    presence = F.binary_cross_entropy_with_logits(presence_logits, torch.ones_like(presence_logits), reduction="none")
    return weights.bce * bce + weights.dice * dice + weights.presence * presence[:, None]


def hungarian_match(
    mask_logits: torch.Tensor, presence_logits: torch.Tensor, targets: torch.Tensor, weights: LossWeights
) -> tuple[torch.Tensor, torch.Tensor]:
    """Optimal one-to-one (slot indices, target indices); empty when there are no targets."""
    if targets.shape[0] == 0:
        empty = torch.zeros(0, dtype=torch.long, device=mask_logits.device)
        return empty, empty
    with torch.no_grad():
        cost = matching_cost(mask_logits.float(), presence_logits.float(), targets.float(), weights)
    slots, gts = linear_sum_assignment(cost.cpu().numpy())
    device = mask_logits.device
    return (
        torch.as_tensor(slots, dtype=torch.long, device=device),
        torch.as_tensor(gts, dtype=torch.long, device=device),
    )


def set_prediction_losses(
    mask_logits: torch.Tensor, presence_logits: torch.Tensor, gt_masks: torch.Tensor, weights: LossWeights
) -> dict[str, torch.Tensor]:
    """Matched BCE/Dice mask losses and all-slot presence loss for one sample.

    ``mask_logits`` (K, h, w) at decoder resolution, ``presence_logits`` (K,),
    ``gt_masks`` (N, H, W) bool at any resolution (resized to h x w here).
    """
    num_slots, height, width = mask_logits.shape
    if gt_masks.shape[0]:
        targets = F.interpolate(gt_masks[:, None].float(), size=(height, width), mode="area")[:, 0]
    else:
        targets = mask_logits.new_zeros((0, height, width))
    flat_logits = mask_logits.flatten(1).float()
    flat_targets = targets.flatten(1).to(flat_logits)
    slots, gts = hungarian_match(flat_logits, presence_logits, flat_targets, weights)
    presence_targets = torch.zeros_like(presence_logits, dtype=torch.float32)
    presence_targets[slots] = 1.0
    presence = F.binary_cross_entropy_with_logits(presence_logits.float(), presence_targets)
    if slots.numel():
        bce = F.binary_cross_entropy_with_logits(flat_logits[slots], flat_targets[gts], reduction="none").mean(-1)
        dice = dice_loss(flat_logits[slots], flat_targets[gts])
        bce, dice = bce.mean(), dice.mean()
    else:
        bce = dice = flat_logits.sum() * 0.0
    return {"bce": bce, "dice": dice, "presence": presence}


@dataclass
class EncodedBatch:
    input_ids: torch.Tensor
    key_valid: torch.Tensor
    labels: torch.Tensor
    pixel_values: torch.Tensor
    grid_thw: torch.Tensor
    detector_pixels: torch.Tensor
    phrase_ids: list[torch.Tensor]
    gt_masks: list[torch.Tensor]


class InstructSamTrainer:
    """Optimises an ``InstructSamModel`` on ``SegmentationSample`` batches."""

    def __init__(
        self,
        model: InstructSamModel,
        tokenizer,
        llm_images: Optional[LlmImageEncoder] = None,
        detector_transform: Optional[Sam3ImageTransform] = None,
        weights: Optional[LossWeights] = None,
        llm_lr: float = 5e-6,
        other_lr: float = 1e-5,
    ) -> None:
        """Learning rates default to the paper's stage 1 (5e-6 for the MLLM, 1e-5 for the rest)."""
        self.model = model
        self.prompts = PromptBuilder(tokenizer, model.settings.num_queries)
        self.llm_images = llm_images or LlmImageEncoder()
        self.detector_transform = detector_transform or Sam3ImageTransform(image_size=model.sam3.config.image_size)
        self.weights = weights or LossWeights()
        for param in model.sam3.vision_encoder.parameters():
            param.requires_grad_(False)
        llm_params = [p for p in model.vlm.parameters() if p.requires_grad]
        llm_ids = {id(p) for p in llm_params}
        other = [p for p in model.parameters() if p.requires_grad and id(p) not in llm_ids]
        self.optimizer = torch.optim.AdamW(
            [{"params": llm_params, "lr": llm_lr}, {"params": other, "lr": other_lr}], weight_decay=0.0
        )

    @property
    def device(self) -> torch.device:
        return self.model.mask_queries.device

    def encode(self, samples: list[SegmentationSample]) -> EncodedBatch:
        """Teacher-forced sequences (prompt + answer), right-padded, with text-loss labels."""
        pad_id = self.prompts.ids[MASK_END_TOKEN]
        no_loss_targets = {self.prompts.ids[SEG_TOKEN], self.prompts.ids[MASK_END_TOKEN]}
        sequences, label_rows, pixel_values, grids, phrases = [], [], [], [], []
        for sample in samples:
            image = self.llm_images(sample.rgb)
            prompt = self.prompts.prompt_ids(sample.instruction, image.num_tokens)
            answer = self.prompts.answer_ids(sample.phrase)
            sequence = prompt + answer
            # labels[i] is the token predicted at position i (next-token targets)
            labels = [IGNORE] * len(sequence)
            for i in range(len(prompt) - 1, len(sequence) - 1):
                target = sequence[i + 1]
                labels[i] = IGNORE if target in no_loss_targets else target
            sequences.append(sequence)
            label_rows.append(labels)
            pixel_values.append(image.pixel_values)
            grids.append(image.grid_thw)
            phrases.append(torch.tensor(self.prompts.phrase_ids(sample.phrase), dtype=torch.long))
        length = max(len(s) for s in sequences)
        input_ids = torch.full((len(samples), length), pad_id, dtype=torch.long)
        key_valid = torch.zeros((len(samples), length), dtype=torch.bool)
        labels = torch.full((len(samples), length), IGNORE, dtype=torch.long)
        for row, (sequence, label_row) in enumerate(zip(sequences, label_rows)):
            input_ids[row, : len(sequence)] = torch.tensor(sequence)
            key_valid[row, : len(sequence)] = True
            labels[row, : len(sequence)] = torch.tensor(label_row)
        detector_pixels = torch.cat([self.detector_transform(s.rgb) for s in samples])
        return EncodedBatch(
            input_ids=input_ids.to(self.device),
            key_valid=key_valid.to(self.device),
            labels=labels.to(self.device),
            pixel_values=torch.cat(pixel_values).to(self.device, self.model.vlm.dtype),
            grid_thw=torch.cat(grids).to(self.device),
            detector_pixels=detector_pixels.to(self.device, self.model.sam3.dtype),
            phrase_ids=phrases,
            gt_masks=[torch.as_tensor(np.asarray(s.masks, dtype=bool)).to(self.device) for s in samples],
        )

    def losses(self, batch: EncodedBatch) -> dict[str, torch.Tensor]:
        model = self.model
        image_embeds, deepstack = model.encode_image_for_llm(batch.pixel_values, batch.grid_thw)
        positions = model.position_ids(batch.input_ids, batch.grid_thw, batch.key_valid.long())
        state = model.run_language_model(
            batch.input_ids, positions, image_embeds, deepstack, key_valid=batch.key_valid
        )
        logits = model.vlm.lm_head(state.hidden)
        text = F.cross_entropy(logits.flatten(0, 1).float(), batch.labels.flatten(), ignore_index=IGNORE)
        with torch.no_grad():
            vision_embeds = model.encode_image_for_detector(batch.detector_pixels)
        outputs = model.decode_slots(vision_embeds, model.query_states(batch.input_ids, state.hidden), batch.phrase_ids)
        per_sample = [
            set_prediction_losses(outputs.mask_logits[i], outputs.slot_logits[i], batch.gt_masks[i], self.weights)
            for i in range(len(batch.gt_masks))
        ]
        totals = {name: torch.stack([s[name] for s in per_sample]).mean() for name in ("bce", "dice", "presence")}
        totals["text"] = text
        w = self.weights
        totals["loss"] = (
            w.text * text + w.bce * totals["bce"] + w.dice * totals["dice"] + w.presence * totals["presence"]
        )
        return totals

    def step(self, samples: list[SegmentationSample]) -> dict[str, float]:
        """One optimiser step on ``samples``; returns the losses before the update."""
        self.model.train()
        batch = self.encode(samples)
        losses = self.losses(batch)
        self.optimizer.zero_grad(set_to_none=True)
        losses["loss"].backward()
        torch.nn.utils.clip_grad_norm_([p for g in self.optimizer.param_groups for p in g["params"]], 1.0)
        self.optimizer.step()
        return {name: float(value.detach()) for name, value in losses.items()}


COLOURS = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (40, 60, 220), "yellow": (230, 220, 40)}


def make_synthetic_samples(
    count: int, height: int = 64, width: int = 64, seed: int = 0, max_targets: int = 3
) -> list[SegmentationSample]:
    """Images of coloured squares on noise; the instruction asks for one colour, whose squares are the instances.

    Some samples ask for a colour that is absent, so the no-target case is trained too.
    """
    rng = np.random.default_rng(seed)
    names = list(COLOURS)
    samples = []
    for _ in range(count):
        rgb = rng.integers(90, 140, size=(height, width, 3), dtype=np.uint8)
        target = names[rng.integers(len(names))]
        distractor = names[(names.index(target) + 1 + rng.integers(len(names) - 1)) % len(names)]
        masks = []
        occupied = np.zeros((height, width), dtype=bool)
        for colour, n in ((target, rng.integers(0, max_targets + 1)), (distractor, rng.integers(0, 2))):
            for _ in range(n):
                side = int(rng.integers(height // 6, height // 3))
                y, x = int(rng.integers(0, height - side)), int(rng.integers(0, width - side))
                region = np.zeros((height, width), dtype=bool)
                region[y : y + side, x : x + side] = True
                if (region & occupied).any():
                    continue
                occupied |= region
                rgb[region] = COLOURS[colour]
                if colour == target:
                    masks.append(region)
        masks_array = np.stack(masks) if masks else np.zeros((0, height, width), dtype=bool)
        samples.append(SegmentationSample(rgb, f"segment every {target} square", f"{target} square", masks_array))
    return samples


def from_part_sample(sample) -> SegmentationSample:
    """Adapt a PISA/InstructPart ``PartSample`` (one part mask per instruction) to a training sample.

    The target phrase is the part of the object ("handle of the mug"), the
    published model's phrase style; an empty mask is a no-target example.
    """
    if sample.part_label and sample.object_label:
        phrase = f"{sample.part_label} of the {sample.object_label}"
    else:
        phrase = sample.part_label or sample.object_label or "target"
    mask = np.asarray(sample.mask, dtype=bool)
    masks = mask[None] if mask.any() else np.zeros((0, *mask.shape), dtype=bool)
    return SegmentationSample(sample.rgb, sample.instruction, phrase.replace("_", " "), masks)


def _batches(samples, batch_size: int, rng: random.Random) -> Iterator[list[SegmentationSample]]:
    order: list[int] = []
    while True:
        if len(order) < batch_size:
            fresh = list(range(len(samples)))
            rng.shuffle(fresh)
            order += fresh
        yield [samples[i] for i in order[:batch_size]]
        del order[:batch_size]


class _Converted:
    """A dataset of ``PartSample`` seen as ``SegmentationSample`` items, converted lazily."""

    def __init__(self, dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> SegmentationSample:
        return from_part_sample(self.dataset[index])


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Fine-tune an InstructSAM checkpoint on InstructPart data / benchmark bags (or generated squares)."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--checkpoint", required=True, help="InstructSAM checkpoint directory or hub id")
    parser.add_argument("--data", action="append", default=[], help="InstructPart JSON or benchmark bag (repeatable)")
    parser.add_argument("--synthetic", type=int, default=0, help="train on this many generated samples instead")
    parser.add_argument("--output", required=True, help="directory for the fine-tuned checkpoint")
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--llm-lr", type=float, default=2e-6, help="paper stage 2: 2e-6")
    parser.add_argument("--other-lr", type=float, default=5e-6, help="paper stage 2: 5e-6")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--dtype", default="fp32")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")

    from partseg_ros.backends.instructsam.checkpoint_layout import (
        load_instructsam_checkpoint,
        save_instructsam_checkpoint,
    )
    from partseg_ros.backends.instructsam.inputs import image_processor_settings
    from partseg_ros.backends.runtime import select_device, select_dtype

    if bool(args.data) == bool(args.synthetic):
        parser.error("give either --data or --synthetic")
    torch.manual_seed(args.seed)
    device = select_device(args.device)
    model, tokenizer, directory = load_instructsam_checkpoint(
        args.checkpoint, device=device, dtype=select_dtype(device, args.dtype)
    )
    settings = image_processor_settings(directory)
    trainer = InstructSamTrainer(
        model, tokenizer, llm_images=LlmImageEncoder(settings), llm_lr=args.llm_lr, other_lr=args.other_lr
    )
    if args.synthetic:
        samples = make_synthetic_samples(args.synthetic, seed=args.seed)
    else:
        from partseg_ros.backends.pisa.data import build_dataset

        samples = _Converted(build_dataset(args.data))
    LOG.info("training InstructSAM on %d samples for %d steps on %s", len(samples), args.steps, device)
    batches = _batches(samples, args.batch_size, random.Random(args.seed))
    for step in range(args.steps):
        losses = trainer.step(next(batches))
        if step % 10 == 0 or step == args.steps - 1:
            LOG.info("step %d %s", step, " ".join(f"{k}={v:.4f}" for k, v in losses.items()))
    out = save_instructsam_checkpoint(model.eval(), Path(args.output), tokenizer, image_processor_settings=settings)
    LOG.info("saved InstructSAM checkpoint to %s", out)
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
