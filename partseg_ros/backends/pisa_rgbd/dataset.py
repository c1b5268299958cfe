"""Training crops from randomised frames, and the phrases asked of them.

A generated frame yields one crop per visible object, cut by the same code
the backend uses at run time (:mod:`.crops`). The proposal channel is the true
object mask disturbed the way geometric proposals go wrong (grown, shrunk,
merged with a touching neighbour, cut short), and the table plane is the true
one tilted and shifted by a RANSAC-sized error, so the network does not learn
to trust either. Crops are stored in shards of ``.npz`` files with a JSON
index, so generation can run in parallel processes and resume.

``partseg_generate_training_crops`` (``python -m partseg_ros.backends.pisa_rgbd.dataset``)
writes a training set and the held-back validation set.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Iterator, Optional, Sequence

import numpy as np
from scipy import ndimage

from partseg_ros.backends.pisa_rgbd.crops import (
    CropSettings,
    crop_inputs,
    crop_labels,
    height_above_plane,
    square_window,
    window_focal_px,
)
from partseg_ros.backends.pisa_rgbd.vocabulary import kind_words, query_text

MIN_OBJECT_PIXELS = 120


@dataclass
class CropSample:
    channels: np.ndarray  # (7, S, S) float16
    scalars: np.ndarray  # (2,) float32
    labels: np.ndarray  # (S, S) uint8: 0 = not this object, i = parts[i - 1]
    kind: str
    parts: tuple[str, ...]
    frame: int = -1  # crops of one frame share it: training asks each phrase of every object in the frame


def _disturbed_proposal(view, object_id: int, rng: np.random.Generator) -> np.ndarray:
    """The object's mask as a geometric segmentation might return it."""
    mask = (view.object_ids == object_id) & np.isfinite(view.depth_m)
    if mask.sum() < MIN_OBJECT_PIXELS // 2:
        mask = view.object_ids == object_id
    roll = rng.random()
    if roll < 0.25:
        mask = ndimage.binary_dilation(mask, iterations=int(rng.integers(1, 4)))
    elif roll < 0.45:
        eroded = ndimage.binary_erosion(mask, iterations=int(rng.integers(1, 3)))
        mask = eroded if eroded.sum() > MIN_OBJECT_PIXELS // 2 else mask
    roll = rng.random()
    if roll < 0.15:  # merged with a touching neighbour
        around = ndimage.binary_dilation(mask, iterations=4) & (view.object_ids > 0) & (view.object_ids != object_id)
        if around.any():
            neighbour = int(rng.choice(np.unique(view.object_ids[around])))
            mask = mask | (view.object_ids == neighbour)
    elif roll < 0.25:  # cut short: one side of a random line through the object is lost
        rows, cols = np.nonzero(mask)
        angle = rng.uniform(0, 2 * np.pi)
        proj = (cols - cols.mean()) * np.cos(angle) + (rows - rows.mean()) * np.sin(angle)
        cut = np.quantile(proj, rng.uniform(0.75, 0.95))
        keep = proj <= cut
        mask = np.zeros_like(mask)
        mask[rows[keep], cols[keep]] = True
    return mask


def crops_from_view(view, kinds: Sequence[str], settings: CropSettings, rng: np.random.Generator,
                    plane_error: bool = True) -> list[CropSample]:
    """One crop per object with enough visible pixels; ``kinds[i]`` is object id i + 1's kind."""
    from partseg_ros.scene.randomised import table_plane_in_camera

    normal, offset = table_plane_in_camera(view.world_from_camera)
    if plane_error:
        normal = normal + rng.normal(0.0, 0.015, 3)
        normal /= np.linalg.norm(normal)
        offset += float(rng.normal(0.0, 0.004))
    height = height_above_plane(view.depth_m, view.intrinsics, normal, offset)
    samples = []
    for object_id in range(1, len(view.object_names)):
        visible = view.object_ids == object_id
        if visible.sum() < MIN_OBJECT_PIXELS:
            continue
        proposal = _disturbed_proposal(view, object_id, rng)
        jitter = np.array([rng.normal(0, 0.04), rng.normal(0, 0.04), rng.uniform(0.9, 1.25)])
        window = square_window(proposal, settings, jitter)
        channels, scalars = crop_inputs(view.rgb, view.depth_m, height, proposal, window,
                                        window_focal_px(view.intrinsics, window), settings)
        instance = view.object_names[object_id]
        part_ids = [i for i, name in enumerate(view.part_names) if name.split("/")[0] == instance]
        local = np.zeros(len(view.part_names), dtype=np.uint8)
        for index, pid in enumerate(part_ids, start=1):
            local[pid] = index
        labels = crop_labels(local[view.part_ids], window, settings.size)
        parts = tuple(view.part_names[pid].split("/", 1)[1] for pid in part_ids)
        samples.append(CropSample(channels.astype(np.float16), scalars, labels, kinds[object_id - 1], parts))
    return samples


