"""The few facts the lifecycle decides and every part of the node reads.

The node's jobs live in separate modules (input, worker, services,
interfaces); each must know whether the node is configured and active and
with which configuration, but none may change that: only the lifecycle
transitions in node.py write here. One small object passed to each part says
so more plainly than each part holding a reference to the whole node.

Fields are plain attributes: one writer, readers on other threads that only
need the latest value (an assignment is atomic under the GIL), as before the split.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from partseg_ros.ros.params import NodeConfig


@dataclass
class NodeState:
    config: Optional[NodeConfig] = None  # set by configure, kept after cleanup (the last one used)
    active: bool = False  # between activate and deactivate: frames and requests are answered
    active_since_ns: int = 0  # node clock at activation (a camera_info watch starts here)
    closing: bool = False  # the process is going down: failures from a dead context are not errors
