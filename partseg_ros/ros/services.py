"""The node's two services: ``~/segment_parts`` (a frame in the request) and ``~/ask`` (the next frame).

Both answer through the same pipeline as the camera topics (the node's
``run_pipeline``), and both always respond: a refused request or a failed
frame is ``success: false`` with ``<reason>: <what happened>``, never an
exception into the executor.

* ``~/segment_parts`` decodes the request's own images with the topic
  path's checks and answers at once, on the service's own callback group.
* ``~/ask`` takes only an instruction and blocks, on its own group, until the
  worker has answered it on the next synchronised frame (or the first stamped
  at or after ``min_stamp_ns``), so a planner needs no sleep and the answer
  never races the image. No frame within the timeout: the stall diagnosis says why.
"""

from __future__ import annotations

import threading
from typing import Callable, TypeVar

from rclpy.node import Node
from std_msgs.msg import Header

from partseg.srv import AskParts, SegmentParts
from partseg_ros.ros import messages
from partseg_ros.ros.diagnostics import ASK_TIMEOUT, DEPTH_REQUIRED, PROCESSING_ERROR, RejectionLog
from partseg_ros.ros.frame_worker import AskWaiter, LatestFrameWorker
from partseg_ros.ros.interfaces import PipelineOutput
from partseg_ros.ros.node_state import NodeState
from partseg_ros.ros.stats import NodeStats
from partseg_ros.ros.validation import (
    CAMERA_INFO_MISSING,
    DecodedFrame,
    Rejection,
    check_instruction,
    decode_frame,
)

NOT_ACTIVE = "node is not active (lifecycle): configure and activate it first"


class NodeServices:
    """The handlers of ``~/segment_parts`` and ``~/ask``.

    ``run_pipeline(decoded, instruction, header)`` answers a decoded frame
    (the node's, shared with the worker); ``stall_diagnosis()`` says why no
    synchronised frame came, for an ``~/ask`` that timed out.
    """

    def __init__(self, node: Node, state: NodeState, stats: NodeStats, rejections: RejectionLog,
                 worker: LatestFrameWorker,
                 run_pipeline: Callable[[DecodedFrame, str, Header], PipelineOutput],
                 stall_diagnosis: Callable[[], str]) -> None:
        self._node = node
        self._state = state
        self._stats = stats
        self._rejections = rejections
        self._worker = worker
        self._run_pipeline = run_pipeline
        self._stall_diagnosis = stall_diagnosis

    def segment_parts(self, request: SegmentParts.Request,
                      response: SegmentParts.Response) -> SegmentParts.Response:
        config = self._state.config
        if not self._state.active or config is None:
            response.success = False
            response.message = NOT_ACTIVE
            return response
        has_depth = request.depth.width > 0 and request.depth.height > 0
        try:
            instruction = check_instruction(request.instruction, config.limits)
            has_info = request.camera_info.width > 0 and any(request.camera_info.k)
            decoded = decode_frame(
                request.color, request.depth if has_depth else None, request.camera_info if has_info else None,
                config.limits, require_camera_info=False,
            )
            if has_depth and not has_info:
                raise Rejection(CAMERA_INFO_MISSING, "depth given without camera_info: cannot lift masks into 3D")
            output = self._run_pipeline(decoded, instruction, request.color.header)
        except Rejection as rejection:
            self._rejections.reject(rejection.reason, f"service: {rejection}")
            response.success = False
            response.message = f"{rejection.reason}: {rejection}"
            return response
        except Exception as exc:  # noqa: BLE001 - answer instead of crashing the service
            if not has_depth and isinstance(exc, ValueError):
                # The .srv makes depth optional; a backend that finds objects in 3D cannot do without it.
                # Say so with its own reason, so a caller can tell "send depth" from a failure.
                self._rejections.reject(DEPTH_REQUIRED, f"service: {exc}")
                response.success = False
                response.message = (f"{DEPTH_REQUIRED}: backend {config.backend!r} cannot answer a colour-only "
                                    f"request ({exc}); send depth and camera_info")
                response.segmentation = messages.segmentation_msg(
                    None, request.color.header, request.instruction, error=response.message, backend=config.backend)
                return response
            self._rejections.reject(PROCESSING_ERROR, f"service: {type(exc).__name__}: {exc}")
            response.success = False
            response.message = f"{PROCESSING_ERROR}: {type(exc).__name__}: {exc}"
            return response
        return _answered(response, output)

    def ask(self, request: AskParts.Request, response: AskParts.Response) -> AskParts.Response:
        """Block until the worker answers ``request.instruction`` on the next qualifying frame, or time out.

        With ``min_stamp_ns`` the frame is the first whose stamp is at or after it, and the
        newest frame already received counts: a client that publishes the frame itself may
        have it arrive before or after the request, and no sleep is needed either way.
        """
        config = self._state.config
        if not self._state.active or config is None:
            response.success = False
            response.message = NOT_ACTIVE
            return response
        try:
            instruction = check_instruction(request.instruction, config.limits)
        except Rejection as rejection:
            self._rejections.reject(rejection.reason, f"ask: {rejection}")
            response.success, response.message = False, f"{rejection.reason}: {rejection}"
            return response
        timeout_s = float(request.timeout_s) if request.timeout_s > 0 else config.ask_timeout_s
        now_ns = self._node.get_clock().now().nanoseconds
        waiter = AskWaiter(instruction, max(int(request.min_stamp_ns), 0), now_ns, threading.Event())
        self._worker.submit_ask(waiter)
        if not waiter.done.wait(timeout_s):
            self._worker.withdraw_ask(waiter)
            if not waiter.done.is_set():
                self._stats.reject(ASK_TIMEOUT)
                response.success = False
                response.message = (f"{ASK_TIMEOUT}: no synchronised frame answered within {timeout_s:g} s; "
                                    + self._stall_diagnosis())
                return response
        output = waiter.output
        if output is None:
            response.success, response.message = False, waiter.error or "no answer"
            return response
        return _answered(response, output)


Response = TypeVar("Response", SegmentParts.Response, AskParts.Response)


def _answered(response: Response, output: PipelineOutput) -> Response:
    """Both services answer the same way once the pipeline has run: "no target" is a success, not an error."""
    response.success = True
    response.message = "ok" if output.segmentation.instances else "no target"
    response.segmentation = output.segmentation
    response.grasp_regions = output.regions
    return response
