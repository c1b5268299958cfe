"""The layering the folder structure promises: only partseg_ros/ros talks ROS."""

import ast
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

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


# -- one-way layers (issue 13, item 5) ------------------------------------------------------------------
#
# ros -> pipeline -> backends / geometry / language / codec, and the evaluator beside the pipeline,
# reaching the node only through its TaskAnswerer interface (the ROS layer implements it). Each rule
# is checked on the package, and on a small fake package that breaks it, so a rule that could never
# fail would show up here.


@dataclass(frozen=True)
class Rule:
    name: str
    importers: tuple[str, ...]  # modules (and their submodules) the rule is about
    forbidden: tuple[str, ...]  # modules (and their submodules) they must not import


DIRECT_RULES = (
    Rule("evaluation asks the node only through its TaskAnswerer interface: no ROS layer, no ROS",
         ("partseg_ros.evaluation",), ("partseg_ros.ros",) + ROS_MODULES),
    Rule("the pipeline is plain Python below the ROS layer and the evaluator",
         ("partseg_ros.pipeline",), ("partseg_ros.ros", "partseg_ros.evaluation") + ROS_MODULES),
    Rule("backends, geometry, language and the codec sit below the pipeline",
         ("partseg_ros.backends", "partseg_ros.geometry", "partseg_ros.language", "partseg_ros.codec"),
         ("partseg_ros.pipeline", "partseg_ros.ros", "partseg_ros.evaluation")),
)
# Checked over everything the importers load, directly or through other partseg modules.
REACH_RULES = (
    Rule("the evaluator's DDS client loads neither the node nor a backend",
         ("partseg_ros.ros.evaluation_client",),
         ("partseg_ros.ros.node", "partseg_ros.backends", "partseg_ros.pipeline")),
)


