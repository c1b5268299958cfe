"""Training crops from randomised frames, and the phrases asked of them.

A generated frame yields one crop per visible object, cut by the same code
the backend uses at run time (:mod:`.crops`). On some frames the proposals are
the backend's own (its table fit and depth clusters on the frame's noisy
depth, junk clusters kept as background crops); on the others the proposal
channel is the true object mask disturbed the way geometric proposals go wrong
(grown, shrunk, merged with a touching neighbour, cut short), and the table
plane is the true one tilted and shifted by a RANSAC-sized error, so the
network does not learn to trust either. Crops are stored in shards of
``.npz`` files with a JSON index, so generation can run in parallel processes
and resume.

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
# The kind of a crop around a proposal that holds no object (flying pixels, a table edge): every phrase is
# absent there, which is what the presence score must learn to say of the junk a real sensor's proposals hold.
BACKGROUND_KIND = ""
# A proposal belongs to the object holding at least this share of it; below the background share it is junk,
# in between it is too mixed to label and is skipped.
OWNER_SHARE = 0.5
BACKGROUND_SHARE = 0.2
MAX_BACKGROUND_CROPS = 2  # per frame


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
                    plane_error: bool = True, skip: frozenset[int] | set[int] = frozenset()) -> list[CropSample]:
    """One crop per visible object but those in ``skip``; ``kinds[i]`` is object id i + 1's kind."""
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
        if object_id in skip or visible.sum() < MIN_OBJECT_PIXELS:
            continue
        proposal = _disturbed_proposal(view, object_id, rng)
        samples.append(_crop(view, proposal, height, object_id, kinds[object_id - 1], settings, rng))
    return samples


def proposal_crops_from_view(view, kinds: Sequence[str], settings: CropSettings, rng: np.random.Generator,
                             stride: int = 2) -> list[CropSample]:
    """Crops cut around the proposals the backend itself finds on this frame, with the plane it fits.

    Disturbed true masks teach the common ways proposals go wrong; these show
    the ones only the real proposal code makes on a given sensor's depth (a
    spoon's flat bowl missing, an object split at a hole, flying-pixel junk),
    with the same table-plane error the backend will have. Each proposal is
    labelled with the object owning most of it, or as background; objects no
    proposal owns get a disturbed-mask crop, so every object still appears
    (that is also the crop a depthless object gets, as the backend's
    colour-hole proposal would cut it).
    """
    from partseg_ros.backends.shapegrasp.proposals import propose_objects
    from partseg_ros.backends.shapegrasp.segmentation import SegmentationConfig
    from partseg_ros.types import GroundingRequest

    request = GroundingRequest(rgb=view.rgb, depth_m=view.depth_m, instruction="", intrinsics=view.intrinsics)
    proposals = propose_objects(request, stride, SegmentationConfig())
    if proposals is None:
        return crops_from_view(view, kinds, settings, rng)
    plane = proposals.plane
    height = height_above_plane(view.depth_m, view.intrinsics, plane.normal, plane.offset)
    samples, owned, background = [], set(), 0
    for proposal in proposals.full_resolution_masks(request):
        size = int(proposal.sum())
        if size < MIN_OBJECT_PIXELS // 2:
            continue
        counts = np.bincount(view.object_ids[proposal].ravel(), minlength=len(view.object_names))
        owner = int(np.argmax(counts[1:])) + 1 if len(counts) > 1 else 0
        share = counts[owner] / size if owner else 0.0
        if share >= OWNER_SHARE and (view.object_ids == owner).sum() >= MIN_OBJECT_PIXELS:
            owned.add(owner)
            samples.append(_crop(view, proposal, height, owner, kinds[owner - 1], settings, rng))
        elif share < BACKGROUND_SHARE and background < MAX_BACKGROUND_CROPS:
            background += 1
            samples.append(_crop(view, proposal, height, 0, BACKGROUND_KIND, settings, rng))
    return samples + crops_from_view(view, kinds, settings, rng, skip=owned)


