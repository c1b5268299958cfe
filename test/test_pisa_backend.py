"""PISA: tiny published-architecture checkpoints saved, reloaded the way users load them, run to masks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import tiny_models
from partseg_ros.backends.base import CheckpointNotFoundError
from partseg_ros.backends.pisa.backend import PisaBackend
from partseg_ros.backends.pisa.model import (
    HEAD_CONFIG,
    HEAD_WEIGHTS,
    LayerNorm2d,
    PisaHead,
    PisaHeadConfig,
    default_feature_layers,
)
from partseg_ros.backends.registry import create_backend
from partseg_ros.types import GroundingRequest


@pytest.fixture(scope="module", autouse=True)
def _single_thread():
    with tiny_models.torch_threads(1):
        yield


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("pisa")
    backbone = tiny_models.save_tiny_dinov2(root / "dinov2")
    lm = tiny_models.save_tiny_llama(root / "llama")
    head = tiny_models.save_tiny_pisa(root / "head", backbone, lm)
    return {"checkpoint": str(head), "backbone": str(backbone), "language_model": str(lm)}


def _rgb(seed: int, h: int = 45, w: int = 70) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _backend(dirs, **kw) -> PisaBackend:
    kw.setdefault("mask_threshold", 0.5)
    return create_backend("pisa", device="cpu", **dirs, **kw)


def test_architecture_follows_the_paper(dirs):
    head = PisaHead.load(dirs["checkpoint"])
    assert head.config.feature_layers == (1, 2, 3, 4)  # several intermediate DINOv2 layers, fused linearly
    assert len(head.fusion.level_proj) == 4 and isinstance(head.fusion.fuse, torch.nn.Linear)
    kinds = [type(stage[0]).__name__ for stage in head.decoder.upsample]
    assert kinds == ["ConvTranspose2d", "Upsample", "ConvTranspose2d", "Upsample"]  # alternating
    assert all(isinstance(stage[-2], LayerNorm2d) for stage in head.decoder.upsample)
    assert default_feature_layers(24) == (6, 12, 18, 24) and default_feature_layers(12) == (3, 6, 9, 12)


def test_ground_returns_masks_at_input_resolution(dirs):
    backend = _backend(dirs, mask_threshold=0.5)
    result = backend.ground(GroundingRequest(_rgb(0), "pick up the mug by its handle"))
    assert backend.loaded and result.backend == "pisa"
    assert {"image_encoder", "language_model", "mask_decoder", "total"} <= set(result.timings_ms)
    assert len(result.instances) == 1  # one <SEG> token, one mask
    inst = result.instances[0]
    assert inst.mask.shape == (45, 70) and inst.mask.dtype == bool
    assert 0 < inst.mask.sum() < inst.mask.size
    assert 0.0 <= inst.score <= 1.0 and inst.box == (
        int(np.flatnonzero(inst.mask.any(0))[0]), int(np.flatnonzero(inst.mask.any(1))[0]),
        int(np.flatnonzero(inst.mask.any(0))[-1]), int(np.flatnonzero(inst.mask.any(1))[-1]))
    nothing = _backend(dirs, mask_threshold=0.99).ground(GroundingRequest(_rgb(0), "pick up the mug by its handle"))
    assert nothing.no_target and "no pixel above the mask threshold" in nothing.explanation


def test_loading_is_deterministic_and_probabilities_match_threshold(dirs):
    rgb = _rgb(3)
    runs = [_backend(dirs, mask_threshold=0.5).ground(GroundingRequest(rgb, "open the bottle cap")) for _ in range(2)]
    masks = [r.union_mask((45, 70)) for r in runs]
    assert masks[0].any() and np.array_equal(masks[0], masks[1])
    assert [i.score for i in runs[0].instances] == [i.score for i in runs[1].instances]
    lower = _backend(dirs, mask_threshold=0.3).ground(GroundingRequest(rgb, "open the bottle cap"))
    lower_mask = lower.union_mask((45, 70))
    assert not (masks[0] & ~lower_mask).any() and lower_mask.sum() >= masks[0].sum()  # thresholds nest


def test_image_embedding_and_instruction_state_are_reused_and_give_the_same_answer(dirs):
    cached = _backend(dirs, mask_threshold=0.5)
    fresh = _backend(dirs, mask_threshold=0.5, cache_size=0)
    rgb_a, rgb_b = _rgb(10), _rgb(11)
    cached.ground(GroundingRequest(rgb_a, "pick up the mug"))
    second = cached.ground(GroundingRequest(rgb_a.copy(), "grasp the knife handle"))  # same pixels, new instruction
    assert cached.image_cache.hits == 1 and "image_encoder" not in second.timings_ms
    third = cached.ground(GroundingRequest(rgb_b, "grasp the knife handle"))  # new image, same instruction
    assert cached.text_cache.hits == 1 and "language_model" not in third.timings_ms
    assert "reused cached" in second.explanation
    for result, (rgb, text) in ((second, (rgb_a, "grasp the knife handle")),
                                (third, (rgb_b, "grasp the knife handle"))):
        ref = fresh.ground(GroundingRequest(rgb, text))
        assert np.array_equal(result.union_mask((45, 70)), ref.union_mask((45, 70)))


def test_object_mask_hint_restricts_the_answer(dirs):
    hint = np.zeros((45, 70), bool)
    hint[5:25, 10:40] = True
    free = _backend(dirs, mask_threshold=0.3).ground(GroundingRequest(_rgb(4), "lift the lid"))
    result = _backend(dirs, mask_threshold=0.3).ground(GroundingRequest(_rgb(4), "lift the lid", object_mask_hint=hint))
    assert (free.union_mask((45, 70)) & ~hint).any()  # without the hint the mask spills outside it
    assert np.array_equal(result.union_mask((45, 70)), free.union_mask((45, 70)) & hint)


def test_jetson_profile_still_answers_at_input_resolution(dirs):
    backend = _backend(dirs, profile="jetson", max_input_side=32, mask_threshold=0.05)
    backend.load()
    assert backend.runtime.max_input_side == 32 and backend._input_size() == 28  # patch-multiple below the bound
    result = backend.ground(GroundingRequest(_rgb(5, 90, 140), "pick up the cup"))
    assert result.union_mask((90, 140)).shape == (90, 140)
    for inst in result.instances:
        assert inst.mask.shape == (90, 140)


def test_head_save_load_round_trip(dirs, tmp_path):
    head = PisaHead.load(dirs["checkpoint"])
    with torch.no_grad():
        head.decoder.iou_token.add_(1.0)  # make it differ from the original file
    head.save(tmp_path / "copy")
    assert (tmp_path / "copy" / HEAD_WEIGHTS).is_file() and (tmp_path / "copy" / HEAD_CONFIG).is_file()
    again = PisaHead.load(tmp_path / "copy")
    assert again.config == head.config
    for (name, a), (_, b) in zip(head.state_dict().items(), again.state_dict().items()):
        assert torch.equal(a, b), name


def test_missing_checkpoints_raise_with_guidance(dirs, tmp_path):
    with pytest.raises(CheckpointNotFoundError, match="(?s)PISA head.*pisa_config.json"):
        _backend({**dirs, "checkpoint": str(tmp_path / "absent")}).load()
    with pytest.raises(CheckpointNotFoundError,
                       match="(?s)PISA backbone \\(DINOv2\\).*hf download facebook/dinov2-large"):
        _backend({**dirs, "backbone": "facebook/dinov2-large"}).load()
    with pytest.raises(CheckpointNotFoundError, match="(?s)no checkpoint configured.*pisa.train"):
        PisaBackend(device="cpu").load()


def test_head_for_another_language_model_is_rejected(dirs, tmp_path):
    config = PisaHeadConfig.load(dirs["checkpoint"])
    config.lm_hidden_size = 64
    PisaHead(config).save(tmp_path / "wrong")
    with pytest.raises(ValueError, match="language model of width 64"):
        _backend({**dirs, "checkpoint": str(tmp_path / "wrong")}).load()


def test_invalid_options():
    with pytest.raises(ValueError):
        PisaBackend(mask_threshold=1.5)
    with pytest.raises(ValueError, match="multiple of the patch size"):
        PisaHeadConfig(backbone_hidden_size=8, backbone_patch_size=14, feature_layers=(1,), lm_hidden_size=8,
                       image_size=50)
