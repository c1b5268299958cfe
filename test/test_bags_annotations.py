"""The bag writer validates annotations, resolves ids from names, overwrites on request and keeps a
recording's stamps and distortion (issue 13, "Annotations").

Each bad annotation below used to be written without complaint and read back
as "target hidden" or an empty oracle hint.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from partseg_ros import console
from partseg_ros.bags.format import CAMERA_INFO_TOPIC, DEPTH_TOPIC, typestore
from partseg_ros.bags.reader import read_benchmark
from partseg_ros.bags.writer import (
    AnnotationLimits,
    BenchmarkFrame,
    TaskAnnotation,
    annotate_task,
    write_benchmark,
)
from partseg_ros.types import CameraIntrinsics

H, W = 24, 32
K = CameraIntrinsics(30.0, 30.0, 15.5, 11.5, W, H)
OBJECTS = ["background", "mug_a", "mug_b"]
PARTS = ["background", "mug_a/body", "mug_a/handle", "mug_b/body", "mug_b/handle"]


def _labels() -> tuple[np.ndarray, np.ndarray]:
    object_ids = np.zeros((H, W), np.uint16)
    part_ids = np.zeros((H, W), np.uint16)
    object_ids[4:12, 2:12], part_ids[4:12, 2:10], part_ids[4:12, 10:12] = 1, 1, 2
    object_ids[4:12, 16:28], part_ids[4:12, 16:24], part_ids[4:12, 24:28] = 2, 3, 4
    return object_ids, part_ids


def _frame(**changes) -> BenchmarkFrame:
    object_ids, part_ids = _labels()
    fields = dict(scene="mugs", rgb=np.full((H, W, 3), 120, np.uint8), object_ids=object_ids, part_ids=part_ids,
                  object_names=list(OBJECTS), part_names=list(PARTS), depth_m=np.full((H, W), 0.6, np.float32),
                  intrinsics=K, tasks=[TaskAnnotation("mug", "pick up the mug", ("mug_a", "mug_b"), ("handle",),
                                                      (2, 4))])
    fields.update(changes)
    return BenchmarkFrame(**fields)


def _task(*args) -> dict:
    return {"tasks": [TaskAnnotation("t", "pick up the mug", *args)]}


BAD = {
    "part id past part_names": (_task(("mug_a",), ("handle",), (2, 7)), "part id 7"),
    "part id names another part": (_task(("mug_a",), ("handle",), (1,)), "'mug_a/body', not a handle"),
    "part id names another object": (_task(("mug_a",), ("handle",), (2, 4)), "'mug_b/handle'"),
    "targeted task without part ids": (_task(("mug_a",), ("handle",), ()), "no target_part_ids"),
    "target object not in object_names": (_task(("mug_a", "cup"), ("handle",), (2,)), "'cup' is not in object_names"),
    "alternative without any id": (_task(("mug_a", "mug_b"), ("handle",), (2,)), "['mug_b'] have none"),
    "no-target task with part ids": (_task((), (), (2,)), "no target object but lists"),
    "part name without object/": ({"part_names": ["background", "body", "mug_a/handle", "mug_b/body",
                                                  "mug_b/handle"]}, "'body' must be 'object/part'"),
    "object name with /": ({"object_names": ["background", "mug/a", "mug_b"]}, "'mug/a'"),
    "part of an unknown object": ({"part_names": ["background", "mug_c/body", "mug_a/handle", "mug_b/body",
                                                  "mug_b/handle"]}, "'mug_c' is not in object_names"),
    "duplicate object name": ({"object_names": ["background", "mug_a", "mug_a"]}, "'mug_a' twice"),
    "duplicate part name": ({"part_names": ["background", "mug_a/body", "mug_a/handle", "mug_a/body",
                                            "mug_b/handle"]}, "'mug_a/body' twice"),
    "depth in millimetres": ({"depth_m": np.full((H, W), 600.0, np.float32)}, "must be metres"),
    "negative depth": ({"depth_m": np.full((H, W), -0.5, np.float32)}, "negative"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_annotations_are_refused(case):
    changes, message = BAD[case]
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        _frame(**changes)


def test_good_annotations_pass_and_read_back(tmp_path):
    write_benchmark(tmp_path / "bag", [_frame()])
    (sample,) = read_benchmark(tmp_path / "bag")
    assert [a.part_ids for a in sample.task.alternatives] == [(2,), (4,)]
    # Depth with holes (NaN, 0) is fine; so is a long-range recording with a raised limit.
    holes = np.full((H, W), 0.6, np.float32)
    holes[0, :4] = (np.nan, 0.0, np.inf, 0.7)
    _frame(depth_m=holes)
    _frame(depth_m=np.full((H, W), 35.0, np.float32), limits=AnnotationLimits(max_median_depth_m=50.0))


def test_tasks_added_after_construction_are_checked_when_written(tmp_path):
    frame = _frame()
    frame.tasks.append(TaskAnnotation("late", "lift the mug", ("mug_a",), ("lid",), (2,)))
    with pytest.raises(ValueError, match="not a lid"):
        write_benchmark(tmp_path / "bag", [frame])
    assert not (tmp_path / "bag").exists()  # no half-written bag left behind


def test_annotate_task_resolves_ids_from_names():
    frame = _frame(tasks=[])
    task = annotate_task(frame, "mug", "pick up the mug", ("mug_a", "mug_b"), ("handle",), "by the handle")
    assert task.target_part_ids == (2, 4) and task.target_objects == ("mug_a", "mug_b")
    assert annotate_task(frame, "both", "lift the mug", ("mug_b",), ("body", "handle")).target_part_ids == (3, 4)
    assert annotate_task(frame, "none", "pour the tea").target_part_ids == ()
    with pytest.raises(ValueError, match="'mug_a' has no part named spout"):
        annotate_task(frame, "bad", "pour", ("mug_a",), ("spout",))
    with pytest.raises(ValueError, match="'mugg' has no part"):
        annotate_task(frame, "bad", "pick up the mug", ("mugg",), ("handle",))


def test_overwrite_only_when_asked_and_only_a_bag(tmp_path):
    bag = tmp_path / "bag"
    write_benchmark(bag, [_frame()])
    with pytest.raises(FileExistsError, match="overwrite"):
        write_benchmark(bag, [_frame()])
    relabelled = _frame(tasks=[TaskAnnotation("one", "hold mug b", ("mug_b",), ("handle",), (4,))])
    assert write_benchmark(bag, [relabelled], overwrite=True) == (1, 1)
    assert [s.task.task_id for s in read_benchmark(bag)] == ["one"]
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "todo.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="not a rosbag2 bag"):
        write_benchmark(notes, [_frame()], overwrite=True)
    assert (notes / "todo.txt").read_text() == "keep me"


def test_converter_overwrite_flag(tmp_path, capsys):
    from PIL import Image

    from partseg_ros.bags.instructpart_converter import mask_filename

    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    Image.fromarray(np.full((H, W, 3), 80, np.uint8)).save(tmp_path / "images" / "k.jpg")
    mask = np.zeros((H, W), np.uint8)
    mask[4:9, 4:9] = 255
    Image.fromarray(mask).save(tmp_path / "masks" / mask_filename("k.jpg", "kettle", "handle"))
    (tmp_path / "data.json").write_text('[{"image_path": "k.jpg", "part_list": [{"object": "kettle", '
                                        '"part": "handle", "instruction": ["hold the kettle"]}]}]')
    args = [str(tmp_path / "data.json"), "--out", str(tmp_path / "bag")]
    assert console.run("partseg_convert_instructpart", args) == 0
    assert console.run("partseg_convert_instructpart", args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "exists already" in err[0] and "--overwrite" in err[0]
    assert console.run("partseg_convert_instructpart", [*args, "--overwrite"]) == 0


def _raw_messages(bag: Path, topic: str) -> list:
    from rosbags.rosbag2 import Reader

    store = typestore()
    with Reader(bag) as reader:
        connections = [c for c in reader.connections if c.topic == topic]
        return [store.deserialize_cdr(raw, c.msgtype) for c, _, raw in reader.messages(connections=connections)]


def test_real_recording_keeps_its_stamps_and_distortion(tmp_path):
    """Two frames 33 ms apart (a 30 Hz camera), depth stamped 4 ms after colour, a rational-polynomial lens."""
    first_ns = 1_712_345_678_123_456_789
    coefficients = (0.12, -0.25, 0.001, -0.002, 0.08, 0.3, -0.1, 0.02)
    frames = [
        dataclasses.replace(_frame(), stamp_ns=first_ns + k * 33_333_333, depth_stamp_ns=first_ns + k * 33_333_333
                            + 4_000_000, distortion_model="rational_polynomial", distortion=coefficients)
        for k in range(2)
    ]
    write_benchmark(tmp_path / "bag", frames)
    samples = list(read_benchmark(tmp_path / "bag"))
    assert [s.stamp for s in samples] == [first_ns, first_ns + 33_333_333]
    assert all(s.depth_m is not None for s in samples)  # paired with the 4 ms-later depth
    depth_stamps = [m.header.stamp.sec * 1_000_000_000 + m.header.stamp.nanosec
                    for m in _raw_messages(tmp_path / "bag", DEPTH_TOPIC)]
    assert depth_stamps == [first_ns + 4_000_000, first_ns + 33_333_333 + 4_000_000]
    (info, _) = _raw_messages(tmp_path / "bag", CAMERA_INFO_TOPIC)
    assert info.distortion_model == "rational_polynomial"
    assert np.allclose(info.d, coefficients)
    # Frames out of order cannot be found by stamp.
    with pytest.raises(ValueError, match="not after the previous frame"):
        write_benchmark(tmp_path / "bag2", frames[::-1])
    with pytest.raises(ValueError, match="rational_polynomial takes 8"):
        _frame(distortion_model="rational_polynomial", distortion=coefficients + (0.5,))


def test_synthetic_frames_keep_a_distortion_free_camera_info(tmp_path):
    write_benchmark(tmp_path / "bag", [_frame()])
    (info,) = _raw_messages(tmp_path / "bag", CAMERA_INFO_TOPIC)
    assert info.distortion_model == "plumb_bob" and not np.any(info.d) and len(info.d) == 5
