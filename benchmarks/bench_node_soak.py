"""Soak: a 640x480 RGB-D camera at 30 Hz into the node over loopback DDS, for minutes.

The node runs as its own process with the configured backend (default
``shapegrasp``), the way a robot runs it; this script is the camera and the
planner. It streams rendered 640x480 rgb8 + 16UC1 frames with camera_info at
``--hz`` (stamped at publish, like a camera stamping at capture), keeps one
instruction active, listens to the results, samples the node's memory and CPU
every second, and prints:

* RSS first / last / max and the slope over the run (MB/min): bounded memory;
* results per second, and frames sent / received by the node;
* end-to-end latency (camera stamp -> result received here) p50/p95, next to the
  backend's own forward time p50/p95 from the same results. The bar (issue 15,
  item 6): end-to-end p95 at most 2x the backend's p95. With a latest-frame
  policy the floor is about one backend time plus waiting for the frame in flight;
* drops and losses by reason, from the node's /diagnostics over the measured window
  (``dropped.stale_frame`` is the latest-frame policy at work, ``dropped.lost.*``
  what DDS reports lost, ``rejected.*`` refused input) and the frames this script
  sent that the node never received.

The first ``--warmup-s`` seconds are not measured (discovery, first frames).

Run:  python benchmarks/bench_node_soak.py [--duration-s 180] [--hz 30] [--backend shapegrasp]
      [--node-param NAME:=VALUE ...]
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Optional

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from partseg_ros.ros.bringup_spec import remapping_arguments  # noqa: E402
from partseg_ros.ros.dds_env import apply_loopback_environment, loopback_environment  # noqa: E402
from node_streams import start_camera_streams  # noqa: E402  (benchmarks/, the script's own folder)


def _proc_status_mb(pid: int, key: str) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024.0
    raise RuntimeError(f"no {key} for pid {pid}")


def _cpu_seconds(pid: int) -> float:
    """utime + stime of the process, seconds (fields 14 and 15 of /proc/pid/stat)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _percentiles(values: list[float]) -> tuple[float, float]:
    if not values:
        return float("nan"), float("nan")
    array = np.asarray(values, dtype=np.float64)
    return float(np.percentile(array, 50)), float(np.percentile(array, 95))


def _frames(scene: str, views: int, seed: int):
    """Messages for a few rendered 640x480 views (cycled, so the node sees a moving camera)."""
    from partseg_ros.ros.conversions import array_to_image, intrinsics_to_camera_info
    from partseg_ros.scene.render import render_study_view

    out, instruction = [], ""
    for index in range(views):
        view = render_study_view(scene, view_index=index, seed=seed, num_views=views)
        millimetres = np.where(np.isfinite(view.depth_m), np.round(view.depth_m * 1000), 0).astype(np.uint16)
        out.append((array_to_image(view.rgb, "rgb8"), array_to_image(millimetres, "16UC1"),
                    intrinsics_to_camera_info(view.intrinsics)))
        instruction = instruction or view.tasks[0].instruction
    return out, instruction


