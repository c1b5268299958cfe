"""The partseg perception node: RGB-D frames + an instruction -> part masks and 3D grasp regions.

A lifecycle node (like yolo_ros): ``configure`` reads the parameters, builds
and loads the pipeline (backend + grasp-region geometry) and warms it up;
``activate`` starts processing; ``deactivate`` stops it; ``cleanup``
releases everything. With the parameter ``autostart`` it walks to active on
its own (what bringup uses).

This module is the lifecycle and the entry point; it wires together the
node's jobs, each in its own module:

* ``inputs.py``: camera and instruction callbacks. They share one mutually
  exclusive group and only peek at, check and pair messages: camera images
  arrive serialized and are decoded only when the worker takes them.
* ``frame_worker.py``: the model runs on a worker thread that takes the
  latest paired frame (older unprocessed frames are dropped and counted, never
  queued), so callbacks never wait for the model. A new instruction is
  answered on the latest frame when that frame arrived recently enough (a
  paused, throttled or replayed camera sends no new one); every result's
  header is the stamp and frame_id of the frame it answers.
* ``services.py``: ``~/segment_parts`` runs in its own group and shares the
  pipeline (which serialises backend calls). ``~/ask`` takes only an
  instruction and answers it on the next synchronised frame (or the first at
  or after a given stamp): the request waits in its own group while the
  worker processes that frame, so a planner needs no sleep and the answer
  never races the image.
* ``interfaces.py``: subscriptions, publishers and services, and what is
  published per frame; ``target_frame.py``: the frame regions are given in;
  ``diagnostics.py``: /diagnostics, counter names, rejection logging.
* ``partseg_ros.pipeline``: backend, then grasp regions, with stage timings;
  the offline evaluator runs the same code.
"""

from __future__ import annotations

import sys
import time
from typing import Any, Optional

import rclpy
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from std_msgs.msg import Header

from partseg_ros.backends.base import PartGroundingBackend
from partseg_ros.pipeline import STAGE_GEOMETRY, PartPipeline
from partseg_ros.ros import messages
from partseg_ros.ros.diagnostics import (
    ASK_TIMEOUT,
    DEPTH_REQUIRED,
    DESERIALIZATION_FAILED,
    EXECUTOR_ERROR,
    INSTRUCTION_OVERFLOW,
    INTERNAL_ERROR,
    NO_INSTRUCTION,
    NODE_NAME,
    PROCESSING_ERROR,
    STALE_FRAME,
    SYNC_RESET,
    SYNC_STALLED,
    WARN_ONCE,
    DiagnosticsPublisher,
    RejectionLog,
    diagnostics_to_dict,
)
from partseg_ros.ros.frame_worker import AskWaiter, LatestFrameWorker, PendingFrame, RawFrame
from partseg_ros.ros.inputs import CAMERA_INFO_CHECK_PERIOD_S, FrameInput, decode_raw_frame
from partseg_ros.ros.interfaces import InterfaceHandlers, NodeInterfaces, PipelineOutput, result_messages
from partseg_ros.ros.node_state import NodeState
from partseg_ros.ros.params import NodeConfig, declare_parameters, range_problem, read_config
from partseg_ros.ros.services import NodeServices
from partseg_ros.ros.stats import NodeStats, elapsed_ms, limited_log
from partseg_ros.ros.target_frame import TargetFrame
from partseg_ros.ros.validation import DecodedFrame
from partseg_ros.types import GroundingRequest

# Names that lived here before the node was split by job; clients import them from here.
__all__ = [
    "ASK_TIMEOUT", "DEPTH_REQUIRED", "DESERIALIZATION_FAILED", "EXECUTOR_ERROR", "INSTRUCTION_OVERFLOW",
    "INTERNAL_ERROR", "NO_INSTRUCTION", "NODE_NAME", "PROCESSING_ERROR", "STALE_FRAME", "SYNC_RESET",
    "SYNC_STALLED", "WARN_ONCE", "AskWaiter", "PendingFrame", "PipelineOutput", "RawFrame", "PartSegNode",
    "apply_gil_switch_interval", "diagnostics_to_dict", "main", "spin_node",
]

GIL_SWITCH_INTERVAL = "executor.gil_switch_interval_s"
EXECUTOR_THREADS = 4  # input, timers, segment_parts, ask (which may wait)
TEARDOWN_ASK_ERROR = "node shutting down or cleaned up before the frame came"


