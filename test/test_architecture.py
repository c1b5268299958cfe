"""The layering the folder structure promises: only partseg_ros/ros talks ROS."""

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "partseg_ros"
ROS_MODULES = ("rclpy", "sensor_msgs", "std_msgs", "geometry_msgs", "visualization_msgs", "diagnostic_msgs",
               "partseg.msg", "partseg.srv", "tf2_ros", "builtin_interfaces", "rosgraph_msgs")


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_only_the_ros_layer_imports_ros():
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        if path.is_relative_to(PACKAGE / "ros"):
            continue
        for name in imported_modules(path):
            if name.startswith(ROS_MODULES):
                offenders.append(f"{path.relative_to(PACKAGE.parent)} imports {name}")
    assert not offenders, "\n".join(offenders)


def test_library_layers_import_without_ros_or_torch():
    """Geometry, scenes, bags, evaluation and the default backend load in a bare interpreter."""
    code = (
        "import sys\n"
        "import partseg_ros.geometry.grasp_region, partseg_ros.scene.render, partseg_ros.bags.reader\n"
        "import partseg_ros.evaluation.runner, partseg_ros.backends.registry\n"
        "heavy = sorted(m for m in ('rclpy', 'torch', 'transformers') if m in sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
