"""The node's ROS parameters: names, defaults, descriptions, and their reading.

config/partseg.yaml sets the same names; every parameter is declared here
with its default, so a params file only lists what it changes and
``ros2 param describe`` explains each one. ``backend_options.*`` and
``grasp.*`` are open-ended maps handed to the backend and the grasp-region
geometry as keyword arguments. Any other name the table does not know fails
configure with the closest valid name, since the node declares overrides
automatically and a typo would otherwise be accepted and ignored.
"""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass
from typing import Any, Optional

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
from rclpy.node import Node
from rclpy.qos import (
    DurabilityPolicy,
    HistoryPolicy,
    QoSProfile,
    ReliabilityPolicy,
    qos_profile_sensor_data,
)

from partseg_ros.ros.validation import InputLimits

# name -> (default, description). Dots are the nesting of the YAML file.
PARAMETERS: dict[str, tuple[Any, str]] = {
    "autostart": (False, "configure and activate on start-up instead of waiting for lifecycle transitions"),
    "backend": ("pisa_rgbd", "part-grounding backend (see partseg_ros.backends.registry) or 'module:Class'"),
    "device": ("auto", "compute device handed to the backend: auto, cpu, cuda, cuda:1"),
    "warmup": (True, "run the backend once on a dummy frame in configure so the first real frame is not slow"),
    "camera_namespace": (
        "", "deprecated: remap the relative input topics instead (bringup's camera_namespace argument does); "
        "when set, it still prefixes them as before"
    ),
    "topics.color": (
        "color/image_raw", "colour image (rgb8, bgr8, rgba8, bgra8 or mono8); relative names resolve in the node's "
        "namespace and can be remapped (-r color/image_raw:=/camera/camera/color/image_raw)"
    ),
    "topics.depth": (
        "aligned_depth_to_color/image_raw",
        "depth aligned to the colour image (16UC1 or 32FC1); empty string: run without depth",
    ),
    "topics.camera_info": ("color/camera_info", "camera_info of the colour image"),
    "topics.instruction": ("~/instruction", "std_msgs/String task instruction; empty string clears it"),
    "qos.sensor_reliability": ("best_effort", "best_effort (matches any camera) or reliable"),
    "qos.sensor_depth": (5, "history depth of the camera subscriptions"),
    "qos.instruction_reliability": ("reliable", "instruction subscription reliability"),
    "qos.instruction_depth": (
        10, "instructions the subscription holds until the node takes them (each one is answered; a late "
        "joiner only keeps the newest as its instruction)"
    ),
    "qos.instruction_durability": (
        "transient_local",
        "transient_local: a late-starting node still gets the planner's last instruction "
        "(the publisher must be transient_local too); volatile: match volatile publishers",
    ),
    "transport.color": (
        "raw", "raw (sensor_msgs/Image on topics.color) or compressed (sensor_msgs/CompressedImage jpeg/png on "
        "<topics.color>/compressed, as image_transport names it)"
    ),
    "transport.depth": (
        "raw", "raw (sensor_msgs/Image on topics.depth) or compressedDepth (image_transport's compressedDepth PNG "
        "on <topics.depth>/compressedDepth)"
    ),
    "camera.rectified": (False, "images are rectified: use camera_info P instead of K and D"),
    "depth.scale": (0.001, "metres per unit of 16UC1 depth (0.001 for millimetres)"),
    "depth.float_scale": (1.0, "metres per unit of 32FC1 depth (1.0: metres, REP 118; 0.001 for a millimetre stream)"),
    "depth.units_check": (
        True, "refuse depth whose median, in metres after the scale, is outside depth.plausible_median_min/max_m "
        "(16UC1 in metres, 32FC1 in millimetres): one warning naming the scale to set, then depth_units rejections"
    ),
    "depth.plausible_median_min_m": (0.1, "a frame's median valid depth below this is taken as wrong units"),
    "depth.plausible_median_max_m": (30.0, "a frame's median valid depth above this is taken as wrong units"),
    "depth.min_m": (0.05, "nearer depth is treated as invalid"),
    "depth.max_m": (10.0, "farther depth is treated as invalid"),
    "depth.max_nonfinite_fraction": (0.8, "reject 32FC1 frames with more NaN/inf pixels than this"),
    "sync.slop_s": (0.015, "colour, depth and camera_info stamps must agree within this (< half the frame period)"),
    "sync.queue_size": (10, "messages kept per stream while waiting for partners"),
    "sync.reset_jump_back_s": (
        1.0, "a stamp this much older than its stream's last one is a new time line (bag restart, loop, "
        "simulator reset): the synchroniser resets; smaller jumps are rejected as out_of_order"
    ),
    "sync.reset_repeat_after_s": (
        1.0, "a stamp equal to its stream's last one, after the stream was silent this long, is a new time "
        "line too (a 1-frame bag replayed again, or another bag with the same timeline); back to back it is "
        "a duplicate, rejected as out_of_order"
    ),
    "sync.stall_warn_s": (
        3.0, "colour arriving with no synchronised frame for this long: warn which stream is missing, its stamp "
        "offset and the parameter to change (sync.slop_s, qos.*, topics/remapping); 0 disables"
    ),
    "ask.timeout_s": (5.0, "~/ask waits this long for the next synchronised frame when the request gives no timeout"),
    "instruction.frame_max_age_s": (
        5.0, "a new instruction is answered on the latest frame if it arrived within this long; "
        "otherwise it waits for the next frame"
    ),
    "instruction.queue_size": (8, "instructions waiting to be answered on an earlier frame; more are dropped"),
    "limits.max_instruction_length": (300, "longer instructions are rejected"),
    "limits.future_tolerance_s": (0.5, "stamps further ahead of the node clock are rejected"),
    "limits.camera_info_timeout_s": (5.0, "colour frames with no camera_info in this long are rejected"),
    "limits.camera_info_grace_s": (
        0.1, "after such a pause, a colour frame is rejected only if its camera_info has not come this long after it"
    ),
    "limits.min_image_width": (16, "narrower images are rejected (image_too_small)"),
    "limits.min_image_height": (16, "shorter images are rejected (image_too_small)"),
    "limits.max_image_width": (8192, "wider images are rejected before any allocation (image_too_large)"),
    "limits.max_image_height": (8192, "taller images are rejected before any allocation (image_too_large)"),
    "limits.max_image_bytes": (
        134217728, "images whose declared step x height or data exceed this many bytes are rejected (128 MiB)"
    ),
    "limits.min_focal_length_px": (1.0, "camera_info with a smaller fx or fy is rejected (camera_info_invalid)"),
    "limits.max_focal_length_px": (100000.0, "camera_info with a larger fx or fy is rejected (camera_info_invalid)"),
    "frames.target_frame": ("", "frame for grasp regions; empty: the camera's optical frame"),
    "frames.transform_source": ("auto", "auto (tf2 when installed, else static), tf or static"),
    "frames.static_transform": (
        [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0],
        "target_frame <- camera optical frame as x y z qx qy qz qw, used when tf2 is not used",
    ),
    "output.debug_image": (True, "publish ~/debug_image"),
    "output.markers": (True, "publish ~/markers"),
    "output.point_cloud_colors": (True, "pack rgb into the grasp-region point clouds"),
    "output.marker_lifetime_s": (0.0, "RViz marker lifetime; 0 keeps them until the next frame"),
    "diagnostics.period_s": (1.0, "how often /diagnostics is published"),
    "executor.gil_switch_interval_s": (
        0.0005, "Python's switch interval for the node process (sys.setswitchinterval): how long a thread that "
        "wants the interpreter (a lifecycle service, a camera callback) may wait behind a busy one; at Python's "
        "5 ms a busy executor held lifecycle transitions back by up to 2 s"
    ),
}
OPEN_MAPS = ("backend_options", "grasp")

