"""Read and write InstructSAM checkpoints in the published layout (``CircleRadon/InstructSAM-2B``).

What was verified, and how: the parameter names and config fields below were
read from the authors' code (github.com/DCDmllm/InstructSAM,
``instructsam/models/instructsam.py``, ``segmentation_decoder.py``,
``train.py``, ``constants.py``; no code copied). Their model is a
``Qwen3VLForConditionalGeneration`` whose inner ``model`` additionally holds

* ``mask_queries``            (K, D) the query bank, K = config ``max_seg_nums``;
* ``mask_hidden_fcs.0.{0,2}``  Linear-ReLU-Linear projecting slot states to SAM 3 (D -> ``out_dim``);
* ``text_hidden_fcs.0.{0,2}``  the same shape, projecting phrase token embeddings;
* ``grounding_model.model.*``  a SAM 3 detector (transformers' ``Sam3Model`` names; the
  authors' loader renames ``detector_model.`` of facebook/sam3 to this prefix) without
  the CLIP text encoder, its DETR decoder sized to K queries;

and its config.json is a Qwen3-VL config plus ``max_seg_nums``, ``out_dim``,
``seg_token_index`` ([SEG]), ``seg_start_token_index``/``seg_end_token_index``
(<|mask_start|>/<|mask_end|>), ``ref_start_token_index``/``ref_end_token_index``,
loss weights and ``mask_decoder_model`` (a path to SAM 3 on the authors' disk).

What could not be verified here: the real weight files (no hub access), so
neither the exact top-level prefixes their ``save_pretrained`` produced with
their transformers build nor the tensor shapes were checked against them. The
loader therefore also accepts the older Qwen-VL prefixes (``visual.``,
``model.layers.``) and a checkpoint without ``lm_head`` (tied embeddings), and
reports every unmatched key. The SAM 3 architecture is not in their config:
it is taken from a ``sam3_config`` entry if present (checkpoints written by
``save_instructsam_checkpoint`` have one), else from the authors'
``mask_decoder_model`` when that path is a directory here, else from
``<dir>/sam3/config.json``, else transformers' ``Sam3Config()`` defaults, which
describe facebook/sam3. The authors' SAM 3 copy drops the DETR decoder's
presence token (``model.drop_presence_token``). The tests load a tiny random
checkpoint written from the upstream key list (``test/upstream_instructsam_layout.py``,
keyed to the upstream commit), not only one written by this module.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Optional, Union

import torch
from safetensors.torch import load_file, save_file
from transformers import AutoTokenizer, Qwen3VLConfig, Sam3Config

from partseg_ros.backends.checkpoints import resolve_checkpoint
from partseg_ros.backends.instructsam.model import (
    MASK_END_TOKEN,
    MASK_START_TOKEN,
    REF_END_TOKEN,
    REF_START_TOKEN,
    SEG_TOKEN,
    InstructSamModel,
    InstructSamSettings,
)

LOG = logging.getLogger(__name__)

PUBLISHED_CHECKPOINT = "CircleRadon/InstructSAM-2B"
REQUIRED_FILES = ("config.json", "model.safetensors|model.safetensors.index.json", "tokenizer.json|vocab.json")

# our parameter prefix -> published prefix (first match wins when writing)
PREFIXES_OURS_TO_THEIRS: tuple[tuple[str, str], ...] = (
    ("vlm.model.visual.", "model.visual."),
    ("vlm.model.language_model.", "model.language_model."),
    ("vlm.lm_head.", "lm_head."),
    ("mask_queries", "model.mask_queries"),
    ("query_projector.", "model.mask_hidden_fcs.0."),
    ("phrase_projector.", "model.text_hidden_fcs.0."),
    ("sam3.", "model.grounding_model.model."),
)
# other spellings a checkpoint may use for the same tensors (tried after the canonical ones)
LEGACY_PREFIXES: tuple[tuple[str, str], ...] = (
    ("visual.", "vlm.model.visual."),
    ("model.layers.", "vlm.model.language_model.layers."),
    ("model.embed_tokens.", "vlm.model.language_model.embed_tokens."),
    ("model.norm.", "vlm.model.language_model.norm."),
    ("model.grounding_model.model.detector_model.", "sam3."),
)
# published config field -> InstructSamSettings field
CONFIG_FIELDS = {
    "max_seg_nums": "num_queries",
    "out_dim": "detector_hidden_size",
    "seg_token_index": "query_token_id",
    "seg_start_token_index": "mask_start_token_id",
    "seg_end_token_index": "mask_end_token_id",
    "ref_start_token_index": "ref_start_token_id",
    "ref_end_token_index": "ref_end_token_id",
    "bce_loss_weight": "bce_loss_weight",
    "dice_loss_weight": "dice_loss_weight",
    "cls_loss_weight": "presence_loss_weight",
}
# the authors' fallback when seg_start_token_index is absent from the config
DEFAULT_MASK_START_TOKEN_ID = 151671
TOKEN_FOR_FIELD = {
    "query_token_id": SEG_TOKEN,
    "mask_start_token_id": MASK_START_TOKEN,
    "mask_end_token_id": MASK_END_TOKEN,
    "ref_start_token_id": REF_START_TOKEN,
    "ref_end_token_id": REF_END_TOKEN,
}


def to_published_key(key: str) -> str:
    for ours, theirs in PREFIXES_OURS_TO_THEIRS:
        if key == ours or key.startswith(ours):
            return theirs + key[len(ours):]
    raise KeyError(f"parameter {key!r} has no place in the published layout")


def from_published_key(key: str) -> Optional[str]:
    """Our parameter name for a checkpoint key, or None if the key is not part of InstructSAM."""
    for ours, theirs in PREFIXES_OURS_TO_THEIRS:
        if key == theirs or key.startswith(theirs):
            if key.startswith("model.grounding_model.model.detector_model."):
                break
            return ours + key[len(theirs):]
    for legacy, ours in LEGACY_PREFIXES:
        if key.startswith(legacy):
            return ours + key[len(legacy):]
    return None


def settings_from_config(config: dict, tokenizer=None) -> InstructSamSettings:
    """InstructSAM settings from a published config.json; token ids are cross-checked with the tokenizer."""
    values: dict = {}
    for theirs, ours in CONFIG_FIELDS.items():
        if theirs in config and config[theirs] is not None:
            values[ours] = config[theirs]
    values.setdefault("mask_start_token_id", DEFAULT_MASK_START_TOKEN_ID)
    extra = config.get("partseg_instructsam", {})
    settings = InstructSamSettings(**values, **{k: v for k, v in extra.items() if k not in values})
    if tokenizer is not None:
        vocab = tokenizer.get_vocab()
        for name, token in TOKEN_FOR_FIELD.items():
            if token not in vocab:
                raise ValueError(f"tokenizer has no {token!r}, which InstructSAM needs")
            if getattr(settings, name) < 0:
                setattr(settings, name, vocab[token])
            elif getattr(settings, name) != vocab[token]:
                raise ValueError(
                    f"config says {name}={getattr(settings, name)} but the tokenizer maps {token!r} to {vocab[token]}"
                )
    return settings


def published_config(model: InstructSamModel) -> dict:
    """config.json content: the Qwen3-VL config with the published InstructSAM fields added."""
    data = model.vlm.config.to_dict()
    settings = model.settings
    for theirs, ours in CONFIG_FIELDS.items():
        data[theirs] = getattr(settings, ours)
    data["seg_encoder"] = data["seg_decoder"] = "sam3"
    data["architectures"] = ["InstructSAMForConditionalGeneration"]
    sam3 = model.sam3.config.to_dict()
    sam3.pop("transformers_version", None)
    data["sam3_config"] = sam3
    data["partseg_instructsam"] = {"max_phrase_tokens": settings.max_phrase_tokens}
    return data


def published_state_dict(model: InstructSamModel) -> dict[str, torch.Tensor]:
    """Our parameters under their published names (tied lm_head left out, as transformers does)."""
    state = {}
    tied = model.vlm.config.tie_word_embeddings
    for key, tensor in model.state_dict().items():
        if tied and key == "vlm.lm_head.weight":
            continue
        state[to_published_key(key)] = tensor.detach().contiguous().cpu()
    return state


def save_instructsam_checkpoint(
    model: InstructSamModel,
    directory: Union[str, Path],
    tokenizer=None,
    image_processor_settings: Optional[dict] = None,
) -> Path:
    """Write config.json, model.safetensors (published key names), tokenizer and image-processor config."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.json").write_text(json.dumps(published_config(model), indent=2))
    save_file(published_state_dict(model), str(directory / "model.safetensors"), metadata={"format": "pt"})
    if tokenizer is not None:
        tokenizer.save_pretrained(str(directory))
    if image_processor_settings is not None:
        data = {"image_processor_type": "Qwen2VLImageProcessor", **image_processor_settings}
        (directory / "preprocessor_config.json").write_text(json.dumps(data, indent=2))
    return directory