def soak(args) -> dict:
    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from std_msgs.msg import Header, String

    from partseg.msg import GraspRegionArray, PartSegmentation
    from partseg_ros.ros.node import diagnostics_to_dict

    frames, instruction = _frames(args.scene, args.views, args.seed)
    log = tempfile.NamedTemporaryFile("w+", prefix="partseg_soak_", suffix=".log", delete=False)
    node = subprocess.Popen(
        [sys.executable, "-m", "partseg_ros.ros.node", "--ros-args", "--params-file",
         str(ROOT / "config" / "partseg.yaml"),
         *remapping_arguments("/camera"), "-p", "autostart:=true", "-p", f"backend:={args.backend}",
         "-p", f"device:={args.device}", "-p", "diagnostics.period_s:=1.0",
         *[arg for assignment in args.node_param for arg in ("-p", assignment)]],
        env=loopback_environment(base=os.environ), stdout=log, stderr=subprocess.STDOUT, cwd=ROOT,
    )
    rclpy.init()
    probe = rclpy.create_node("partseg_soak_probe")
    lock = threading.Lock()
    measuring = threading.Event()
    e2e_ms: list[float] = []
    backend_ms: list[float] = []
    node_latency_ms: list[float] = []
    diagnostics: list[dict] = []

    def on_result(msg: PartSegmentation) -> None:
        arrival = probe.get_clock().now().nanoseconds
        if not measuring.is_set():
            return
        stamp = msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec
        with lock:
            e2e_ms.append((arrival - stamp) / 1e6)
            backend_ms.append(float(msg.inference_ms))
            node_latency_ms.append(float(msg.latency_ms))

    def on_diagnostics(msg: DiagnosticArray) -> None:
        values = diagnostics_to_dict(msg)
        if values is not None:
            with lock:
                diagnostics.append(values)

    reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
    probe.create_subscription(PartSegmentation, "/partseg/segmentation", on_result, reliable)
    probe.create_subscription(GraspRegionArray, "/partseg/grasp_regions", lambda _m: None, reliable)  # a planner
    probe.create_subscription(DiagnosticArray, "/diagnostics", on_diagnostics, reliable)
    streams = start_camera_streams(probe, "/camera")  # the node's camera topics are remapped there
    rss: list[tuple[float, float]] = []  # (seconds into the measured window, MB)
    sent = {"total": 0}
    stop = threading.Event()

    def camera() -> None:
        """Publish at a fixed rate on an absolute schedule (no drift when a publish is slow)."""
        period = 1.0 / args.hz
        next_at = time.monotonic()
        index = 0
        while not stop.is_set():
            color, depth, info = frames[index % len(frames)]
            header = Header(stamp=probe.get_clock().now().to_msg(), frame_id="camera_color_optical_frame")
            color.header = depth.header = info.header = header
            streams.publish_frame(color, depth, info)
            sent["total"] += 1
            index += 1
            next_at += period
            delay = next_at - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            else:
                next_at = time.monotonic()  # fell behind: do not burst to catch up

    def latest_diagnostics(after: int) -> dict:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with lock:
                if len(diagnostics) > after:
                    return dict(diagnostics[-1])
            time.sleep(0.05)
        raise RuntimeError("no diagnostics from the node")

    streamer = threading.Thread(target=camera, daemon=True)
    try:
        streams.wait_for_node(node, Path(log.name), lambda: probe.count_publishers("/partseg/segmentation") > 0)
        streams.instruction.publish(String(data=instruction))
        streamer.start()
        time.sleep(args.warmup_s)
        with lock:
            count = len(diagnostics)
        before = latest_diagnostics(count)
        cpu_before = _cpu_seconds(node.pid)
        measuring.set()
        started = time.monotonic()
        while (elapsed := time.monotonic() - started) < args.duration_s:
            if node.poll() is not None:
                raise RuntimeError("node died:\n" + Path(log.name).read_text()[-3000:])
            rss.append((elapsed, _proc_status_mb(node.pid, "VmRSS")))
            time.sleep(1.0)
        measuring.clear()
        elapsed = time.monotonic() - started
        cpu = _cpu_seconds(node.pid) - cpu_before
        peak_mb = _proc_status_mb(node.pid, "VmHWM")
        stop.set()  # the camera stops; what is in flight lands, then the totals are read
        streamer.join(timeout=5)
        time.sleep(1.5)
        with lock:
            count = len(diagnostics)
        after = latest_diagnostics(count)
    finally:
        stop.set()
        if streamer.is_alive():
            streamer.join(timeout=5)
        streams.close()
        probe.destroy_node()
        rclpy.shutdown()
        node.send_signal(signal.SIGINT)
        try:
            exit_code: Optional[int] = node.wait(timeout=30)
        except subprocess.TimeoutExpired:
            node.kill()
            exit_code = None
        tail = Path(log.name).read_text()[-2000:]
        os.unlink(log.name)

    def delta(prefix: str) -> dict[str, int]:
        keys = sorted(k for k in after if k.startswith(prefix))
        changes = {k[len(prefix):]: int(float(after[k])) - int(float(before.get(k, "0"))) for k in keys}
        return {k: v for k, v in changes.items() if v}

    times = np.array([t for t, _ in rss])
    mbs = np.array([m for _, m in rss])
    slope = float(np.polyfit(times / 60.0, mbs, 1)[0]) if len(rss) > 2 else float("nan")
    received = int(float(after["frames_in"]))  # colour frames the node got over the whole run
    return {
        "instruction": instruction, "duration_s": elapsed, "exit_code": exit_code, "log_tail": tail,
        "rss_first_mb": float(mbs[0]), "rss_last_mb": float(mbs[-1]), "rss_max_mb": float(mbs.max()),
        "rss_peak_hwm_mb": peak_mb, "rss_slope_mb_per_min": slope,
        "sent": sent["total"], "received": received, "results": len(e2e_ms),
        "e2e": _percentiles(e2e_ms), "backend": _percentiles(backend_ms), "node_latency": _percentiles(node_latency_ms),
        "cpu_percent": 100.0 * cpu / elapsed,
        "dropped": delta("dropped."), "rejected": delta("rejected."), "events": delta("events."),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration-s", type=float, default=180.0, help="measured time (after the warm-up)")
    parser.add_argument("--warmup-s", type=float, default=10.0)
    parser.add_argument("--hz", type=float, default=30.0)
    parser.add_argument("--backend", default="shapegrasp")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--scene", default="kitchen")
    parser.add_argument("--views", type=int, default=3, help="rendered views cycled by the camera")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--node-param", action="append", default=[], metavar="NAME:=VALUE",
                        help="a node parameter to override, repeatable (e.g. executor.gil_switch_interval_s:=0.005)")
    args = parser.parse_args()
    apply_loopback_environment(int(os.environ.get("ROS_DOMAIN_ID", np.random.default_rng().integers(100, 200))))
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    print(f"machine: {os.cpu_count()} CPUs, load average {load} at start (figures scale with contention)")
    print(f"camera: {args.views} views of {args.scene!r} (seed {args.seed}), 640x480 rgb8 + 16UC1 + camera_info "
          f"at {args.hz:g} Hz, best effort; backend {args.backend} on {args.device}; "
          f"{args.duration_s:g} s measured after {args.warmup_s:g} s warm-up"
          + (f"; node parameters {' '.join(args.node_param)}" if args.node_param else ""))
    r = soak(args)
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    print(f"instruction {r['instruction']!r}; load average {load} at the end; node exit code {r['exit_code']}")
    print(f"memory (RSS): first {r['rss_first_mb']:.0f} MB, last {r['rss_last_mb']:.0f} MB, "
          f"max {r['rss_max_mb']:.0f} MB (peak {r['rss_peak_hwm_mb']:.0f} MB), "
          f"slope {r['rss_slope_mb_per_min']:+.2f} MB/min")
    print(f"frames (whole run, with warm-up): {r['sent']} sent, {r['received']} received by the node "
          f"({100.0 * r['received'] / max(r['sent'], 1):.1f}%); node CPU {r['cpu_percent']:.0f}% of a core")
    print(f"results: {r['results']} in {r['duration_s']:.0f} s = {r['results'] / r['duration_s']:.2f}/s")
    e2e, backend, node_latency = r["e2e"], r["backend"], r["node_latency"]
    ratio = e2e[1] / backend[1] if backend[1] > 0 else float("nan")
    print(f"latency end to end (stamp -> result here): p50 {e2e[0]:.0f} ms, p95 {e2e[1]:.0f} ms; "
          f"stamp -> published in the node p50 {node_latency[0]:.0f} ms, p95 {node_latency[1]:.0f} ms")
    print(f"backend forward: p50 {backend[0]:.0f} ms, p95 {backend[1]:.0f} ms; "
          f"end-to-end p95 / backend p95 = {ratio:.2f} (bar: <= 2.00) -> {'PASS' if ratio <= 2.0 else 'FAIL'}")
    print(f"dropped by reason: {r['dropped'] or 'none'}")
    print(f"lost in transport (sent, never received by the node): {r['sent'] - r['received']}; "
          f"reported lost by DDS: { {k: v for k, v in r['dropped'].items() if k.startswith('lost.')} or 'none'}")
    print(f"rejected by reason: {r['rejected'] or 'none'}; events: {r['events'] or 'none'}")
    if r["exit_code"] != 0:
        print("node log tail:\n" + r["log_tail"])
    return 0 if r["exit_code"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
