"""Validation that measures generalisation: randomised scenes and generated wording the study never shows.

``partseg_validate_generalisation --backend pisa_rgbd --scenes 60`` renders
randomised scenes (:mod:`partseg_ros.scene.randomised`, seeds disjoint from
training and from the study), asks generated instructions
(:mod:`partseg_ros.language.paraphrase`) and scores the answers with the
study's mask criterion (IoU with the target part >= 0.5) and no-target accuracy.

Regimes, reported side by side:

* ``in_distribution``: the training look (cameras, sensors, shape style), new seeds;
* ``held_back``: a camera, a depth sensor model and a shape style training never samples;
* ``held_back_kinds``: the training look, but the target is an object kind training never builds.

Two diagnostic regimes take the held-back scenes (same seeds) with one change at a
time, to say which change costs what: ``held_back_camera`` (the held-back camera and
depth sensor, training shapes) and ``held_back_shapes`` (the held-back shape style,
training cameras and sensors). ``low_resolution`` takes the in-distribution scenes (same seeds)
through a RealSense D435 at 424x240, a mode training never samples. They run only when asked for.

Within each regime, wording families are split into those the knowledge
base's rules were written with and held-back families.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Optional, Sequence

import numpy as np

from partseg_ros.backends.base import parse_options
from partseg_ros.backends.registry import available_backends, create_backend
from partseg_ros.language.knowledge_base import KnowledgeBase, ObjectEntry, load_knowledge_base
from partseg_ros.language.paraphrase import (
    FAMILIES,
    HELD_BACK_FAMILIES,
    GeneratedInstruction,
    instruction_for,
    task_actions,
    task_instruction,
)
from partseg_ros.types import GroundingRequest

if TYPE_CHECKING:
    from partseg_ros.scene.randomised import DomainSettings

BASIC_COLOURS = ("red", "orange", "yellow", "green", "blue", "purple", "pink", "brown", "black", "white", "grey")
REGIMES = ("in_distribution", "held_back", "held_back_kinds")
DIAGNOSTIC_REGIMES = ("held_back_camera", "held_back_shapes", "low_resolution")
SEED_BASE = {"in_distribution": 30_000_000, "held_back": 40_000_000, "held_back_kinds": 50_000_000,
             "held_back_camera": 40_000_000, "held_back_shapes": 40_000_000, "low_resolution": 30_000_000}


@dataclass
class GeneralisationRecord:
    regime: str
    scene_seed: int
    instruction: str
    family: str
    target_kind: str  # "" for a no-target task
    iou: float
    success: bool
    latency_ms: float
    explanation: str


def _target_mask(view, instance: str, generator_parts: Sequence[str]) -> np.ndarray:
    ids = [i for i, name in enumerate(view.part_names) if name.split("/")[0] == instance
           and name.split("/", 1)[1] in generator_parts]
    return np.isin(view.part_ids, ids)


def _generate(entry: ObjectEntry, name: str, family: str, rng: np.random.Generator, kb: KnowledgeBase,
              colour: Optional[str] = None, named_part: Optional[str] = None) -> Optional[GeneratedInstruction]:
    """The family's instruction for the object, or None for a task family when the object has no use to name."""
    if family != "task":
        return instruction_for(entry, name, family, rng, colour, named_part)
    uses = task_actions(entry, kb.actions)
    if not uses:
        return None
    return task_instruction(entry, name, uses[int(rng.integers(len(uses)))], rng, colour)


