"""The InstructPart-layout converter on a small dataset written here."""

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from partseg_ros.bags.instructpart_converter import INSTRUCTION_KINDS, convert, main, mask_filename
from partseg_ros.bags.reader import read_benchmark


def _instructions(obj: str, part: str, aff: str) -> list[str]:
    return [f"Which part can be used to {aff} the {obj}?", f"Identify the part of the {obj} meant to {aff}.",
            f"Where is the {part} of the {obj} in this image?", f"Where is the {part} of the {obj} that can {aff}?",
            f"{part} of the {obj}", f"{part} of the {obj} that can {aff}"]


@pytest.fixture
def dataset(tmp_path: Path) -> tuple[Path, dict]:
    rng = np.random.default_rng(0)
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    entries, masks = [], {}
    specs = [("kettle_001.jpg", [("kettle", "handle", "hold")], (48, 64)),
             ("2329134125_8a71be7470_o.png", [("wine glass", "stem", "hold"), ("knife", "blade", "cut")], (40, 56))]
    for image_path, parts, (h, w) in specs:
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(tmp_path / "images" / image_path)
        part_list = []
        for obj, part, aff in parts:
            mask = np.zeros((h, w), bool)
            y, x = rng.integers(0, h - 10), rng.integers(0, w - 10)
            mask[y:y + 8, x:x + rng.integers(3, 10)] = True
            Image.fromarray(mask.astype(np.uint8) * 255).save(tmp_path / "masks" / mask_filename(image_path, obj, part))
            masks[(Path(image_path).stem, obj, part)] = mask
            part_list.append({"object": obj, "part": part, "affordance": aff, "action": aff,
                              "instruction": _instructions(obj, part, aff)})
        entries.append({"image_path": image_path, "part_list": part_list})
    (tmp_path / "data.json").write_text(json.dumps(entries))
    return tmp_path, masks


def test_mask_names_use_underscores():
    assert mask_filename("dir/2329_o.jpg", "wine glass", "bottom part") == "2329_o-wine_glass-bottom_part.png"


def test_converter_round_trip(dataset):
    root, masks = dataset
    frames, tasks = convert(root / "data.json", root / "bag")
    assert (frames, tasks) == (3, 18)
    samples = list(read_benchmark(root / "bag"))
    assert len(samples) == 18
    for sample in samples:
        stem, obj, part, kind = sample.task.task_id.split(":")
        assert kind in INSTRUCTION_KINDS
        np.testing.assert_array_equal(sample.task.target_part_mask, masks[(stem, obj, part)])
        image = np.asarray(Image.open(next((root / "images").glob(stem + ".*"))).convert("RGB"))
        np.testing.assert_array_equal(sample.rgb, image)
        assert sample.depth_m is None and sample.intrinsics is None
        assert sample.task.has_target and sample.task.target_object == obj and sample.task.target_part == part
        assert not sample.task.object_labels_known and not sample.task.target_object_mask.any()
        assert sample.scene == obj
    by_kind = {s.task.task_id.split(":")[3]: s.task.instruction for s in samples if "kettle" in s.task.task_id}
    assert by_kind["part_phrase"] == "handle of the kettle"


def test_cli_selects_instructions_and_reports_missing_masks(dataset, capsys):
    root, _ = dataset
    assert main([str(root / "data.json"), "--out", str(root / "bag2"), "--instructions", "0", "2"]) == 0
    assert "3 frames, 6 tasks" in capsys.readouterr().out
    assert {s.task.task_id.split(":")[3] for s in read_benchmark(root / "bag2")} == {"task_human", "part_question"}
    next((root / "masks").glob("kettle*")).unlink()
    with pytest.raises(FileNotFoundError):
        convert(root / "data.json", root / "bag3")
    assert convert(root / "data.json", root / "bag4", skip_missing=True) == (2, 12)
