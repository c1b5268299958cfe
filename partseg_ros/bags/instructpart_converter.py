"""Convert a dataset in the InstructPart layout into a benchmark bag.

Layout (InstructPart appendix B/H): a JSON list of
``{"image_path": ..., "part_list": [{"object", "part", "affordance", "action",
"instruction": [6 strings]}]}`` plus one PNG mask per (image, object, part),
named ``{image_stem}-{object}-{part}.png`` with spaces replaced by
underscores (non-zero pixels are the part). The released dataset names the
images the same way, ``images/{image_stem}-{object}-{part}.jpg``, one copy
per part; other copies keep ``images/{image_path}``. Both are tried, the
released name first (``find_image``).

Each (image, part entry) becomes one frame of the bag, with the part as label
id 1, and each selected instruction one task on it. The images are 2D only:
the bag has no depth and no camera_info topics (readers give ``depth_m`` and
``intrinsics`` None) and no object-level labels (``object_names`` is just
"background", so target object masks are empty and flagged unknown).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Iterator, Optional, Sequence

import numpy as np

from partseg_ros.bags.format import BACKGROUND_NAME
from partseg_ros.bags.writer import BenchmarkFrame, TaskAnnotation, write_benchmark

# What the six instruction strings of an InstructPart part entry are, in order.
INSTRUCTION_KINDS = (
    "task_human",  # TRPS, written by an annotator
    "task_gpt",  # TRPS, rewritten by GPT-4
    "part_question",  # ORPS: "Where is the <part> of the <object> in this image?"
    "part_question_affordance",  # ORPS with the affordance
    "part_phrase",  # ORPS: "<part> of the <object>"
    "part_phrase_affordance",
)


def mask_filename(image_path: str, obj: str, part: str) -> str:
    """InstructPart's mask file name for one (image, object, part): spaces become underscores."""
    stem = Path(image_path).stem
    return f"{stem}-{obj.replace(' ', '_')}-{part.replace(' ', '_')}.png"


def image_filenames(image_path: str, obj: str, part: str) -> list[str]:
    """Names an (image, object, part)'s image may have, in the order tried.

    The released InstructPart layout stores the image once per part, named
    like its mask (``{stem}-{object}-{part}.jpg``); layouts built from the JSON
    alone keep ``image_path``. The released name comes first because it is
    what the published dataset has for every entry.
    """
    released = Path(mask_filename(image_path, obj, part)).stem
    suffix = Path(image_path).suffix or ".jpg"
    names = [f"{released}.jpg", f"{released}{suffix}", f"{released}.png", str(image_path)]
    return list(dict.fromkeys(names))


def find_image(images_dir: Path, image_path: str, obj: str, part: str) -> Path:
    """The image file of one (image, object, part): released name first, then ``image_path``."""
    tried = [Path(images_dir) / name for name in image_filenames(image_path, obj, part)]
    for path in tried:
        if path.is_file():
            return path
    raise FileNotFoundError(f"image for {image_path} {obj}/{part} not found; tried {', '.join(str(p) for p in tried)}")


def load_entries(json_path: Path) -> list[dict]:
    """The image entries of an InstructPart annotation file."""
    data = json.loads(Path(json_path).read_text(encoding="utf-8"))
    if isinstance(data, dict):  # some releases key the entries by image
        data = list(data.values())
    if not isinstance(data, list):
        raise ValueError(f"{json_path}: expected a JSON list of image entries")
    return data


def load_rgb(path: Path) -> np.ndarray:
    """An image file as HxWx3 uint8 RGB."""
    from PIL import Image

    with Image.open(path) as img:
        return np.asarray(img.convert("RGB"), dtype=np.uint8)


def load_mask(path: Path, shape: tuple[int, int]) -> np.ndarray:
    """A mask file (any non-zero pixel is on) that must match its image's (height, width)."""
    from PIL import Image

    with Image.open(path) as img:
        mask = np.asarray(img.convert("L")) > 0
    if mask.shape != shape:
        raise ValueError(f"{path}: mask is {mask.shape[::-1]}, image is {shape[::-1]}")
    return mask


