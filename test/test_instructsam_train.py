"""InstructSAM training: Hungarian matching, set losses, and optimisation on a generated batch."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from partseg_ros.backends.instructsam.checkpoint_layout import load_instructsam_checkpoint
from partseg_ros.backends.instructsam.train import (
    IGNORE,
    InstructSamTrainer,
    LossWeights,
    from_part_sample,
    hungarian_match,
    main,
    make_synthetic_samples,
    set_prediction_losses,
)
from partseg_ros.backends.pisa.data import PartSample
from tiny_models_instructsam import save_tiny_instructsam, single_torch_thread, tiny_instructsam, tiny_llm_images


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    with single_torch_thread():
        yield


def _square(size: int, y: int, x: int, side: int) -> torch.Tensor:
    mask = torch.zeros(size, size, dtype=torch.bool)
    mask[y : y + side, x : x + side] = True
    return mask


def test_hungarian_matching_pairs_each_target_with_the_slot_that_predicts_it():
    targets = torch.stack([_square(16, 0, 0, 6), _square(16, 9, 9, 6)])
    logits = torch.full((4, 16, 16), -6.0)
    logits[1][targets[1]] = 6.0  # slot 1 predicts target 1
    logits[3][targets[0]] = 6.0  # slot 3 predicts target 0
    presence = torch.zeros(4)
    slots, gts = hungarian_match(logits.flatten(1), presence, targets.flatten(1).float(), LossWeights())
    assert dict(zip(slots.tolist(), gts.tolist())) == {1: 1, 3: 0}
    empty_slots, empty_gts = hungarian_match(logits.flatten(1), presence, torch.zeros(0, 256), LossWeights())
    assert empty_slots.numel() == 0 and empty_gts.numel() == 0


def test_set_losses_are_low_for_a_perfect_prediction_and_penalise_spurious_slots():
    targets = torch.stack([_square(32, 2, 2, 10)])
    logits = torch.full((3, 16, 16), -8.0)
    logits[0, 1:6, 1:6] = 8.0  # the target at half resolution
    good = set_prediction_losses(logits, torch.tensor([8.0, -8.0, -8.0]), targets, LossWeights())
    bad = set_prediction_losses(logits, torch.tensor([8.0, 8.0, 8.0]), targets, LossWeights())
    assert good["dice"] < 0.05 and good["bce"] < 0.05 and good["presence"] < 0.01
    assert bad["presence"] > 5.0
    none = set_prediction_losses(logits, torch.tensor([-8.0, -8.0, -8.0]), torch.zeros(0, 32, 32, dtype=torch.bool),
                                 LossWeights())
    assert none["presence"] < 0.01 and none["bce"] == 0 and none["dice"] == 0


def test_synthetic_samples_have_consistent_masks_and_include_no_target_cases():
    samples = make_synthetic_samples(12, seed=0)
    assert any(s.masks.shape[0] == 0 for s in samples) and any(s.masks.shape[0] > 1 for s in samples)
    for s in samples:
        colour = s.phrase.split()[0]
        assert colour in s.instruction
        for mask in s.masks:
            assert mask.any() and len(np.unique(s.rgb[mask].reshape(-1, 3), axis=0)) == 1


def test_text_labels_supervise_the_answer_but_not_the_query_placeholders():
    model, tokenizer = tiny_instructsam(seed=1)
    trainer = InstructSamTrainer(model, tokenizer, llm_images=tiny_llm_images())
    batch = trainer.encode(make_synthetic_samples(2, seed=3))
    seg = model.settings.query_token_id
    for row in range(2):
        labels = batch.labels[row]
        supervised = labels[labels != IGNORE].tolist()
        assert seg not in supervised and model.settings.mask_end_token_id not in supervised
        assert model.settings.ref_end_token_id in supervised and model.settings.mask_start_token_id in supervised
        assert int((batch.input_ids[row] == seg).sum()) == model.settings.num_queries


def test_training_steps_reduce_the_loss_on_a_generated_batch():
    torch.manual_seed(0)
    model, tokenizer = tiny_instructsam(seed=2)
    frozen = {n: p.detach().clone() for n, p in model.sam3.vision_encoder.named_parameters()}
    trainer = InstructSamTrainer(model, tokenizer, llm_images=tiny_llm_images(), llm_lr=5e-3, other_lr=5e-3)
    samples = make_synthetic_samples(3, seed=1)
    history = [trainer.step(samples) for _ in range(8)]
    first, last = history[0], history[-1]
    assert last["loss"] < 0.9 * first["loss"], (first, last)
    assert last["presence"] < first["presence"] and last["bce"] < first["bce"] and last["text"] < first["text"]
    for name, param in model.sam3.vision_encoder.named_parameters():
        assert torch.equal(param, frozen[name]), f"SAM 3 image encoder must stay frozen ({name})"


def test_part_samples_become_single_instance_or_no_target_samples():
    rgb = np.zeros((20, 30, 3), dtype=np.uint8)
    mask = np.zeros((20, 30), dtype=bool)
    mask[5:9, 5:9] = True
    sample = from_part_sample(PartSample(rgb, "pour the tea", mask, object_label="teapot", part_label="spout"))
    assert sample.phrase == "spout of the teapot" and sample.masks.shape == (1, 20, 30)
    empty = from_part_sample(PartSample(rgb, "pour the tea", np.zeros((20, 30), dtype=bool), part_label="spout"))
    assert empty.masks.shape == (0, 20, 30) and empty.phrase == "spout"


def test_command_line_fine_tunes_a_checkpoint_and_writes_one_that_loads(tmp_path):
    source, original = save_tiny_instructsam(tmp_path / "source", seed=4)
    out = tmp_path / "tuned"
    assert main(["--checkpoint", str(source), "--synthetic", "3", "--steps", "2", "--batch-size", "2",
                 "--llm-lr", "1e-3", "--other-lr", "1e-3", "--device", "cpu", "--output", str(out)]) == 0
    tuned, _, _ = load_instructsam_checkpoint(str(out))
    assert not torch.equal(tuned.mask_queries, original.mask_queries)
    patch = "backbone.embeddings.patch_embeddings.projection.weight"
    assert torch.equal(tuned.sam3.vision_encoder.state_dict()[patch], original.sam3.vision_encoder.state_dict()[patch])