def _read_weights(directory: Path) -> dict[str, torch.Tensor]:
    index = directory / "model.safetensors.index.json"
    if index.is_file():
        shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        state: dict[str, torch.Tensor] = {}
        for shard in shards:
            state.update(load_file(str(directory / shard)))
        return state
    return load_file(str(directory / "model.safetensors"))


def _mask_decoder_dir(config: dict, directory: Path) -> Optional[Path]:
    """The authors' ``mask_decoder_model`` (a SAM 3 checkpoint path), if it is a directory here."""
    source = config.get("mask_decoder_model")
    if not source:
        return None
    for candidate in (Path(str(source)).expanduser(), directory / str(source)):
        if (candidate / "config.json").is_file():
            return candidate
    return None


def _sam3_config(config: dict, directory: Path, num_queries: int) -> Sam3Config:
    mask_decoder_dir = _mask_decoder_dir(config, directory)
    if "sam3_config" in config:
        sam3 = Sam3Config.from_dict(dict(config["sam3_config"]))
    elif mask_decoder_dir is not None:
        sam3 = Sam3Config.from_pretrained(str(mask_decoder_dir))
    elif (directory / "sam3" / "config.json").is_file():
        sam3 = Sam3Config.from_pretrained(str(directory / "sam3"))
    else:
        LOG.info("no SAM 3 config in %s; using transformers' Sam3Config() (facebook/sam3 architecture)", directory)
        sam3 = Sam3Config()
    if getattr(sam3, "detector_config", None) is not None:  # a sam3_video config
        sam3 = sam3.detector_config
    sam3.detr_decoder_config.num_queries = num_queries
    return sam3


