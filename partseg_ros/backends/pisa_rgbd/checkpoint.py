"""The model folder: ``config.json`` (network, crop rules, text encoder, figures) + ``weights.safetensors``.

The committed model and a user's own training run are the same kind of
folder and load through the same function; a hub id works too (through
:func:`partseg_ros.backends.checkpoints.resolve_checkpoint`, offline-aware).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional, Sequence

import torch

from partseg_ros.backends.checkpoints import resolve_checkpoint
from partseg_ros.backends.pisa_rgbd.crops import CropSettings
from partseg_ros.backends.pisa_rgbd.model import GrounderConfig, RgbdPartGrounder

FORMAT = "partseg-pisa-rgbd-1"
WEIGHTS = "weights.safetensors"
TEXT_ENCODER = "sentence-transformers/all-MiniLM-L6-v2"
PACKAGED_MODEL = Path(__file__).resolve().parents[2] / "data" / "models" / "pisa_rgbd"


def save_model(folder: Path, model: RgbdPartGrounder, crops: CropSettings, record: Optional[dict] = None) -> Path:
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in model.trainable_state_dict().items()}
    save_file(state, str(folder / WEIGHTS))
    config = {"format": FORMAT, "model": model.config.to_dict(), "crops": crops.__dict__, "text_encoder": TEXT_ENCODER,
              "record": record or {}}
    (folder / "config.json").write_text(json.dumps(config, indent=1), encoding="utf-8")
    return folder


def load_model(source: Optional[str] = None, device: str | torch.device = "cpu",
               dtype: torch.dtype = torch.float32) -> tuple[RgbdPartGrounder, CropSettings, dict]:
    """(model in eval mode, crop settings, config dict) from a folder or hub id; the packaged model by default."""
    model, crops, config, _ = _load(source, device, dtype)
    return model, crops, config


def load_ensemble(source: Optional[str] = None, device: str | torch.device = "cpu",
                  dtype: torch.dtype = torch.float32, extra: Sequence[str] = ()
                  ) -> tuple[list[RgbdPartGrounder], CropSettings, dict]:
    """(models, crop settings, config dict of the first): the model of ``source``, then one per ``extra`` folder
    or hub id. They must cut crops by the same rules, as one crop batch is put to all of them."""
    model, crops, config, folder = _load(source, device, dtype)
    models = [model]
    for member_source in extra:
        member, member_crops, _, _ = _load(member_source, device, dtype)
        if member_crops != crops or member.config.in_channels != model.config.in_channels:
            raise ValueError(f"pisa_rgbd ensemble member {member_source} cuts its crops otherwise than {folder} "
                             f"({member_crops} vs {crops}); members must share the crop rules")
        models.append(member)
    return models, crops, config


def _load(source: Optional[str], device: str | torch.device,
          dtype: torch.dtype) -> tuple[RgbdPartGrounder, CropSettings, dict, Path]:
    from safetensors.torch import load_file

    folder = resolve_checkpoint(
        str(source or PACKAGED_MODEL), what="pisa_rgbd part grounder", parameter="backend_options.checkpoint",
        required_files=("config.json", WEIGHTS),
        how_to="train one with `partseg_train_part_grounder` (README, Training) or leave the option unset "
               "for the model shipped with partseg",
    )
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    if config.get("format") != FORMAT:
        raise ValueError(f"{folder} is not a pisa_rgbd model folder (format {config.get('format')!r}, "
                         f"expected {FORMAT!r})")
    model = RgbdPartGrounder(GrounderConfig.from_dict(config["model"]))
    state = load_file(str(folder / WEIGHTS))
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.startswith("backbone.")]  # the frozen backbone has its own checkpoint
    if missing or unexpected:
        raise ValueError(f"{folder / WEIGHTS} does not match its config: missing {missing[:5]}, "
                         f"unexpected {unexpected[:5]}")
    model = model.to(device=device, dtype=dtype).eval()
    return model, CropSettings(**config["crops"]), config, folder
