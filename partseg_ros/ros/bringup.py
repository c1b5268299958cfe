"""partseg_bringup: start partseg's nodes without ros2 launch (not installable from PyPI).

Same arguments, same configuration, same nodes as ``launch/bringup.launch.py``
because both read :mod:`partseg_ros.ros.bringup_spec`::

    partseg_bringup backend:=shapegrasp device:=cpu camera_namespace:=/camera
    partseg_bringup params_file:=my.yaml --loopback     # keep DDS on this machine
    partseg_bringup --print                             # show the commands, start nothing

Each node runs as its own process. Ctrl-C (SIGINT) or SIGTERM is passed on to
every node; if one node exits, the others are stopped and its exit code is
returned, as ros2 launch does with required nodes.
"""

from __future__ import annotations

import argparse
import os
import shlex
import signal
import subprocess
import sys
import time
from typing import Optional, Sequence

from partseg_ros.ros import bringup_spec


def parse_arguments(argv: Sequence[str]) -> tuple[argparse.Namespace, dict[str, str]]:
    """Split ``name:=value`` launch arguments from the command's own flags."""
    launch_values: dict[str, str] = {}
    rest = []
    for token in argv:
        if ":=" in token and not token.startswith("-"):
            name, value = token.split(":=", 1)
            launch_values[name] = value
        else:
            rest.append(token)
    parser = argparse.ArgumentParser(
        prog="partseg_bringup",
        description="Start partseg's nodes (the pip twin of `ros2 launch partseg bringup.launch.py`). "
        "Arguments as name:=value: "
        + ", ".join(f"{a.name} (default {a.default!r}): {a.description}" for a in bringup_spec.ARGUMENTS),
    )
    parser.add_argument("--print", action="store_true", help="print the node commands and exit")
    parser.add_argument(
        "--loopback", action="store_true",
        help="restrict DDS to this machine (localhost discovery, Fast DDS profile on 127.0.0.1)",
    )
    parser.add_argument("--domain-id", type=int, default=None, help="ROS_DOMAIN_ID for the started nodes")
    options = parser.parse_args(rest)
    return options, launch_values


def node_environment(loopback: bool, domain_id: Optional[int]) -> dict[str, str]:
    if loopback:
        from partseg_ros.ros.dds_env import loopback_environment

        return loopback_environment(domain_id)
    env = dict(os.environ)
    if domain_id is not None:
        env["ROS_DOMAIN_ID"] = str(domain_id)
    return env


def run(commands: list[list[str]], env: dict[str, str]) -> int:
    """Start every command, forward SIGINT/SIGTERM, stop all when one ends; returns the first exit code."""
    processes = [subprocess.Popen(command, env=env) for command in commands]
    stopping = False

    def forward(signum: int, _frame) -> None:
        nonlocal stopping
        stopping = True
        for process in processes:
            if process.poll() is None:
                process.send_signal(signum)

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        exit_code: Optional[int] = None
        while exit_code is None:
            for process in processes:
                code = process.poll()
                if code is not None:
                    exit_code = code
                    break
            else:
                time.sleep(0.1)
        if not stopping:
            forward(signal.SIGINT, None)
        deadline = time.monotonic() + 10.0
        for process in processes:
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        return 0 if stopping and exit_code in (0, -signal.SIGINT, -signal.SIGTERM) else exit_code
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def main(argv: Optional[Sequence[str]] = None) -> int:
    options, values = parse_arguments(sys.argv[1:] if argv is None else argv)
    try:
        specs = bringup_spec.nodes(values)
    except (ValueError, FileNotFoundError) as exc:
        print(f"partseg_bringup: {exc}", file=sys.stderr)
        return 2
    commands = [spec.command() for spec in specs]
    if options.print:
        for command in commands:
            print(shlex.join(command))
        return 0
    return run(commands, node_environment(options.loopback, options.domain_id))


if __name__ == "__main__":
    sys.exit(main())
