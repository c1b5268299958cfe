"""Approximate-time pairing of camera streams (colour, depth, camera_info).

message_filters is not on PyPI, so partseg has its own synchroniser. It is
pure Python (no rclpy) and works on integer nanosecond stamps, so it can be
unit-tested without DDS and reused by replay tools.

Policy: every stream has a bounded, stamp-ordered queue. Whenever all queues
hold something, the newest of the queue heads is the pivot. Heads more than
``slop`` older than the pivot can never be part of a set: they are dropped and
counted. From each queue the newest message not after the pivot is taken and
the set is emitted at once (low latency beats waiting for a possibly better
partner), so a set never spans more than ``slop``. Pairing is exact when
``slop`` is below half the frame period, the usual advice for approximate
synchronisation.

Messages not newer than the previous one of their stream (late or duplicated)
and stamps from the future (beyond a tolerance) are refused with a reason the
caller can count. A stamp further back than ``reset_jump_back_ns`` is not
jitter but a new time line (a bag replayed again or looped, a simulator
reset): the synchroniser forgets everything, counts it in ``resets`` and
takes the message as the first of the new time line. So is a stamp equal to
its stream's last one when that stream was silent for ``reset_repeat_after_ns``
(a 1-frame bag replayed again, or another bag starting at the same stamp);
back to back, an equal stamp is a duplicate and refused.
"""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any, Callable, Generic, Optional, Sequence, TypeVar

T = TypeVar("T")

# Rejection reasons returned by ApproximateTimeSync.add (None means accepted).
OUT_OF_ORDER = "out_of_order"
FUTURE_STAMP = "future_stamp"

# Drop reasons counted in ApproximateTimeSync.drops.
UNMATCHED = "unmatched"
QUEUE_OVERFLOW = "queue_overflow"


@dataclass(frozen=True)
class SyncedSet(Generic[T]):
    """One matched set: a message per stream, in the order the streams were declared."""

    stamps_ns: tuple[int, ...]
    messages: tuple[T, ...]

    @property
    def spread_ns(self) -> int:
        return max(self.stamps_ns) - min(self.stamps_ns)

    @property
    def newest_stamp_ns(self) -> int:
        return max(self.stamps_ns)


@dataclass
class _Stream(Generic[T]):
    queue: deque = field(default_factory=deque)  # (stamp_ns, message), ascending stamps
    last_stamp_ns: Optional[int] = None
    last_arrival_ns: Optional[int] = None  # when the stream last offered a message (kept across resets)


