"""Size, speed and training figures of the learned pisa_rgbd backend.

    .venv/bin/python benchmarks/bench_pisa_rgbd.py                      # the shipped model
    .venv/bin/python benchmarks/bench_pisa_rgbd.py --checkpoint runs/x/model --device cuda
    .venv/bin/python benchmarks/bench_pisa_rgbd.py --train-steps 20 --data data/crops   # + training throughput

Prints: weight file size and parameter count; the training record kept in the
model folder (steps, minutes, crops, final validation figures); per-frame
latency (p50/p95, per stage) over rendered 640x480 study frames, i.e. the
whole backend call as the node makes it; optionally training throughput in
crops per second on this machine.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from partseg_ros.backends.registry import create_backend  # noqa: E402
from partseg_ros.scene.render import render_study_view  # noqa: E402
from partseg_ros.scene.scenes import STUDY_SCENE_NAMES, load_study_tasks  # noqa: E402
from partseg_ros.types import GroundingRequest  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", default=None, help="model folder (default: the shipped one)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--frames", type=int, default=12, help="study frames to time (one per scene, cycling)")
    parser.add_argument("--train-steps", type=int, default=0, help="also time this many training steps")
    parser.add_argument("--data", type=Path, help="crop shards for --train-steps")
    args = parser.parse_args()

    backend = create_backend("pisa_rgbd", checkpoint=args.checkpoint, device=args.device)
    started = time.perf_counter()
    backend.load()
    backend.warmup()
    load_s = time.perf_counter() - started
    params = sum(p.numel() for p in backend.model.parameters())
    from partseg_ros.backends.pisa_rgbd.checkpoint import PACKAGED_MODEL, WEIGHTS

    weights = Path(args.checkpoint or PACKAGED_MODEL) / WEIGHTS
    print(f"model: {params / 1e6:.2f} M parameters, {weights.stat().st_size / 1e6:.1f} MB ({weights}); "
          f"load + warm-up {load_s:.1f} s; device {backend.device}, {backend.dtype}")
    record = backend.model_record.get("record", {})
    if record:
        print("training record: " + json.dumps({k: v for k, v in record.get("training", {}).items() if k != "kinds"}))
        for name in ("validation", "held_back"):
            if record.get(name):
                print(f"  {name} crops: " + ", ".join(f"{k} {v:.3f}" for k, v in record[name].items() if k != "step"))

    totals, stages = [], {}
    for i in range(args.frames):
        scene = STUDY_SCENE_NAMES[i % len(STUDY_SCENE_NAMES)]
        view = render_study_view(scene, view_index=i // len(STUDY_SCENE_NAMES) % 3, seed=0)
        task = load_study_tasks(scene=scene)[0]
        request = GroundingRequest(view.rgb, task.instruction, view.depth_m, view.intrinsics)
        start = time.perf_counter()
        result = backend.ground(request)
        totals.append((time.perf_counter() - start) * 1000.0)
        for stage, ms in result.timings_ms.items():
            stages.setdefault(stage, []).append(ms)
    stage_text = ", ".join(f"{k} {np.median(v):.0f}" for k, v in stages.items())
    print(f"per 640x480 frame over {len(totals)} study frames: p50 {np.median(totals):.0f} ms, "
          f"p95 {np.percentile(totals, 95):.0f} ms (stages p50: {stage_text} ms); load average "
          f"{os.getloadavg()[0]:.1f}")

    if args.train_steps:
        import torch

        from partseg_ros.backends.pisa_rgbd.dataset import iterate_samples, load_crops
        from partseg_ros.backends.pisa_rgbd.model import RgbdPartGrounder
        from partseg_ros.backends.pisa_rgbd.train import PhraseEncoder, losses, make_batch

        samples = list(iterate_samples(load_crops(args.data, "training")))[:512]
        kinds = {s.kind: s.parts for s in samples}
        model = RgbdPartGrounder(backend.model.config).to(args.device)  # the timed model's architecture
        optimiser = torch.optim.AdamW(model.parameters(), lr=1e-3)
        phrases = PhraseEncoder()
        rng = np.random.default_rng(0)
        times = []
        for step in range(args.train_steps):
            chosen = rng.choice(len(samples), 32, replace=False)
            start = time.perf_counter()
            batch = {k: v.to(args.device) for k, v in
                     make_batch([samples[i] for i in chosen], kinds, rng, phrases, augment=True).items()}
            loss, _ = losses(model, batch)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            if step:
                times.append(time.perf_counter() - start)
        print(f"training: {32 / np.median(times):.0f} crops/s (batch 32, 4 phrases each, {args.device})")


if __name__ == "__main__":
    main()
