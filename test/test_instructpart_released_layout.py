"""The released InstructPart layout: ``images/{stem}-{object}-{part}.jpg`` next to ``masks/{stem}-{object}-{part}.png``.

The dataset is written here in that layout (no ``images/{image_path}`` file
exists), and each part's image copy has its own size and content, so reading
any other file than the released one is caught. Both consumers are checked:
the bag converter and PISA's training dataset.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from partseg_ros.backends.pisa.data import InstructPartDataset
from partseg_ros.bags.instructpart_converter import convert, find_image, image_filenames
from partseg_ros.bags.reader import read_benchmark

# (image_path in the JSON, object, part, image size (h, w))
ENTRIES = [("coco/000000123.jpg", "wine glass", "stem", (36, 52)), ("coco/000000123.jpg", "knife", "blade", (40, 60)),
           ("mug_7.jpg", "mug", "handle", (44, 48))]


def _write_released(root: Path) -> dict[tuple[str, str], np.ndarray]:
    """A dataset in the released layout; returns each part's image pixels."""
    rng = np.random.default_rng(1)
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    pixels, by_image = {}, {}
    for image_path, obj, part, (h, w) in ENTRIES:
        name = f"{Path(image_path).stem}-{obj.replace(' ', '_')}-{part.replace(' ', '_')}"
        rgb = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        Image.fromarray(rgb).save(root / "images" / f"{name}.jpg", quality=100)
        pixels[(obj, part)] = np.asarray(Image.open(root / "images" / f"{name}.jpg").convert("RGB"))
        mask = np.zeros((h, w), np.uint8)
        mask[5:15, 5:20] = 255
        Image.fromarray(mask).save(root / "masks" / f"{name}.png")
        by_image.setdefault(image_path, []).append(
            {"object": obj, "part": part, "affordance": "hold", "action": "hold",
             "instruction": [f"hold the {obj}", "", "", "", f"{part} of the {obj}", ""]})
    entries = [{"image_path": path, "part_list": parts} for path, parts in by_image.items()]
    (root / "data.json").write_text(json.dumps(entries))
    return pixels


def test_released_name_is_tried_first_and_the_json_path_last(tmp_path):
    names = image_filenames("coco/000000123.jpg", "wine glass", "stem")
    assert names[0] == "000000123-wine_glass-stem.jpg" and names[-1] == "coco/000000123.jpg"
    (tmp_path / "coco").mkdir()
    (tmp_path / "coco" / "000000123.jpg").write_bytes(b"")
    assert find_image(tmp_path, "coco/000000123.jpg", "wine glass", "stem") == tmp_path / "coco" / "000000123.jpg"
    (tmp_path / "000000123-wine_glass-stem.jpg").write_bytes(b"")
    assert find_image(tmp_path, "coco/000000123.jpg", "wine glass", "stem").name == "000000123-wine_glass-stem.jpg"
    with pytest.raises(FileNotFoundError, match="tried"):
        find_image(tmp_path, "other.jpg", "mug", "handle")


def test_converter_reads_the_released_layout(tmp_path):
    pixels = _write_released(tmp_path / "ip")
    frames, tasks = convert(tmp_path / "ip" / "data.json", tmp_path / "bag", instruction_indices=(0, 4))
    assert (frames, tasks) == (3, 6)
    samples = list(read_benchmark(tmp_path / "bag"))
    by_part = {s.task.target_part: s for s in samples}
    for (obj, part), rgb in pixels.items():
        sample = by_part[part]
        assert np.array_equal(np.asarray(sample.rgb), rgb), f"{obj}/{part} read another image"


def test_pisa_dataset_reads_the_released_layout(tmp_path):
    pixels = _write_released(tmp_path / "ip")
    data = InstructPartDataset(tmp_path / "ip" / "data.json", instruction_indices=[0])
    assert len(data) == 3
    for index in range(len(data)):
        sample = data[index]
        assert np.array_equal(sample.rgb, pixels[(sample.object_label, sample.part_label)])
        assert sample.mask.shape == sample.rgb.shape[:2] and sample.mask.sum() == 150