class PartSegNode(LifecycleNode):
    """Lifecycle node wrapping the part-grounding pipeline: its transitions, and the frame the worker answers."""

    def __init__(self, node_name: str = NODE_NAME, **kwargs: Any) -> None:
        super().__init__(node_name, automatically_declare_parameters_from_overrides=True, **kwargs)
        declare_parameters(self)
        self.stats = NodeStats()
        self._node_state = NodeState()
        self.pipeline: Optional[PartPipeline] = None
        self.shutdown_requested = False  # the lifecycle shutdown transition ends spin_node()
        self._rejections = RejectionLog(self.stats, self.get_logger())
        self._worker = LatestFrameWorker(self._process, lambda: self._node_state.active, self._rejections.reject,
                                         self._on_frame_failure)
        self._interfaces = NodeInterfaces(self, self._node_state, self.stats)
        self._input = FrameInput(self, self._node_state, self.stats, self._rejections, self._worker,
                                 self._interfaces.stream_topics)
        self._service_handlers = NodeServices(self, self._node_state, self.stats, self._rejections, self._worker,
                                              self.run_pipeline, self._input.stall_diagnosis)
        self._target_frame = TargetFrame(self, self.stats)
        self._timer_group = MutuallyExclusiveCallbackGroup()
        period = float(self.get_parameter("diagnostics.period_s").value)
        self._diagnostics = DiagnosticsPublisher(self, period, self.status_values, self._timer_group)
        # In the input group: it touches the synchroniser, which the camera callbacks own.
        self._camera_info_timer = self.create_timer(
            CAMERA_INFO_CHECK_PERIOD_S, self._input.check_camera_info, self._interfaces.input_group)

    @property
    def autostart(self) -> bool:
        return bool(self.get_parameter("autostart").value)

    @property
    def instruction(self) -> str:
        return self._input.instruction

    @property
    def config(self) -> Optional[NodeConfig]:
        return self._node_state.config

    @property
    def backend(self) -> Optional[PartGroundingBackend]:
        return self.pipeline.backend if self.pipeline is not None else None

    @property
    def closing(self) -> bool:
        """The process is going down: failures from a dead context are not errors."""
        return self._node_state.closing

    @closing.setter
    def closing(self, value: bool) -> None:
        self._node_state.closing = value

    # ---- lifecycle ------------------------------------------------------------------------------
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        try:
            self._node_state.config = config = read_config(self)
            started = time.perf_counter()
            options = dict(config.backend_options)
            options.setdefault("device", config.device)
            # Every backend and grasp option is checked here, before the model loads.
            self.pipeline = PartPipeline.build(config.backend, options, config.grasp_options)
            self.pipeline.load(warmup=config.warmup)
            self.get_logger().info(f"backend {config.backend} loaded in {elapsed_ms(started):.0f} ms")
            self._target_frame.configure(config)
            self._interfaces.create(config, InterfaceHandlers(
                color=self._input.on_color, depth=self._input.on_depth, camera_info=self._input.on_camera_info,
                instruction=self._input.on_instruction, segment_parts=self._service_handlers.segment_parts,
                ask=self._service_handlers.ask,
            ))
            self._input.configure(config)
            self._worker.start(config.instruction_queue_size)
        except Exception as exc:  # noqa: BLE001 - any failure leaves the node unconfigured, with the reason
            self.get_logger().error(f"configure failed: {type(exc).__name__}: {exc}")
            self._teardown()
            return TransitionCallbackReturn.FAILURE
        self.get_logger().info(
            f"configured: colour {config.color_topic}, depth {config.depth_topic or '(none)'}, "
            f"camera_info {config.camera_info_topic}, instruction {self.resolve_topic_name(config.instruction_topic)}"
        )
        return super().on_configure(state)

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._node_state.active_since_ns = self.get_clock().now().nanoseconds
        self._node_state.active = True
        self.get_logger().info("active: processing frames")
        return super().on_activate(state)

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._node_state.active = False
        self._worker.clear()
        self._worker.fail_asks("node deactivated before the frame came")
        self._worker.latest = None
        self.get_logger().info("inactive: frames are ignored")
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._teardown()
        return super().on_cleanup(state)

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._node_state.active = False
        self._teardown()
        self.shutdown_requested = True  # spin_node() returns: the process exits after the transition
        return super().on_shutdown(state)

    def _teardown(self) -> None:
        """Back to a clean, unconfigured slate, without destroying any ROS entity.

        Subscriptions, publishers and the services live as long as the node: destroying
        them while the multi-threaded executor builds a wait set from them can raise
        InvalidHandle inside ``executor.spin()`` (rclpy adds a QoS event handler to the
        wait set even when entering it failed). Inactive, the callbacks ignore input;
        ``destroy_node`` releases everything once the executor has stopped.
        """
        self._node_state.active = False
        self._worker.fail_asks(TEARDOWN_ASK_ERROR)
        self._worker.stop()
        self._input.reset()  # a reconfigured node starts from a clean slate
        self._worker.latest = None
        self._target_frame.reset()
        self.pipeline = None

    # ---- one frame --------------------------------------------------------------------------------
    def run_pipeline(self, decoded: DecodedFrame, instruction: str, header: Header) -> PipelineOutput:
        """Pipeline + result messages for one frame (used by the topics and both services)."""
        pipeline, config = self.pipeline, self._node_state.config
        if pipeline is None or config is None:
            raise RuntimeError("no backend: the node is not configured")
        camera_to_target = None
        if decoded.depth_m is not None and decoded.camera is not None:
            camera_to_target = self._target_frame.camera_to_target(header)
        # The camera with its distortion: the backend and the grasp regions map pixels to rays through it.
        request = GroundingRequest(rgb=decoded.rgb, instruction=instruction, depth_m=decoded.depth_m,
                                   camera=decoded.camera)
        run = pipeline.run(request, camera_to_target=camera_to_target)
        started = time.perf_counter()
        target_frame = self._target_frame.name if camera_to_target is not None else ""
        segmentation, regions = result_messages(run, header, instruction, target_frame, config.point_cloud_colors)
        stages = {STAGE_GEOMETRY: run.geometry_ms, "messages": elapsed_ms(started)}
        return PipelineOutput(segmentation, regions, run, stages)

    def _process(self, pending: PendingFrame) -> PipelineOutput:
        """The worker's job for one frame: decode it, answer it, publish the answer, account for the time."""
        started = time.perf_counter()
        config = self._node_state.config
        decoded = decode_raw_frame(pending.frame, config)
        output = self.run_pipeline(decoded, pending.instruction, pending.header)
        latency_ms = (self.get_clock().now().nanoseconds - pending.origin_ns) / 1e6
        output.segmentation.latency_ms = float(latency_ms)
        publish_ms, visuals_ms = self._interfaces.publish_output(
            output, decoded.rgb, pending.header, config.marker_lifetime_s)
        stages = dict(output.stages_ms, callback=pending.frame.callback_ms, publish=publish_ms, visuals=visuals_ms)
        overhead_ms = pending.frame.callback_ms + elapsed_ms(started) - output.inference_ms
        self.stats.frame_processed(latency_ms, output.inference_ms, overhead_ms, stages)
        return output

    def _on_frame_failure(self, pending: PendingFrame, exc: Exception) -> bool:
        """Count and report a frame that failed; False when the process is going down (the worker ends)."""
        if self._node_state.closing or not self.context.ok():
            return False  # shutting down (SIGINT mid-frame): publishing fails, nothing to report
        count = self.stats.reject(PROCESSING_ERROR)
        if limited_log(count):
            self.get_logger().error(f"processing failed: {type(exc).__name__}: {exc}")
        config = self._node_state.config
        self._interfaces.publish_if_active("segmentation", messages.segmentation_msg(
            None, pending.header, pending.instruction, error=f"{type(exc).__name__}: {exc}",
            backend=config.backend if config else ""))
        return True

    # ---- diagnostics ------------------------------------------------------------------------------
    def status_values(self) -> dict[str, Any]:
        config = self._node_state.config
        if self._node_state.active:
            lifecycle = "active"
        else:
            lifecycle = "inactive" if self.pipeline is not None else "unconfigured"
        values: dict[str, Any] = {
            "state": lifecycle,
            "backend": config.backend if config else str(self.get_parameter("backend").value),
            "instruction": self.instruction,
        }
        values.update(self.stats.snapshot())
        return values

    def stall_diagnosis(self, now_ns: Optional[int] = None) -> str:
        """Why no synchronised frame completes: per partner stream, nothing / silent / stamps beyond slop."""
        return self._input.stall_diagnosis(now_ns)