_INF = math.inf
# name -> inclusive (low, high) for every numeric parameter, so `ros2 param describe` shows the valid
# values, `ros2 param set` refuses the rest, and an override outside them fails configure by name.
RANGES: dict[str, tuple[float, float]] = {
    "qos.sensor_depth": (1, 1_000_000),
    "qos.instruction_depth": (1, 1_000_000),
    "depth.scale": (1e-9, 1e3),
    "depth.float_scale": (1e-9, 1e3),
    "depth.plausible_median_min_m": (0.0, 1e6),
    "depth.plausible_median_max_m": (0.0, 1e6),
    "depth.min_m": (0.0, 1e6),
    "depth.max_m": (0.0, 1e6),
    "depth.max_nonfinite_fraction": (0.0, 1.0),
    "sync.slop_s": (0.0, 3600.0),
    "sync.queue_size": (1, 1_000_000),
    "sync.reset_jump_back_s": (1e-9, 1e6),
    "sync.reset_repeat_after_s": (1e-9, 1e6),
    "sync.stall_warn_s": (0.0, 1e6),
    "ask.timeout_s": (0.0, 1e6),
    "instruction.frame_max_age_s": (0.0, 1e6),
    "instruction.queue_size": (1, 1_000_000),
    "limits.max_instruction_length": (1, 1_000_000),
    "limits.future_tolerance_s": (0.0, 1e6),
    "limits.camera_info_timeout_s": (0.0, 1e6),
    "limits.camera_info_grace_s": (0.0, 1e6),
    "limits.min_image_width": (1, 1_000_000),
    "limits.min_image_height": (1, 1_000_000),
    "limits.max_image_width": (1, 1_000_000),
    "limits.max_image_height": (1, 1_000_000),
    "limits.max_image_bytes": (1, 2**62),
    "limits.min_focal_length_px": (0.0, 1e9),
    "limits.max_focal_length_px": (0.0, 1e9),
    "output.marker_lifetime_s": (0.0, 1e6),
    "diagnostics.period_s": (0.001, 3600.0),
    "executor.gil_switch_interval_s": (1e-5, 0.1),
}
# Parameters rclpy itself declares on every node; they are not ours to reject.
_ROS_OWNED = ("use_sim_time", "start_type_description_service")
_ROS_OWNED_PREFIXES = ("qos_overrides.",)


