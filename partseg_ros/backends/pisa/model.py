"""PISA (InstructPart, section 3.3): LISA's <SEG>-token design on a frozen DINOv2 backbone.

Pipeline: a frozen DINOv2 encodes the image; patch tokens from several
intermediate layers are fused by linear layers (multi-level features carry
part-level correspondence); a causal language model reads the instruction
and the last-layer hidden state at a trailing segmentation slot <SEG> is
projected by an MLP into a prompt token; a SAM-style decoder (two-way
attention between prompt/output tokens and image features) predicts the mask
and its quality, upsampling by alternating transposed convolution and
interpolation. Only the head (fusion, projector, <SEG> embedding, decoder)
is trained; backbone and language model stay frozen.

The <SEG> slot's input embedding is a head parameter injected at the end of
the prompt instead of a new vocabulary entry, so the language model and its
tokenizer load unchanged and every learned weight lives in the head file.

One deliberate difference from LISA: LISA's LLaVA also reads CLIP image
tokens, while this language model reads only the instruction. The image
reaches the mask through the decoder's cross-attention on DINOv2 features,
and the <SEG> state can be cached per instruction across frames.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

HEAD_WEIGHTS = "pisa_head.safetensors"
HEAD_CONFIG = "pisa_config.json"

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def default_feature_layers(num_layers: int, levels: int = 4) -> tuple[int, ...]:
    """Evenly spaced layers ending at the last one, e.g. 24 layers -> (6, 12, 18, 24)."""
    levels = max(1, min(levels, num_layers))
    return tuple(sorted({round(num_layers * (i + 1) / levels) for i in range(levels)}))


@dataclass
class PisaHeadConfig:
    """Shapes of the trainable head and how it plugs into backbone and language model."""

    backbone_hidden_size: int
    backbone_patch_size: int
    feature_layers: tuple[int, ...]
    lm_hidden_size: int
    image_size: int = 518
    decoder_dim: int = 256
    decoder_depth: int = 2
    decoder_heads: int = 8
    decoder_mlp_dim: int = 2048
    upsampling: tuple[str, ...] = ("tconv", "upsample", "tconv", "upsample")
    prompt_template: str = "USER: {instruction} Please output the segmentation mask. ASSISTANT: Sure, it is"
    seg_token: str = "<SEG>"
    image_mean: tuple[float, float, float] = IMAGENET_MEAN
    image_std: tuple[float, float, float] = IMAGENET_STD
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.feature_layers = tuple(int(i) for i in self.feature_layers)
        self.upsampling = tuple(self.upsampling)
        self.image_mean = tuple(float(v) for v in self.image_mean)
        self.image_std = tuple(float(v) for v in self.image_std)
        if self.image_size % self.backbone_patch_size:
            raise ValueError(f"image_size {self.image_size} must be a multiple of the patch size "
                             f"{self.backbone_patch_size}")
        bad = [s for s in self.upsampling if s not in ("tconv", "upsample")]
        if bad:
            raise ValueError(f"upsampling stages must be 'tconv' or 'upsample', got {bad}")
        if self.decoder_dim % self.decoder_heads:
            raise ValueError("decoder_dim must be divisible by decoder_heads")
        if "{instruction}" not in self.prompt_template:
            raise ValueError("prompt_template must contain '{instruction}'")

    @classmethod
    def for_models(cls, backbone_config, lm_config, levels: int = 4, **overrides) -> "PisaHeadConfig":
        """Head matching a DINOv2 config and a causal-LM config."""
        return cls(
            backbone_hidden_size=backbone_config.hidden_size,
            backbone_patch_size=backbone_config.patch_size,
            feature_layers=default_feature_layers(backbone_config.num_hidden_layers, levels),
            lm_hidden_size=lm_config.hidden_size,
            **overrides,
        )

    def save(self, directory: Path) -> None:
        (Path(directory) / HEAD_CONFIG).write_text(json.dumps(asdict(self), indent=2))

    @classmethod
    def load(cls, directory: Path) -> "PisaHeadConfig":
        return cls(**json.loads((Path(directory) / HEAD_CONFIG).read_text()))


class MultiLevelFusion(nn.Module):
    """Normalise and project each chosen DINOv2 layer, then fuse the levels with one linear layer."""

    def __init__(self, in_dim: int, levels: int, out_dim: int) -> None:
        super().__init__()
        self.level_proj = nn.ModuleList(nn.Sequential(nn.LayerNorm(in_dim), nn.Linear(in_dim, out_dim))
                                        for _ in range(levels))
        self.fuse = nn.Linear(levels * out_dim, out_dim)

    def forward(self, levels: Sequence[torch.Tensor], grid: tuple[int, int]) -> torch.Tensor:
        projected = [proj(tokens) for proj, tokens in zip(self.level_proj, levels)]
        fused = self.fuse(torch.cat(projected, dim=-1))  # (B, N, D)
        b, n, d = fused.shape
        return fused.transpose(1, 2).reshape(b, d, grid[0], grid[1])


class SegTokenProjector(nn.Module):
    """LISA's MLP from the language model's hidden size to the decoder's prompt space."""

    def __init__(self, lm_dim: int, out_dim: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(lm_dim, lm_dim), nn.ReLU(inplace=True), nn.Linear(lm_dim, out_dim))

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.net(hidden)


