"""Training data for PISA: InstructPart's layout and partseg's benchmark bags as one Dataset.

InstructPart stores a JSON list of ``{image_path, part_list: [{object, part,
affordance, action, instruction: [6 strings]}]}`` with one mask per
(image, object, part) named ``{image_stem}-{object}-{part}.png`` (spaces as
underscores) and, in the released dataset, the image under the same name
(``.jpg``); ``images/{image_path}`` is the fallback (see the converter's
``find_image``). Every (image, part, instruction) triple is one sample, so the
six phrasings of a task (human, GPT-rewritten, part queries) all train.
Benchmark bags come through ``partseg_ros.bags.reader.read_benchmark``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional, Sequence

import numpy as np
from torch.utils.data import ConcatDataset, Dataset

# The InstructPart layout (file names, JSON, image and mask files) is described once, by the converter.
from partseg_ros.bags.instructpart_converter import find_image, load_entries, load_mask, load_rgb
from partseg_ros.bags.instructpart_converter import mask_filename as instructpart_mask_name


@dataclass
class PartSample:
    """One supervised example: image, instruction, target part mask (HxW bool, same size as the image)."""

    rgb: np.ndarray
    instruction: str
    mask: np.ndarray
    object_label: str = ""
    part_label: str = ""

    def __post_init__(self) -> None:
        if self.rgb.ndim != 3 or self.rgb.shape[2] != 3:
            raise ValueError(f"rgb must be HxWx3, got {self.rgb.shape}")
        if self.mask.shape != self.rgb.shape[:2]:
            raise ValueError(f"mask {self.mask.shape} does not match image {self.rgb.shape[:2]}")
        self.rgb = np.ascontiguousarray(self.rgb, dtype=np.uint8)
        self.mask = np.asarray(self.mask, dtype=bool)


class InstructPartDataset(Dataset):
    """Samples from an InstructPart-layout annotation file; images and masks load lazily."""

    def __init__(
        self,
        annotation_file: str | Path,
        image_dir: Optional[str | Path] = None,
        mask_dir: Optional[str | Path] = None,
        instruction_indices: Optional[Sequence[int]] = None,
    ) -> None:
        self.annotation_file = Path(annotation_file)
        root = self.annotation_file.parent
        self.image_dir = Path(image_dir) if image_dir else root / "images"
        self.mask_dir = Path(mask_dir) if mask_dir else root / "masks"
        entries = load_entries(self.annotation_file)
        self.items: list[tuple[str, str, str, str]] = []  # image_path, object, part, instruction
        for entry in entries:
            for part in entry["part_list"]:
                texts = part["instruction"]
                if isinstance(texts, str):
                    texts = [texts]
                if instruction_indices is None:
                    chosen = range(len(texts))
                else:
                    chosen = [i for i in instruction_indices if i < len(texts)]
                for i in chosen:
                    text = " ".join(texts[i].split())
                    if text:
                        self.items.append((entry["image_path"], part["object"], part["part"], text))
        missing: list[str] = []
        self.image_files: dict[tuple[str, str, str], Path] = {}
        for image_path, obj, part, _ in self.items:
            key = (image_path, obj, part)
            if key not in self.image_files:
                try:
                    self.image_files[key] = find_image(self.image_dir, image_path, obj, part)
                except FileNotFoundError as error:
                    missing.append(str(error))
            mask = self.mask_dir / instructpart_mask_name(image_path, obj, part)
            if not mask.is_file():
                missing.append(str(mask))
        if missing:
            missing = sorted(set(missing))
            raise FileNotFoundError(f"{len(missing)} files named by {self.annotation_file} are missing, "
                                    f"e.g. {missing[:3]}")

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> PartSample:
        image_path, obj, part, text = self.items[index]
        rgb = load_rgb(self.image_files[(image_path, obj, part)])
        mask = load_mask(self.mask_dir / instructpart_mask_name(image_path, obj, part), rgb.shape[:2])
        return PartSample(rgb, text, mask, obj, part)


class BenchmarkBagDataset(Dataset):
    """Samples from a partseg benchmark bag (rgb, instruction, target part mask), read once into memory."""

    def __init__(self, bag_path: str | Path) -> None:
        from partseg_ros.bags.reader import read_benchmark

        self.bag_path = Path(bag_path)
        samples = (_sample_from_bag(s) for s in read_benchmark(self.bag_path))
        self.samples: list[PartSample] = [s for s in samples if s is not None]
        if not self.samples:
            raise ValueError(f"{self.bag_path} holds no task with an instruction")

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> PartSample:
        return self.samples[index]


def _sample_from_bag(sample) -> Optional[PartSample]:
    """A ``partseg_ros.bags.reader.BenchmarkSample`` as a training pair.

    Tasks without a target keep their all-False mask: learning to answer
    "nothing" on them is part of the benchmark.
    """
    task = sample.task
    if not task.instruction:
        return None
    obj = task.target_object.split("|")[0]
    return PartSample(np.asarray(sample.rgb), task.instruction, np.asarray(task.target_part_mask, dtype=bool),
                      obj, task.target_part)


def build_dataset(sources: Iterable[str | Path], instruction_indices: Optional[Sequence[int]] = None) -> Dataset:
    """One Dataset over InstructPart annotation files (``*.json``) and benchmark bags (anything else)."""
    parts: list[Dataset] = []
    for source in sources:
        path = Path(source)
        if path.suffix == ".json":
            parts.append(InstructPartDataset(path, instruction_indices=instruction_indices))
        else:
            parts.append(BenchmarkBagDataset(path))
    if not parts:
        raise ValueError("no training data given")
    return parts[0] if len(parts) == 1 else ConcatDataset(parts)