@dataclass(frozen=True)
class NodeConfig:
    """Everything the node reads from its parameters, resolved once in configure."""

    backend: str
    device: str
    warmup: bool
    backend_options: dict[str, Any]
    grasp_options: dict[str, Any]
    color_topic: str
    depth_topic: str
    camera_info_topic: str
    instruction_topic: str
    color_transport: str
    depth_transport: str
    stall_warn_ns: int
    ask_timeout_s: float
    sensor_qos: QoSProfile
    instruction_qos: QoSProfile
    limits: InputLimits
    slop_ns: int
    sync_queue_size: int
    reset_jump_back_ns: int
    reset_repeat_after_ns: int
    instruction_frame_max_age_ns: int
    instruction_queue_size: int
    camera_info_grace_ns: int
    future_tolerance_ns: int
    camera_info_timeout_ns: int
    target_frame: str
    transform_source: str
    static_transform: tuple[float, ...]
    debug_image: bool
    markers: bool
    point_cloud_colors: bool
    marker_lifetime_s: float


def descriptor(name: str) -> ParameterDescriptor:
    """The table's description and, for numeric parameters, range of ``name``."""
    default, description = PARAMETERS[name]
    d = ParameterDescriptor(description=description)
    if name in RANGES:
        low, high = RANGES[name]
        if isinstance(default, int) and not isinstance(default, bool):
            d.integer_range = [IntegerRange(from_value=int(low), to_value=int(high), step=0)]
        else:
            d.floating_point_range = [FloatingPointRange(from_value=float(low), to_value=float(high), step=0.0)]
    return d


def declare_parameters(node: Node) -> None:
    """Declare every known parameter with its descriptor.

    The node declares overrides automatically (so the open maps arrive), which
    leaves those without a description or range: they get the table's
    descriptor here. One the override's value does not fit (wrong range or
    type) keeps its value; ``parameter_problems`` reports it at configure, so a
    bad value fails that transition with its name rather than the process.
    """
    for name, (default, _) in PARAMETERS.items():
        if not node.has_parameter(name):
            node.declare_parameter(name, default, descriptor(name))
            continue
        described = descriptor(name)
        described.type = node.get_parameter(name).type_.value  # the override's own type stays
        try:
            node.set_descriptor(name, described)
        except Exception:  # noqa: BLE001 - reported by parameter_problems at configure
            pass


def _known(name: str) -> bool:
    return (
        name in PARAMETERS
        or any(name.startswith(f"{prefix}.") for prefix in OPEN_MAPS)
        or name in _ROS_OWNED
        or name.startswith(_ROS_OWNED_PREFIXES)
    )


