"""Evaluator runs over real bags: bag identity, sharding before decoding, progress totals, printed text.

The bags are written with the benchmark writer from small hand-built RGB-D
frames, and answered by test_evaluation_pipeline's colour-word backend, which
computes its masks from the pixels.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from partseg_ros.bags import messages
from partseg_ros.bags.reader import count_tasks, read_benchmark
from partseg_ros.bags.writer import BenchmarkFrame, TaskAnnotation, write_benchmark
from partseg_ros.evaluation import cli
from partseg_ros.evaluation.aggregate import build_summary
from partseg_ros.evaluation.records import PROTOCOL_FULL
from partseg_ros.evaluation.runner import EvaluationSettings, TaskEvaluator, evaluate_inprocess
from partseg_ros.evaluation.sharding import evaluate_local, make_shards, plan_shards, run_shard
from partseg_ros.evaluation.tasks import bag_labels, iter_tasks
from test_evaluation_pipeline import BACKEND_SPEC, K, _scene

OBJECT_NAMES = ["background", "mug", "knife"]
PART_NAMES = ["background", "mug/body", "mug/handle", "knife/blade", "knife/handle"]


def _frame(tasks: list[TaskAnnotation], shade: int = 0) -> BenchmarkFrame:
    rgb, depth, object_ids, part_ids = _scene()
    rgb = rgb.copy()
    rgb[0, 0] = shade  # frames of different bags differ
    return BenchmarkFrame(scene="martinis", rgb=rgb, depth_m=depth, intrinsics=K,
                          object_ids=object_ids.astype(np.uint16), part_ids=part_ids.astype(np.uint16),
                          object_names=OBJECT_NAMES, part_names=PART_NAMES, tasks=tasks)


MUG = TaskAnnotation("mug", "pick up the mug by the red handle", ("mug",), ("handle",), (2,))
KNIFE = TaskAnnotation("knife", "hold the knife by its yellow handle", ("knife",), ("handle",), (4,))
WRONG = TaskAnnotation("wrong", "cut with the green blade please", ("knife",), ("handle",), (4,))


def _write(path: Path, frames: list[BenchmarkFrame]) -> Path:
    write_benchmark(path, frames)
    return path


@pytest.fixture(scope="module")
def twin_bags(tmp_path_factory) -> list[Path]:
    """Two bags both called "martinis", in different folders, with different tasks."""
    root = tmp_path_factory.mktemp("twins")
    a = _write(root / "run_a" / "martinis", [_frame([MUG, KNIFE])])
    b = _write(root / "run_b" / "martinis", [_frame([WRONG], shade=9)])
    return [a, b]


@pytest.fixture(scope="module")
def long_bag(tmp_path_factory) -> Path:
    """Three frames of three tasks: 9 tasks in all."""
    path = tmp_path_factory.mktemp("long") / "kitchen"
    return _write(path, [_frame([MUG, KNIFE, WRONG], shade=i) for i in range(3)])


def test_bag_labels_are_unique_and_short(tmp_path):
    paths = [tmp_path / "x" / "run_a" / "martinis", tmp_path / "x" / "run_b" / "martinis", tmp_path / "mugs"]
    assert list(bag_labels(paths).values()) == ["run_a/martinis", "run_b/martinis", "mugs"]
    # The same parent name one level up: the labels grow until they differ.
    deep = [tmp_path / "a" / "s" / "m", tmp_path / "b" / "s" / "m"]
    assert list(bag_labels(deep).values()) == ["a/s/m", "b/s/m"]


def test_bags_with_the_same_folder_name_are_not_merged(twin_bags):
    records = evaluate_inprocess(twin_bags, EvaluationSettings(backend=BACKEND_SPEC, overlays=False), progress=False)
    keys = [r.key for r in records]
    assert len(keys) == len(set(keys)) == 6  # 3 tasks x 2 protocols, no (bag, sample_index) collision
    assert {r.bag for r in records} == {"run_a/martinis", "run_b/martinis"}
    per_scene = build_summary(records)[PROTOCOL_FULL]["per_scene"]
    assert sorted(per_scene) == ["run_a/martinis/martinis", "run_b/martinis/martinis"]
    assert per_scene["run_a/martinis/martinis"]["num_tasks"] == 2
    assert per_scene["run_b/martinis/martinis"]["num_tasks"] == 1


def test_shards_decode_only_their_own_tasks(long_bag, monkeypatch):
    decoded = []
    real_decode = messages.decode_color
    monkeypatch.setattr(messages, "decode_color", lambda msg: decoded.append(1) or real_decode(msg))
    tasks = list(iter_tasks(long_bag, stride=4, offset=1))
    assert [t.sample_index for t in tasks] == [1, 5]
    assert len(decoded) == 2  # the other 7 tasks' images were never decoded
    assert [s.index for s in read_benchmark(long_bag, select=lambda i: i >= 7)] == [7, 8]


def test_shards_give_the_same_tasks_as_one_pass(long_bag):
    evaluator = TaskEvaluator(EvaluationSettings(backend=BACKEND_SPEC, protocols=(PROTOCOL_FULL,), overlays=False))
    whole = [r for task in iter_tasks(long_bag) for r in evaluator.evaluate(task)]
    shards, total = plan_shards([long_bag], num_workers=1)
    assert total == count_tasks(long_bag) == 9
    assert len(shards) == 4 and sum(s.num_tasks for s in shards) == 9
    sharded = sorted((r for s in shards for r in run_shard(evaluator, s)), key=lambda r: r.sample_index)
    assert [(r.sample_index, r.task_id, r.scores()) for r in sharded] == [
        (r.sample_index, r.task_id, r.scores()) for r in whole
    ]
    # A bag smaller than the stride gets no empty shards.
    assert len(make_shards([long_bag], num_workers=4, task_counts={long_bag: 9})) == 9


def _final_bar(err: str) -> str:
    return err.replace("\r", "\n").strip().splitlines()[-1]


def test_progress_bars_know_the_task_count(twin_bags, long_bag, capsys):
    settings = EvaluationSettings(backend=BACKEND_SPEC, protocols=(PROTOCOL_FULL,), overlays=False)
    evaluate_inprocess(twin_bags, settings, progress=True)
    assert re.search(r"\b3/3 \[", _final_bar(capsys.readouterr().err))
    records = evaluate_local([long_bag, *twin_bags], settings, num_workers=2, progress=True)
    assert len(records) == 12
    assert re.search(r"\b12/12 \[", _final_bar(capsys.readouterr().err))


def test_summary_and_captions_read_cleanly(twin_bags, tmp_path, capsys):
    """No "n/a%" when a figure is undefined, and a missed grasp point gives its reason, not "(ok)"."""
    code = cli.main([str(twin_bags[1]), "--backend", BACKEND_SPEC, "--protocol", "full", "--no-progress",
                     "--out", str(tmp_path / "report")])
    assert code == 0
    out = capsys.readouterr().out
    assert "no-target acc. n/a;" in out and "n/a%" not in out  # the bag has no no-target task
    assert "mask 0.0%" in out
    markdown = (tmp_path / "report" / "report.md").read_text()
    assert "grasp point miss (centroid off the target part)" in markdown
    assert "(ok)" not in markdown and "n/a%" not in markdown