def convert_frames(json_path: Path, images_dir: Path, masks_dir: Path,
                   instruction_indices: Sequence[int] = tuple(range(6)), skip_missing: bool = False,
                   log=print) -> Iterator[BenchmarkFrame]:
    """Yield one :class:`BenchmarkFrame` per (image, part entry) of the dataset."""
    for entry in load_entries(json_path):
        image_path = str(entry["image_path"])
        for item in entry.get("part_list", []):
            obj, part = str(item["object"]), str(item["part"])
            mask_path = Path(masks_dir) / mask_filename(image_path, obj, part)
            if not mask_path.is_file():
                if skip_missing:
                    log(f"skipping {image_path} {obj}/{part}: no mask {mask_path.name}")
                    continue
                raise FileNotFoundError(f"mask {mask_path} for {image_path} {obj}/{part} is missing")
            rgb = load_rgb(find_image(Path(images_dir), image_path, obj, part))
            mask = load_mask(mask_path, rgb.shape[:2])
            instructions = list(item.get("instruction", []))
            stem = Path(image_path).stem
            reason = (f"InstructPart annotation: the {part} of the {obj} "
                      f"(affordance {item.get('affordance', '')!r}, action {item.get('action', '')!r})")
            tasks = [
                TaskAnnotation(
                    task_id=f"{stem}:{obj}:{part}:{INSTRUCTION_KINDS[k] if k < len(INSTRUCTION_KINDS) else k}",
                    instruction=str(instructions[k]), target_objects=(obj,), target_parts=(part,),
                    target_part_ids=(1,), reason=reason,
                )
                for k in instruction_indices if k < len(instructions)
            ]
            yield BenchmarkFrame(
                scene=obj, rgb=rgb, object_ids=np.zeros(mask.shape, np.uint16), part_ids=mask.astype(np.uint16),
                object_names=[BACKGROUND_NAME], part_names=[BACKGROUND_NAME, f"{obj}/{part}"], tasks=tasks,
                frame_id=stem,
            )


def convert(json_path: Path, out: Path, images_dir: Optional[Path] = None, masks_dir: Optional[Path] = None,
            instruction_indices: Sequence[int] = tuple(range(6)), storage: str = "mcap",
            skip_missing: bool = False, overwrite: bool = False) -> tuple[int, int]:
    """Write the dataset to the bag ``out`` (replacing a bag there with ``overwrite``); returns (frames, tasks).

    The inputs are checked before the bag is created, so a wrong path leaves no empty bag behind.
    """
    root = Path(json_path).parent
    images_dir = Path(images_dir) if images_dir else root / "images"
    masks_dir = Path(masks_dir) if masks_dir else root / "masks"
    if not Path(json_path).is_file():
        raise FileNotFoundError(f"annotation file {json_path} not found")
    for kind, folder in (("image", images_dir), ("mask", masks_dir)):
        if not folder.is_dir():
            raise FileNotFoundError(f"{kind} folder {folder} not found (--{kind}s)")
    frames = convert_frames(json_path, images_dir, masks_dir, instruction_indices, skip_missing)
    return write_benchmark(out, frames, storage, frame_interval_s=0.1, task_interval_s=0.5, overwrite=overwrite)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="partseg_convert_instructpart",
                                     description="Convert an InstructPart-layout dataset into a partseg benchmark bag.")
    parser.add_argument("json", type=Path, help="the dataset's JSON list")
    parser.add_argument("--out", type=Path, required=True, help="bag folder to create")
    parser.add_argument("--images", type=Path, help="image folder (default: images/ next to the JSON)")
    parser.add_argument("--masks", type=Path, help="mask folder (default: masks/ next to the JSON)")
    parser.add_argument("--instructions", type=int, nargs="+", default=list(range(6)), metavar="K",
                        help=f"which instruction strings to ask, 0-5: {', '.join(INSTRUCTION_KINDS)}")
    parser.add_argument("--storage", choices=["mcap", "sqlite3"], default="mcap")
    parser.add_argument("--skip-missing", action="store_true", help="skip part entries whose mask is missing")
    parser.add_argument("--overwrite", action="store_true", help="replace the bag at --out if there is one")
    args = parser.parse_args(argv)
    frames, tasks = convert(args.json, args.out, args.images, args.masks, args.instructions, args.storage,
                            args.skip_missing, args.overwrite)
    print(f"wrote {frames} frames, {tasks} tasks to {args.out}")
    return 0


if __name__ == "__main__":
    from partseg_ros.console import run

    sys.exit(run("partseg_convert_instructpart"))
