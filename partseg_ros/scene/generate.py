"""``partseg_generate_benchmark``: render the study scenes into benchmark bags.

One bag per scene (``OUT/<scene>/``, a rosbag2 folder), so evaluation can be
sharded by scene and a single scene regenerated alone, plus ``OUT/benchmark.yaml``
recording how the set was made. Deterministic from ``--seed``.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path
from typing import Optional, Sequence

import yaml

from partseg_ros.scene.scenes import STUDY_SCENE_NAMES, build_scene


def generate_scene_bag(out_dir: Path, scene_name: str, seed: int = 0, views: int = 3, width: int = 640,
                       height: int = 480, storage: str = "mcap", include_no_target: bool = False,
                       task_interval_s: float = 0.5) -> dict:
    """Render ``views`` viewpoints of one scene into ``out_dir/<scene>``; returns a summary."""
    from partseg_ros.bags.writer import BenchmarkBagWriter, frame_from_rendered_view
    from partseg_ros.scene.render import default_intrinsics, render_view

    bag = Path(out_dir) / scene_name
    if bag.exists():
        shutil.rmtree(bag)
    scene = build_scene(scene_name, seed, include_no_target=include_no_target)
    intrinsics = default_intrinsics(width, height)
    with BenchmarkBagWriter(bag, storage, task_interval_s=task_interval_s) as writer:
        for view_index in range(views):
            view = render_view(scene, view_index, seed, views, intrinsics)
            writer.write_frame(frame_from_rendered_view(view))
    return {"scene": scene_name, "bag": bag.name, "frames": writer.frames_written, "samples": writer.tasks_written}


def generate_benchmark(out_dir: Path, scenes: Sequence[str] = STUDY_SCENE_NAMES, seed: int = 0, views: int = 3,
                       width: int = 640, height: int = 480, storage: str = "mcap",
                       include_no_target: bool = False, task_interval_s: float = 0.5,
                       progress: bool = False) -> dict:
    """Write one bag per scene and a ``benchmark.yaml`` manifest; returns the manifest."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    summaries = []
    for name in scenes:
        start = time.perf_counter()
        summaries.append(generate_scene_bag(out_dir, name, seed, views, width, height, storage,
                                            include_no_target, task_interval_s))
        if progress:
            print(f"{name}: {summaries[-1]['samples']} samples in {time.perf_counter() - start:.1f} s", flush=True)
    manifest = {
        "format": "partseg-benchmark-1",
        "seed": seed,
        "views_per_scene": views,
        "resolution": [width, height],
        "storage": storage,
        "include_no_target": include_no_target,
        "bags": summaries,
    }
    (out_dir / "benchmark.yaml").write_text(yaml.safe_dump(manifest, sort_keys=False), encoding="utf-8")
    return manifest


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="partseg_generate_benchmark",
                                     description="Render the study scenes into benchmark bags (one per scene).")
    parser.add_argument("--out", type=Path, required=True, help="output folder (one bag per scene inside)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--views", type=int, default=3, help="camera viewpoints per scene")
    parser.add_argument("--scenes", nargs="+", default=list(STUDY_SCENE_NAMES), choices=list(STUDY_SCENE_NAMES),
                        metavar="SCENE", help=f"subset of: {' '.join(STUDY_SCENE_NAMES)}")
    parser.add_argument("--storage", choices=["mcap", "sqlite3"], default="mcap")
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--include-no-target", action="store_true",
                        help="also ask the extra no-target tasks (not part of the published study)")
    parser.add_argument("--task-interval", type=float, default=0.5,
                        help="seconds between instructions in the bag's timeline (replay at 1x keeps it)")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    manifest = generate_benchmark(args.out, args.scenes, args.seed, args.views, args.width, args.height,
                                  args.storage, args.include_no_target, args.task_interval, progress=True)
    samples = sum(b["samples"] for b in manifest["bags"])
    print(f"wrote {len(manifest['bags'])} bags, {samples} samples to {args.out} in {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
