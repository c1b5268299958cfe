"""The latest-frame worker: the one thread that runs the model, and the rule for what it runs next.

The camera callbacks must never wait for the model, and a model slower than
the camera must never build a backlog of old frames. So callbacks only hand
paired frames over, and this thread takes them in this order:

1. frames a ``~/ask`` caller is blocked on (never dropped: someone waits);
2. instructions answered on an earlier frame (a bounded queue, for a camera
   that is paused or throttled when the instruction comes);
3. the latest camera frame: a newer one replaces one not yet taken, and the
   caller counts the replaced one as stale.

What processing a frame means (decoding, the pipeline, publishing) is the
node's business, given as a function; this module only decides which frame is
next, runs it, and hands answers and errors back to waiting ``~/ask`` callers.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable, Optional

from sensor_msgs.msg import CameraInfo
from std_msgs.msg import Header

from partseg_ros.ros.diagnostics import PROCESSING_ERROR
from partseg_ros.ros.sync import stamp_to_ns
from partseg_ros.ros.validation import Rejection

DEFAULT_INSTRUCTION_QUEUE_SIZE = 8  # until configure sets instruction_queue_size
STOP_JOIN_TIMEOUT_S = 30.0  # a frame in the model is let finish this long when the worker stops


@dataclass
class AskWaiter:
    """One ~/ask request waiting for its frame; the worker fills ``output`` or ``error`` and sets ``done``."""

    instruction: str
    min_stamp_ns: int  # 0: the first frame completed after arrival_ns
    arrival_ns: int
    done: threading.Event
    output: Optional[Any] = None  # the node's PipelineOutput
    error: str = ""


@dataclass
class RawFrame:
    """A paired frame as it arrived: serialized colour and depth, decoded only if the worker takes it."""

    color: bytes
    depth: Optional[bytes]
    camera_info: CameraInfo
    header: Header  # of the colour image: the frame every result names
    arrival_ns: int  # node clock when the set was complete
    callback_ms: float  # peek + checks + pairing, for the overhead figure


@dataclass
class PendingFrame:
    """A paired frame and the instruction to answer on it, waiting for the worker."""

    frame: RawFrame
    instruction: str
    origin_ns: int  # latency is measured from here: the frame's stamp, or the instruction's arrival
    ask: Optional[AskWaiter] = None  # set when a ~/ask request waits for this answer

    @property
    def header(self) -> Header:
        return self.frame.header


class LatestFrameWorker:
    """The worker thread and the frames waiting for it (see the module docstring for the order).

    ``process`` answers one frame and returns what an ``~/ask`` caller gets;
    ``is_active`` is checked before each frame (an inactive node answers none);
    ``on_rejection(reason, message)`` reports a frame refused by a check;
    ``on_failure(frame, exc)`` reports any other exception and returns False
    when the worker should end (the process is shutting down).
    """

    def __init__(
        self,
        process: Callable[[PendingFrame], Any],
        is_active: Callable[[], bool],
        on_rejection: Callable[[str, str], None],
        on_failure: Callable[[PendingFrame, Exception], bool],
    ) -> None:
        self._process = process
        self._is_active = is_active
        self._on_rejection = on_rejection
        self._on_failure = on_failure
        self.latest: Optional[RawFrame] = None  # the newest paired frame, for instructions without a new one
        self._wakeup = threading.Condition()
        self._pending: Optional[PendingFrame] = None  # the latest camera frame (latest-frame policy)
        self._requests: deque[PendingFrame] = deque(maxlen=DEFAULT_INSTRUCTION_QUEUE_SIZE)
        self._asks_waiting: list[AskWaiter] = []  # ~/ask requests whose frame has not come yet
        self._ask_frames: deque[PendingFrame] = deque()  # frames taken for ~/ask, never dropped
        self._thread: Optional[threading.Thread] = None
        self._stop = False

    # ---- thread -----------------------------------------------------------------------------------
    def start(self, instruction_queue_size: int) -> None:
        with self._wakeup:
            self._requests = deque(maxlen=instruction_queue_size)
        self._stop = False
        self._thread = threading.Thread(target=self._work, name="partseg-worker", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """End the thread after the frame it is on (if any); frames not yet taken are forgotten."""
        with self._wakeup:
            self._stop = True
            self._pending = None
            self._wakeup.notify_all()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=STOP_JOIN_TIMEOUT_S)
        self._thread = None

    # ---- frames in --------------------------------------------------------------------------------
    def offer_frame(self, pending: PendingFrame) -> bool:
        """Make ``pending`` the next camera frame; True when it replaced one the worker had not taken."""
        with self._wakeup:
            replaced = self._pending is not None
            self._pending = pending
            self._wakeup.notify()
        return replaced

    def offer_request(self, pending: PendingFrame) -> bool:
        """Queue an instruction on an earlier frame; True when the queue was full and its oldest was dropped."""
        with self._wakeup:
            overflow = len(self._requests) == self._requests.maxlen
            self._requests.append(pending)
            self._wakeup.notify()
        return overflow

    def clear(self) -> None:
        """Forget the camera frame and the instructions not yet taken (~/ask frames stay: callers wait)."""
        with self._wakeup:
            self._pending = None
            self._requests.clear()

    # ---- ~/ask ------------------------------------------------------------------------------------
    def submit_ask(self, waiter: AskWaiter) -> None:
        """Queue ``waiter`` on the newest frame if it qualifies by stamp, else wait for the next frame.

        The newest frame is read under the same lock as :meth:`serve_asks`
        takes, so a frame completing meanwhile is either seen here or serves
        the waiter there, never neither.
        """
        with self._wakeup:
            latest = self.latest
            if waiter.min_stamp_ns and latest is not None and stamp_to_ns(latest.header.stamp) >= waiter.min_stamp_ns:
                self._ask_frames.append(PendingFrame(latest, waiter.instruction, waiter.arrival_ns, ask=waiter))
                self._wakeup.notify()
            else:
                self._asks_waiting.append(waiter)

    def serve_asks(self, frame: RawFrame) -> None:
        """Hand a just-completed frame to every waiting ~/ask request it qualifies for."""
        stamp_ns = stamp_to_ns(frame.header.stamp)
        with self._wakeup:
            if not self._asks_waiting:
                return
            still = []
            for waiter in self._asks_waiting:
                if stamp_ns >= waiter.min_stamp_ns and frame.arrival_ns >= waiter.arrival_ns:
                    self._ask_frames.append(PendingFrame(frame, waiter.instruction, waiter.arrival_ns, ask=waiter))
                else:
                    still.append(waiter)
            self._asks_waiting = still
            self._wakeup.notify()

    def withdraw_ask(self, waiter: AskWaiter) -> None:
        """The caller gave up (timeout): nobody is waiting for this answer any more."""
        with self._wakeup:
            if waiter in self._asks_waiting:
                self._asks_waiting.remove(waiter)
            self._ask_frames = deque(f for f in self._ask_frames if f.ask is not waiter)

    def fail_asks(self, reason: str) -> None:
        """Answer every waiting ~/ask request with ``reason`` (deactivation, cleanup, shutdown)."""
        with self._wakeup:
            waiting, self._asks_waiting = self._asks_waiting, []
            frames, self._ask_frames = list(self._ask_frames), deque()
        for waiter in waiting + [f.ask for f in frames if f.ask is not None]:
            waiter.error = reason
            waiter.done.set()

    # ---- the loop ---------------------------------------------------------------------------------
    def _next(self) -> Optional[PendingFrame]:
        """The next frame in the module docstring's order, waiting for one; None when stopping."""
        with self._wakeup:
            self._wakeup.wait_for(lambda: self._pending is not None or self._requests or self._ask_frames
                                  or self._stop)
            if self._stop:
                return None
            if self._ask_frames:  # a caller blocks on these
                return self._ask_frames.popleft()
            if self._requests:  # instructions waiting on an earlier frame come next
                return self._requests.popleft()
            frame, self._pending = self._pending, None
            return frame

    def _work(self) -> None:
        while True:
            frame = self._next()
            if frame is None:
                return
            try:
                if not self._is_active():
                    if frame.ask is not None:
                        frame.ask.error = "node deactivated before the frame was processed"
                    continue
                output = self._process(frame)
                if frame.ask is not None:
                    frame.ask.output = output
            except Rejection as rejection:
                self._on_rejection(rejection.reason, str(rejection))
                if frame.ask is not None:
                    frame.ask.error = f"{rejection.reason}: {rejection}"
            except Exception as exc:  # noqa: BLE001 - report and keep serving
                if frame.ask is not None:
                    frame.ask.error = f"{PROCESSING_ERROR}: {type(exc).__name__}: {exc}"
                if not self._on_failure(frame, exc):
                    return
            finally:
                if frame.ask is not None:
                    frame.ask.done.set()
