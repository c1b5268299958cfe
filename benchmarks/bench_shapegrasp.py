"""Speed (and optionally study success) of the shapegrasp backend on rendered 640x480 RGB-D frames.

    .venv/bin/python benchmarks/bench_shapegrasp.py                 # timing: median / p95 per stage
    .venv/bin/python benchmarks/bench_shapegrasp.py --evaluate      # + per-scene success on the study

Frames come from the synthetic study (partseg_ros.scene), rendered with
sensor noise. Success follows the evaluator's two criteria: mask IoU with the
target part >= 0.5 (best of the acceptable targets) and the grasp region's
centroid (partseg_ros.geometry.grasp_region) projecting onto the target part.
The language model load is excluded from the per-frame times (it happens once
in the ROS node's configure step).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from partseg_ros.backends.registry import create_backend  # noqa: E402
from partseg_ros.evaluation import metrics  # noqa: E402
from partseg_ros.geometry.grasp_region import compute_grasp_region  # noqa: E402
from partseg_ros.scene.render import render_study_view  # noqa: E402
from partseg_ros.scene.scenes import STUDY_SCENE_NAMES  # noqa: E402
from partseg_ros.types import GroundingRequest  # noqa: E402


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenes", default=",".join(STUDY_SCENE_NAMES))
    parser.add_argument("--views", default="0", help="comma-separated view indices")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeat", type=int, default=1, help="timed runs per task")
    parser.add_argument("--evaluate", action="store_true", help="also score every task (IoU and grasp point)")
    parser.add_argument("--stride", type=int, default=2)
    parser.add_argument("--verbose", action="store_true", help="print each task's result and explanation")
    parser.add_argument("--oracle-object", action="store_true",
                        help="give the backend the first target object's mask (the oracle-object protocol)")
    parser.add_argument("--no-target", action="store_true",
                        help="also run the study's no-target tasks (right answer: no mask) and report that accuracy")
    args = parser.parse_args()

    backend = create_backend("shapegrasp", stride=args.stride)
    started = time.perf_counter()
    backend.load()
    backend.warmup()
    print(f"load + warmup: {(time.perf_counter() - started) * 1000:.0f} ms")

    stages: dict[str, list[float]] = defaultdict(list)
    totals: list[float] = []
    per_scene: dict[str, list[tuple[bool, bool, bool]]] = defaultdict(list)  # (success, mask ok, ceiling)
    rejected: list[bool] = []  # per no-target task: did the backend answer with no mask?
    views = [int(v) for v in args.views.split(",")]
    for scene in args.scenes.split(","):
        for view_index in views:
            view = render_study_view(scene, view_index, seed=args.seed, include_no_target=args.no_target)
            for task in view.tasks:
                if not task.has_target:
                    if args.no_target and not args.oracle_object:
                        result = backend.ground(
                            GroundingRequest(view.rgb, task.instruction, view.depth_m, view.intrinsics))
                        rejected.append(not result.instances)
                        if args.verbose:
                            verdict = "OK (no mask)" if not result.instances else (
                                f"FAIL ({result.object_label}.{result.part_label})")
                            print(f"  {scene}/{view_index} no-target {task.instruction!r}: {verdict}")
                            if result.instances:
                                print("     ", result.explanation[:600])
                    continue
                hint = view.object_mask(task.target_object_ids[:1]) if args.oracle_object else None
                request = GroundingRequest(view.rgb, task.instruction, view.depth_m, view.intrinsics, hint)
                for _ in range(args.repeat):
                    t0 = time.perf_counter()
                    result = backend.ground(request)
                    totals.append((time.perf_counter() - t0) * 1000.0)
                    for stage, ms in result.timings_ms.items():
                        stages[stage].append(ms)
                if not args.evaluate:
                    continue
                pred = result.union_mask(view.rgb.shape[:2])
                per_target = len(task.parts)
                alternatives = [view.part_mask(task.target_part_ids[i * per_target:(i + 1) * per_target])
                                for i in range(len(task.targets))]
                iou = max(metrics.iou(pred, alt) for alt in alternatives)
                centroid = None
                if result.instances:
                    region = compute_grasp_region(result.instances[0].mask, view.depth_m, view.intrinsics)
                    centroid = tuple(region.centroid) if region.ok else None
                on_part = metrics.grasp_point_on_part(centroid, view.intrinsics, view.task_part_mask(task))
                success = metrics.mask_selection_success(iou) and on_part
                # The same criteria applied to the ground-truth part mask: the best any method can score.
                truth_region = compute_grasp_region(alternatives[0], view.depth_m, view.intrinsics)
                ceiling = metrics.grasp_point_on_part(
                    tuple(truth_region.centroid) if truth_region.ok else None, view.intrinsics,
                    view.task_part_mask(task)
                )
                per_scene[scene].append((success, metrics.mask_selection_success(iou), ceiling))
                if args.verbose:
                    # Share of the predicted mask on the target object(s): tells a wrong object from a wrong part.
                    on_object = float((pred & view.object_mask(task.target_object_ids)).sum()) / max(int(pred.sum()), 1)
                    print(f"  {scene}/{view_index} {task.instruction!r}: {result.object_label}.{result.part_label} "
                          f"iou={iou:.2f} on_object={on_object:.0%} grasp_on_part={on_part} "
                          f"{'OK' if success else 'FAIL'}")
                    if not success:
                        print("     ", result.explanation[:600])

    print(f"frames: {len(totals)} (640x480, stride {args.stride})")
    print(f"{'stage':<12}{'median ms':>12}{'p95 ms':>10}")
    for stage, values in stages.items():
        print(f"{stage:<12}{statistics.median(values):>12.1f}{percentile(values, 95):>10.1f}")
    print(f"{'total':<12}{statistics.median(totals):>12.1f}{percentile(totals, 95):>10.1f}")
    if args.evaluate:
        protocol = "oracle object" if args.oracle_object else "full scene"
        print(f"protocol: {protocol}; success = IoU >= 0.5 and grasp-region centroid on the target part")
        print(f"{'scene':<12}{'success':>10}{'IoU>=0.5':>10}{'GT-mask ceiling':>17}")
        rows = []
        for scene, results in per_scene.items():
            rows += results
            cols = [sum(r[k] for r in results) for k in range(3)]
            print(f"{scene:<12}" + "".join(f"{c:>6}/{len(results):<3}" for c in cols[:2])
                  + f"{cols[2]:>10}/{len(results):<3}")
        n = max(len(rows), 1)
        cols = [sum(r[k] for r in rows) for k in range(3)]
        print(f"{'all':<12}" + "".join(f"{c:>6}/{len(rows):<3}" for c in cols[:2]) + f"{cols[2]:>10}/{len(rows):<3}")
        if rejected:
            print(f"no-target tasks: {sum(rejected)}/{len(rejected)} correctly answered with no mask")
        rates = zip(("success", "IoU>=0.5", "ceiling"), cols)
        print("rates: " + ", ".join(f"{name} {100.0 * c / n:.1f}%" for name, c in rates))


if __name__ == "__main__":
    main()
