"""Every console command answers a user's mistake in one line on stderr with exit code 2 (issue 13, CLI errors).

Mistakes: a missing file or folder, a malformed ``--backend-option``, an
unknown name (backend, scene, protocol, topic, launch argument). The
commands run through ``partseg_ros.console.run`` exactly as the installed
scripts call it; two cases also run the real scripts as processes.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from partseg_ros import console
from partseg_ros.bags.writer import BenchmarkFrame, TaskAnnotation, write_benchmark
from partseg_ros.types import CameraIntrinsics

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bag(tmp_path_factory) -> Path:
    """A one-frame benchmark bag (so commands get past "missing file" to the mistake under test)."""
    h, w = 24, 32
    object_ids = np.zeros((h, w), np.uint16)
    object_ids[8:16, 8:16] = 1
    frame = BenchmarkFrame(
        scene="mugs", rgb=np.full((h, w, 3), 90, np.uint8), depth_m=np.full((h, w), 0.6, np.float32),
        intrinsics=CameraIntrinsics(30.0, 30.0, 15.5, 11.5, w, h), object_ids=object_ids, part_ids=object_ids.copy(),
        object_names=["background", "mug"], part_names=["background", "mug/body"],
        tasks=[TaskAnnotation("t", "pick up the mug", ("mug",), ("body",), (1,))],
    )
    path = tmp_path_factory.mktemp("console") / "mugs"
    write_benchmark(path, [frame])
    return path


def _one_line_error(capsys, prog: str, code: int, *expected: str) -> str:
    err = capsys.readouterr().err
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{prog}: "), err
    assert "Traceback" not in err
    for text in expected:
        assert text in lines[0], lines[0]
    return lines[0]


CASES = [
    # (command, arguments (BAG = the fixture's bag, TMP = a fresh folder), words the line must hold)
    ("partseg_evaluate", ["/nonexistent/bags", "--out", "TMP/r"], ["/nonexistent/bags"]),
    ("partseg_evaluate", ["BAG", "--backend-option", "stride", "--out", "TMP/r"], ["key=value", "stride"]),
    ("partseg_evaluate", ["BAG", "--backend", "shapegrap", "--out", "TMP/r"], ["unknown backend", "shapegrap"]),
    ("partseg_evaluate", ["BAG", "--backend", "no_such_pkg.mod:Backend", "--out", "TMP/r"], ["no_such_pkg.mod"]),
    ("partseg_evaluate", ["BAG", "--protocol", "oracle", "--out", "TMP/r"], ["--protocol", "oracle"]),
    ("partseg_evaluate", ["BAG", "--params-file", "/nonexistent.yaml", "--out", "TMP/r"], ["/nonexistent.yaml"]),
    ("partseg_replay", ["/nonexistent/bag"], ["/nonexistent/bag"]),
    ("partseg_replay", ["BAG", "--topics", "/no/such/topic", "--rate", "0"], ["/no/such/topic"]),
    ("partseg_convert_instructpart", ["/nonexistent/data.json", "--out", "TMP/bag"], ["/nonexistent/data.json"]),
    ("partseg_generate_benchmark", ["--out", "TMP/b", "--scenes", "kitchn"], ["kitchn"]),
    ("partseg_bringup", ["backend:=shapegrap", "--print"], ["unknown backend", "shapegrap"]),
    ("partseg_bringup", ["bakend:=shapegrasp", "--print"], ["bakend"]),
    ("partseg_bringup", ["params_file:=/nonexistent.yaml", "--print"], ["/nonexistent.yaml"]),
    ("partseg_node", ["--ros-args", "--params-file", "/nonexistent.yaml"], ["/nonexistent.yaml"]),
    ("partseg_train_part_grounder", ["--data", "/nonexistent/crops", "--out", "TMP/run"], ["/nonexistent/crops"]),
    ("partseg_validate_generalisation", ["--backend", "shapegrap"], ["shapegrap"]),
    # No input files or names of its own: an unknown option is its only usage mistake (nothing is generated).
    ("partseg_generate_training_crops", ["--out", "TMP/crops", "--frame-count", "1"], ["--frame-count"]),
]


@pytest.mark.parametrize("prog, args, expected", CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_mistakes_get_one_line_and_exit_code_2(prog, args, expected, bag, tmp_path, capsys):
    argv = [a.replace("BAG", str(bag)).replace("TMP", str(tmp_path)) for a in args]
    code = console.run(prog, argv)
    _one_line_error(capsys, prog, code, *expected)


def test_every_command_has_a_mistake_case():
    assert {c[0] for c in CASES} == set(console.COMMANDS)


def test_converter_leaves_no_empty_bag_behind(tmp_path, capsys):
    (tmp_path / "data.json").write_text("[]")
    code = console.run("partseg_convert_instructpart", [str(tmp_path / "data.json"), "--out", str(tmp_path / "bag")])
    _one_line_error(capsys, "partseg_convert_instructpart", code, "images")
    assert not (tmp_path / "bag").exists()


def test_help_still_exits_0(capsys):
    assert console.run("partseg_evaluate", ["--help"]) == 0
    assert "usage" in capsys.readouterr().out


def _console_scripts() -> dict[str, str]:
    tree = ast.parse((ROOT / "setup.py").read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.keyword) and node.arg == "entry_points":
            entries = ast.literal_eval(node.value)["console_scripts"]
            return dict((part.strip() for part in entry.split("=")) for entry in entries)
    raise AssertionError("setup.py has no console_scripts")


def test_pip_and_colcon_commands_go_through_the_console_module():
    scripts = _console_scripts()
    assert scripts == {name: f"partseg_ros.console:{name}" for name in console.COMMANDS}
    colcon = sorted(p.name for p in (ROOT / "scripts").iterdir() if p.name.startswith("partseg_"))
    assert colcon == sorted(console.COMMANDS)
    for name in colcon:
        assert f"from partseg_ros.console import {name}" in (ROOT / "scripts" / name).read_text()
    cmake = (ROOT / "CMakeLists.txt").read_text()
    assert all(f"scripts/{name}" in cmake for name in colcon)


def test_the_scripts_themselves_answer_in_one_line(tmp_path):
    """The colcon script as a process: one stderr line, exit code 2."""
    for name, args in (("partseg_replay", ["/nonexistent/bag"]),
                       ("partseg_evaluate", [str(tmp_path), "--backend-option", "x", "--out", str(tmp_path / "r")])):
        done = subprocess.run([sys.executable, str(ROOT / "scripts" / name), *args], capture_output=True, text=True,
                              timeout=120)
        assert done.returncode == 2, done.stderr
        assert len(done.stderr.strip().splitlines()) == 1 and done.stderr.startswith(f"{name}: "), done.stderr