def tasks_for_scene(randomised, view, rng: np.random.Generator, kb, per_scene: int = 4,
                    target_kinds: Optional[Sequence[str]] = None) -> list[dict]:
    """Targeted tasks (family, colour, target mask) and one no-target task for a rendered scene."""
    from partseg_ros.backends.pisa_rgbd.vocabulary import kind_words, spoken
    from partseg_ros.scene.objects import object_kinds

    scene = randomised.scene
    by_kind: dict[str, list] = defaultdict(list)
    for obj in scene.objects:
        by_kind[obj.kind].append(obj)
    tasks = []
    kinds = [k for k in by_kind if kb.object_for_phrase(spoken(k)) is not None
             and (target_kinds is None or k in target_kinds)]
    for kind in rng.permutation(kinds)[:per_scene]:
        kind = str(kind)
        entry = kb.object_for_phrase(spoken(kind))
        objs = by_kind[kind]
        family = str(rng.choice(FAMILIES))
        colour = None
        targets = objs
        if len(objs) > 1:  # same-kind rivals: only a colour word can single one out
            target = objs[int(rng.integers(len(objs)))]
            colour = target.color_name if target.color_name in BASIC_COLOURS else None
            if colour is None or any(o.color_name == colour for o in objs if o is not target):
                colour = None
            else:
                targets = [target]
        words = kind_words(kind, tuple(objs[0].part_names), kb)
        groups = {g.name: g for g in words.groups}
        named = None
        if family == "named_part":
            graspable = [p.name for p in entry.parts if p.graspable and p.name in groups]
            if not graspable:
                continue
            named = str(rng.choice(graspable))
        generated = _generate(entry, spoken(kind), family, rng, kb, colour, named)
        if generated is None or generated.part not in groups:
            continue
        mask = np.zeros(view.part_ids.shape, bool)
        for obj in targets:
            mask |= _target_mask(view, obj.instance, groups[generated.part].generator_parts)
        if mask.sum() < 30:
            continue  # the part is hidden in this view: no fair question
        tasks.append({"instruction": generated.text, "family": family, "kind": kind, "mask": mask})
    present = set(by_kind)
    absent = [k for k in object_kinds() if k not in present and kb.object_for_phrase(spoken(k)) is not None
              and kb.object_for_phrase(spoken(k)).name not in {kb.object_for_phrase(spoken(p)).name
                                                               for p in present if kb.object_for_phrase(spoken(p))}]
    if absent:
        kind = str(rng.choice(absent))
        family = str(rng.choice([f for f in FAMILIES if f != "named_part"]))
        entry = kb.object_for_phrase(spoken(kind))
        generated = _generate(entry, spoken(kind), family, rng, kb) or instruction_for(entry, spoken(kind),
                                                                                       "imperative", rng)
        family = generated.family
        tasks.append({"instruction": generated.text, "family": family, "kind": "", "mask": None})
    return tasks


def regime_domain(regime: str) -> "DomainSettings":
    """The generator settings a regime renders with (``held_back_kinds`` changes the targets, not the look)."""
    from partseg_ros.scene.randomised import DomainSettings

    domains = {"in_distribution": DomainSettings.training, "held_back_kinds": DomainSettings.training,
               "held_back": DomainSettings.held_back, "held_back_camera": DomainSettings.held_back_camera,
               "held_back_shapes": DomainSettings.held_back_shapes, "low_resolution": DomainSettings.low_resolution}
    if regime not in domains:
        raise ValueError(f"unknown regime {regime!r}; use one of {', '.join(REGIMES + DIAGNOSTIC_REGIMES)}")
    return domains[regime]()


