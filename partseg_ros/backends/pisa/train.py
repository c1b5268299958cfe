"""Train PISA's head (BCE + Dice, plus the IoU head's regression) with backbone and LM frozen.

Usage (a GPU is advised for real sizes)::

    python -m partseg_ros.backends.pisa.train --data InstructPart/train.json --data bench.mcap \\
        --backbone facebook/dinov2-large --language-model lmsys/vicuna-7b-v1.5 --output runs/pisa

The output directory is a PISA checkpoint (``pisa_config.json`` +
``pisa_head.safetensors``) that ``PisaBackend(checkpoint=...)`` loads.
"""

from __future__ import annotations

import argparse
import logging
import math
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from partseg_ros.backends.pisa.data import PartSample, build_dataset
from partseg_ros.backends.pisa.model import PisaHead, PisaHeadConfig, PisaModel

LOG = logging.getLogger(__name__)

# LISA's weighting of the two mask losses.
BCE_WEIGHT = 2.0
DICE_WEIGHT = 0.5
IOU_WEIGHT = 1.0


@dataclass
class Batch:
    pixel_values: torch.Tensor  # (B, 3, S, S)
    targets: torch.Tensor  # (B, S, S) float in {0, 1}
    valid: torch.Tensor  # (B, S, S) float: 1 on real pixels, 0 on padding
    instructions: list[str]


def collate(samples: Sequence[PartSample], model: PisaModel, image_size: Optional[int] = None) -> Batch:
    """Images and masks through the same resize-and-pad, so targets align with the logits."""
    pixels, targets, valid = [], [], []
    for sample in samples:
        prepared = model.prepare_image(sample.rgb, image_size)
        size = prepared.pixel_values.shape[-1]
        nh, nw = prepared.valid_hw
        mask = torch.from_numpy(sample.mask.astype(np.float32))[None, None]
        mask = F.interpolate(mask, size=(nh, nw), mode="nearest")[0, 0]
        target = torch.zeros(size, size)
        target[:nh, :nw] = mask
        region = torch.zeros(size, size)
        region[:nh, :nw] = 1.0
        pixels.append(prepared.pixel_values[0])
        targets.append(target)
        valid.append(region)
    return Batch(torch.stack(pixels), torch.stack(targets), torch.stack(valid), [s.instruction for s in samples])


def dice_loss(logits: torch.Tensor, targets: torch.Tensor, valid: torch.Tensor, eps: float = 1.0) -> torch.Tensor:
    prob = torch.sigmoid(logits) * valid
    inter = (prob * targets).flatten(1).sum(-1)
    total = prob.flatten(1).sum(-1) + targets.flatten(1).sum(-1)
    return (1.0 - (2.0 * inter + eps) / (total + eps)).mean()