class FourierPositionEncoding(nn.Module):
    """Random Fourier features of normalised (x, y), the position code SAM's decoder uses."""

    def __init__(self, dim: int, scale: float = 1.0) -> None:
        super().__init__()
        self.register_buffer("gaussian", scale * torch.randn(2, dim // 2))

    def forward(self, height: int, width: int) -> torch.Tensor:
        device, dtype = self.gaussian.device, self.gaussian.dtype
        ys = (torch.arange(height, device=device, dtype=dtype) + 0.5) / height
        xs = (torch.arange(width, device=device, dtype=dtype) + 0.5) / width
        coords = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), dim=-1)  # (H, W, 2)
        proj = 2 * math.pi * (2 * coords - 1) @ self.gaussian
        return torch.cat([proj.sin(), proj.cos()], dim=-1).permute(2, 0, 1)  # (D, H, W)


class _Mlp(nn.Module):
    def __init__(self, dims: Sequence[int], act: type[nn.Module] = nn.ReLU) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for i in range(len(dims) - 1):
            layers.append(nn.Linear(dims[i], dims[i + 1]))
            if i < len(dims) - 2:
                layers.append(act())
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class TwoWayBlock(nn.Module):
    """Tokens attend to themselves, tokens attend to the image, then the image attends to the tokens."""

    def __init__(self, dim: int, heads: int, mlp_dim: int, add_pe_to_first_self_attn: bool) -> None:
        super().__init__()
        self.add_pe = add_pe_to_first_self_attn
        self.self_attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.cross_token_to_image = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.mlp = _Mlp([dim, mlp_dim, dim])
        self.cross_image_to_token = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.norms = nn.ModuleList(nn.LayerNorm(dim) for _ in range(4))

    def forward(self, tokens, image, token_pe, image_pe):
        q = tokens + token_pe if self.add_pe else tokens
        tokens = self.norms[0](tokens + self.self_attn(q, q, tokens, need_weights=False)[0])
        q, k = tokens + token_pe, image + image_pe
        tokens = self.norms[1](tokens + self.cross_token_to_image(q, k, image, need_weights=False)[0])
        tokens = self.norms[2](tokens + self.mlp(tokens))
        q, k = tokens + token_pe, image + image_pe
        image = self.norms[3](image + self.cross_image_to_token(k, q, tokens, need_weights=False)[0])
        return tokens, image