def parameter_problems(node: Node) -> list[str]:
    """Every override the table does not know, or whose value is outside its range, one line each.

    Overrides are declared automatically, so a misspelt name would otherwise be
    accepted and silently ignored while the real parameter keeps its default;
    naming the closest valid name makes the typo obvious.
    """
    problems = []
    for name in sorted(node.list_parameters([], 0).names):
        if _known(name):
            continue
        close = difflib.get_close_matches(name, list(PARAMETERS) + [f"{p}.*" for p in OPEN_MAPS], n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]}?" if close else ""
        problems.append(f"unknown parameter {name}{hint}")
    for name in RANGES:
        problem = range_problem(name, node.get_parameter(name).value)
        if problem is not None:
            problems.append(problem)
    return problems


def range_problem(name: str, value: Any) -> Optional[str]:
    """Why ``value`` cannot be numeric parameter ``name`` (not a number, or outside its range); None when it can."""
    low, high = RANGES[name]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return f"parameter {name} must be a number, got {value!r}"
    if not low <= value <= high:
        return f"parameter {name} must be within [{low}, {high}], got {value!r}"
    return None


def resolve_topic(namespace: str, topic: str) -> str:
    """The deprecated camera_namespace parameter, when set, prefixes relative input topics.

    Empty (the default), relative names stay relative: rclpy resolves them in the
    node's namespace and applies remappings, the ROS way.
    """
    if not topic or topic.startswith("/") or topic.startswith("~"):
        return topic
    namespace = namespace.rstrip("/")
    return f"{namespace}/{topic}" if namespace else topic


def nest(flat: dict[str, Any]) -> dict[str, Any]:
    """ROS flattens nested YAML maps into dotted names; backends take nested keyword arguments.

    ``{"segmentation.min_points": 50}`` -> ``{"segmentation": {"min_points": 50}}``.
    """
    out: dict[str, Any] = {}
    for dotted, value in flat.items():
        *parents, leaf = dotted.split(".")
        level = out
        for name in parents:
            level = level.setdefault(name, {})
            if not isinstance(level, dict):
                raise ValueError(f"parameter {dotted!r} nests under a value that is not a map")
        level[leaf] = value
    return out


def _reliability(value: str) -> ReliabilityPolicy:
    try:
        return {"best_effort": ReliabilityPolicy.BEST_EFFORT, "reliable": ReliabilityPolicy.RELIABLE}[value]
    except KeyError:
        raise ValueError(f"reliability must be best_effort or reliable, got {value!r}") from None


def _durability(value: str) -> DurabilityPolicy:
    try:
        return {"volatile": DurabilityPolicy.VOLATILE, "transient_local": DurabilityPolicy.TRANSIENT_LOCAL}[value]
    except KeyError:
        raise ValueError(f"durability must be volatile or transient_local, got {value!r}") from None