def load_instructsam_checkpoint(
    checkpoint: Union[str, Path] = PUBLISHED_CHECKPOINT,
    device: Union[str, torch.device] = "cpu",
    dtype: torch.dtype = torch.float32,
    parameter: str = "checkpoint",
    strict: bool = True,
):
    """Build ``InstructSamModel`` from a checkpoint directory or hub id; returns (model, tokenizer, directory).

    ``strict`` raises when a model parameter has no tensor in the checkpoint or
    a checkpoint tensor has no parameter, naming them; with ``strict=False``
    those are only logged (useful to inspect a checkpoint of another build).
    """
    directory = resolve_checkpoint(
        str(checkpoint),
        what="InstructSAM",
        parameter=parameter,
        required_files=REQUIRED_FILES,
        how_to=f"the published weights are {PUBLISHED_CHECKPOINT} (about 5 GB).",
    )
    config = json.loads((directory / "config.json").read_text())
    tokenizer = AutoTokenizer.from_pretrained(str(directory))
    settings = settings_from_config(config, tokenizer)
    ours_only = ("sam3_config", "partseg_instructsam")
    vlm_fields = {k: v for k, v in config.items() if k not in CONFIG_FIELDS and k not in ours_only}
    vlm_config = Qwen3VLConfig.from_dict(vlm_fields)
    sam3_config = _sam3_config(config, directory, settings.num_queries)
    # Built with ordinary initialisation: several buffers (rotary frequencies, ViT position grids) are
    # set up by the constructors and init hooks and are not in checkpoints, so a meta-device build would lose them.
    with torch.device(device):
        model = InstructSamModel(vlm_config, sam3_config, settings)
    loaded = {}
    unexpected = []
    for key, tensor in _read_weights(directory).items():
        ours = from_published_key(key)
        (unexpected.append(key) if ours is None else loaded.__setitem__(ours, tensor))
    own = model.state_dict()
    if vlm_config.tie_word_embeddings:
        loaded.pop("vlm.lm_head.weight", None)
    unexpected += [k for k in loaded if k not in own]
    # buffers are rebuilt by the constructors, so only parameters count as missing
    missing = [k for k, _ in model.named_parameters() if k not in loaded]
    wrong_shape = [k for k in loaded if k in own and tuple(loaded[k].shape) != tuple(own[k].shape)]
    if wrong_shape:
        details = ", ".join(f"{k} {tuple(loaded[k].shape)} vs {tuple(own[k].shape)}" for k in wrong_shape[:5])
        raise ValueError(
            f"InstructSAM checkpoint {directory}: shape mismatch for {len(wrong_shape)} tensors: {details}"
        )
    if missing or unexpected:
        message = (
            f"InstructSAM checkpoint {directory}: {len(missing)} parameters missing (e.g. {missing[:5]}), "
            f"{len(unexpected)} unexpected tensors (e.g. {unexpected[:5]})"
        )
        if strict:
            raise ValueError(message)
        LOG.warning(message)
    state = {k: v for k, v in loaded.items() if k in own}
    model.load_state_dict(state, strict=False)
    model = model.to(device=device, dtype=dtype).eval()
    return model, tokenizer, directory
