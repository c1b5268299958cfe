"""A PISA-style part grounder over RGB-D object crops, small enough to train on a CPU.

PISA (InstructPart, section 3.3) fuses image features with a language
model's ``<SEG>`` state and decodes a mask with a SAM-style decoder. Here the
image side is a small convolutional encoder over a 7-channel RGB-D crop of one
object proposal (colour, height above the table, depth relief, depth
validity, proposal mask), trained from scratch on generated data, because no
pretrained vision weights reach these machines; the language side is a
sentence embedding (all-MiniLM-L6-v2) of the phrase "<part> of the <object>"
or, when a user has one, a language model's ``<SEG>`` state of the same width
after a projection. The decoder follows SAM's: learned output tokens plus the
prompt token attend to the image tokens and back (two-way attention), a
hypernetwork turns the mask token into a per-pixel classifier over upsampled
features, and a presence head says whether the crop shows the named object
at all (InstructSAM's "no target" answer).

The image features do not depend on the prompt, so one encoder pass serves
every phrase asked of a crop; only the light decoder runs per phrase.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import asdict, dataclass, field

import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel


@dataclass(frozen=True)
class GrounderConfig:
    """Everything that fixes the network's shape; saved beside the weights."""

    in_channels: int = 7
    crop_size: int = 96
    widths: tuple[int, ...] = (32, 48, 96, 128)  # stem (stride 2), then one stage per further halving
    embed_dim: int = 128
    pixel_dim: int = 32
    text_dim: int = 384
    scalar_dim: int = 2
    heads: int = 4
    decoder_layers: int = 2
    # Channels of a full-resolution refinement level (0: masks at half the crop size, as the first models).
    # Thin parts (mug handles, stems, trigger guards) are one or two pixels wide at half resolution.
    fine_dim: int = 0
    # "cnn": the RGB-D encoder alone, trained from scratch. "dinov2": frozen DINOv2 patch features of the crop's
    # colour are pooled onto the coarse grid and added to its tokens (the CNN still carries depth and fine detail).
    encoder: str = "cnn"
    dinov2: str = ""  # local folder or hub id of a transformers Dinov2Model, for encoder "dinov2"
    dinov2_input: int = 224

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "GrounderConfig":
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        if "widths" in known:
            known["widths"] = tuple(known["widths"])
        return cls(**known)


def _conv(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    groups = 8 if cout % 8 == 0 else 1
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.GroupNorm(groups, cout), nn.GELU())


