"""Time generating the whole synthetic study as benchmark bags.

Target (issue 4): the 12 study scenes with at least 3 viewpoints each,
640x480, written as MCAP bags, in at most 2 minutes on the 2-core development
machine. Also prints where the time goes (scene building, rendering, bag
writing) and the read-back speed the evaluator will see.

    .venv/bin/python benchmarks/bench_generate.py [--views 3] [--storage mcap] [--out DIR]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

from partseg_ros.bags.reader import bag_paths, read_benchmark
from partseg_ros.bags.writer import BenchmarkBagWriter, frame_from_rendered_view
from partseg_ros.scene.render import default_intrinsics, render_view
from partseg_ros.scene.scenes import STUDY_SCENE_NAMES, build_scene

TARGET_S = 120.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--views", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--storage", choices=["mcap", "sqlite3"], default="mcap")
    parser.add_argument("--out", type=Path, help="keep the bags here (default: a temporary folder)")
    args = parser.parse_args()

    out = args.out or Path(tempfile.mkdtemp(prefix="partseg_bench_"))
    out.mkdir(parents=True, exist_ok=True)
    intrinsics = default_intrinsics(640, 480)
    t_build = t_render = t_write = 0.0
    samples = frames = 0
    start = time.perf_counter()
    for name in STUDY_SCENE_NAMES:
        t0 = time.perf_counter()
        scene = build_scene(name, args.seed)
        t_build += time.perf_counter() - t0
        bag = out / name
        if bag.exists():
            shutil.rmtree(bag)
        with BenchmarkBagWriter(bag, args.storage) as writer:
            for view_index in range(args.views):
                t0 = time.perf_counter()
                view = render_view(scene, view_index, args.seed, args.views, intrinsics)
                t1 = time.perf_counter()
                writer.write_frame(frame_from_rendered_view(view))
                t_render += t1 - t0
                t_write += time.perf_counter() - t1
        samples += writer.tasks_written
        frames += writer.frames_written
    total = time.perf_counter() - start

    t0 = time.perf_counter()
    read = sum(1 for bag in bag_paths(out) for _ in read_benchmark(bag))
    t_read = time.perf_counter() - t0
    size_mb = sum(p.stat().st_size for p in out.rglob("*") if p.is_file()) / 1e6

    print(f"scenes {len(STUDY_SCENE_NAMES)}, views/scene {args.views}, frames {frames}, samples {samples}, "
          f"640x480, {args.storage}")
    verdict = "OK" if total <= TARGET_S else "MISSED"
    print(f"generate total     {total:7.1f} s   (target <= {TARGET_S:.0f} s: {verdict})")
    print(f"  build scenes     {t_build:7.1f} s")
    print(f"  render views     {t_render:7.1f} s   ({1000 * t_render / max(frames, 1):.0f} ms/frame)")
    print(f"  write bags       {t_write:7.1f} s")
    print(f"read back          {t_read:7.1f} s   ({read} samples, {1000 * t_read / max(read, 1):.1f} ms/sample)")
    print(f"bags on disk       {size_mb:7.1f} MB  in {out}")
    if args.out is None:
        shutil.rmtree(out)


if __name__ == "__main__":
    main()
