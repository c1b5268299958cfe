"""``partseg_replay``: publish a rosbag2's messages on their topics, in recorded order.

There is no ``ros2 bag play`` in a pip-installed ROS 2, so this plays any
rosbag2 (MCAP or sqlite3) that ``rosbags`` can read: the stored CDR bytes
are published as they are (no deserialisation), spaced by the recorded log
times divided by ``--rate`` (``--rate 0``: as fast as the reader and DDS
allow), optionally with ``/clock`` so nodes with ``use_sim_time`` follow the
bag's time. The message types must be importable (the ROS message packages
of the bag's topics, e.g. sensor_msgs, std_msgs, partseg).

QoS: every publisher is reliable (it also matches best-effort subscribers).
Camera topics are volatile with a history of ``--sensor-depth``; the
instruction and ground-truth topics are transient-local with a history of
``--latched-depth``, so they also reach a subscriber with transient-local
durability (the partseg node's default for instructions) and one that joined
a little late. The command uses the caller's DDS environment as it is; tests
run it with the loopback environment of :mod:`partseg_ros.ros.dds_env`.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Optional, Sequence

CLOCK_TOPIC = "/clock"
LATCHED_TOPICS = ("/partseg/instruction", "/partseg/ground_truth/labels", "/partseg/ground_truth/task")


@dataclass
class ReplayStats:
    published: dict[str, int] = field(default_factory=dict)
    clock_ticks: int = 0
    loops: int = 0
    wall_s: float = 0.0
    interrupted: bool = False

    @property
    def total(self) -> int:
        return sum(self.published.values())


def message_class(msgtype: str):
    """The Python class of "pkg/msg/Name" (e.g. sensor_msgs.msg.Image)."""
    package, kind, name = msgtype.split("/")
    return getattr(importlib.import_module(f"{package}.{kind}"), name)


def bag_messages(bag: Path, topics: Optional[Sequence[str]] = None) -> Iterator[tuple[str, str, int, bytes]]:
    """(topic, msgtype, log time ns, raw CDR) of a bag in log-time order."""
    from rosbags.rosbag2 import Reader

    with Reader(bag) as reader:
        connections = [c for c in reader.connections if topics is None or c.topic in topics]
        for connection, timestamp, raw in reader.messages(connections=connections):
            yield connection.topic, connection.msgtype, int(timestamp), bytes(raw)


def bag_topics(bag: Path) -> dict[str, str]:
    from rosbags.rosbag2 import Reader

    with Reader(bag) as reader:
        return {c.topic: c.msgtype for c in reader.connections}


def replay(bag: Path, rate: float = 1.0, clock: bool = False, clock_hz: float = 100.0,
           topics: Optional[Sequence[str]] = None, loop: bool = False,
           wait_for: Optional[Sequence[str]] = None, wait_timeout_s: float = 30.0, sensor_depth: int = 10,
           latched_depth: int = 1000, node_name: str = "partseg_replay", args: Optional[list[str]] = None,
           log=print) -> ReplayStats:
    """Publish ``bag`` (see module doc); returns what was published. Initialises and shuts down rclpy.

    ``args`` go to ``rclpy.init``: ROS remapping (``--ros-args -r /from:=/to``) renames topics.
    """
    import rclpy
    from rclpy.duration import Duration
    from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

    if rate < 0:
        raise ValueError("rate must be >= 0")
    bag = Path(bag)
    bag = bag.parent if bag.is_file() else bag  # accept the .mcap/.db3 file itself
    available = bag_topics(bag)
    selected = {t: m for t, m in available.items() if topics is None or t in topics}
    missing = sorted(set(topics or ()) - set(available))
    if missing:
        raise ValueError(f"topics not in the bag: {missing}; the bag has {sorted(available)}")

    rclpy.init(args=args)
    stats = ReplayStats(published={t: 0 for t in selected})
    node = rclpy.create_node(node_name)
    try:
        publishers = {}
        for topic, msgtype in selected.items():
            latched = topic in LATCHED_TOPICS
            qos = QoSProfile(
                history=HistoryPolicy.KEEP_LAST,
                depth=latched_depth if latched else sensor_depth,
                reliability=ReliabilityPolicy.RELIABLE,
                durability=DurabilityPolicy.TRANSIENT_LOCAL if latched else DurabilityPolicy.VOLATILE,
            )
            publishers[topic] = node.create_publisher(message_class(msgtype), topic, qos)
        clock_pub = None
        if clock:
            from rosgraph_msgs.msg import Clock

            clock_qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
            clock_pub = node.create_publisher(Clock, CLOCK_TOPIC, clock_qos)

        if wait_for is not None:
            waitable = dict(publishers, **({CLOCK_TOPIC: clock_pub} if clock_pub is not None else {}))
            _wait_for_subscribers(node, waitable, list(wait_for) or list(waitable), wait_timeout_s, log)
            time.sleep(MATCH_SETTLE_S)

        start_wall = time.perf_counter()
        try:
            _play(bag, list(selected), publishers, clock_pub, rate, clock_hz, loop, stats)
        except KeyboardInterrupt:  # Ctrl-C ends a --loop replay: report what went out
            stats.interrupted = True
        stats.wall_s = time.perf_counter() - start_wall
        if not stats.interrupted and rclpy.ok():
            for pub in publishers.values():
                pub.wait_for_all_acked(Duration(seconds=5.0))
    finally:
        node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()
    return stats


def _play(bag: Path, topics: list[str], publishers: dict, clock_pub, rate: float, clock_hz: float, loop: bool,
          stats: ReplayStats) -> None:
    import rclpy

    offset_ns = 0
    while True:
        first_ns = last_ns = None
        loop_start = time.perf_counter()
        for topic, _, log_ns, raw in bag_messages(bag, topics):
            if not rclpy.ok():  # shut down by a signal
                stats.interrupted = True
                return
            if first_ns is None:
                first_ns = log_ns
            last_ns = log_ns
            if rate > 0:
                due = loop_start + (log_ns - first_ns) / 1e9 / rate
                _sleep_until(due, clock_pub, clock_hz, rate, loop_start, first_ns, offset_ns, stats)
            try:
                if clock_pub is not None:
                    _publish_clock(clock_pub, log_ns + offset_ns)
                    stats.clock_ticks += 1
                _publish_raw(publishers[topic], raw)
            except Exception:
                if rclpy.ok():
                    raise
                stats.interrupted = True  # the context went down under us (signal)
                return
            stats.published[topic] += 1
        stats.loops += 1
        if not loop or first_ns is None:
            return
        offset_ns += (last_ns - first_ns) + 1  # keep /clock monotonic across loops


def _wait_for_subscribers(node, publishers: dict, topics: list[str], timeout_s: float, log) -> None:
    unknown = [t for t in topics if t not in publishers]
    if unknown:
        raise ValueError(f"cannot wait for subscribers of topics that are not replayed: {unknown}")
    deadline = time.monotonic() + timeout_s
    while True:
        waiting = [t for t in topics if publishers[t].get_subscription_count() == 0]
        if not waiting:
            return
        if time.monotonic() > deadline:
            log(f"partseg_replay: no subscriber after {timeout_s:.0f} s on {waiting}; starting anyway")
            return
        time.sleep(0.02)


# Discovery is not symmetric: a publisher can see its subscriber before that subscriber's
# reader has matched the writer, and a best-effort reader drops what comes before (a 1-frame
# bag would lose its only frame). A short pause after the match lets both sides agree.
MATCH_SETTLE_S = 0.5


def _sleep_until(due: float, clock_pub, clock_hz: float, rate: float, loop_start: float, first_ns: int,
                 offset_ns: int, stats: ReplayStats) -> None:
    """Sleep to ``due``; with /clock, tick the bag time at ``clock_hz`` meanwhile."""
    while True:
        now = time.perf_counter()
        if now >= due:
            return
        if clock_pub is None or clock_hz <= 0:
            time.sleep(due - now)
            return
        time.sleep(min(due - now, 1.0 / clock_hz))
        if time.perf_counter() < due:
            bag_ns = first_ns + int((time.perf_counter() - loop_start) * rate * 1e9)
            _publish_clock(clock_pub, bag_ns + offset_ns)
            stats.clock_ticks += 1


def _publish_clock(pub, ns: int) -> None:
    from builtin_interfaces.msg import Time
    from rosgraph_msgs.msg import Clock

    pub.publish(Clock(clock=Time(sec=int(ns // 1_000_000_000), nanosec=int(ns % 1_000_000_000))))


def _publish_raw(pub, raw: bytes, retries: int = 2000) -> None:
    """Publish serialized bytes; back off while a reliable writer's history is full."""
    for attempt in range(retries):
        try:
            pub.publish(raw)
            return
        except Exception as exc:  # rclpy raises RCLError (not exported) when the writer cannot take more
            if "cannot publish" not in str(exc) or attempt == retries - 1:
                raise
            time.sleep(0.001)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="partseg_replay", description=__doc__.split("\n")[0].strip("`: "),
        epilog="Rename topics with ROS remapping: partseg_replay BAG --ros-args -r /camera/color/image_raw:=/cam/image",
    )
    parser.add_argument("bag", type=Path, help="rosbag2 folder (or its .mcap/.db3 file)")
    parser.add_argument("--rate", type=float, default=1.0, help="time scale; 0 = as fast as possible")
    parser.add_argument("--clock", action="store_true", help="publish /clock with the bag's time")
    parser.add_argument("--clock-hz", type=float, default=100.0, help="/clock ticks per second between messages")
    parser.add_argument("--topics", nargs="+", help="only these topics (default: all)")
    parser.add_argument("--loop", action="store_true", help="start over at the end until interrupted")
    parser.add_argument("--wait-for-subscribers", nargs="*", metavar="TOPIC",
                        help="before starting, wait until these topics have a subscriber "
                             "(none named: every replayed topic, and /clock with --clock)")
    parser.add_argument("--wait-timeout", type=float, default=30.0, help="give up waiting after this long (s)")
    parser.add_argument("--sensor-depth", type=int, default=10, help="history depth of the camera publishers")
    parser.add_argument("--latched-depth", type=int, default=1000,
                        help="history depth of the transient-local instruction/ground-truth publishers")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    from rclpy.utilities import remove_ros_args

    raw_args = list(sys.argv if argv is None else ["partseg_replay", *argv])
    args = build_parser().parse_args(remove_ros_args(raw_args)[1:])
    try:
        stats = replay(
            args.bag, rate=args.rate, clock=args.clock, clock_hz=args.clock_hz, topics=args.topics, loop=args.loop,
            wait_for=args.wait_for_subscribers, wait_timeout_s=args.wait_timeout,
            sensor_depth=args.sensor_depth, latched_depth=args.latched_depth, args=raw_args,
        )
    except ValueError as exc:
        print(f"partseg_replay: {exc}", file=sys.stderr)
        return 2
    per_topic = ", ".join(f"{t}: {n}" for t, n in sorted(stats.published.items()))
    print(f"partseg_replay: {'interrupted, ' if stats.interrupted else ''}"
          f"published {stats.total} messages in {stats.wall_s:.2f} s "
          f"({stats.loops} pass{'es' if stats.loops != 1 else ''}; {per_topic})"
          + (f"; {stats.clock_ticks} /clock" if stats.clock_ticks else ""), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