def _crop(view, proposal: np.ndarray, height: np.ndarray, object_id: int, kind: str, settings: CropSettings,
          rng: np.random.Generator) -> CropSample:
    """The crop around one proposal, labelled with object ``object_id``'s parts (0: background, no parts)."""
    jitter = np.array([rng.normal(0, 0.04), rng.normal(0, 0.04), rng.uniform(0.9, 1.25)])
    window = square_window(proposal, settings, jitter)
    channels, scalars = crop_inputs(view.rgb, view.depth_m, height, proposal, window,
                                    window_focal_px(view.intrinsics, window), settings)
    local = np.zeros(len(view.part_names), dtype=np.uint8)
    parts: tuple[str, ...] = ()
    if object_id:
        instance = view.object_names[object_id]
        part_ids = [i for i, name in enumerate(view.part_names) if name.split("/")[0] == instance]
        for index, pid in enumerate(part_ids, start=1):
            local[pid] = index
        parts = tuple(view.part_names[pid].split("/", 1)[1] for pid in part_ids)
    labels = crop_labels(local[view.part_ids], window, settings.size)
    return CropSample(channels.astype(np.float16), scalars, labels, kind, parts)


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
    words = None if sample.kind == BACKGROUND_KIND else kind_words(sample.kind, sample.parts)
    if words is None or object_name not in words.names:
        return Query(query_text(part_phrase, object_name), 0.0, (), object_name, part_phrase)
    group = next((g for g in words.groups if part_phrase in g.phrases or part_phrase == g.name), None)
    targets = tuple(sample.parts.index(p) + 1 for p in group.generator_parts) if group else ()
    return Query(query_text(part_phrase, object_name), 1.0, targets, object_name, part_phrase)


# kind -> (the other kinds, the odds of drawing each as its hard negative)
ConfusableKinds = dict[str, tuple[tuple[str, ...], np.ndarray]]


def confusable_kinds(kinds: Sequence[str], name_vectors: np.ndarray, temperature: float = 0.1) -> ConfusableKinds:
    """For each kind, the other kinds with the odds of drawing each as its hard negative.

    A kind that shares a name with another ("knife": the bread knife and the
    steak knife; "flower": the rose and the daisy) is the confusion a request
    for the specific one must survive, so siblings get the top odds; the
    others are weighted by how close their names' sentence embeddings
    (``name_vectors``, one row per kind) lie, so "teacup" is drawn for "mug"
    more often than "hammer" is. Such pairs rarely share a random frame, where
    the ranking loss would separate them.
    """
    unit = name_vectors / np.maximum(np.linalg.norm(name_vectors, axis=1, keepdims=True), 1e-9)
    similarity = unit @ unit.T
    names = {k: set(kind_words(k, ()).names) for k in kinds}
    odds = {}
    for i, kind in enumerate(kinds):
        others = [j for j in range(len(kinds)) if j != i]
        if not others:
            continue
        closeness = np.array([1.0 if names[kind] & names[kinds[j]] else similarity[i, j] for j in others])
        weights = np.exp((closeness - closeness.max()) / temperature)
        odds[kind] = (tuple(kinds[j] for j in others), weights / weights.sum())
    return odds


def training_queries(sample: CropSample, all_kinds: dict[str, tuple[str, ...]], rng: np.random.Generator,
                     positives: int = 2, negatives: int = 2,
                     confusable: Optional[ConfusableKinds] = None,
                     hard_share: float = 0.0) -> list[Query]:
    """Phrases for one crop: parts of its own object under random names, and parts of other objects under
    names that do not also name this one (a background crop gets only the latter). With ``confusable``
    (:func:`confusable_kinds`), a ``hard_share`` of the negatives names a kind easily taken for this one."""
    words = None if sample.kind == BACKGROUND_KIND else kind_words(sample.kind, sample.parts)
    queries = []
    groups = [] if words is None else list(words.groups)
    for group in rng.permutation(len(groups))[:positives]:
        g = groups[int(group)]
        name = words.names[0] if rng.random() < 0.5 else str(rng.choice(words.names))
        phrase = str(rng.choice([p for p in g.phrases if " of " not in p] or [g.name]))
        targets = tuple(sample.parts.index(p) + 1 for p in g.generator_parts)
        queries.append(Query(query_text(phrase, name), 1.0, targets, name, phrase))
    others = [k for k in all_kinds if k not in (sample.kind, BACKGROUND_KIND)]
    own_names = set() if words is None else set(words.names)
    for _ in range(negatives):
        hard = confusable is not None and sample.kind in confusable and rng.random() < hard_share
        for _attempt in range(5):
            if hard:
                pool, odds = confusable[sample.kind]
                kind = str(pool[int(rng.choice(len(pool), p=odds))])
                if kind not in all_kinds:
                    continue
            else:
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