USAGE = """usage: partseg_node [--ros-args --params-file FILE [-p NAME:=VALUE ...] [-r FROM:=TO ...]]

The partseg perception node (lifecycle; -p autostart:=true configures and activates it).
Parameters: config/partseg.yaml and `ros2 param describe /partseg <name>`.
Topics (node name partseg): color/image_raw, aligned_depth_to_color/image_raw and color/camera_info in
(relative: remap them, e.g. -r color/image_raw:=/camera/camera/color/image_raw; transport.color:=compressed
and transport.depth:=compressedDepth read image_transport's <topic>/compressed and <topic>/compressedDepth),
~/instruction in; ~/segmentation, ~/grasp_regions, ~/mask, ~/debug_image, ~/markers and /diagnostics out;
services ~/segment_parts (send a frame) and ~/ask (an instruction, answered on the next frame).
"""


def apply_gil_switch_interval(node: PartSegNode) -> float:
    """Set the process's interpreter switch interval from ``executor.gil_switch_interval_s``; returns the one in force.

    Every executor thread, the frame worker and rclpy's own calls share one
    interpreter. A thread that gives it up on each rcl call (a lifecycle service
    logging and publishing its transition) waits a whole switch interval to get
    it back while another thread is busy, so at Python's 5 ms a 1 kHz timer
    held transitions back by up to 2 s. A value outside its range keeps
    Python's, with a warning here; configure then fails on it by name.
    """
    value = node.get_parameter(GIL_SWITCH_INTERVAL).value
    problem = range_problem(GIL_SWITCH_INTERVAL, value)
    if problem is None:
        sys.setswitchinterval(float(value))
    else:
        node.get_logger().warning(f"{problem}: keeping Python's {sys.getswitchinterval():g} s")
    return sys.getswitchinterval()


