"""Time to build one grasp region, against the part's point count.

Target (issue 3): at most 3 ms for a 20,000-point part on the 2-core
development machine. The part is an elongated elliptical patch of a tilted
cylinder (a handle-like surface) in a 640x480 depth image with the
structured-light noise model applied, so every filter has real work to do.

    .venv/bin/python benchmarks/bench_grasp_region.py [--repeats 200]
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

from partseg_ros.geometry.grasp_region import GraspRegionConfig, compute_grasp_region
from partseg_ros.scene.depth_noise import DepthNoiseModel
from partseg_ros.types import CameraIntrinsics

INTRINSICS = CameraIntrinsics(fx=615.0, fy=615.0, cx=319.5, cy=239.5, width=640, height=480)
POINT_COUNTS = (1_000, 5_000, 20_000, 80_000)


def synthetic_part(points: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(mask, noisy depth): an ellipse of about ``points`` pixels on a cylinder 0.6 m away, on a far table."""
    h, w = INTRINSICS.height, INTRINSICS.width
    v, u = np.mgrid[0:h, 0:w].astype(np.float64)
    semi_minor = np.sqrt(points / (3.0 * np.pi))  # 3:1 ellipse of the requested area
    angle = np.deg2rad(30.0)
    du, dv = u - INTRINSICS.cx, v - INTRINSICS.cy
    along = du * np.cos(angle) + dv * np.sin(angle)
    across = -du * np.sin(angle) + dv * np.cos(angle)
    mask = (along / (3 * semi_minor)) ** 2 + (across / semi_minor) ** 2 <= 1.0
    # A cylinder whose axis runs along the ellipse: depth bulges toward the camera across it.
    radius_px = semi_minor * 1.05
    bulge = np.sqrt(np.clip(radius_px**2 - across**2, 0.0, None)) * (0.6 / INTRINSICS.fx)
    depth = np.where(mask, 0.6 - bulge + 0.0002 * along, 0.9)  # background 0.3 m behind
    normals = np.zeros((h, w, 3))
    normals[..., 2] = -1.0
    noisy = DepthNoiseModel().apply(depth.astype(np.float32), normals, np.random.default_rng(seed))
    return mask, noisy


def time_region(mask: np.ndarray, depth: np.ndarray, repeats: int,
                config: GraspRegionConfig) -> tuple[np.ndarray, np.ndarray]:
    """Wall-clock and process CPU times in ms; CPU time is the steadier figure on a shared machine."""
    compute_grasp_region(mask, depth, INTRINSICS, config=config)  # warm caches and imports
    wall, cpu = np.empty(repeats), np.empty(repeats)
    for index in range(repeats):
        start_wall, start_cpu = time.perf_counter(), time.process_time()
        region = compute_grasp_region(mask, depth, INTRINSICS, config=config)
        wall[index], cpu[index] = time.perf_counter() - start_wall, time.process_time() - start_cpu
    assert region.ok, region.status_reason
    return wall * 1e3, cpu * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=200)
    args = parser.parse_args()
    config = GraspRegionConfig()
    print(f"grasp region from a part mask + depth, {INTRINSICS.width}x{INTRINSICS.height}, {args.repeats} repeats")
    print(f"load average before: {' '.join(f'{v:.1f}' for v in os.getloadavg())} on {os.cpu_count()} cores")
    print(f"{'points':>8} {'kept':>8} {'wall med':>9} {'wall p95':>9} {'wall min':>9} {'cpu med':>8} {'us/point':>9}")
    for count in POINT_COUNTS:
        mask, depth = synthetic_part(count)
        wall, cpu = time_region(mask, depth, args.repeats, config)
        kept = compute_grasp_region(mask, depth, INTRINSICS, config=config).num_valid_points
        median = np.median(wall)
        print(
            f"{int(mask.sum()):>8} {kept:>8} {median:>9.2f} {np.percentile(wall, 95):>9.2f} {wall.min():>9.2f} "
            f"{np.median(cpu):>8.2f} {1e3 * median / mask.sum():>9.3f}"
        )
    print("times in ms; target: median <= 3 ms at 20,000 points")


if __name__ == "__main__":
    main()