def bce_loss(logits: torch.Tensor, targets: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    per_pixel = F.binary_cross_entropy_with_logits(logits, targets, reduction="none") * valid
    return (per_pixel.flatten(1).sum(-1) / valid.flatten(1).sum(-1).clamp(min=1.0)).mean()


def mask_iou(logits: torch.Tensor, targets: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    pred = (logits > 0).float() * valid
    inter = (pred * targets).flatten(1).sum(-1)
    union = ((pred + targets) > 0).float().flatten(1).sum(-1)
    return torch.where(union > 0, inter / union.clamp(min=1.0), torch.ones_like(union))


def pisa_loss(logits: torch.Tensor, iou_logit: torch.Tensor, batch: Batch) -> dict[str, torch.Tensor]:
    """BCE + Dice on the mask, and the IoU head regressed onto the mask's actual IoU (as SAM trains it)."""
    bce = bce_loss(logits, batch.targets, batch.valid)
    dice = dice_loss(logits, batch.targets, batch.valid)
    iou = F.mse_loss(torch.sigmoid(iou_logit), mask_iou(logits.detach(), batch.targets, batch.valid))
    return {"loss": BCE_WEIGHT * bce + DICE_WEIGHT * dice + IOU_WEIGHT * iou, "bce": bce, "dice": dice, "iou": iou}


def _batches(dataset, batch_size: int, rng: random.Random) -> Iterator[list[PartSample]]:
    while True:
        order = list(range(len(dataset)))
        rng.shuffle(order)
        for start in range(0, len(order), batch_size):
            yield [dataset[i] for i in order[start : start + batch_size]]


def train_head(
    model: PisaModel,
    samples: Iterable[list[PartSample]],
    steps: int,
    lr: float = 3e-4,
    weight_decay: float = 0.0,
    image_size: Optional[int] = None,
    log_every: int = 10,
) -> list[float]:
    """Optimise the head for ``steps`` batches; returns the loss of every step."""
    device = next(model.head.parameters()).device
    optimiser = torch.optim.AdamW([p for p in model.head.parameters() if p.requires_grad], lr=lr,
                                  weight_decay=weight_decay)
    model.train(True)
    losses: list[float] = []
    iterator = iter(samples)
    for step in range(steps):
        batch = collate(next(iterator), model, image_size)
        pixels = batch.pixel_values.to(device)
        batch.targets, batch.valid = batch.targets.to(device), batch.valid.to(device)
        logits, iou_logit = model(pixels, batch.instructions)
        terms = pisa_loss(logits, iou_logit, batch)
        optimiser.zero_grad(set_to_none=True)
        terms["loss"].backward()
        optimiser.step()
        values = {k: float(v.detach()) for k, v in terms.items()}
        losses.append(values["loss"])
        if log_every and (step % log_every == 0 or step == steps - 1):
            LOG.info("step %d/%d loss %.4f (bce %.4f dice %.4f iou %.4f)", step + 1, steps,
                     *(values[k] for k in ("loss", "bce", "dice", "iou")))
    model.train(False)
    return losses


def build_model(backbone: str, language_model: str, init_head: Optional[str] = None,
                image_size: int = 518, device: str = "cpu") -> PisaModel:
    """Backbone and LM through from_pretrained; a fresh head (or one to continue from)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer, Dinov2Model

    from partseg_ros.backends.checkpoints import resolve_checkpoint

    backbone_dir = resolve_checkpoint(backbone, what="PISA backbone (DINOv2)", parameter="--backbone")
    lm_dir = resolve_checkpoint(language_model, what="PISA language model", parameter="--language-model")
    backbone_model = Dinov2Model.from_pretrained(backbone_dir)
    lm = AutoModelForCausalLM.from_pretrained(lm_dir)
    tokenizer = AutoTokenizer.from_pretrained(lm_dir)
    if init_head:
        head = PisaHead.load(init_head)
    else:
        mean, std = _processor_normalisation(backbone_dir)
        head = PisaHead(PisaHeadConfig.for_models(backbone_model.config, lm.config, image_size=image_size,
                                                  image_mean=mean, image_std=std))
    return PisaModel(backbone_model, lm, tokenizer, head).to(device)


def _processor_normalisation(directory: Path) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The backbone's own image mean/std when its processor config is present, else ImageNet's."""
    import json

    from partseg_ros.backends.pisa.model import IMAGENET_MEAN, IMAGENET_STD

    for name in ("preprocessor_config.json", "processor_config.json"):
        path = Path(directory) / name
        if path.is_file():
            data = json.loads(path.read_text())
            data = data.get("image_processor", data)
            if "image_mean" in data and "image_std" in data:
                return tuple(data["image_mean"]), tuple(data["image_std"])
    return IMAGENET_MEAN, IMAGENET_STD


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", action="append", required=True,
                        help="InstructPart JSON file or benchmark bag (repeatable)")
    parser.add_argument("--backbone", default="facebook/dinov2-large")
    parser.add_argument("--language-model", default="lmsys/vicuna-7b-v1.5")
    parser.add_argument("--init-head", default=None, help="PISA checkpoint to continue from")
    parser.add_argument("--output", required=True)
    parser.add_argument("--epochs", type=float, default=10.0)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--image-size", type=int, default=518)
    parser.add_argument("--instructions", default=None, help="comma-separated instruction indices (0-5) to use")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")

    from partseg_ros.backends.runtime import select_device

    torch.manual_seed(args.seed)
    indices = [int(i) for i in args.instructions.split(",")] if args.instructions else None
    dataset = build_dataset(args.data, instruction_indices=indices)
    device = select_device(args.device)
    model = build_model(args.backbone, args.language_model, args.init_head, args.image_size, str(device))
    steps = max(1, math.ceil(args.epochs * len(dataset) / args.batch_size))
    LOG.info("training PISA head on %d samples for %d steps on %s", len(dataset), steps, device)
    train_head(model, _batches(dataset, args.batch_size, random.Random(args.seed)), steps, lr=args.lr,
               image_size=args.image_size)
    out = model.head.save(args.output)
    LOG.info("saved PISA checkpoint to %s", out)
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
