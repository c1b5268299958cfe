"""Train the RGB-D part grounder on generated crops: seeded, resumable, with curves.

Usage::

    partseg_generate_training_crops --out data/crops            # randomised frames -> crop shards
    partseg_train_part_grounder --data data/crops --out runs/pisa_rgbd --minutes 40

Every ``--eval-every`` steps the model is scored on two validation sets the
training never sees: new seeds of the training regime (in-distribution) and
the held-back regime (another camera, sensor model and shape style). The run
folder holds ``last.pt`` (resume state), ``history.json``, ``curves.png`` and
the model folder ``model/`` (``config.json`` + ``weights.pt``) that the
``pisa_rgbd`` backend loads with ``checkpoint=<run>/model``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch
from scipy import ndimage
from torch.nn import functional as F

from partseg_ros.backends.pisa_rgbd.checkpoint import save_model
from partseg_ros.backends.pisa_rgbd.crops import CHANNELS, CropSettings
from partseg_ros.backends.pisa_rgbd.dataset import (
    BACKGROUND_KIND,
    ConfusableKinds,
    CropSample,
    Query,
    answer_for,
    confusable_kinds,
    iterate_samples,
    load_crops,
    training_queries,
)
from partseg_ros.backends.pisa_rgbd.model import GrounderConfig, RgbdPartGrounder
from partseg_ros.backends.pisa_rgbd.vocabulary import spoken

BCE_WEIGHT = 1.0
DICE_WEIGHT = 1.0
PRESENCE_WEIGHT = 1.0
RANKING_WEIGHT = 0.5
# Share of the negative phrases drawn from kinds easily confused with the crop's own (--hard-negative-share).
# 0, the shipped model's recipe: 0.5 fixed the knives and the connector on the study but two seeds lost
# to the shipped model on the in-distribution validation (README, "The learned backend").
HARD_NEGATIVE_SHARE = 0.0
# Decay of the exponential moving average of the weights that is saved as the model (--ema-decay); 0 saves the
# last step's weights, as the models before it.
EMA_DECAY = 0.0
# Share of crops whose whole object loses its depth (--object-depth-loss-share): what active stereo and time of
# flight do to a black, glass or shiny object. The proposal for such an object is the hole itself, and the
# network, shown depth over almost every training object, refused those crops (presence 0.12 on two merged black
# cameras). 0 is the recipe of the weights shipped before it.
OBJECT_DEPTH_LOSS_SHARE = 0.0
OBJECT_DEPTH_LOSS_GROW_PX = (0, 4)  # the hole reaches this many crop pixels past the object (a dark rim, shadow)
RANDOM_DEPTH_BLOCK_SHARE = 0.1  # share of crops losing depth over a random square block
# Share of crops warped by a random affine map (--warp-share): each axis stretched on its own, turned and
# shifted, labels with them. The generator's shape styles are few, and the held-back styles (other handle
# loops, spout and blade proportions) are where the network lost most; a stretched mug handle is still a
# handle. 0 is the recipe of the weights shipped before it.
WARP_SHARE = 0.0
WARP_STRETCH = 0.2  # each axis scaled by a factor in [1 / (1 + s), 1 + s]
WARP_TURN_DEG = 15.0
WARP_SHIFT = 0.08  # of the crop side


class WeightAverage:
    """An exponential moving average of the trainable weights, kept beside the trained ones.

    The last step's weights carry the last batches' noise (the run-to-run spread of the shipped recipe is several
    points); an average over the last ~1/(1 - decay) steps is a flatter point of the same run, at the cost of a
    copy of the weights and one in-place update per step.
    """

    def __init__(self, model: RgbdPartGrounder, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"the weight average's decay must lie in (0, 1), not {decay}")
        self.decay = decay
        self.shadow = {k: v.detach().clone() for k, v in model.trainable_state_dict().items()
                       if v.dtype.is_floating_point}

    @torch.no_grad()
    def update(self, model: RgbdPartGrounder) -> None:
        current = model.trainable_state_dict()
        for name, averaged in self.shadow.items():
            averaged.lerp_(current[name], 1.0 - self.decay)

    def averaged_model(self, model: RgbdPartGrounder) -> RgbdPartGrounder:
        """A copy of ``model`` holding the averaged weights (the trained model is left as it is)."""
        import copy

        averaged = copy.deepcopy(model)
        averaged.load_state_dict(self.shadow, strict=False)
        return averaged


class PhraseEncoder:
    """Sentence embeddings of query phrases, cached (the phrase set is small and repeats)."""

    def __init__(self) -> None:
        from partseg_ros.language.embeddings import shared_embedder

        self.embedder = shared_embedder()

    def __call__(self, texts: Sequence[str]) -> torch.Tensor:
        return torch.from_numpy(self.embedder.encode(list(texts)))


def _augment(channels: np.ndarray, labels: np.ndarray, rng: np.random.Generator,
             object_depth_loss_share: float = OBJECT_DEPTH_LOSS_SHARE,
             warp_share: float = WARP_SHARE) -> tuple[np.ndarray, np.ndarray]:
    """Flips, colour and exposure changes, lost depth: what another camera does to the same crop; warps: what
    another shape style does to it."""
    x = channels.astype(np.float32)
    if object_depth_loss_share > 0 and rng.random() < object_depth_loss_share:
        _lose_object_depth(x, int(rng.integers(OBJECT_DEPTH_LOSS_GROW_PX[0], OBJECT_DEPTH_LOSS_GROW_PX[1] + 1)))
    if warp_share > 0 and rng.random() < warp_share:  # no draw at 0: the earlier recipes' streams stay as they were
        x, labels = _warped(x, labels, rng)
    if rng.random() < 0.5:
        x, labels = x[:, :, ::-1], labels[:, ::-1]
    gains = rng.uniform(0.75, 1.25, 3).astype(np.float32)
    x[0:3] = (x[0:3] * 0.25 + 0.5) * gains[:, None, None]
    x[0:3] = (x[0:3] - x[0:3].mean()) * rng.uniform(0.7, 1.3) + x[0:3].mean() + rng.uniform(-0.1, 0.1)
    if rng.random() < 0.15:  # grey world: colour says little
        x[0:3] = x[0:3].mean(axis=0, keepdims=True)
    x[0:3] = (np.clip(x[0:3], 0.0, 1.0) - 0.5) / 0.25
    if rng.random() < RANDOM_DEPTH_BLOCK_SHARE:
        h = x.shape[1]
        r0, c0 = rng.integers(0, h // 2, 2)
        size = int(rng.integers(h // 6, h // 2))
        x[3:6, r0:r0 + size, c0:c0 + size] = 0.0
    return np.ascontiguousarray(x), np.ascontiguousarray(labels)


def _warped(channels: np.ndarray, labels: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """The crop and its labels under one random affine map about the crop centre (see ``WARP_*``).

    Image channels are resampled linearly and continued at the border (the object's surroundings go on past the
    crop); the proposal and the labels are not continued, so nothing is labelled that was not in the crop.
    """
    side = channels.shape[1]
    turn = np.deg2rad(rng.uniform(-WARP_TURN_DEG, WARP_TURN_DEG))
    stretch = np.exp(rng.uniform(-np.log1p(WARP_STRETCH), np.log1p(WARP_STRETCH), 2))
    shift = rng.uniform(-WARP_SHIFT, WARP_SHIFT, 2) * side
    rotation = np.array([[np.cos(turn), -np.sin(turn)], [np.sin(turn), np.cos(turn)]])
    to_input = rotation @ np.diag(1.0 / stretch)  # output pixel -> input pixel, about the centre
    centre = np.full(2, (side - 1) / 2.0)
    offset = centre - to_input @ (centre + shift)
    proposal = CHANNELS.index("proposal")
    warped = np.stack([ndimage.affine_transform(channel, to_input, offset, order=1,
                                                mode="constant" if index == proposal else "nearest")
                       for index, channel in enumerate(channels)])
    return warped, ndimage.affine_transform(labels, to_input, offset, order=0, mode="constant", cval=0)


def _lose_object_depth(channels: np.ndarray, grow_px: int) -> None:
    """Blank the depth channels over the proposal, grown by ``grow_px``, as a sensor that sees no return there.

    Only the proposal is blanked, not the truth: at run time the hole is the proposal (``depth_hole_proposals``),
    so the network must learn to read such an object from colour and outline alone.
    """
    hole = channels[CHANNELS.index("proposal")] > 0.5
    if grow_px > 0:
        hole = ndimage.binary_dilation(hole, iterations=grow_px)
    for name in ("height", "relief", "depth_valid"):
        channels[CHANNELS.index(name)][hole] = 0.0


def make_batch(samples: list[CropSample], kinds: dict[str, tuple[str, ...]], rng: np.random.Generator,
               phrases: PhraseEncoder, augment: bool,
               confusable: Optional[ConfusableKinds] = None,
               hard_share: float = 0.0,
               object_depth_loss_share: float = OBJECT_DEPTH_LOSS_SHARE,
               warp_share: float = WARP_SHARE) -> dict[str, torch.Tensor]:
    """Crops, and every phrase of a frame asked of every crop of that frame.

    Each crop contributes phrases naming its own parts and some naming other
    objects; asking them of all the frame's objects gives the hard negatives
    that matter at run time (the hammer next to the screwdriver) and, per
    phrase, a choice among the frame's objects for the ranking loss. Kinds
    that seldom share a frame but are easily confused (two knives) meet
    through ``confusable`` (see ``dataset.training_queries``).
    """
    crops, scalars, labels_by_crop = [], [], []
    for sample in samples:
        channels, labels = (_augment(sample.channels, sample.labels, rng, object_depth_loss_share, warp_share)
                            if augment
                            else (sample.channels.astype(np.float32), sample.labels))
        crops.append(channels)
        scalars.append(sample.scalars)
        labels_by_crop.append(labels)
    frames: dict[int, list[int]] = {}
    for i, sample in enumerate(samples):
        frames.setdefault(sample.frame if sample.frame >= 0 else -1 - i, []).append(i)
    index, texts, presence, targets, groups = [], [], [], [], []
    for members in frames.values():
        asked: dict[str, Query] = {}
        for i in members:
            for query in training_queries(samples[i], kinds, rng, positives=2, negatives=1,
                                          confusable=confusable, hard_share=hard_share):
                asked.setdefault(query.text, query)
        for query in asked.values():
            group = len(set(groups))
            for j in members:
                answer = answer_for(samples[j], query.object_name, query.part_phrase)
                index.append(j)
                texts.append(query.text)
                presence.append(answer.presence)
                targets.append(np.isin(labels_by_crop[j], answer.target_parts) if answer.target_parts
                               else np.zeros_like(labels_by_crop[j], bool))
                groups.append(group)
    return {
        "crops": torch.from_numpy(np.stack(crops)), "scalars": torch.from_numpy(np.stack(scalars).astype(np.float32)),
        "index": torch.tensor(index), "text": phrases(texts), "presence": torch.tensor(presence, dtype=torch.float32),
        "targets": torch.from_numpy(np.stack(targets).astype(np.float32)), "group": torch.tensor(groups),
    }


def _ranking(presence: torch.Tensor, truth: torch.Tensor, group: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(cross-entropy of choosing a right object among a frame's objects, share of phrases chosen right), over
    the phrases whose frame holds both right and wrong objects."""
    count = int(group.max()) + 1 if len(group) else 0
    slots = torch.zeros(count, dtype=torch.long)
    order = torch.zeros(len(group), dtype=torch.long)
    for k, g in enumerate(group.tolist()):
        order[k] = slots[g]
        slots[g] += 1
    width = int(slots.max()) if count else 0
    logits = presence.new_full((count, max(width, 1)), float("-inf"))
    right = torch.zeros((count, max(width, 1)), dtype=torch.bool)
    logits[group, order] = presence
    right[group, order] = truth
    valid = right.any(1) & ((~right) & torch.isfinite(logits)).any(1)
    if not valid.any():
        return presence.sum() * 0.0, presence.new_tensor(float("nan"))
    all_lse = torch.logsumexp(logits[valid], dim=1)
    right_lse = torch.logsumexp(logits[valid].masked_fill(~right[valid], float("-inf")), dim=1)
    chosen = right[valid].gather(1, logits[valid].argmax(1, keepdim=True))[:, 0]
    return (all_lse - right_lse).mean(), chosen.float().mean()