def spin_node(executor: MultiThreadedExecutor, node: PartSegNode, poll_s: float = 0.1) -> None:
    """Spin until Ctrl-C, an external shutdown, or the node's lifecycle shutdown transition.

    An exception escaping the executor (rclpy's InvalidHandle when an entity is
    destroyed while a wait set is built, or any other) is logged and counted under
    ``rejected.executor_error``, and spinning goes on: the process never dies of it.
    """
    while rclpy.ok(context=executor.context) and not node.shutdown_requested:
        try:
            executor.spin_once(timeout_sec=poll_s)
        except (KeyboardInterrupt, ExternalShutdownException):
            return
        except Exception as exc:  # noqa: BLE001 - see the docstring
            if not rclpy.ok(context=executor.context):
                return
            count = node.stats.reject(EXECUTOR_ERROR)
            if limited_log(count):
                node.get_logger().error(f"executor error (survived, #{count}): {type(exc).__name__}: {exc}")


def main(args: Optional[list[str]] = None) -> int:
    """Console entry point: ``partseg_node --ros-args --params-file config/partseg.yaml``."""
    argv = sys.argv if args is None else args
    own = argv[1:argv.index("--ros-args")] if "--ros-args" in argv else argv[1:]
    if any(flag in own for flag in ("-h", "--help")):
        print(USAGE)
        return 0
    rclpy.init(args=argv)
    node = PartSegNode()
    apply_gil_switch_interval(node)
    executor = MultiThreadedExecutor(num_threads=EXECUTOR_THREADS)
    executor.add_node(node)
    code = 0
    try:
        if node.autostart:
            if node.trigger_configure() != TransitionCallbackReturn.SUCCESS:
                node.get_logger().error("autostart: configure failed, staying unconfigured")
                code = 1
            elif node.trigger_activate() != TransitionCallbackReturn.SUCCESS:
                node.get_logger().error("autostart: activate failed")
                code = 1
        spin_node(executor, node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.closing = True
        node._teardown()
        # In this order: shutdown() joins the executor threads, so a service call in flight
        # is answered while its service still exists (test_node_shutdown.py).
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown()
    return code


if __name__ == "__main__":
    sys.exit(main())
