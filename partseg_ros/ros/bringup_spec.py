"""What partseg's bringup starts, as data: the one source for both front ends.

``launch/bringup.launch.py`` (ROS 2 installs, ``ros2 launch``) and
``partseg_bringup`` (pip installs, where ``launch`` is not available) both
read :data:`ARGUMENTS` and :func:`nodes`; neither hard-codes a node, a
parameter or a remapping. No rclpy or launch import here.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional

PACKAGE = "partseg"


@dataclass(frozen=True)
class LaunchArgument:
    name: str
    default: str
    description: str


ARGUMENTS: tuple[LaunchArgument, ...] = (
    LaunchArgument("backend", "pisa_rgbd", "part-grounding backend (registry name or package.module:Class)"),
    LaunchArgument("device", "auto", "compute device: auto, cpu, cuda, cuda:N"),
    LaunchArgument("camera_namespace", "/camera",
                   "namespace of the RGB-D camera's topics, applied as remappings (realsense2_camera: /camera/camera)"),
    LaunchArgument("params_file", "", "node parameters (YAML); empty: the package's config/partseg.yaml"),
    LaunchArgument("namespace", "", "namespace to start partseg in"),
    LaunchArgument("autostart", "true", "configure and activate the lifecycle node on start-up"),
    LaunchArgument("log_level", "info", "ROS log level of the started nodes"),
)


# The node's relative input topics (what camera drivers publish under their namespace).
CAMERA_TOPICS: tuple[str, ...] = ("color/image_raw", "aligned_depth_to_color/image_raw", "color/camera_info")


def camera_remappings(camera_namespace: str) -> tuple[tuple[str, str], ...]:
    """The remappings that put the node's relative camera topics under ``camera_namespace``.

    ``camera_namespace`` empty: none (the topics resolve in the node's own namespace).
    The compressed transports follow: the node resolves (and so remaps) the base name
    first and appends image_transport's ``/compressed`` or ``/compressedDepth``.
    """
    namespace = camera_namespace.strip().rstrip("/")
    if not namespace:
        return ()
    namespace = _absolute(namespace)
    return tuple((topic, f"{namespace}/{topic}") for topic in CAMERA_TOPICS)


def remapping_arguments(camera_namespace: str) -> list[str]:
    """``-r from:=to`` arguments for :func:`camera_remappings` (a node started by hand, tests, benchmarks)."""
    args: list[str] = []
    for source, target in camera_remappings(camera_namespace):
        args += ["-r", f"{source}:={target}"]
    return args


@dataclass(frozen=True)
class NodeSpec:
    """One node to start: how ROS finds it (package, executable) and how pip does (module)."""

    package: str
    executable: str
    module: str  # ``python -m <module>`` runs the same node without an ament index
    name: str
    namespace: str
    params_files: tuple[str, ...]
    parameters: dict[str, Any] = field(default_factory=dict)
    remappings: tuple[tuple[str, str], ...] = ()
    lifecycle: bool = False
    log_level: str = "info"

    def ros_arguments(self) -> list[str]:
        """The --ros-args part of the command line, as ``ros2 launch`` would build it."""
        args = ["--ros-args", "-r", f"__node:={self.name}"]
        if self.namespace:
            args += ["-r", f"__ns:={_absolute(self.namespace)}"]
        for path in self.params_files:
            args += ["--params-file", path]
        for key, value in self.parameters.items():
            args += ["-p", f"{key}:={_yaml_scalar(value)}"]
        for source, target in self.remappings:
            args += ["-r", f"{source}:={target}"]
        args += ["--log-level", self.log_level]
        return args

    def command(self, python: Optional[str] = None) -> list[str]:
        """argv that starts this node from the installed Python package."""
        return [python or sys.executable, "-m", self.module, *self.ros_arguments()]


def default_params_file() -> str:
    from partseg_ros.resources import config_dir  # source tree or share/partseg/config

    return str(config_dir() / "partseg.yaml")


def resolve_arguments(values: Optional[Mapping[str, str]] = None) -> dict[str, str]:
    """Defaults overridden by ``values``; unknown names are an error, as in ros2 launch."""
    known = {a.name: a.default for a in ARGUMENTS}
    values = dict(values or {})
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ValueError(f"unknown bringup argument(s) {unknown}; known: {sorted(known)}")
    known.update({k: str(v) for k, v in values.items()})
    return known


def nodes(values: Optional[Mapping[str, str]] = None) -> list[NodeSpec]:
    """The nodes bringup starts for these argument values."""
    args = resolve_arguments(values)
    params_file = args["params_file"] or default_params_file()
    if not Path(params_file).is_file():
        raise FileNotFoundError(f"params_file {params_file} does not exist")
    _check_backend_name(args["backend"])
    return [
        NodeSpec(
            package=PACKAGE,
            executable="partseg_node",
            module="partseg_ros.ros.node",
            name="partseg",
            namespace=args["namespace"],
            params_files=(params_file,),
            # Launch arguments beat the params file, as in any ROS launch file.
            parameters={
                "backend": args["backend"],
                "device": args["device"],
                "autostart": _boolean(args["autostart"]),
            },
            # The camera namespace becomes remappings of the node's relative input topics.
            remappings=camera_remappings(args["camera_namespace"]),
            lifecycle=True,
            log_level=args["log_level"],
        )
    ]


def _check_backend_name(name: str) -> None:
    """An unknown registry name fails here, in one line, instead of in the started node's configure log."""
    from partseg_ros.backends.registry import available_backends  # no backend module is imported

    if ":" not in name and name not in available_backends():
        raise ValueError(f"unknown backend {name!r}; choose one of {available_backends()} or package.module:Class")


def _boolean(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("true", "1", "yes", "on"):
        return True
    if lowered in ("false", "0", "no", "off"):
        return False
    raise ValueError(f"expected true or false, got {text!r}")


def _absolute(namespace: str) -> str:
    return namespace if namespace.startswith("/") else f"/{namespace}"


def _yaml_scalar(value: Any) -> str:
    """How -p expects a value: YAML, so booleans are lower-case."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