def read_config(node: Node) -> NodeConfig:
    """Read and check the parameters; raises ValueError with the offending name."""
    problems = parameter_problems(node)
    if problems:
        raise ValueError("; ".join(problems))
    p = {name: node.get_parameter(name).value for name in PARAMETERS}
    open_maps = {
        prefix: nest({k: v.value for k, v in node.get_parameters_by_prefix(prefix).items()}) for prefix in OPEN_MAPS
    }
    camera_ns = str(p["camera_namespace"])
    sensor_qos = QoSProfile(
        history=HistoryPolicy.KEEP_LAST,
        depth=int(p["qos.sensor_depth"]),
        reliability=_reliability(str(p["qos.sensor_reliability"])),
        durability=qos_profile_sensor_data.durability,
    )
    instruction_qos = QoSProfile(
        history=HistoryPolicy.KEEP_LAST,
        depth=int(p["qos.instruction_depth"]),
        reliability=_reliability(str(p["qos.instruction_reliability"])),
        durability=_durability(str(p["qos.instruction_durability"])),
    )
    static = tuple(float(v) for v in p["frames.static_transform"])
    if len(static) != 7:
        raise ValueError(f"frames.static_transform needs 7 numbers (x y z qx qy qz qw), got {len(static)}")
    source = str(p["frames.transform_source"])
    if source not in ("auto", "tf", "static"):
        raise ValueError(f"frames.transform_source must be auto, tf or static, got {source!r}")
    color_transport, depth_transport = str(p["transport.color"]), str(p["transport.depth"])
    if color_transport not in ("raw", "compressed"):
        raise ValueError(f"transport.color must be raw or compressed, got {color_transport!r}")
    if depth_transport not in ("raw", "compressedDepth"):
        raise ValueError(f"transport.depth must be raw or compressedDepth, got {depth_transport!r}")
    limits = InputLimits(
        depth_scale=float(p["depth.scale"]),
        depth_float_scale=float(p["depth.float_scale"]),
        depth_units_check=bool(p["depth.units_check"]),
        plausible_median_min_m=float(p["depth.plausible_median_min_m"]),
        plausible_median_max_m=float(p["depth.plausible_median_max_m"]),
        depth_min_m=float(p["depth.min_m"]),
        depth_max_m=float(p["depth.max_m"]),
        max_nonfinite_fraction=float(p["depth.max_nonfinite_fraction"]),
        max_instruction_length=int(p["limits.max_instruction_length"]),
        rectified=bool(p["camera.rectified"]),
        min_image_width=int(p["limits.min_image_width"]),
        min_image_height=int(p["limits.min_image_height"]),
        max_image_width=int(p["limits.max_image_width"]),
        max_image_height=int(p["limits.max_image_height"]),
        max_image_bytes=int(p["limits.max_image_bytes"]),
        min_focal_length_px=float(p["limits.min_focal_length_px"]),
        max_focal_length_px=float(p["limits.max_focal_length_px"]),
    )
    if not limits.depth_scale > 0:
        raise ValueError(f"depth.scale must be positive, got {limits.depth_scale}")
    if not limits.depth_float_scale > 0:
        raise ValueError(f"depth.float_scale must be positive, got {limits.depth_float_scale}")
    slop_s = float(p["sync.slop_s"])
    if slop_s < 0:
        raise ValueError(f"sync.slop_s must be >= 0, got {slop_s}")
    if not float(p["sync.reset_jump_back_s"]) > 0:
        raise ValueError(f"sync.reset_jump_back_s must be > 0, got {p['sync.reset_jump_back_s']}")
    if not float(p["sync.reset_repeat_after_s"]) > 0:
        raise ValueError(f"sync.reset_repeat_after_s must be > 0, got {p['sync.reset_repeat_after_s']}")
    if int(p["instruction.queue_size"]) < 1:
        raise ValueError(f"instruction.queue_size must be >= 1, got {p['instruction.queue_size']}")
    return NodeConfig(
        backend=str(p["backend"]),
        device=str(p["device"]),
        warmup=bool(p["warmup"]),
        backend_options=open_maps["backend_options"],
        grasp_options=open_maps["grasp"],
        color_topic=resolve_topic(camera_ns, str(p["topics.color"])),
        depth_topic=resolve_topic(camera_ns, str(p["topics.depth"])),
        camera_info_topic=resolve_topic(camera_ns, str(p["topics.camera_info"])),
        instruction_topic=str(p["topics.instruction"]),
        color_transport=color_transport,
        depth_transport=depth_transport,
        stall_warn_ns=int(float(p["sync.stall_warn_s"]) * 1e9),
        ask_timeout_s=float(p["ask.timeout_s"]),
        sensor_qos=sensor_qos,
        instruction_qos=instruction_qos,
        limits=limits,
        slop_ns=int(slop_s * 1e9),
        sync_queue_size=int(p["sync.queue_size"]),
        reset_jump_back_ns=int(float(p["sync.reset_jump_back_s"]) * 1e9),
        reset_repeat_after_ns=int(float(p["sync.reset_repeat_after_s"]) * 1e9),
        instruction_frame_max_age_ns=int(float(p["instruction.frame_max_age_s"]) * 1e9),
        instruction_queue_size=int(p["instruction.queue_size"]),
        camera_info_grace_ns=int(float(p["limits.camera_info_grace_s"]) * 1e9),
        future_tolerance_ns=int(float(p["limits.future_tolerance_s"]) * 1e9),
        camera_info_timeout_ns=int(float(p["limits.camera_info_timeout_s"]) * 1e9),
        target_frame=str(p["frames.target_frame"]),
        transform_source=source,
        static_transform=static,
        debug_image=bool(p["output.debug_image"]),
        markers=bool(p["output.markers"]),
        point_cloud_colors=bool(p["output.point_cloud_colors"]),
        marker_lifetime_s=float(p["output.marker_lifetime_s"]),
    )