PRECISIONS = ("fp32", "bf16", "auto")


def resolve_precision(precision: str, device: str) -> str:
    """"auto" -> "bf16" where the device computes it natively, else "fp32"; an explicit bf16 it lacks is an error,
    since emulated bf16 is slower than fp32 and would quietly cost the wall-clock budget steps."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r}: use one of {', '.join(PRECISIONS)}")
    if precision == "fp32":
        return precision
    kind = torch.device(device).type
    native = (torch.cuda.is_available() and torch.cuda.is_bf16_supported() if kind == "cuda"
              else kind == "cpu" and bool(torch.ops.mkldnn._is_mkldnn_bf16_supported()))
    if precision == "auto":
        return "bf16" if native else "fp32"
    if not native:
        raise ValueError(f"precision bf16: this {kind} has no native bf16 (on a CPU: AVX512-BF16 or AMX); "
                         "use --precision fp32 or auto")
    return precision


def losses(model: RgbdPartGrounder, batch: dict[str, torch.Tensor],
           precision: str = "fp32") -> tuple[torch.Tensor, dict[str, float]]:
    """The network runs in ``precision`` (bf16: autocast over fp32 weights); the losses are always taken in fp32."""
    truth = batch["presence"] > 0.5
    with_part = truth & (batch["targets"].flatten(1).sum(1) > 0)
    device_type = batch["crops"].device.type
    with torch.autocast(device_type, dtype=torch.bfloat16, enabled=precision == "bf16"):
        masks, presence = model(batch["crops"], batch["scalars"], batch["index"], batch["text"], with_part)
    masks, presence = masks.float(), presence.float()
    presence_loss = F.binary_cross_entropy_with_logits(presence, batch["presence"])
    ranking, _ = _ranking(presence, truth, batch["group"])
    if with_part.any():
        logits = F.interpolate(masks[:, None], size=batch["targets"].shape[-2:], mode="bilinear",
                               align_corners=False)[:, 0]
        target = batch["targets"][with_part]
        bce = F.binary_cross_entropy_with_logits(logits, target)
        prob = torch.sigmoid(logits).flatten(1)
        flat = target.flatten(1)
        dice = (1.0 - (2.0 * (prob * flat).sum(1) + 1.0) / (prob.sum(1) + flat.sum(1) + 1.0)).mean()
    else:
        bce = dice = masks.sum() * 0.0
    total = BCE_WEIGHT * bce + DICE_WEIGHT * dice + PRESENCE_WEIGHT * presence_loss + RANKING_WEIGHT * ranking
    parts = (("bce", bce), ("dice", dice), ("presence", presence_loss), ("ranking", ranking), ("total", total))
    return total, {k: float(v.detach()) for k, v in parts}


@torch.no_grad()
def evaluate(model: RgbdPartGrounder, samples: list[CropSample], kinds: dict[str, tuple[str, ...]],
             phrases: PhraseEncoder, seed: int = 1234, batch_size: int = 48) -> dict[str, float]:
    """On fixed phrases: presence accuracy, how often the right object of a frame is chosen, mean part IoU and the
    share of parts found at IoU >= 0.5."""
    model.eval()
    rng = np.random.default_rng(seed)
    correct = total = hits = positives = 0
    chosen, ious = [], []
    for batch_samples in _frame_batches(samples, batch_size):
        batch = make_batch(batch_samples, kinds, rng, phrases, augment=False)
        truth = batch["presence"] > 0.5
        with_part = truth & (batch["targets"].flatten(1).sum(1) > 0)
        masks, presence = model(batch["crops"], batch["scalars"], batch["index"], batch["text"], with_part)
        correct += int(((presence > 0) == truth).sum())
        total += len(truth)
        _, share = _ranking(presence, truth, batch["group"])
        if torch.isfinite(share):
            chosen.append(float(share))
        if with_part.any():
            predicted = F.interpolate(masks[:, None], size=batch["targets"].shape[-2:], mode="bilinear")[:, 0] > 0
            for pred, target in zip(predicted, batch["targets"][with_part] > 0.5):
                iou = float((pred & target).sum() / max(int((pred | target).sum()), 1))
                ious.append(iou)
                hits += iou >= 0.5
                positives += 1
    model.train()
    return {"presence_accuracy": correct / max(total, 1), "object_choice": float(np.mean(chosen)) if chosen else 0.0,
            "mean_iou": float(np.mean(ious)) if ious else 0.0, "part_hit_rate": hits / max(positives, 1)}


def _frame_batches(samples: list[CropSample], batch_size: int) -> list[list[CropSample]]:
    """Whole frames, in order, packed into batches of about ``batch_size`` crops."""
    batches, current, last = [], [], None
    for sample in samples:
        if current and len(current) >= batch_size and sample.frame != last:
            batches.append(current)
            current = []
        current.append(sample)
        last = sample.frame
    return batches + ([current] if current else [])


def _sample_frames(by_frame: list[list[int]], batch_size: int, rng: np.random.Generator) -> list[int]:
    """Random whole frames until the batch holds ``batch_size`` crops (the last frame may overshoot)."""
    chosen: list[int] = []
    for f in rng.permutation(len(by_frame)):
        chosen += by_frame[int(f)]
        if len(chosen) >= batch_size:
            break
    return chosen


def _plot(history: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    steps = [h["step"] for h in history["train"]]
    axes[0].plot(steps, [h["total"] for h in history["train"]], label="total", lw=0.8)
    axes[0].plot(steps, [h["presence"] for h in history["train"]], label="presence BCE", lw=0.8)
    axes[0].plot(steps, [h["dice"] for h in history["train"]], label="mask Dice", lw=0.8)
    axes[0].plot(steps, [h.get("ranking", np.nan) for h in history["train"]], label="object ranking CE", lw=0.8)
    axes[0].set_xlabel("step")
    axes[0].set_title("training loss (running mean)")
    axes[0].legend()
    for name in ("validation", "held_back"):
        rows = history.get(name, [])
        if rows:
            axes[1].plot([r["step"] for r in rows], [r["part_hit_rate"] for r in rows], marker="o",
                         label=f"{name}: part IoU>=0.5")
            axes[1].plot([r["step"] for r in rows], [r.get("object_choice", np.nan) for r in rows], ls="--",
                         label=f"{name}: right object chosen")
    axes[1].set_ylim(0, 1)
    axes[1].set_xlabel("step")
    axes[1].set_title("validation")
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def train(data: Path, out: Path, minutes: float = 40.0, max_steps: int = 100000, batch_size: int = 32,
          lr: float = 2e-3, seed: int = 0, eval_every: int = 200, eval_samples: int = 400,
          config: GrounderConfig = GrounderConfig(), threads: Optional[int] = None, progress: bool = True,
          device: str = "cpu", hard_negative_share: float = HARD_NEGATIVE_SHARE, precision: str = "fp32",
          ema_decay: float = EMA_DECAY, object_depth_loss_share: float = OBJECT_DEPTH_LOSS_SHARE,
          warp_share: float = WARP_SHARE) -> dict:
    """Train until ``minutes`` of wall time or ``max_steps``; resumes from ``out/last.pt`` when present.

    ``precision`` "bf16" runs the network under bf16 autocast (weights, optimiser and losses stay fp32): on a CPU
    with native bf16 (AVX512-BF16, AMX) the network's forward and backward take about a quarter less time, so a
    wall-clock budget buys more steps (15% more in the shipped recipe's 44 minutes); "auto" picks it where the
    device supports it.

    ``ema_decay`` > 0 keeps a moving average of the weights (:class:`WeightAverage`): the validation curves and
    ``out/model`` are the average's, and the last step's weights are saved beside it as ``out/model_last_step``
    with their own validation in the record, so one run compares the two.
    """
    precision = resolve_precision(precision, device)
    out.mkdir(parents=True, exist_ok=True)
    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(seed)
    crop_settings = CropSettings(size=config.crop_size)
    train_samples = list(iterate_samples(load_crops(data, "training")))
    kinds = {s.kind: s.parts for s in train_samples if s.kind != BACKGROUND_KIND}
    frame_members: dict[int, list[int]] = {}
    for i, sample in enumerate(train_samples):
        frame_members.setdefault(sample.frame if sample.frame >= 0 else -1 - i, []).append(i)
    by_frame = list(frame_members.values())
    validation = {}
    for regime in ("validation", "held_back"):
        try:
            validation[regime] = list(iterate_samples(load_crops(data, regime)))[:eval_samples]
        except FileNotFoundError:
            pass
    all_kinds = dict(kinds)
    model = RgbdPartGrounder(config).to(device)
    optimiser = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    average = WeightAverage(model, ema_decay) if ema_decay > 0 else None
    history: dict = {"train": [], "validation": [], "held_back": [], "seconds": 0.0}
    step = 0
    state_path = out / "last.pt"
    if state_path.exists():
        state = torch.load(state_path, map_location=device, weights_only=False)
        model.load_state_dict(state["model"])
        optimiser.load_state_dict(state["optimiser"])
        history, step = state["history"], state["step"]
        if average is not None and state.get("weight_average") is not None:
            average.shadow = state["weight_average"]
        print(f"resumed at step {step} ({history['seconds'] / 60:.1f} min trained)", flush=True)
    phrases = PhraseEncoder()
    kind_list = sorted(all_kinds)
    confusable = (confusable_kinds(kind_list, phrases([spoken(k) for k in kind_list]).numpy())
                  if hard_negative_share > 0 and len(kind_list) > 1 else None)
    rng = np.random.default_rng([seed, step])
    planned = max_steps
    started = time.perf_counter() - history["seconds"]
    running: dict[str, float] = {}

    def save_state() -> None:
        history["seconds"] = time.perf_counter() - started
        torch.save({"model": model.state_dict(), "optimiser": optimiser.state_dict(), "history": history,
                    "step": step, "weight_average": average.shadow if average is not None else None}, state_path)

    def kept_model() -> RgbdPartGrounder:
        return average.averaged_model(model) if average is not None else model

    def run_eval() -> RgbdPartGrounder:
        """Validate the model that would be saved now, and return it."""
        evaluated = kept_model()
        for regime, samples in validation.items():
            scores = evaluate(evaluated, samples, all_kinds, phrases)
            history[regime].append({"step": step, **scores})
            print(f"step {step} {regime}: " + ", ".join(f"{k} {v:.3f}" for k, v in scores.items()), flush=True)
        _plot(history, out / "curves.png")
        return evaluated

    from tqdm import tqdm

    bar = tqdm(total=planned, initial=step, disable=not progress, desc="training", unit="step")
    budget_s = minutes * 60.0
    model.train()
    while step < planned and time.perf_counter() - started < budget_s:
        # Cosine decay over the planned time budget (steps are the unknown, time is the limit).
        progress_share = min((time.perf_counter() - started) / budget_s, 1.0)
        for group in optimiser.param_groups:
            decay = 0.05 + 0.95 * 0.5 * (1.0 + math.cos(math.pi * progress_share))
            group["lr"] = lr * decay * min(1.0, (step + 1) / 100)
        chosen = _sample_frames(by_frame, batch_size, rng)
        batch = make_batch([train_samples[i] for i in chosen], all_kinds, rng, phrases, augment=True,
                           confusable=confusable, hard_share=hard_negative_share,
                           object_depth_loss_share=object_depth_loss_share, warp_share=warp_share)
        batch = {k: v.to(device) for k, v in batch.items()}
        loss, parts = losses(model, batch, precision)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimiser.step()
        if average is not None:
            average.update(model)
        step += 1
        for key, value in parts.items():
            running[key] = value if key not in running else 0.98 * running[key] + 0.02 * value
        bar.update(1)
        bar.set_postfix(loss=f"{running['total']:.3f}", presence=f"{running['presence']:.3f}")
        if step % 25 == 0:
            history["train"].append({"step": step, **running})
        if step % eval_every == 0:
            run_eval()
            save_state()
    bar.close()
    kept = run_eval()
    save_state()
    training_record = {"steps": step, "minutes": history["seconds"] / 60.0, "batch_size": batch_size, "lr": lr,
                       "seed": seed, "crops": len(train_samples), "hard_negative_share": hard_negative_share,
                       "precision": precision, "ema_decay": ema_decay,
                       "object_depth_loss_share": object_depth_loss_share, "warp_share": warp_share,
                       "kinds": sorted(kinds)}
    save_model(out / "model", kept, crop_settings, {
        "training": training_record,
        "validation": history["validation"][-1] if history["validation"] else {},
        "held_back": history["held_back"][-1] if history["held_back"] else {},
    })
    if average is not None:
        last_step = {regime: {"step": step, **evaluate(model, samples, all_kinds, phrases)}
                     for regime, samples in validation.items()}
        history["last_step_weights"] = last_step
        save_model(out / "model_last_step", model, crop_settings, {
            "training": {**training_record, "ema_decay": 0.0, "weights": "last step of an averaged run"},
            **last_step})
    (out / "history.json").write_text(json.dumps(history, indent=1))
    return history


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="partseg_train_part_grounder", description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, required=True,
                        help="folder of crop shards (partseg_generate_training_crops)")
    parser.add_argument("--out", type=Path, required=True, help="run folder (resumed when it holds last.pt)")
    parser.add_argument("--minutes", type=float, default=40.0, help="wall-clock training budget")
    parser.add_argument("--max-steps", type=int, default=100000)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--eval-every", type=int, default=200)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--hard-negative-share", type=float, default=HARD_NEGATIVE_SHARE,
                        help="share of negative phrases naming a kind easily taken for the crop's own (a sibling "
                             "such as the other knife, else a kind with a close name); 0 = uniform negatives")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", choices=PRECISIONS, default="fp32",
                        help="bf16: the network under bf16 autocast, fp32 weights and losses (a quarter less network "
                             "time on a CPU with AVX512-BF16 or AMX); auto: bf16 where the device has it")
    parser.add_argument("--ema-decay", type=float, default=EMA_DECAY,
                        help="save an exponential moving average of the weights with this decay (0: the last "
                             "step's weights); the last step's are then saved beside it as model_last_step")
    parser.add_argument("--object-depth-loss-share", type=float, default=OBJECT_DEPTH_LOSS_SHARE,
                        help="share of training crops whose object's depth is blanked, as over a black or glass "
                             "object that returns none (0: the recipe of the weights shipped before it)")
    parser.add_argument("--warp-share", type=float, default=WARP_SHARE,
                        help="share of training crops stretched, turned and shifted by a random affine map, as "
                             "another shape style would (0: the recipe of the weights shipped before it)")
    parser.add_argument("--width", type=float, default=1.0, help="scale every layer width (larger runs on a GPU)")
    parser.add_argument("--fine-dim", type=int, default=0,
                        help="channels of a full-resolution mask level (0, the shipped model: masks at half the "
                             "crop size; 16 lost on this machine's 44-minute budget, see the model card)")
    parser.add_argument("--dinov2", default="", help="folder or hub id of DINOv2 weights: add its frozen features "
                        "to the RGB-D encoder (PISA's backbone; needs the weights, a GPU is advised)")
    args = parser.parse_args(argv)
    base = GrounderConfig()
    config = GrounderConfig(widths=tuple(int(w * args.width) for w in base.widths),
                            embed_dim=int(base.embed_dim * args.width), fine_dim=int(args.fine_dim * args.width),
                            encoder="dinov2" if args.dinov2 else "cnn", dinov2=args.dinov2)
    train(args.data, args.out, args.minutes, args.max_steps, args.batch_size, args.lr, args.seed, args.eval_every,
          config=config, threads=args.threads, device=args.device, hard_negative_share=args.hard_negative_share,
          precision=args.precision, ema_decay=args.ema_decay,
          object_depth_loss_share=args.object_depth_loss_share, warp_share=args.warp_share)
    return 0


if __name__ == "__main__":
    sys.exit(main())