# ----------------------------------------------------------------- phrases asked in training


@dataclass
class Query:
    text: str
    presence: float  # 1 when the crop shows the named object
    target_parts: tuple[int, ...]  # label values that make up the named part (empty for absent objects)
    object_name: str = ""
    part_phrase: str = ""


def answer_for(sample: CropSample, object_name: str, part_phrase: str) -> Query:
    """What a phrase asked of another crop should get: presence when the crop's kind answers to the name, and
    the part's labels when that kind has a part of that name."""
    words = kind_words(sample.kind, sample.parts)
    if object_name not in words.names:
        return Query(query_text(part_phrase, object_name), 0.0, (), object_name, part_phrase)
    group = next((g for g in words.groups if part_phrase in g.phrases or part_phrase == g.name), None)
    targets = tuple(sample.parts.index(p) + 1 for p in group.generator_parts) if group else ()
    return Query(query_text(part_phrase, object_name), 1.0, targets, object_name, part_phrase)


def training_queries(sample: CropSample, all_kinds: dict[str, tuple[str, ...]], rng: np.random.Generator,
                     positives: int = 2, negatives: int = 2) -> list[Query]:
    """Phrases for one crop: parts of its own object under random names, and parts of other objects under
    names that do not also name this one."""
    words = kind_words(sample.kind, sample.parts)
    queries = []
    groups = list(words.groups)
    for group in rng.permutation(len(groups))[:positives]:
        g = groups[int(group)]
        name = words.names[0] if rng.random() < 0.5 else str(rng.choice(words.names))
        phrase = str(rng.choice([p for p in g.phrases if " of " not in p] or [g.name]))
        targets = tuple(sample.parts.index(p) + 1 for p in g.generator_parts)
        queries.append(Query(query_text(phrase, name), 1.0, targets, name, phrase))
    others = [k for k in all_kinds if k != sample.kind]
    own_names = set(words.names)
    for _ in range(negatives):
        for _attempt in range(5):
            kind = str(rng.choice(others))
            other = kind_words(kind, all_kinds[kind])
            names = [n for n in other.names if n not in own_names]
            if names:
                g = other.groups[int(rng.integers(len(other.groups)))]
                phrase = str(rng.choice([p for p in g.phrases if " of " not in p] or [g.name]))
                name = str(rng.choice(names))
                queries.append(Query(query_text(phrase, name), 0.0, (), name, phrase))
                break
    return queries


# ----------------------------------------------------------------- generation command


def _generate_shard(job: tuple[str, int, int, str, dict]) -> dict:
    """Render ``count`` randomised frames from ``first_seed`` on and save their crops as one shard."""
    from partseg_ros.scene.randomised import DomainSettings, random_scene, render_randomised

    out, first_seed, count, regime, crop_kwargs = job
    settings = CropSettings(**crop_kwargs)
    domain = DomainSettings.held_back() if regime == "held_back" else DomainSettings.training()
    samples: list[CropSample] = []
    records = []
    for seed in range(first_seed, first_seed + count):
        randomised = random_scene(seed, domain)
        view, meta = render_randomised(randomised, domain, view_seed=0)
        rng = np.random.default_rng([seed, 0x43524F50])
        got = crops_from_view(view, randomised.kinds, settings, rng)
        for sample in got:
            sample.frame = seed
        samples += got
        records.append({"seed": seed, "camera": meta["camera"], "sensor": meta["sensor"], "crops": len(got)})
    path = Path(out) / f"{regime}_{first_seed:07d}.npz"
    np.savez(path, channels=np.stack([s.channels for s in samples]), scalars=np.stack([s.scalars for s in samples]),
             labels=np.stack([s.labels for s in samples]),
             kinds=np.array([s.kind for s in samples]), parts=np.array(["|".join(s.parts) for s in samples]),
             frames=np.array([s.frame for s in samples], dtype=np.int64))
    return {"shard": path.name, "frames": records, "crops": len(samples)}


