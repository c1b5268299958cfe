"""PISA training: losses, InstructPart-layout data, a few optimiser steps, and the CLI's checkpoint."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch
from PIL import Image

import tiny_models
from partseg_ros.backends.pisa.backend import PisaBackend
from partseg_ros.backends.pisa.data import InstructPartDataset, PartSample, build_dataset, instructpart_mask_name
from partseg_ros.backends.pisa.train import Batch, build_model, dice_loss, main, pisa_loss, train_head
from partseg_ros.types import GroundingRequest


@pytest.fixture(scope="module", autouse=True)
def _single_thread():
    with tiny_models.torch_threads(1):
        yield


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("pisa_train")
    return tiny_models.save_tiny_dinov2(root / "dinov2"), tiny_models.save_tiny_llama(root / "llama")


def _scene(seed: int, h: int = 40, w: int = 52) -> PartSample:
    """A grey 'object' rectangle with a coloured 'handle' block on it; the handle is the target."""
    rng = np.random.default_rng(seed)
    rgb = rng.integers(0, 60, (h, w, 3), dtype=np.uint8)
    y0, x0 = rng.integers(4, 12), rng.integers(4, 14)
    rgb[y0 : y0 + 22, x0 : x0 + 26] = 150
    mask = np.zeros((h, w), bool)
    hy, hx = y0 + rng.integers(2, 10), x0 + 26
    mask[hy : hy + 8, hx : min(w, hx + 8)] = True
    rgb[mask] = (220, 40, 40)
    return PartSample(rgb, "pick up the mug by its handle", mask, "mug", "handle")


def test_losses_are_minimal_for_the_right_mask():
    target = torch.zeros(1, 16, 16)
    target[0, 4:8, 4:8] = 1
    valid = torch.ones_like(target)
    good, bad = (target * 20 - 10), (-target * 20 + 10)
    assert dice_loss(good, target, valid) < 0.05 < 0.9 < dice_loss(bad, target, valid)
    batch = Batch(torch.zeros(1, 3, 16, 16), target, valid, ["x"])
    perfect = pisa_loss(good, torch.tensor([10.0]), batch)
    wrong = pisa_loss(bad, torch.tensor([10.0]), batch)
    assert perfect["loss"] < wrong["loss"] and perfect["iou"] < 1e-3 < wrong["iou"]
    padded = valid.clone()
    padded[0, :, 12:] = 0  # pixels outside the real image never count
    assert torch.isclose(dice_loss(good + 100 * (1 - padded), target, padded), dice_loss(good, target, padded))


def test_a_few_steps_reduce_the_loss(model_dirs):
    torch.manual_seed(0)
    model = build_model(str(model_dirs[0]), str(model_dirs[1]), image_size=56)
    frozen_before = {k: v.clone() for k, v in model.backbone.state_dict().items()}
    samples = [_scene(i) for i in range(4)]

    def batches():
        while True:
            yield samples

    losses = train_head(model, batches(), steps=12, lr=2e-3, image_size=56, log_every=0)
    assert all(np.isfinite(losses))
    assert np.mean(losses[-3:]) < 0.8 * losses[0], losses
    for name, tensor in model.backbone.state_dict().items():
        assert torch.equal(tensor, frozen_before[name]), f"frozen backbone changed: {name}"
    assert model.head.seg_embedding.grad is not None  # <SEG> embedding trains through the frozen LM


def _write_instructpart(root, count: int = 2):
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    entries = []
    for i in range(count):
        sample = _scene(100 + i)
        name = f"img_{i:03d}.jpg"
        Image.fromarray(sample.rgb).save(root / "images" / name, quality=95)
        Image.fromarray(sample.mask.astype(np.uint8) * 255).save(
            root / "masks" / instructpart_mask_name(name, "wine glass", "stem"))
        entries.append({"image_path": name, "part_list": [{
            "object": "wine glass", "part": "stem", "affordance": "hold", "action": "drink",
            "instruction": ["If I want to drink, where do I hold it?", "Where should I hold it to drink?",
                            "Where is the stem of the wine glass?", "Where is the stem that can be held?",
                            "stem of the wine glass", "stem of the wine glass that can be held"],
        }]})
    path = root / "train.json"
    path.write_text(json.dumps(entries))
    return path


def test_instructpart_layout_dataset(tmp_path):
    path = _write_instructpart(tmp_path)
    assert (instructpart_mask_name("a b/photo 1.jpg", "wine glass", "scroll wheel")
            == "photo 1-wine_glass-scroll_wheel.png")
    data = InstructPartDataset(path)
    assert len(data) == 12  # 2 images x 6 instructions
    sample = data[4]
    assert sample.instruction == "stem of the wine glass" and sample.part_label == "stem"
    assert sample.mask.shape == sample.rgb.shape[:2] and sample.mask.sum() > 0
    assert len(InstructPartDataset(path, instruction_indices=[0, 1])) == 4
    assert len(build_dataset([path, path])) == 24
    (tmp_path / "masks" / instructpart_mask_name("img_001.jpg", "wine glass", "stem")).unlink()
    with pytest.raises(FileNotFoundError, match="img_001-wine_glass-stem.png"):
        InstructPartDataset(path)


def test_benchmark_bags_and_instructpart_files_feed_one_dataset(tmp_path):
    from partseg_ros.bags.instructpart_converter import convert

    path = _write_instructpart(tmp_path / "data")
    bag = tmp_path / "bench_bag"
    convert(path, bag, instruction_indices=(0, 4))
    from_json = InstructPartDataset(path, instruction_indices=[0, 4])
    mixed = build_dataset([path, bag], instruction_indices=[0, 4])
    assert len(mixed) == len(from_json) + 4  # 2 frames x 2 tasks from the bag
    bag_samples = [mixed[i] for i in range(len(from_json), len(mixed))]
    by_text = {(s.instruction, s.mask.sum()) for s in bag_samples}
    assert by_text == {(s.instruction, s.mask.sum()) for s in (from_json[i] for i in range(len(from_json)))}
    assert all(s.part_label == "stem" and s.mask.shape == s.rgb.shape[:2] for s in bag_samples)


def test_training_cli_writes_a_checkpoint_the_backend_loads(model_dirs, tmp_path):
    data = _write_instructpart(tmp_path / "data")
    out = tmp_path / "ckpt"
    random.seed(0)
    code = main(["--data", str(data), "--backbone", str(model_dirs[0]), "--language-model", str(model_dirs[1]),
                 "--output", str(out), "--epochs", "0.5", "--batch-size", "3", "--image-size", "56",
                 "--instructions", "0,4", "--device", "cpu"])
    assert code == 0
    backend = PisaBackend(checkpoint=str(out), backbone=str(model_dirs[0]), language_model=str(model_dirs[1]),
                          device="cpu")
    result = backend.ground(GroundingRequest(_scene(7).rgb, "hold the wine glass"))
    assert backend.model.config.image_size == 56
    for inst in result.instances:
        assert inst.mask.shape == (40, 52)