def _within(module: str, prefixes: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def _module_name(path: Path, root: Path) -> str:
    parts = path.relative_to(root.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def module_imports(path: Path, root: Path, runtime_only: bool = False) -> set[str]:
    """Every module a file imports, anywhere in it (lazy imports too), relative imports resolved.

    ``from a import b`` counts as importing ``a`` and ``a.b`` (b may be a module).
    With ``runtime_only``, imports under ``if TYPE_CHECKING:`` (never executed) are left out.
    """
    module = _module_name(path, root)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    tree = ast.parse(path.read_text(), filename=str(path))
    skipped: set[int] = set()
    if runtime_only:
        for node in ast.walk(tree):
            if isinstance(node, ast.If) and _is_type_checking(node.test):
                skipped |= {id(child) for statement in node.body for child in ast.walk(statement)}
    names: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parts = parts[: len(parts) - node.level + 1]
                base = ".".join(parts + ([node.module] if node.module else []))
            names.add(base)
            names |= {f"{base}.{alias.name}" for alias in node.names}
    return names


def _package_files(root: Path) -> dict[str, Path]:
    return {_module_name(path, root): path for path in root.rglob("*.py")}


def direct_violations(root: Path, rules=DIRECT_RULES) -> list[str]:
    found = []
    for module, path in sorted(_package_files(root).items()):
        for rule in rules:
            if not _within(module, rule.importers):
                continue
            bad = sorted(n for n in module_imports(path, root) if _within(n, rule.forbidden))
            # "from a.b import c" reads as a.b and a.b.c: name the module once.
            found += [f"{module} imports {name}: {rule.name}" for name in bad
                      if not any(name.startswith(other + ".") for other in bad)]
    return found


def reach_violations(root: Path, rules=REACH_RULES) -> list[str]:
    """Walk the imports (at run time, lazy ones included) from each rule's modules; report the first chain
    that reaches a forbidden module."""
    files = _package_files(root)
    found = []
    for rule in rules:
        for start in sorted(m for m in files if _within(m, rule.importers)):
            chains = {start: [start]}
            todo = [start]
            while todo:
                module = todo.pop()
                for name in sorted(module_imports(files[module], root, runtime_only=True)):
                    parts = name.split(".")
                    for k in range(1, len(parts) + 1):  # importing a.b.c runs a and a.b too
                        target = ".".join(parts[:k])
                        if target in files and target not in chains:
                            chains[target] = chains[module] + [target]
                            todo.append(target)
            for module, chain in sorted(chains.items()):
                if _within(module, rule.forbidden):
                    found.append(f"{' -> '.join(chain)}: {rule.name}")
                    break
    return found


def test_layers_point_one_way():
    assert not direct_violations(PACKAGE), "\n".join(direct_violations(PACKAGE))


def test_the_evaluation_client_loads_no_node_and_no_backend():
    assert not reach_violations(PACKAGE), "\n".join(reach_violations(PACKAGE))


def _fake_package(tmp_path: Path, files: dict[str, str]) -> Path:
    root = tmp_path / "partseg_ros"
    for name, text in {"__init__.py": "", **files}.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        for folder in path.relative_to(root).parents:
            (root / folder / "__init__.py").touch()
        path.write_text(text)
    return root


@pytest.mark.parametrize("files,rule", [
    ({"evaluation/live.py": "from partseg_ros.ros.dds_env import loopback_environment\n"}, 0),
    ({"evaluation/live.py": "def start():\n    from ..ros import evaluation_client\n"}, 0),
    ({"evaluation/cli.py": "from partseg_ros import ros\n"}, 0),
    ({"evaluation/client.py": "def spin():\n    import rclpy\n"}, 0),
    ({"pipeline.py": "from partseg_ros.ros.params import NodeConfig\n"}, 1),
    ({"pipeline/__init__.py": "from partseg_ros.evaluation.runner import make_backend\n"}, 1),
    ({"pipeline.py": "def run():\n    from rclpy.node import Node\n"}, 1),
    ({"pipeline/stages.py": "from ..ros import messages\n"}, 1),
    ({"geometry/grasp_region.py": "from partseg_ros.pipeline import run\n"}, 2),
    ({"backends/registry.py": "from partseg_ros.evaluation import tasks\n"}, 2),
    ({"language/parser.py": "from ..ros.node import PartSegNode\n"}, 2),
    ({"codec/images.py": "from partseg_ros.ros.validation import Rejection\n"}, 2),
])
def test_each_layer_rule_fails_when_broken(tmp_path, files, rule):
    found = direct_violations(_fake_package(tmp_path, files))
    assert len(found) == 1 and found[0].endswith(DIRECT_RULES[rule].name), found


@pytest.mark.parametrize("files,broken", [
    ({"ros/evaluation_client.py": "from partseg_ros.ros.node import diagnostics_to_dict\n", "ros/node.py": ""},
     True),
    # Through another module, and lazily inside a function: still loaded when the client runs.
    ({"ros/evaluation_client.py": "from partseg_ros.ros import helpers\n",
      "ros/helpers.py": "def parse():\n    from partseg_ros.backends.registry import create_backend\n",
      "backends/registry.py": ""}, True),
    ({"ros/evaluation_client.py": "import partseg_ros.pipeline\n", "pipeline.py": ""}, True),
    # A type-only import never runs: not a dependency.
    ({"ros/evaluation_client.py": "from partseg_ros.evaluation import answering\n",
      "evaluation/answering.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                                 "    from partseg_ros.evaluation.runner import EvaluationSettings\n",
      "evaluation/runner.py": "from partseg_ros.backends.registry import create_backend\n",
      "backends/registry.py": ""}, False),
])
def test_the_client_rule_fails_when_broken(tmp_path, files, broken):
    found = reach_violations(_fake_package(tmp_path, files))
    assert bool(found) == broken, found


# -- one pipeline (issue 13, item 3) -----------------------------------------------------------------
#
# The node (topics and both services) and the in-process evaluator answer a frame through
# partseg_ros.pipeline; neither builds a backend itself. Before, ros/node.py's load_backend and
# evaluation/runner.py's make_backend were two copies of one loader, each with its own
# "ground, then grasp regions" loop.

# Building a backend by name is the registry's job, called by the pipeline: using these is a loader of one's own.
REGISTRY_BUILDERS = ("create_backend", "backend_class", "BACKENDS")


def own_backend_loaders(path: Path, root: Path) -> list[str]:
    """Signs that a module builds backends itself instead of through partseg_ros.pipeline."""
    registry = "partseg_ros.backends.registry"
    found = [f"imports {name}" for name in sorted(module_imports(path, root))
             if name.startswith(registry + ".") and name.rpartition(".")[2] in REGISTRY_BUILDERS]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Attribute) and node.attr in REGISTRY_BUILDERS:  # registry.create_backend(...)
            found.append(f"uses {node.attr}")
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and "backend" in node.name.lower() \
                and node.name.lower().startswith(("load", "make", "create", "build")):
            found.append(f"defines {node.name}")
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "issubclass" \
                and any(isinstance(a, ast.Name) and a.id == "PartGroundingBackend" for a in node.args):
            found.append("checks classes against PartGroundingBackend")
    return [f"{_module_name(path, root)} {sign}" for sign in found]


def loader_violations(root: Path) -> list[str]:
    users = sorted((root / "ros").glob("*.py")) + [root / "evaluation" / "runner.py"]
    return [problem for path in users if path.exists() for problem in own_backend_loaders(path, root)]


def test_node_and_evaluator_run_the_one_pipeline_and_build_no_backend_themselves():
    assert not loader_violations(PACKAGE), "\n".join(loader_violations(PACKAGE))
    for path in (PACKAGE / "ros" / "node.py", PACKAGE / "evaluation" / "runner.py"):
        assert "partseg_ros.pipeline.PartPipeline" in module_imports(path, PACKAGE), path


@pytest.mark.parametrize("files", [
    {"ros/node.py": "import importlib\n"
                    "from partseg_ros.backends.registry import create_backend\n"
                    "def load_backend(name, options):\n"
                    "    cls = getattr(importlib.import_module(name), 'X')\n"
                    "    if not issubclass(cls, PartGroundingBackend):\n"
                    "        raise TypeError(name)\n"
                    "    return create_backend(name, **options)\n"},
    {"evaluation/runner.py": "def evaluator(name):\n    from ..backends import registry\n"
                             "    return registry.create_backend(name)\n"},
    {"ros/services.py": "from partseg_ros.backends.registry import backend_class\n"},
    {"evaluation/runner.py": "def make_backend(name):\n    return None\n"},
])
def test_the_loader_rule_fails_when_broken(tmp_path, files):
    assert loader_violations(_fake_package(tmp_path, files))


def test_the_loader_rule_lets_backend_names_be_listed(tmp_path):
    # bringup checks a launch argument against the registry's names without building anything.
    root = _fake_package(tmp_path, {"ros/bringup_spec.py": "import importlib\n"
                                    "from partseg_ros.backends.registry import available_backends\n"})
    assert not loader_violations(root)


def test_the_pipeline_loads_without_ros():
    code = (
        "import sys\n"
        "import partseg_ros.pipeline\n"
        "loaded = sorted(m for m in sys.modules if m == 'rclpy' or m.startswith(('rclpy.', 'partseg_ros.ros')))\n"
        "assert not loaded, loaded\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
