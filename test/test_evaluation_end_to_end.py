"""partseg_evaluate end to end on a generated bag: in process, sharded, and live over DDS.

A deterministic backend must score identically on every path; the live path
starts the real partseg node as its own process (loopback DDS) and talks to it
over topics. The backend is the colour-word test backend of
test_evaluation_pipeline.py, given to both paths as ``module:Class`` with an
option, so the option plumbing is exercised too.
"""

import json
import math
import os
from pathlib import Path

import pytest

from partseg_ros.evaluation.records import SCORE_FIELDS
from partseg_ros.ros import live_evaluation

TEST_DIR = Path(__file__).resolve().parent
BACKEND = ["--backend", "test_evaluation_pipeline:ColorWordBackend", "--backend-option", "tolerance=150"]


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    from partseg_ros.scene.generate import generate_benchmark

    out = tmp_path_factory.mktemp("bench")
    generate_benchmark(out, scenes=["mugs"], views=1, width=320, height=240, include_no_target=True)
    return out


@pytest.fixture(autouse=True)
def _test_backend_importable(monkeypatch):
    # The live node is a separate process: it must be able to import the test backend too.
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(TEST_DIR), os.environ.get("PYTHONPATH")])))


def _evaluate(bench: Path, out: Path, *extra: str) -> dict:
    code = live_evaluation.main([str(bench), *BACKEND, "--protocol", "full", "--out", str(out), "--no-progress",
                                 *extra])
    assert code == 0
    return json.loads((out / "report.json").read_text())


def _scores(document: dict) -> list[tuple]:
    return [(r["task_id"], r["view"], tuple(r[k] for k in SCORE_FIELDS)) for r in document["records"]]


def _without_latency(summary: dict) -> dict:
    overall = dict(summary["full"]["overall"])
    return {k: v for k, v in overall.items() if not k.startswith(("latency_", "throughput"))}


@pytest.fixture(scope="module")
def inprocess_dir(bench, tmp_path_factory):
    out = tmp_path_factory.mktemp("inprocess")
    _evaluate(bench, out)
    return out


@pytest.fixture(scope="module")
def inprocess_report(inprocess_dir):
    return json.loads((inprocess_dir / "report.json").read_text())


def test_inprocess_scores_are_real(inprocess_report):
    records = inprocess_report["records"]
    assert len(records) >= 4 and any(not r["has_target"] for r in records)
    # The comparisons below must cover masks and grasp centroids, not only empty answers.
    assert any(not r["prediction_empty"] for r in records)
    assert any(r["grasp_status"] == "ok" for r in records)
    assert all(r["latency_ms"] > 0 for r in records)


@pytest.mark.slow
def test_workers_give_the_same_scores(bench, inprocess_report, tmp_path):
    sharded = _evaluate(bench, tmp_path, "--workers", "2")
    assert _scores(sharded) == _scores(inprocess_report)
    assert sharded["meta"]["engine"] == "processes"


@pytest.mark.slow
def test_live_path_gives_identical_scores(bench, inprocess_report, tmp_path):
    live = _evaluate(
        bench, tmp_path, "--path", "live", "--task-timeout", "60", "--domain-id", os.environ["ROS_DOMAIN_ID"]
    )
    assert live["meta"]["path"] == "live"
    assert _scores(live) == _scores(inprocess_report)
    assert _without_latency(live["summary"]) == _without_latency(inprocess_report["summary"])
    # End-to-end latency over DDS is measured, not copied from the in-process run.
    latencies = [r["latency_ms"] for r in live["records"]]
    assert all(math.isfinite(v) and v > 0 for v in latencies)


def test_report_names_every_task(inprocess_report, inprocess_dir):
    out = inprocess_dir
    markdown, page = (out / "report.md").read_text(), (out / "report.html").read_text()
    for record in inprocess_report["records"]:
        for text in (record["task_id"], record["instruction"]):
            assert text in markdown and text in page
    assert (out / "success_vs_latency.png").stat().st_size > 0


def test_live_path_refuses_oracle_protocol(bench, tmp_path, capsys):
    code = live_evaluation.main([str(bench), *BACKEND, "--protocol", "oracle_object", "--path", "live", "--out",
                                 str(tmp_path)])
    assert code == 2
    assert "oracle_object" in capsys.readouterr().err
