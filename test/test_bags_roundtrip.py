"""Benchmark bags: what is written reads back equal, in MCAP and sqlite3."""

from pathlib import Path

import numpy as np
import pytest
from rosbags.rosbag2 import Reader

from partseg_ros.bags.format import (
    CAMERA_INFO_TOPIC,
    COLOR_TOPIC,
    DEPTH_TOPIC,
    INSTRUCTION_TOPIC,
    LABELS_TOPIC,
    TASK_TOPIC,
    typestore,
)
from partseg_ros.bags.reader import bag_paths, read_benchmark
from partseg_ros.bags.writer import BenchmarkFrame, TaskAnnotation, frame_from_rendered_view, write_benchmark
from partseg_ros.scene.generate import generate_benchmark
from partseg_ros.scene.render import render_study_view


@pytest.fixture(scope="module")
def views():
    return [render_study_view("messy", v, seed=4, num_views=2, width=320, height=240, include_no_target=True)
            for v in range(2)]


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_rendered_views_round_trip(tmp_path: Path, views, storage):
    frames, tasks = write_benchmark(tmp_path / "bag", [frame_from_rendered_view(v) for v in views], storage)
    assert frames == 2 and tasks == 2 * len(views[0].tasks)
    samples = list(read_benchmark(tmp_path / "bag"))
    assert len(samples) == tasks
    for sample in samples:
        view = views[sample.view_index]
        task = next(t for t in view.tasks if t.task_id == sample.task.task_id)
        assert sample.scene == "messy" and sample.view == f"messy/view{sample.view_index}"
        np.testing.assert_array_equal(sample.rgb, view.rgb)
        np.testing.assert_array_equal(sample.object_ids, view.object_ids)
        np.testing.assert_array_equal(sample.part_ids, view.part_ids)
        # Depth goes through millimetres: equal to 0.5 mm, same invalid pixels.
        np.testing.assert_array_equal(np.isnan(sample.depth_m), np.isnan(view.depth_m))
        valid = np.isfinite(view.depth_m)
        assert np.max(np.abs(sample.depth_m[valid] - view.depth_m[valid])) <= 0.0005 + 1e-6
        assert sample.intrinsics == view.intrinsics
        assert sample.object_names == view.object_names and sample.part_names == view.part_names
        assert sample.task.instruction == task.instruction and sample.task.reason == task.reason
        assert sample.task.has_target == task.has_target
        np.testing.assert_array_equal(sample.task.target_part_mask, view.task_part_mask(task))
        np.testing.assert_array_equal(sample.task.target_object_mask, view.object_mask(task.target_object_ids))
        if task.has_target:
            assert [a.object_name for a in sample.task.alternatives] == list(task.targets)
            assert sample.task.target_part_mask.any()
        else:
            assert not sample.task.target_part_mask.any() and not sample.task.alternatives


def test_alternatives_split_by_object(tmp_path: Path, views):
    write_benchmark(tmp_path / "bag", [frame_from_rendered_view(views[0])])
    lollipops = next(s for s in read_benchmark(tmp_path / "bag") if s.task.instruction == "eat the lollipop")
    assert lollipops.task.target_object == "red_lollipop|green_lollipop|orange_lollipop"
    masks = lollipops.task.alternative_part_masks(lollipops.part_ids)
    assert len(masks) == 3
    np.testing.assert_array_equal(np.logical_or.reduce(masks), lollipops.task.target_part_mask)
    for alt, mask in zip(lollipops.task.alternatives, masks):
        ids = np.unique(lollipops.part_ids[mask])
        assert all(lollipops.part_names[i] == f"{alt.object_name}/stick" for i in ids)


def test_bag_layout_and_stamps(tmp_path: Path, views):
    write_benchmark(tmp_path / "bag", [frame_from_rendered_view(v) for v in views], task_interval_s=0.25)
    store = typestore()
    order, stamps = [], {}
    with Reader(tmp_path / "bag") as reader:
        types = {c.topic: c.msgtype for c in reader.connections}
        assert types[COLOR_TOPIC] == "sensor_msgs/msg/Image" and types[TASK_TOPIC] == "partseg/msg/TaskGroundTruth"
        for conn, _log_ns, raw in reader.messages():
            msg = store.deserialize_cdr(raw, conn.msgtype)
            order.append(conn.topic)
            if hasattr(msg, "header"):
                stamps.setdefault(conn.topic, []).append(msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec)
            if conn.topic == DEPTH_TOPIC:
                assert msg.encoding == "16UC1" and msg.step == 2 * msg.width
            if conn.topic == COLOR_TOPIC:
                assert msg.encoding == "rgb8" and msg.step == 3 * msg.width
    n_tasks = len(views[0].tasks)
    frame_block = ([CAMERA_INFO_TOPIC, COLOR_TOPIC, DEPTH_TOPIC, LABELS_TOPIC]
                   + [TASK_TOPIC, INSTRUCTION_TOPIC] * n_tasks)
    assert order == frame_block * 2
    # Every ground-truth message carries its frame's stamp.
    frame_stamps = stamps[COLOR_TOPIC]
    assert stamps[TASK_TOPIC] == [s for s in frame_stamps for _ in range(n_tasks)]
    assert stamps[LABELS_TOPIC] == frame_stamps == stamps[DEPTH_TOPIC]


def test_frame_without_depth_reads_back_with_none(tmp_path: Path):
    rgb = np.random.default_rng(0).integers(0, 255, (24, 32, 3), dtype=np.uint8)
    part_ids = np.zeros((24, 32), np.uint16)
    part_ids[5:10, 4:9] = 1
    frame = BenchmarkFrame(
        scene="imgs", rgb=rgb, object_ids=np.zeros_like(part_ids), part_ids=part_ids,
        object_names=["background"], part_names=["background", "cup/handle"],
        tasks=[TaskAnnotation("t0", "grab the cup", ("cup",), ("handle",), (1,), "why")],
    )
    write_benchmark(tmp_path / "bag", [frame])
    (sample,) = read_benchmark(tmp_path / "bag")
    assert sample.depth_m is None and sample.intrinsics is None
    assert not sample.task.object_labels_known and not sample.task.target_object_mask.any()
    assert sample.task.target_part_mask.sum() == 25


def test_frame_rejects_inconsistent_labels():
    rgb = np.zeros((4, 4, 3), np.uint8)
    with pytest.raises(ValueError):
        BenchmarkFrame("s", rgb, np.zeros((4, 4), np.uint16), np.full((4, 4), 3, np.uint16), ["background"],
                       ["background", "a/b"])


def test_generator_writes_one_bag_per_scene(tmp_path: Path):
    manifest = generate_benchmark(tmp_path, ["cords", "martinis"], seed=1, views=1, width=160, height=120)
    assert [b["scene"] for b in manifest["bags"]] == ["cords", "martinis"]
    assert [p.name for p in bag_paths(tmp_path)] == ["cords", "martinis"]
    samples = list(read_benchmark(tmp_path / "martinis"))
    assert [s.task.instruction for s in samples] == ["pick up the grey martini glass",
                                                     "pick up the green martini glass"]
    assert (tmp_path / "benchmark.yaml").is_file()
