"""Proposal recall of the learned backend: how many objects the network is shown at all, per regime.

    .venv/bin/python benchmarks/bench_proposal_recall.py --regime in_distribution --regime low_resolution
    .venv/bin/python benchmarks/bench_proposal_recall.py --regime held_back --scenes 60

The network only ever sees crops of geometric proposals, so an object no proposal covers is lost before any
learning is asked (a refusal, or the wrong object). For every object of the validation scenes (the same scenes,
seeds and cameras as ``partseg_validate_generalisation``), the best IoU of any proposal with its true mask;
prints the share of objects at IoU >= 0.5 and >= 0.3, and the same for small objects (under 400 pixels).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from partseg_ros.backends.registry import create_backend  # noqa: E402
from partseg_ros.evaluation.generalisation import DIAGNOSTIC_REGIMES, REGIMES, SEED_BASE, regime_domain  # noqa: E402
from partseg_ros.scene.randomised import random_scene, render_randomised  # noqa: E402
from partseg_ros.types import GroundingRequest  # noqa: E402

SMALL_OBJECT_PX = 400


def best_proposal_ious(regime: str, scenes: int, backend) -> tuple[np.ndarray, np.ndarray]:
    """(best proposal IoU, visible pixels) of every object in the regime's first ``scenes`` validation scenes."""
    domain = regime_domain(regime)
    ious, sizes = [], []
    for index in range(scenes):
        scene_seed = SEED_BASE[regime] + index
        view, _ = render_randomised(random_scene(scene_seed, domain), domain, view_seed=0)
        found = backend.object_proposals(GroundingRequest(view.rgb, "", view.depth_m, view.intrinsics))
        masks = [] if isinstance(found, str) else found[0]
        for instance in range(1, len(view.object_names)):  # id 0 is the background (table, floor, walls)
            truth = view.object_mask([instance])
            if not truth.any():
                continue
            ious.append(max([float((m & truth).sum() / (m | truth).sum()) for m in masks] or [0.0]))
            sizes.append(int(truth.sum()))
    return np.array(ious), np.array(sizes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--regime", action="append", choices=REGIMES + DIAGNOSTIC_REGIMES)
    parser.add_argument("--scenes", type=int, default=30)
    args = parser.parse_args()
    backend = create_backend("pisa_rgbd")
    for regime in args.regime or ["in_distribution"]:
        ious, sizes = best_proposal_ious(regime, args.scenes, backend)
        small = sizes < SMALL_OBJECT_PX
        small_rate = f"{(ious[small] >= 0.5).mean():.1%}" if small.any() else "-"
        print(f"{regime}: {len(ious)} objects, recall at IoU 0.5 {(ious >= 0.5).mean():.1%}, at 0.3 "
              f"{(ious >= 0.3).mean():.1%}; small objects (< {SMALL_OBJECT_PX} px, {int(small.sum())}) {small_rate}",
              flush=True)


if __name__ == "__main__":
    main()