def validate(backend_name: str, regime: str, scenes: int, options: Optional[dict] = None, seed: int = 0,
             progress: bool = True) -> list[GeneralisationRecord]:
    from partseg_ros.scene.randomised import HELD_BACK_KINDS, random_scene, render_randomised

    kb = load_knowledge_base()
    backend = create_backend(backend_name, **(options or {}))
    backend.load()
    backend.warmup()
    domain = regime_domain(regime)
    records = []
    for index in range(scenes):
        scene_seed = SEED_BASE[regime] + seed * 100_000 + index
        rng = np.random.default_rng([scene_seed, 0x5641])
        target_kinds = None
        kinds = None
        if regime == "held_back_kinds":
            target_kinds = [k for k in HELD_BACK_KINDS if load_knowledge_base().object_for_phrase(k.replace("_", " "))]
            from partseg_ros.scene.objects import object_kinds

            pool = [k for k in object_kinds() if k not in HELD_BACK_KINDS]
            kinds = [str(rng.choice(target_kinds))] + list(rng.choice(pool, size=int(rng.integers(2, 5))))
        randomised = random_scene(scene_seed, domain, kinds=kinds)
        view, meta = render_randomised(randomised, domain, view_seed=0)
        for task in tasks_for_scene(randomised, view, rng, kb, target_kinds=target_kinds):
            start = time.perf_counter()
            result = backend.ground(GroundingRequest(view.rgb, task["instruction"], view.depth_m, view.intrinsics))
            latency = (time.perf_counter() - start) * 1000.0
            predicted = result.union_mask(view.rgb.shape[:2])
            if task["mask"] is None:
                iou, success = 0.0, result.no_target
            else:
                union = int((predicted | task["mask"]).sum())
                iou = float((predicted & task["mask"]).sum() / union) if union else 0.0
                success = iou >= 0.5
            records.append(GeneralisationRecord(regime, scene_seed, task["instruction"], task["family"], task["kind"],
                                                iou, bool(success), latency, result.explanation[-300:]))
        if progress:
            done = [r for r in records]
            rate = sum(r.success for r in done) / max(len(done), 1)
            print(f"\r{regime} {backend_name}: scene {index + 1}/{scenes}, {len(done)} tasks, {rate:.1%} correct",
                  end="", flush=True)
    if progress:
        print(flush=True)
    return records


def summarise(records: Sequence[GeneralisationRecord]) -> dict[str, float | int]:
    targeted = [r for r in records if r.target_kind]
    seen = [r for r in targeted if r.family not in HELD_BACK_FAMILIES]
    held = [r for r in targeted if r.family in HELD_BACK_FAMILIES]
    none = [r for r in records if not r.target_kind]

    def rate(rows: list) -> float:
        return sum(r.success for r in rows) / len(rows) if rows else float("nan")

    return {"targeted": rate(targeted), "seen_wording": rate(seen), "held_back_wording": rate(held),
            "no_target": rate(none), "tasks": len(records), "targeted_tasks": len(targeted),
            "latency_ms_p50": float(np.median([r.latency_ms for r in records])) if records else float("nan")}


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="partseg_validate_generalisation", description=__doc__.split("\n")[0])
    parser.add_argument("--backend", action="append", choices=available_backends(), required=True,
                        help="backend to validate (repeat to compare)")
    parser.add_argument("--regime", action="append", choices=REGIMES + DIAGNOSTIC_REGIMES,
                        help="default: the first three (the diagnostic held_back_camera / held_back_shapes only when "
                             "named)")
    parser.add_argument("--scenes", type=int, default=40, help="randomised scenes per regime")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--backend-option", action="append", default=[], metavar="NAME:K=V",
                        help="option for one backend, e.g. pisa_rgbd:checkpoint=runs/x/model (repeatable)")
    parser.add_argument("--out", type=Path, help="write records and the summary as JSON here")
    args = parser.parse_args(argv)
    options: dict[str, list[str]] = defaultdict(list)
    for item in args.backend_option:
        name, sep, pair = item.partition(":")
        if not sep or name not in args.backend:
            parser.error(f"--backend-option expects NAME:K=V with NAME one of {args.backend}, got {item!r}")
        options[name].append(pair)
    summary: dict[str, dict] = {}
    all_records = []
    for backend in args.backend:
        for regime in args.regime or REGIMES:
            records = validate(backend, regime, args.scenes, parse_options(options[backend]), seed=args.seed)
            all_records += [asdict(r) | {"backend": backend} for r in records]
            summary[f"{backend}/{regime}"] = summarise(records)
    print(f"{'backend/regime':34s} {'targeted':>9s} {'seen wording':>13s} {'held-back wording':>18s} "
          f"{'no-target':>10s} {'tasks':>6s} {'p50 ms':>7s}")
    for key, row in summary.items():
        print(f"{key:34s} {row['targeted']:9.1%} {row['seen_wording']:13.1%} {row['held_back_wording']:18.1%} "
              f"{row['no_target']:10.1%} {row['tasks']:6d} {row['latency_ms_p50']:7.0f}")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"summary": summary, "records": all_records}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
