"""The environment that keeps DDS on this machine (no rclpy import here).

Every ROS process partseg starts for tests, benchmarks and the bringup
command's local mode gets these variables: discovery limited to localhost and
a Fast DDS profile bound to 127.0.0.1 with a shared-memory segment big enough
for images. They must be set before the process creates its first participant.
"""

from __future__ import annotations

import os
from typing import Mapping, Optional

from partseg_ros.resources import config_dir

PROFILE_NAME = "fastdds_localhost.xml"  # in the package's config/ folder


def loopback_environment(domain_id: Optional[int] = None, base: Optional[Mapping[str, str]] = None) -> dict[str, str]:
    env = dict(os.environ if base is None else base)
    env["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    env["FASTDDS_DEFAULT_PROFILES_FILE"] = str(config_dir() / PROFILE_NAME)
    env.setdefault("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp")
    if domain_id is not None:
        env["ROS_DOMAIN_ID"] = str(domain_id)
    return env


def apply_loopback_environment(domain_id: Optional[int] = None) -> None:
    """Set the loopback variables in this process (before rclpy.init)."""
    os.environ.update(loopback_environment(domain_id))