class _Stage(nn.Module):
    """Halve the resolution, then one residual 3x3 block."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.down = _conv(cin, cout, 2)
        self.block = nn.Sequential(_conv(cout, cout), nn.Conv2d(cout, cout, 3, 1, 1, bias=False),
                                   nn.GroupNorm(8 if cout % 8 == 0 else 1, cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.down(x)
        return F.gelu(x + self.block(x))


class _TwoWayLayer(nn.Module):
    """Tokens attend to the image, then the image attends back to the tokens (SAM's two-way block)."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.self_attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.token_to_image = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.image_to_token = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.mlp = nn.Sequential(nn.Linear(dim, dim * 2), nn.GELU(), nn.Linear(dim * 2, dim))
        self.norms = nn.ModuleList(nn.LayerNorm(dim) for _ in range(4))

    def forward(self, tokens: torch.Tensor, image: torch.Tensor,
                image_pos: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        tokens = self.norms[0](tokens + self.self_attn(tokens, tokens, tokens, need_weights=False)[0])
        keys = image + image_pos
        tokens = self.norms[1](tokens + self.token_to_image(tokens, keys, image, need_weights=False)[0])
        tokens = self.norms[2](tokens + self.mlp(tokens))
        image = self.norms[3](image + self.image_to_token(keys, tokens, tokens, need_weights=False)[0])
        return tokens, image


@dataclass
class CropFeatures:
    """Prompt-independent encoder output for a batch of crops."""

    tokens: torch.Tensor  # (B, N, D) image tokens at the coarsest level
    pixels: torch.Tensor  # (B, P, S/2, S/2) upsampled per-pixel embeddings
    fine: torch.Tensor | None = None  # (B, F, S, S) full-resolution embeddings when the config has them
    extra: dict = field(default_factory=dict)


class RgbdPartGrounder(nn.Module):
    """Crop (B, C, S, S) + scalars (B, 2) -> features; features + phrase embeddings -> mask and presence logits."""

    def __init__(self, config: GrounderConfig = GrounderConfig()) -> None:
        super().__init__()
        self.config = config
        w = config.widths
        self.stem = nn.Sequential(_conv(config.in_channels, w[0], 2), _conv(w[0], w[0]))
        self.stages = nn.ModuleList(_Stage(a, b) for a, b in zip(w[:-1], w[1:]))
        grid = config.crop_size // (2 ** len(w))
        self.grid = grid
        dim = config.embed_dim
        self.to_tokens = nn.Conv2d(w[-1], dim, 1)
        self.image_pos = nn.Parameter(torch.randn(1, grid * grid, dim) * 0.02)
        self.scalar_proj = nn.Sequential(nn.Linear(config.scalar_dim, dim), nn.GELU(), nn.Linear(dim, dim))
        # Feature pyramid back up to the stem's resolution (half the crop), one lateral per level.
        self.laterals = nn.ModuleList(nn.Conv2d(c, config.pixel_dim, 1) for c in w[:-1])
        self.top = nn.Conv2d(dim, config.pixel_dim, 1)
        self.smooth = _conv(config.pixel_dim, config.pixel_dim)
        self.text_proj = nn.Sequential(nn.Linear(config.text_dim, dim), nn.GELU(), nn.Linear(dim, dim))
        self.mask_token = nn.Parameter(torch.randn(1, 1, dim) * 0.02)
        self.presence_token = nn.Parameter(torch.randn(1, 1, dim) * 0.02)
        self.layers = nn.ModuleList(_TwoWayLayer(dim, config.heads) for _ in range(config.decoder_layers))
        self.hyper = nn.Sequential(nn.Linear(dim, dim), nn.GELU(), nn.Linear(dim, config.pixel_dim))
        self.image_to_pixels = nn.Linear(dim, config.pixel_dim)
        self.presence_head = nn.Sequential(nn.Linear(dim, dim), nn.GELU(), nn.Linear(dim, 1))
        if config.fine_dim:
            # A U-Net's last level: the crop's own pixels next to the upsampled pyramid, so edges come from the
            # input and meaning from the pyramid. Its mask term is added to the upsampled coarse mask.
            # No normalisation at this level: on a CPU its memory traffic at full resolution cost more than the convs.
            self.fine_stem = nn.Sequential(nn.Conv2d(config.in_channels, config.fine_dim, 3, 1, 1), nn.GELU())
            self.fine_lateral = nn.Conv2d(config.pixel_dim, config.fine_dim, 1)
            self.fine_merge = nn.Sequential(nn.Conv2d(2 * config.fine_dim, config.fine_dim, 3, 1, 1), nn.GELU(),
                                            nn.Conv2d(config.fine_dim, config.fine_dim, 1))
            self.fine_hyper = nn.Sequential(nn.Linear(dim, dim), nn.GELU(), nn.Linear(dim, config.fine_dim))
        self.backbone = None
        if config.encoder == "dinov2":
            self.backbone = _frozen_dinov2(config.dinov2)
            self.backbone_proj = nn.Linear(self.backbone.config.hidden_size, dim)
        elif config.encoder != "cnn":
            raise ValueError(f"unknown encoder {config.encoder!r}; use 'cnn' or 'dinov2'")

    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        """What a model folder stores: everything but the frozen backbone, which loads from its own checkpoint."""
        return {k: v for k, v in self.state_dict().items() if not k.startswith("backbone.")}

    def _backbone_tokens(self, crops: torch.Tensor) -> torch.Tensor:
        rgb = crops[:, 0:3] * 0.25 + 0.5  # back to [0, 1] colour
        mean = rgb.new_tensor([0.485, 0.456, 0.406])[None, :, None, None]
        std = rgb.new_tensor([0.229, 0.224, 0.225])[None, :, None, None]
        size = self.config.dinov2_input
        pixels = F.interpolate((rgb - mean) / std, size=(size, size), mode="bilinear", align_corners=False)
        with torch.no_grad():
            hidden = self.backbone(pixel_values=pixels).last_hidden_state[:, 1:]
        side = int(round(hidden.shape[1] ** 0.5))
        grid = hidden.transpose(1, 2).reshape(hidden.shape[0], -1, side, side)
        pooled = F.adaptive_avg_pool2d(grid, self.grid).flatten(2).transpose(1, 2)
        return self.backbone_proj(pooled)

    def encode(self, crops: torch.Tensor, scalars: torch.Tensor) -> CropFeatures:
        levels = [self.stem(crops)]
        for stage in self.stages:
            levels.append(stage(levels[-1]))
        top = self.to_tokens(levels[-1])
        tokens = top.flatten(2).transpose(1, 2) + self.scalar_proj(scalars)[:, None, :]
        if self.backbone is not None:
            tokens = tokens + self._backbone_tokens(crops)
        pixels = self.top(top)
        for level, lateral in zip(reversed(levels[:-1]), reversed(self.laterals)):
            pixels = F.interpolate(pixels, size=level.shape[-2:], mode="bilinear", align_corners=False) + lateral(level)
        pixels = self.smooth(pixels)
        fine = None
        if self.config.fine_dim:
            up = F.interpolate(self.fine_lateral(pixels), size=crops.shape[-2:], mode="bilinear", align_corners=False)
            fine = self.fine_merge(torch.cat([self.fine_stem(crops), up], dim=1))
        return CropFeatures(tokens=tokens, pixels=pixels, fine=fine)

    def decode(self, features: CropFeatures, crop_index: torch.Tensor, text: torch.Tensor,
               masks_for: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Mask logits (Q, S, S), or (Q, S/2, S/2) without a fine level, and presence logits (Q,) for phrase q
        asked of crop ``crop_index[q]``.

        ``masks_for`` (bool, Q) limits the masks to those pairs (training asks many phrases only for presence).
        """
        image = features.tokens[crop_index]
        prompt = self.text_proj(text)[:, None, :]
        q = prompt.shape[0]
        tokens = torch.cat([self.mask_token.expand(q, -1, -1) + prompt, self.presence_token.expand(q, -1, -1) + prompt,
                            prompt], dim=1)
        pos = self.image_pos.expand(q, -1, -1)
        # The decoder's sequences are tiny (3 tokens, 36 image tokens) and its batch large (every phrase of every
        # crop); on a CPU the flash kernel's per-sequence overhead dominates there and plain matrix products are
        # faster (a 44-minute training run fitted 4% more steps, model card), with the same results to rounding.
        with sdpa_kernel(SDPBackend.MATH) if image.device.type == "cpu" else nullcontext():
            for layer in self.layers:
                tokens, image = layer(tokens, image, pos)
        presence = self.presence_head(tokens[:, 1])[:, 0]
        if masks_for is not None:
            crop_index, image, tokens = crop_index[masks_for], image[masks_for], tokens[masks_for]
        classifier = self.hyper(tokens[:, 0])
        # The attended image tokens refine the pyramid's pixels (query-specific, at the coarse grid). Upsampling
        # and the classifier are both linear, so the refinement is classified on the grid and upsampled after.
        coarse = self.image_to_pixels(image).transpose(1, 2).reshape(len(crop_index), -1, self.grid, self.grid)
        coarse_masks = torch.einsum("qchw,qc->qhw", coarse, classifier)[:, None]
        pixels = features.pixels
        masks = _per_crop_product(pixels, crop_index, classifier) + F.interpolate(
            coarse_masks, size=pixels.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
        if features.fine is not None:
            fine = features.fine
            masks = F.interpolate(masks[:, None], size=fine.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
            masks = masks + _per_crop_product(fine, crop_index, self.fine_hyper(tokens[:, 0]))
        return masks, presence

    def forward(self, crops: torch.Tensor, scalars: torch.Tensor, crop_index: torch.Tensor,
                text: torch.Tensor, masks_for: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        return self.decode(self.encode(crops, scalars), crop_index, text, masks_for)


def _per_crop_product(features: torch.Tensor, crop_index: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """(Q, H, W): query q's weights (Q, C) dotted with its crop's features (B, C, H, W) at every pixel.

    One matrix product per crop instead of a (Q, C, H, W) copy of the features: the copy and its
    scatter-add backward took more training time than the encoder's convolutions.
    """
    b, c, h, w = features.shape
    per_crop = features.reshape(b, c, h * w).unbind(0)  # one backward stack, not a zero-filled copy per crop
    order = torch.argsort(crop_index, stable=True)
    crops, counts = torch.unique_consecutive(crop_index[order], return_counts=True)
    chunks = torch.split(weights[order], counts.tolist())
    products = [chunk @ per_crop[crop] for crop, chunk in zip(crops.tolist(), chunks)]
    out = torch.cat(products)[torch.argsort(order)]
    return out.reshape(-1, h, w)


def _frozen_dinov2(source: str) -> nn.Module:
    """A transformers Dinov2Model from a local folder or hub id, frozen (PISA keeps its backbone frozen too)."""
    from transformers import Dinov2Model

    from partseg_ros.backends.checkpoints import resolve_checkpoint

    folder = resolve_checkpoint(source, what="DINOv2 backbone of the pisa_rgbd grounder",
                                parameter="backend_options.dinov2 (or the model folder's config.json)")
    model = Dinov2Model.from_pretrained(str(folder)).eval()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    return model
