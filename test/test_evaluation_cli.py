"""Command-line plumbing of partseg_evaluate: bag discovery, options, params file, Ray, node command."""

import sys

import numpy as np
import pytest

from partseg_ros.evaluation import cli, node_params
from partseg_ros.evaluation.runner import EvaluationSettings
from partseg_ros.evaluation.sharding import RayUnavailableError, evaluate_ray, make_shards
from partseg_ros.ros.live_evaluation import node_command


def _fake_bag(folder):
    folder.mkdir(parents=True)
    (folder / "metadata.yaml").write_text("rosbag2_bagfile_information: {}\n")
    return folder


def test_find_bags_expands_folders(tmp_path):
    a = _fake_bag(tmp_path / "set" / "b_scene")
    b = _fake_bag(tmp_path / "set" / "a_scene")
    c = _fake_bag(tmp_path / "single")
    assert cli.find_bags([tmp_path / "set", c, a]) == sorted([a.resolve(), b.resolve(), c.resolve()])
    with pytest.raises(FileNotFoundError):
        cli.find_bags([tmp_path / "missing"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError):
        cli.find_bags([tmp_path / "empty"])


def test_backend_options_keep_their_types():
    assert cli.parse_options(["threshold=0.5", "steps=3", "fp16=true", "name=big model"]) == {
        "threshold": 0.5,
        "steps": 3,
        "fp16": True,
        "name": "big model",
    }


def test_params_file_configures_both_paths(tmp_path):
    params = tmp_path / "p.yaml"
    params.write_text(
        "/**:\n  ros__parameters:\n    grasp:\n      min_points: 99\n"
        "/**/partseg:\n  ros__parameters:\n    backend: pisa\n    backend_options:\n      checkpoint: /m\n"
        "    grasp.erosion_px: 1\n"
        "other_node:\n  ros__parameters:\n    grasp:\n      min_points: 5\n"
    )
    assert node_params.grasp_options(params) == {"min_points": 99, "erosion_px": 1}
    assert cli.backend_options_for("pisa", params, {"device": "cpu"}) == {"checkpoint": "/m", "device": "cpu"}
    # Options written for another backend are not forced on this one.
    assert cli.backend_options_for("shapegrasp", params, {}) == {}


def test_node_command_pins_backend_grasp_and_topics(tmp_path):
    from types import SimpleNamespace

    topics = SimpleNamespace(color="/c", depth="/d", camera_info="/i", instruction="/x")
    settings = EvaluationSettings(backend="pisa", backend_options={"fp16": True}, grasp_options={"min_points": 12})
    command = node_command(tmp_path / "p.yaml", settings, topics)
    joined = " ".join(command)
    for expected in (
        "--params-file",
        "autostart:=true",
        "backend:=pisa",
        "backend_options.fp16:=true",
        "grasp.min_points:=12",
        "topics.color:=/c",
        # Grasp regions in the optical frame of the replayed image, whatever the recording calls it.
        'frames.target_frame:=""',
    ):
        assert expected in joined


def test_shards_cover_every_task_once():
    shards = make_shards(["a", "b"], num_workers=2)
    for bag in ("a", "b"):
        offsets = sorted(s.offset for s in shards if s.bag == bag)
        stride = shards[0].stride
        assert offsets == list(range(stride))
        # every index i lands in exactly one shard of its bag
        assert all(sum(1 for o in offsets if i % stride == o) == 1 for i in range(50))


def test_ray_missing_gives_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError, whether or not it is installed
    with pytest.raises(RayUnavailableError, match="pip install"):
        evaluate_ray([tmp_path], EvaluationSettings(backend="shapegrasp"), "auto", 2, progress=False)


def test_live_path_needs_the_answerer_the_ros_layer_plugs_in(tmp_path, capsys):
    """The evaluator imports no ROS: called without the ROS layer's answerer, --path live says where it is."""
    bag = _fake_bag(tmp_path / "bag")
    code = cli.main([str(bag), "--path", "live", "--out", str(tmp_path / "out"), "--no-progress"])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "partseg_ros.ros.live_evaluation" in err[0]


def test_any_task_answerer_serves_the_live_path(tmp_path):
    """A plain-Python answerer (the ground truth itself) through the same interface the DDS client implements."""
    import contextlib
    import json

    from partseg_ros.bags.writer import BenchmarkFrame, TaskAnnotation, write_benchmark
    from partseg_ros.evaluation.answering import TaskAnswerer
    from partseg_ros.evaluation.records import PATH_LIVE, PROTOCOL_FULL
    from partseg_ros.evaluation.scoring import Prediction

    part_ids = np.zeros((24, 32), np.uint16)
    part_ids[5:10, 4:9] = 1
    frame = BenchmarkFrame(scene="imgs", rgb=np.full((24, 32, 3), 90, np.uint8), object_ids=np.zeros_like(part_ids),
                           part_ids=part_ids, object_names=["background"], part_names=["background", "cup/handle"],
                           tasks=[TaskAnnotation("t0", "grab the cup", ("cup",), ("handle",), (1,), "why")])
    write_benchmark(tmp_path / "bag", [frame])

    class GroundTruth:
        path, protocols = PATH_LIVE, (PROTOCOL_FULL,)

        def answer(self, task, protocol):
            return Prediction(task.target_part_mask, 1, "cup", "handle", None, "no depth", 2.0)

    assert isinstance(GroundTruth(), TaskAnswerer)
    settings_seen = []

    @contextlib.contextmanager
    def start(settings, live):
        settings_seen.append((settings.backend, live.task_timeout_s))
        yield GroundTruth()

    out = tmp_path / "out"
    code = cli.main([str(tmp_path / "bag"), "--path", "live", "--task-timeout", "7", "--out", str(out),
                     "--no-progress", "--no-overlays"], live_answerer=start)
    assert code == 0 and settings_seen == [("shapegrasp", 7.0)]
    (record,) = json.loads((out / "report.json").read_text())["records"]
    assert record["path"] == PATH_LIVE and record["mask_success"] and record["iou"] == 1.0
    with pytest.raises(cli.AnsweringError, match="oracle_object"):
        cli.run_evaluation(cli.build_parser().parse_args(
            [str(tmp_path / "bag"), "--path", "live", "--protocol", "both", "--out", str(out), "--no-progress"]),
            live_answerer=start)
