"""Node parameters fail loudly: unknown names, out-of-range values, and config/partseg.yaml kept to the table.

A typo such as ``-p depht.scale:=0.5`` used to be declared silently (the node
declares overrides automatically) and the real ``depth.scale`` kept its default.
"""

from __future__ import annotations

import math
import re

import pytest
import rclpy
import yaml
from rcl_interfaces.msg import ParameterType

from node_harness import BACKEND, PARAMS_FILE, NodeProcess, Probe
from partseg_ros.ros.params import OPEN_MAPS, PARAMETERS, RANGES, declare_parameters, parameter_problems

GIL = "executor.gil_switch_interval_s"


# ---- over DDS: the node process itself ---------------------------------------------------------

@pytest.mark.slow
def test_unknown_parameter_fails_configure_naming_the_closest_valid_name():
    # grasp.* is an open map: its entries must stay accepted next to the typo.
    node = NodeProcess.node("-p", f"backend:={BACKEND}", "-p", "device:=cpu", "-p", "warmup:=false",
                            "-p", "depht.scale:=0.5", "-p", "grasp.min_points:=30")
    probe = Probe()
    try:
        out = probe.refused_configure(node)
        assert "unknown parameter depht.scale" in out and "did you mean depth.scale" in out, out[-3000:]
        assert "grasp.min_points" not in out
    finally:
        probe.close()
        assert node.stop() == 0, node.output()[-3000:]


# ---- in process: the table's checks on a plain rclpy node ---------------------------------------

@pytest.fixture
def context():
    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    yield ctx
    rclpy.shutdown(context=ctx)


def _node(context, overrides: dict):
    from rclpy.parameter import Parameter

    node = rclpy.create_node(
        "partseg_params_test", context=context, automatically_declare_parameters_from_overrides=True,
        parameter_overrides=[Parameter(k, value=v) for k, v in overrides.items()],
    )
    declare_parameters(node)
    return node


def test_known_and_open_map_names_pass(context):
    node = _node(context, {"depth.scale": 0.01, "backend_options.checkpoint": "/x", "grasp.min_points": 3})
    try:
        assert parameter_problems(node) == []
    finally:
        node.destroy_node()


def test_unknown_names_get_the_closest_valid_name(context):
    node = _node(context, {"depht.scale": 0.5, "sync.slops": 0.1, "totally_unrelated_zzz": 1})
    try:
        problems = parameter_problems(node)
        assert any("depht.scale" in p and "did you mean depth.scale" in p for p in problems), problems
        assert any("sync.slops" in p and "did you mean sync.slop_s" in p for p in problems), problems
        assert any("totally_unrelated_zzz" in p for p in problems), problems
        assert len(problems) == 3
    finally:
        node.destroy_node()


def test_out_of_range_override_is_a_problem_not_a_crash(context):
    node = _node(context, {"depth.max_nonfinite_fraction": 1.5})
    try:
        problems = parameter_problems(node)
        assert len(problems) == 1 and "depth.max_nonfinite_fraction" in problems[0], problems
    finally:
        node.destroy_node()


def test_numeric_descriptors_carry_ranges(context):
    node = _node(context, {"depth.scale": 0.002})  # an override gets its descriptor too
    try:
        for name in ("depth.scale", "depth.max_nonfinite_fraction", "sync.slop_s", "diagnostics.period_s"):
            d = node.describe_parameter(name)
            assert d.type == ParameterType.PARAMETER_DOUBLE
            assert len(d.floating_point_range) == 1, name
            assert d.description, name
        for name in ("qos.sensor_depth", "sync.queue_size", "limits.max_image_width"):
            d = node.describe_parameter(name)
            assert len(d.integer_range) == 1, name
        # every numeric table entry is either ranged or listed here as having no meaningful range
        numeric = {n for n, (v, _) in PARAMETERS.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        assert numeric - set(RANGES) == set(), numeric - set(RANGES)
        for name, (lo, hi) in RANGES.items():
            default = PARAMETERS[name][0]
            assert lo <= default <= hi and not math.isnan(default), name
    finally:
        node.destroy_node()


# ---- config/partseg.yaml against the table -----------------------------------------------------

def _flatten(tree: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flatten(value, f"{name}."))
        else:
            out[name] = value
    return out


def test_yaml_lists_exactly_the_table_with_a_comment_on_every_entry():
    document = yaml.safe_load(PARAMS_FILE.read_text())
    (section,) = document.values()
    flat = _flatten(section["ros__parameters"])
    unknown = [n for n in flat if n not in PARAMETERS and n.split(".")[0] not in OPEN_MAPS]
    assert unknown == []
    missing = [n for n in PARAMETERS if n not in flat]
    assert missing == []
    for name, value in flat.items():
        assert value == PARAMETERS[name][0], f"{name}: yaml {value!r} vs table default {PARAMETERS[name][0]!r}"

    # a comment on the entry's line, on the line above, or (for a run of entries under one
    # explanatory comment) anywhere in the contiguous block of commented lines above it
    lines = PARAMS_FILE.read_text().splitlines()
    parents: list[tuple[int, str]] = []
    uncommented = []
    for i, line in enumerate(lines):
        m = re.match(r"^(\s*)([A-Za-z_][\w]*):(.*)$", line)
        if not m:
            continue
        indent, key, rest = len(m.group(1)), m.group(2), m.group(3)
        parents = [(d, k) for d, k in parents if d < indent]
        name = ".".join([k for _, k in parents] + [key])
        if not rest.split("#")[0].strip():  # a map
            parents.append((indent, key))
            continue
        if name not in PARAMETERS:
            continue
        above = lines[i - 1] if i else ""
        if "#" not in rest and "#" not in above:
            uncommented.append(name)
    assert uncommented == [], f"yaml entries without a comment: {uncommented}"


# ---- the process's interpreter switch interval ----------------------------------------------------

@pytest.mark.parametrize("override, expected", [(0.0007, 0.0007), (None, PARAMETERS[GIL][0]), (2.5, "kept")])
def test_gil_switch_interval_comes_from_its_parameter_and_a_bad_one_keeps_pythons(context, override, expected):
    """At Python's 5 ms a lifecycle transition waited up to 2 s behind a 1 kHz diagnostics timer
    (test_node_teardown.py's 100 cycles took 300 s on an idle machine; 20 s at 0.5 ms)."""
    import sys

    from rclpy.parameter import Parameter

    from partseg_ros.ros.node import PartSegNode, apply_gil_switch_interval

    before = sys.getswitchinterval()
    overrides = [] if override is None else [Parameter(GIL, value=override)]
    node = PartSegNode(context=context, parameter_overrides=overrides)
    try:
        sys.setswitchinterval(0.004)
        in_force = apply_gil_switch_interval(node)
        assert in_force == pytest.approx(0.004 if expected == "kept" else expected)
        assert sys.getswitchinterval() == in_force
        if expected == "kept":  # and configure names it
            assert any(GIL in p for p in parameter_problems(node))
    finally:
        sys.setswitchinterval(before)
        node.destroy_node()