class LayerNorm2d(nn.Module):
    """LayerNorm over channels of a (B, C, H, W) map."""

    def __init__(self, channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(1, keepdim=True)
        var = (x - mean).pow(2).mean(1, keepdim=True)
        x = (x - mean) / torch.sqrt(var + self.eps)
        return x * self.weight[:, None, None] + self.bias[:, None, None]


def _upsampling_stage(kind: str, in_ch: int, out_ch: int) -> nn.Module:
    if kind == "tconv":
        step: nn.Module = nn.ConvTranspose2d(in_ch, out_ch, kernel_size=2, stride=2)
        return nn.Sequential(step, LayerNorm2d(out_ch), nn.GELU())
    return nn.Sequential(
        nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
        nn.Conv2d(in_ch, out_ch, kernel_size=3, padding=1),
        LayerNorm2d(out_ch),
        nn.GELU(),
    )


class PartMaskDecoder(nn.Module):
    """SAM-style decoder: prompt + output tokens <-> image features, then an upsampling hypernetwork."""

    def __init__(self, dim: int, depth: int, heads: int, mlp_dim: int, upsampling: Sequence[str]) -> None:
        super().__init__()
        self.iou_token = nn.Parameter(torch.randn(1, 1, dim) * 0.02)
        self.mask_token = nn.Parameter(torch.randn(1, 1, dim) * 0.02)
        self.position = FourierPositionEncoding(dim)
        self.blocks = nn.ModuleList(TwoWayBlock(dim, heads, mlp_dim, add_pe_to_first_self_attn=i > 0)
                                    for i in range(depth))
        self.final_attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.final_norm = nn.LayerNorm(dim)
        channels = [dim]
        for _ in upsampling:
            channels.append(max(channels[-1] // 2, 4))
        self.upsample = nn.Sequential(*(_upsampling_stage(k, channels[i], channels[i + 1])
                                        for i, k in enumerate(upsampling)))
        self.hypernet = _Mlp([dim, dim, dim, channels[-1]])
        self.iou_head = _Mlp([dim, dim, dim, 1])

    @property
    def upscale_factor(self) -> int:
        return 2 ** len(self.upsample)

    def forward(self, image: torch.Tensor, prompt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """image (B, D, h, w), prompt (B, P, D) -> mask logits (B, h*f, w*f) and IoU logits (B,)."""
        b, d, h, w = image.shape
        out_tokens = torch.cat([self.iou_token, self.mask_token], dim=1).expand(b, -1, -1)
        tokens = torch.cat([out_tokens, prompt], dim=1)
        token_pe = tokens
        image_pe = self.position(h, w).to(image.dtype).flatten(1).t().unsqueeze(0)  # (1, hw, D)
        src = image.flatten(2).transpose(1, 2)
        queries = tokens
        for block in self.blocks:
            queries, src = block(queries, src, token_pe, image_pe)
        attn = self.final_attn(queries + token_pe, src + image_pe, src, need_weights=False)[0]
        queries = self.final_norm(queries + attn)
        iou_logit = self.iou_head(queries[:, 0]).squeeze(-1)
        src = src.transpose(1, 2).reshape(b, d, h, w)
        upscaled = self.upsample(src)  # (B, C, h*f, w*f)
        weights = self.hypernet(queries[:, 1])  # (B, C)
        logits = torch.einsum("bc,bchw->bhw", weights, upscaled)
        return logits, iou_logit


class PisaHead(nn.Module):
    """Every trainable PISA weight: fusion, <SEG> embedding, projector and mask decoder."""

    def __init__(self, config: PisaHeadConfig) -> None:
        super().__init__()
        self.config = config
        self.fusion = MultiLevelFusion(config.backbone_hidden_size, len(config.feature_layers), config.decoder_dim)
        self.seg_embedding = nn.Parameter(torch.randn(config.lm_hidden_size) * 0.02)
        self.projector = SegTokenProjector(config.lm_hidden_size, config.decoder_dim)
        self.decoder = PartMaskDecoder(
            config.decoder_dim, config.decoder_depth, config.decoder_heads, config.decoder_mlp_dim, config.upsampling
        )

    def save(self, directory: str | Path) -> Path:
        from safetensors.torch import save_file

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.config.save(directory)
        state = {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in self.state_dict().items()}
        save_file(state, str(directory / HEAD_WEIGHTS), metadata={"format": "pt", "model": "pisa-head"})
        return directory

    @classmethod
    def load(cls, directory: str | Path) -> "PisaHead":
        from safetensors.torch import load_file

        directory = Path(directory)
        head = cls(PisaHeadConfig.load(directory))
        head.load_state_dict(load_file(str(directory / HEAD_WEIGHTS)), strict=True)
        return head


@dataclass
class PreparedImage:
    """A network-ready image and where the real pixels sit inside the padded square."""

    pixel_values: torch.Tensor  # (1, 3, S, S)
    valid_hw: tuple[int, int]
    input_hw: tuple[int, int]


class PisaModel(nn.Module):
    """Frozen DINOv2 + frozen causal LM + trainable PISA head."""

    def __init__(self, backbone: nn.Module, language_model: nn.Module, tokenizer, head: PisaHead) -> None:
        super().__init__()
        cfg = head.config
        if backbone.config.hidden_size != cfg.backbone_hidden_size:
            raise ValueError(
                f"PISA head expects a backbone of width {cfg.backbone_hidden_size}, got {backbone.config.hidden_size}"
            )
        if language_model.config.hidden_size != cfg.lm_hidden_size:
            raise ValueError(
                f"PISA head expects a language model of width {cfg.lm_hidden_size}, "
                f"got {language_model.config.hidden_size}"
            )
        if max(cfg.feature_layers) > backbone.config.num_hidden_layers:
            raise ValueError(f"feature layers {cfg.feature_layers} exceed the backbone's "
                             f"{backbone.config.num_hidden_layers} layers")
        self.backbone = backbone
        self.language_model = language_model
        self.tokenizer = tokenizer
        self.head = head
        for module in (self.backbone, self.language_model):
            module.requires_grad_(False)
            module.eval()

    def train(self, mode: bool = True) -> "PisaModel":
        """Only the head ever trains; the frozen parts stay in eval mode (no dropout)."""
        self.head.train(mode)
        self.backbone.eval()
        self.language_model.eval()
        self.training = mode
        return self

    @property
    def config(self) -> PisaHeadConfig:
        return self.head.config

    # ---- image side ---------------------------------------------------------------------------
    def prepare_image(self, rgb: np.ndarray, image_size: Optional[int] = None) -> PreparedImage:
        """Resize the longest side to S (a patch multiple), pad bottom/right, normalise: aspect is kept."""
        size = image_size or self.config.image_size
        patch = self.config.backbone_patch_size
        size = max(patch, size // patch * patch)
        h, w = rgb.shape[:2]
        scale = size / max(h, w)
        nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
        image = torch.from_numpy(np.array(rgb, dtype=np.uint8, copy=True)).permute(2, 0, 1)[None].float() / 255.0
        image = F.interpolate(image, size=(nh, nw), mode="bilinear", align_corners=False, antialias=True)
        mean = torch.tensor(self.config.image_mean).view(1, 3, 1, 1)
        std = torch.tensor(self.config.image_std).view(1, 3, 1, 1)
        image = (image - mean) / std
        image = F.pad(image, (0, size - nw, 0, size - nh))
        return PreparedImage(image, (nh, nw), (h, w))

    def encode_image(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) -> fused multi-level features (B, D, S/p, S/p)."""
        param = next(self.backbone.parameters())
        out = self.backbone(pixel_values=pixel_values.to(param.device, param.dtype), output_hidden_states=True)
        patch = self.config.backbone_patch_size
        grid = (pixel_values.shape[-2] // patch, pixel_values.shape[-1] // patch)
        skip = out.hidden_states[0].shape[1] - grid[0] * grid[1]  # CLS (+ register) tokens
        levels = [out.hidden_states[i][:, skip:].to(self._head_dtype) for i in self.config.feature_layers]
        return self.head.fusion(levels, grid)

    # ---- language side ------------------------------------------------------------------------
    def encode_instruction(self, instructions: Sequence[str]) -> torch.Tensor:
        """Last-layer hidden state of the language model at the trailing <SEG> slot, (B, H_lm)."""
        prompts = [self.config.prompt_template.format(instruction=text.strip()) for text in instructions]
        ids = [self.tokenizer(p, add_special_tokens=True)["input_ids"] for p in prompts]
        embed = self.language_model.get_input_embeddings()
        device, dtype = embed.weight.device, embed.weight.dtype
        longest = max(len(seq) for seq in ids) + 1
        batch = torch.zeros(len(ids), longest, embed.embedding_dim, device=device, dtype=dtype)
        attention = torch.zeros(len(ids), longest, dtype=torch.long, device=device)
        seg = self.head.seg_embedding.to(device, dtype)
        for i, seq in enumerate(ids):
            n = len(seq)
            batch[i, :n] = embed(torch.tensor(seq, device=device))
            batch[i, n] = seg
            attention[i, : n + 1] = 1
        positions = (attention.cumsum(-1) - 1).clamp(min=0)
        out = self.language_model.base_model(inputs_embeds=batch, attention_mask=attention, position_ids=positions)
        seg_index = torch.tensor([len(seq) for seq in ids], device=device)
        hidden = out.last_hidden_state[torch.arange(len(ids), device=device), seg_index]
        return hidden.to(self._head_dtype)

    # ---- decoding -----------------------------------------------------------------------------
    @property
    def _head_dtype(self) -> torch.dtype:
        return self.head.seg_embedding.dtype

    def decode(self, image_features: torch.Tensor, seg_hidden: torch.Tensor,
               out_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Mask logits at the padded input square (B, S, S) and IoU logits (B,)."""
        prompt = self.head.projector(seg_hidden).unsqueeze(1)
        if image_features.shape[0] != prompt.shape[0]:
            image_features = image_features.expand(prompt.shape[0], -1, -1, -1)
        logits, iou = self.head.decoder(image_features, prompt)
        logits = F.interpolate(logits[:, None].float(), size=(out_size, out_size), mode="bilinear",
                               align_corners=False)[:, 0]
        return logits, iou.float()

    def forward(self, pixel_values: torch.Tensor, instructions: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Training forward: gradients reach the head, including the <SEG> embedding through the frozen LM."""
        seg_hidden = self.encode_instruction(instructions)
        features = self.encode_image(pixel_values)
        return self.decode(features, seg_hidden, pixel_values.shape[-1])


def logits_to_input_resolution(logits: torch.Tensor, prepared: PreparedImage) -> torch.Tensor:
    """Crop the padding off (S, S) logits and resize to the original (H, W)."""
    nh, nw = prepared.valid_hw
    cropped = logits[..., :nh, :nw]
    if cropped.dim() == 2:
        cropped = cropped[None, None]
    elif cropped.dim() == 3:
        cropped = cropped[:, None]
    return F.interpolate(cropped.float(), size=prepared.input_hw, mode="bilinear", align_corners=False)[:, 0]
