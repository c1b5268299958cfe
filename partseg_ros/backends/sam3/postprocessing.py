"""From SAM 3 query outputs to instances at the input resolution, in plain torch.

``Sam3ImageProcessor.post_process_instance_segmentation`` is unreachable
without torchvision; ``mask_space='probabilities'`` is its recipe exactly
(score > 0.3, sigmoid of the mask logits, bilinear upsampling to the input
size, > 0.5, no NMS). ``mask_space='logits'`` upsamples the logits and
thresholds them (at 0), which is what the InstructSAM authors' inference does
(``instructsam/infer.py``); the two differ on boundary pixels because
upsampling does not commute with the sigmoid. Empty masks are dropped (an
instance with no pixel is no answer); an optional mask-IoU NMS collapses
slots predicting the same object.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F

from partseg_ros.backends.sam3.defaults import SAM3_MASK_THRESHOLD, SAM3_SCORE_THRESHOLD  # noqa: F401 (re-exported)

MASK_SPACES = ("probabilities", "logits")


@dataclass
class Sam3Instance:
    """One detected instance: boolean mask at input resolution, score in [0, 1], box (x0, y0, x1, y1) pixels."""

    mask: np.ndarray
    score: float
    box: tuple[float, float, float, float]
    slot: int


def mask_iou_matrix(masks: torch.Tensor) -> torch.Tensor:
    """Pairwise IoU of N boolean masks (N, H, W) -> (N, N)."""
    flat = masks.flatten(1).to(torch.float32)
    inter = flat @ flat.T
    area = flat.sum(1)
    union = area[:, None] + area[None, :] - inter
    return torch.where(union > 0, inter / union.clamp(min=1.0), torch.zeros_like(inter))


def mask_nms(masks: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """Greedy NMS on masks: indices kept, best score first.

    Pure torch so it runs where ``torchvision.ops.nms`` is missing; masks are
    compared by IoU of their pixels rather than of their boxes, which keeps two
    parts that share a box (a handle inside a mug's box) apart.
    """
    if masks.shape[0] == 0:
        return torch.zeros(0, dtype=torch.long, device=masks.device)
    order = torch.argsort(scores, descending=True)
    iou = mask_iou_matrix(masks[order])
    suppressed = torch.zeros(order.numel(), dtype=torch.bool, device=masks.device)
    keep: list[int] = []
    for i in range(order.numel()):
        if suppressed[i]:
            continue
        keep.append(i)
        suppressed |= iou[i] > iou_threshold
    return order[torch.tensor(keep, dtype=torch.long, device=masks.device)]


def select_instances(
    mask_logits: torch.Tensor,
    scores: torch.Tensor,
    boxes_xyxy_normalized: Optional[torch.Tensor],
    image_size: tuple[int, int],
    score_threshold: float = 0.5,
    mask_threshold: float = 0.0,
    nms_iou_threshold: Optional[float] = None,
    max_instances: Optional[int] = None,
    mask_space: str = "logits",
) -> list[Sam3Instance]:
    """Keep slots whose score passes the threshold and return their masks at ``image_size`` (H, W).

    ``mask_logits`` (Q, h, w) are logits at the decoder's resolution, ``scores``
    (Q,) probabilities, ``boxes_xyxy_normalized`` (Q, 4) in [0, 1] or None.
    ``mask_space`` says what is upsampled and compared with ``mask_threshold``:
    'probabilities' (sigmoid first: SAM 3's official recipe, threshold 0.5) or
    'logits' (InstructSAM's, threshold 0). Empty instance masks are dropped:
    a slot with no pixels is not an answer.
    """
    if mask_space not in MASK_SPACES:
        raise ValueError(f"mask_space must be one of {MASK_SPACES}, got {mask_space!r}")
    height, width = image_size
    keep = torch.nonzero(scores > score_threshold).flatten()
    if keep.numel() == 0:
        return []
    values = mask_logits[keep][None].to(torch.float32)
    if mask_space == "probabilities":
        values = values.sigmoid()
    values = F.interpolate(values, size=(height, width), mode="bilinear", align_corners=False)[0]
    masks = values > mask_threshold
    kept_scores = scores[keep].to(torch.float32)
    nonempty = masks.flatten(1).any(1)
    keep, masks, kept_scores = keep[nonempty], masks[nonempty], kept_scores[nonempty]
    if nms_iou_threshold is not None and keep.numel() > 1:
        order = mask_nms(masks, kept_scores, nms_iou_threshold)
    else:
        order = torch.argsort(kept_scores, descending=True)
    if max_instances is not None:
        order = order[:max_instances]
    instances = []
    scale = torch.tensor([width, height, width, height], dtype=torch.float32)
    for idx in order.tolist():
        if boxes_xyxy_normalized is not None:
            box = (boxes_xyxy_normalized[keep[idx]].detach().to(torch.float32).cpu() * scale).tolist()
        else:
            ys, xs = torch.nonzero(masks[idx], as_tuple=True)
            box = [xs.min().item(), ys.min().item(), xs.max().item(), ys.max().item()]
        instances.append(
            Sam3Instance(
                mask=masks[idx].cpu().numpy(),
                score=float(kept_scores[idx]),
                box=tuple(float(v) for v in box),
                slot=int(keep[idx]),
            )
        )
    return instances
