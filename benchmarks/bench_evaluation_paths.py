"""Both evaluation paths on the same generated bags: identical scores, and what each path costs.

Generates study scenes (or takes existing bags), evaluates them with a backend
in process and through the live node over DDS (loopback), then prints per-path
latency and throughput, and whether every task's scores are identical. Exit
status 1 when they are not (the backend is then not deterministic, or a path
has a bug).

    python benchmarks/bench_evaluation_paths.py                       # mugs scene, 3 views, shapegrasp
    python benchmarks/bench_evaluation_paths.py --scenes mugs knives --views 1 --backend shapegrasp
    python benchmarks/bench_evaluation_paths.py --bags /data/bench --workers 2
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
from pathlib import Path

from partseg_ros.evaluation.records import SCORE_FIELDS
from partseg_ros.ros import live_evaluation  # partseg_evaluate with its live path


def _run(bags: Path, out: Path, backend: str, *extra: str) -> dict:
    code = live_evaluation.main(
        [
            str(bags),
            "--backend",
            backend,
            "--protocol",
            "full",
            "--out",
            str(out),
            "--no-progress",
            "--no-overlays",
            *extra,
        ]
    )
    if code != 0:
        raise SystemExit(f"partseg_evaluate failed ({code}) for {extra or 'in-process'}")
    return json.loads((out / "report.json").read_text())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bags", type=Path, help="existing bags (default: generate)")
    parser.add_argument("--scenes", nargs="+", default=["mugs"])
    parser.add_argument("--views", type=int, default=3)
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--backend", default="shapegrasp")
    parser.add_argument("--workers", type=int, default=1, help="in-process workers (the live path is one node)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="partseg_bench_eval_") as tmp:
        tmp_path = Path(tmp)
        bags = args.bags
        if bags is None:
            from partseg_ros.scene.generate import generate_benchmark

            bags = tmp_path / "bags"
            generate_benchmark(
                bags, args.scenes, views=args.views, width=args.width, height=args.height, include_no_target=True
            )
        domain = os.environ.get("ROS_DOMAIN_ID", str(random.randint(100, 199)))
        reports = {
            "inprocess": _run(bags, tmp_path / "inprocess", args.backend, "--workers", str(args.workers)),
            "live": _run(bags, tmp_path / "live", args.backend, "--path", "live", "--domain-id", domain),
        }

    print(f"backend {args.backend}; {len(reports['live']['records'])} tasks (protocol full)")
    print(f"{'path':<10} {'p50 ms':>9} {'p95 ms':>9} {'mean ms':>9} {'tasks/s (1 stream)':>19} {'tasks/s (wall)':>15}")
    for path, report in reports.items():
        o = report["summary"]["full"]["overall"]
        print(
            f"{path:<10} {o['latency_p50_ms']:>9.1f} {o['latency_p95_ms']:>9.1f} {o['latency_mean_ms']:>9.1f} "
            f"{o['throughput_tasks_per_s']:>19.2f} {report['meta']['wall_throughput_tasks_per_s']:>15.2f}"
        )
    print(
        "(live latency is end to end: frame published -> segmentation and grasp regions received; wall "
        "throughput includes start-up: backend load, node start)"
    )

    a, b = reports["inprocess"]["records"], reports["live"]["records"]
    mismatched = [
        (x["task_id"], x["view"], [k for k in SCORE_FIELDS if x[k] != y[k]])
        for x, y in zip(a, b)
        if any(x[k] != y[k] for k in SCORE_FIELDS) or x["task_id"] != y["task_id"]
    ]
    if len(a) != len(b) or mismatched:
        print(f"scores DIFFER between paths on {len(mismatched)} of {len(a)} tasks: {mismatched[:10]}")
        return 1
    print(f"scores identical on both paths for all {len(a)} tasks")
    return 0


if __name__ == "__main__":
    sys.exit(main())