class ApproximateTimeSync(Generic[T]):
    """Pairs N streams by header stamp within ``slop_ns``.

    ``add`` returns the rejection reason (``OUT_OF_ORDER`` or ``FUTURE_STAMP``)
    or None, and calls ``on_match`` synchronously for every set it completes.
    Not thread-safe: feed it from one thread (one ROS callback group).
    """

    def __init__(
        self,
        streams: Sequence[str],
        slop_ns: int,
        queue_size: int = 10,
        future_tolerance_ns: Optional[int] = None,
        on_match: Optional[Callable[[SyncedSet[T]], None]] = None,
        reset_jump_back_ns: Optional[int] = None,
        reset_repeat_after_ns: Optional[int] = None,
    ) -> None:
        if len(streams) < 1 or len(set(streams)) != len(streams):
            raise ValueError(f"streams must be distinct names, got {list(streams)}")
        if slop_ns < 0:
            raise ValueError(f"slop must be >= 0, got {slop_ns} ns")
        if queue_size < 1:
            raise ValueError(f"queue_size must be >= 1, got {queue_size}")
        self.stream_names = tuple(streams)
        self.slop_ns = int(slop_ns)
        self.queue_size = int(queue_size)
        self.future_tolerance_ns = future_tolerance_ns
        self.on_match = on_match
        if reset_jump_back_ns is not None and reset_jump_back_ns <= 0:
            raise ValueError(f"reset_jump_back_ns must be > 0, got {reset_jump_back_ns}")
        self.reset_jump_back_ns = reset_jump_back_ns
        if reset_repeat_after_ns is not None and reset_repeat_after_ns <= 0:
            raise ValueError(f"reset_repeat_after_ns must be > 0, got {reset_repeat_after_ns}")
        self.reset_repeat_after_ns = reset_repeat_after_ns
        self.resets = 0  # times the stamps jumped back beyond reset_jump_back_ns
        self.last_jump_back_ns = 0
        self._streams: dict[str, _Stream[T]] = {name: _Stream() for name in self.stream_names}
        self.drops: Counter[str] = Counter()  # "reason" and "reason:stream"
        self.matched = 0

    def add(self, stream: str, stamp_ns: int, message: T, now_ns: Optional[int] = None) -> Optional[str]:
        """Offer one message; returns why it was refused, or None when it was queued."""
        state = self._streams[stream]  # KeyError for an unknown stream is a programming error
        stamp_ns = int(stamp_ns)
        previous_arrival_ns, state.last_arrival_ns = state.last_arrival_ns, now_ns
        if self.future_tolerance_ns is not None and now_ns is not None and stamp_ns > now_ns + self.future_tolerance_ns:
            return FUTURE_STAMP
        if state.last_stamp_ns is not None and stamp_ns <= state.last_stamp_ns:
            jump = state.last_stamp_ns - stamp_ns
            repeated_after_silence = (
                jump == 0 and self.reset_repeat_after_ns is not None and now_ns is not None
                and previous_arrival_ns is not None and now_ns - previous_arrival_ns >= self.reset_repeat_after_ns
            )
            if not repeated_after_silence and (self.reset_jump_back_ns is None or jump <= self.reset_jump_back_ns):
                return OUT_OF_ORDER  # jitter, a late or duplicated message
            self.reset()  # a new time line: bag restart, --loop, simulator reset
            self.resets += 1
            self.last_jump_back_ns = jump
        state.last_stamp_ns = stamp_ns
        state.queue.append((stamp_ns, message))
        if len(state.queue) > self.queue_size:
            state.queue.popleft()
            self._count_drop(QUEUE_OVERFLOW, stream)
        self._match()
        return None

    def last_seen(self, stream: str) -> tuple[Optional[int], Optional[int]]:
        """(last accepted stamp, last arrival) of a stream, in ns; None when it sent nothing yet.

        The node's stall check reads this to say which stream is missing and how far
        its stamps are from colour's when no set completes.
        """
        state = self._streams[stream]
        newest_queued = state.queue[-1][0] if state.queue else None
        return (newest_queued if newest_queued is not None else state.last_stamp_ns), state.last_arrival_ns

    def nearest_stamp(self, stream: str, stamp_ns: int) -> Optional[int]:
        """The queued (or last accepted) stamp of ``stream`` closest to ``stamp_ns``; None when there is none."""
        state = self._streams[stream]
        candidates = [stamp for stamp, _ in state.queue]
        if state.last_stamp_ns is not None:
            candidates.append(state.last_stamp_ns)
        return min(candidates, key=lambda stamp: abs(stamp - stamp_ns)) if candidates else None

    def pending(self, stream: str) -> int:
        return len(self._streams[stream].queue)

    def discard(self, stream: str, stamp_ns: int) -> bool:
        """Remove a queued message of ``stream`` by stamp (the caller gave up on it); True if it was queued."""
        queue = self._streams[stream].queue
        for index, (stamp, _) in enumerate(queue):
            if stamp == stamp_ns:
                del queue[index]
                return True
        return False

    def reset(self) -> None:
        """Forget queued messages and stamp history (e.g. after a bag loops or time jumps back)."""
        for state in self._streams.values():
            state.queue.clear()
            state.last_stamp_ns = None

    def _count_drop(self, reason: str, stream: str) -> None:
        self.drops[reason] += 1
        self.drops[f"{reason}:{stream}"] += 1

    def _match(self) -> None:
        streams = [self._streams[name] for name in self.stream_names]
        while all(state.queue for state in streams):
            pivot = max(state.queue[0][0] for state in streams)
            # A head more than slop older than the pivot can never be in a set.
            dropped = False
            for name, state in zip(self.stream_names, streams):
                while state.queue and pivot - state.queue[0][0] > self.slop_ns:
                    state.queue.popleft()
                    self._count_drop(UNMATCHED, name)
                    dropped = True
            if dropped:
                # A queue's next head may be newer than this pivot (its own frame's partners
                # were lost): choose the pivot again, or a set would span more than slop.
                continue
            # Every head now lies in [pivot - slop, pivot]; from each queue take the
            # newest message not after the pivot, so the set spans at most slop.
            messages, stamps = [], []
            for name, state in zip(self.stream_names, streams):
                pick = _last_not_after(state.queue, pivot)
                for _ in range(pick):  # older ones lost to a closer partner
                    state.queue.popleft()
                    self._count_drop(UNMATCHED, name)
                stamp, message = state.queue.popleft()
                stamps.append(stamp)
                messages.append(message)
            self.matched += 1
            if self.on_match is not None:
                self.on_match(SyncedSet(tuple(stamps), tuple(messages)))


def _last_not_after(queue: deque, pivot_ns: int) -> int:
    """Index of the newest queued stamp <= pivot (queues are ascending; index 0 qualifies)."""
    pick = 0
    for index, (stamp, _) in enumerate(queue):
        if stamp > pivot_ns:
            break
        pick = index
    return pick


def stamp_to_ns(stamp: Any) -> int:
    """builtin_interfaces/Time (anything with sec and nanosec) to integer nanoseconds."""
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)