def _generate_shard(job: tuple[str, int, int, str, dict, float]) -> dict:
    """Render ``count`` randomised frames from ``first_seed`` on and save their crops as one shard."""
    from partseg_ros.scene.randomised import DomainSettings, random_scene, render_randomised

    out, first_seed, count, regime, crop_kwargs, real_proposal_share = job
    settings = CropSettings(**crop_kwargs)
    domain = DomainSettings.held_back() if regime == "held_back" else DomainSettings.training()
    samples: list[CropSample] = []
    records = []
    for seed in range(first_seed, first_seed + count):
        randomised = random_scene(seed, domain)
        view, meta = render_randomised(randomised, domain, view_seed=0)
        rng = np.random.default_rng([seed, 0x43524F50])
        real = np.random.default_rng([seed, 0x5245414C]).random() < real_proposal_share
        cut = proposal_crops_from_view if real else crops_from_view
        got = cut(view, randomised.kinds, settings, rng)
        for sample in got:
            sample.frame = seed
        samples += got
        records.append({"seed": seed, "camera": meta["camera"], "sensor": meta["sensor"], "crops": len(got),
                        "real_proposals": bool(real)})
    path = Path(out) / f"{regime}_{first_seed:07d}.npz"
    np.savez(path, channels=np.stack([s.channels for s in samples]), scalars=np.stack([s.scalars for s in samples]),
             labels=np.stack([s.labels for s in samples]),
             kinds=np.array([s.kind for s in samples]), parts=np.array(["|".join(s.parts) for s in samples]),
             frames=np.array([s.frame for s in samples], dtype=np.int64))
    return {"shard": path.name, "frames": records, "crops": len(samples)}


def generate_crops(out: Path, frames: int, regime: str, first_seed: int, workers: int = 2, shard_frames: int = 25,
                   settings: CropSettings = CropSettings(), progress: bool = True,
                   real_proposal_share: float = 0.0) -> list[dict]:
    """Render ``frames`` randomised frames into crop shards under ``out``; existing shards are kept (resume).

    ``real_proposal_share`` of the frames are cut around the backend's own proposals
    (:func:`proposal_crops_from_view`), the rest around disturbed true masks.
    """
    out.mkdir(parents=True, exist_ok=True)
    jobs = []
    for start in range(first_seed, first_seed + frames, shard_frames):
        count = min(shard_frames, first_seed + frames - start)
        if not (out / f"{regime}_{start:07d}.npz").exists():
            jobs.append((str(out), start, count, regime, settings.__dict__, real_proposal_share))
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
                         tuple(p for p in str(data["parts"][i]).split("|") if p), int(data["frames"][i]))


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="partseg_generate_training_crops",
                                     description="Render domain-randomised frames into training and held-back crops.")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--frames", type=int, default=2400, help="randomised training frames")
    parser.add_argument("--held-back-frames", type=int, default=200,
                        help="frames in each validation set: in-distribution (new seeds) and held-back regime")
    parser.add_argument("--seed", type=int, default=0, help="first scene seed (training); held-back seeds follow")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--real-proposal-share", type=float, default=0.5,
                        help="share of frames cut around the backend's own geometric proposals (with background "
                             "crops of the junk among them) instead of disturbed true object masks")
    args = parser.parse_args(argv)
    if not 0.0 <= args.real_proposal_share <= 1.0:
        parser.error("--real-proposal-share must lie in [0, 1]")
    for regime, frames, first in (("training", args.frames, args.seed),
                                  ("validation", args.held_back_frames, args.seed + 20_000_000),
                                  ("held_back", args.held_back_frames, args.seed + 10_000_000)):
        generate_crops(args.out, frames, regime, first, args.workers, real_proposal_share=args.real_proposal_share)
    return 0


if __name__ == "__main__":
    sys.exit(main())