def generate_crops(out: Path, frames: int, regime: str, first_seed: int, workers: int = 2, shard_frames: int = 25,
                   settings: CropSettings = CropSettings(), progress: bool = True) -> list[dict]:
    """Render ``frames`` randomised frames into crop shards under ``out``; existing shards are kept (resume)."""
    out.mkdir(parents=True, exist_ok=True)
    jobs = []
    for start in range(first_seed, first_seed + frames, shard_frames):
        count = min(shard_frames, first_seed + frames - start)
        if not (out / f"{regime}_{start:07d}.npz").exists():
            jobs.append((str(out), start, count, regime, settings.__dict__))
    done = []
    begin = time.perf_counter()
    if jobs:
        with get_context("spawn").Pool(max(1, workers)) as pool:
            from tqdm import tqdm

            for summary in tqdm(pool.imap_unordered(_generate_shard, jobs), total=len(jobs), disable=not progress,
                                desc=f"{regime} shards"):
                done.append(summary)
                with open(out / f"{regime}_index.jsonl", "a", encoding="utf-8") as handle:
                    handle.write(json.dumps(summary) + "\n")
    if progress:
        print(f"{regime}: {sum(d['crops'] for d in done)} new crops from {len(jobs)} shards in "
              f"{time.perf_counter() - begin:.0f} s", flush=True)
    return done


def load_crops(folder: Path, regime: str) -> dict[str, np.ndarray]:
    """All shards of one regime, concatenated."""
    shards = sorted(Path(folder).glob(f"{regime}_*.npz"))
    if not shards:
        raise FileNotFoundError(f"no {regime} crop shards in {folder}; run partseg_generate_training_crops first")
    parts = [dict(np.load(s)) for s in shards]
    index = _shard_index(Path(folder), regime)
    for shard, part in zip(shards, parts):
        if "frames" not in part and shard.name in index:  # shards written before frames were stored
            part["frames"] = np.repeat([f["seed"] for f in index[shard.name]], [f["crops"] for f in index[shard.name]])
        if len(part.get("frames", ())) != len(part["kinds"]):
            part["frames"] = np.full(len(part["kinds"]), -1, dtype=np.int64)
    return {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}


def _shard_index(folder: Path, regime: str) -> dict[str, list[dict]]:
    path = folder / f"{regime}_index.jsonl"
    if not path.exists():
        return {}
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return {row["shard"]: row["frames"] for row in rows}


def iterate_samples(data: dict[str, np.ndarray]) -> Iterator[CropSample]:
    for i in range(len(data["kinds"])):
        yield CropSample(data["channels"][i], data["scalars"][i], data["labels"][i], str(data["kinds"][i]),
                         tuple(str(data["parts"][i]).split("|")), int(data["frames"][i]))


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="partseg_generate_training_crops",
                                     description="Render domain-randomised frames into training and held-back crops.")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--frames", type=int, default=2400, help="randomised training frames")
    parser.add_argument("--held-back-frames", type=int, default=200,
                        help="frames in each validation set: in-distribution (new seeds) and held-back regime")
    parser.add_argument("--seed", type=int, default=0, help="first scene seed (training); held-back seeds follow")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)
    generate_crops(args.out, args.frames, "training", args.seed, args.workers)
    generate_crops(args.out, args.held_back_frames, "validation", args.seed + 20_000_000, args.workers)
    generate_crops(args.out, args.held_back_frames, "held_back", args.seed + 10_000_000, args.workers)
    return 0


if __name__ == "__main__":
    sys.exit(main())
