"""Read the node's parameters file so the in-process path configures itself like the node.

The live node takes its grasp-region settings (``grasp.*``) and backend
options (``backend_options.*``) from a ROS 2 parameters file; the in-process
path reads the same file, so both paths run the same geometry and the same
backend configuration. Plain YAML: no ROS needed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import yaml

NODE_NAME = "partseg"
DEFAULT_PARAMS_FILE = "partseg.yaml"  # in the package's config/ folder


def _applies(key: str, node_name: str) -> int:
    """0: not for this node; 1: the all-nodes wildcard; 2: names the node (any namespace, e.g. /**/partseg)."""
    if key.strip("/") == "**":
        return 1
    return 2 if key.rstrip("/").split("/")[-1] == node_name else 0


def node_parameters(params_file: Path, node_name: str = NODE_NAME) -> dict[str, Any]:
    """The ``ros__parameters`` that apply to ``node_name``: wildcard sections first, the node's own on top."""
    document = yaml.safe_load(Path(params_file).read_text()) or {}
    merged: dict[str, Any] = {}
    for rank in (1, 2):
        for key, section in document.items():
            if _applies(str(key), node_name) == rank and isinstance(section, dict):
                merged.update(section.get("ros__parameters") or {})
    return merged


def _nested(parameters: dict[str, Any], prefix: str) -> dict[str, Any]:
    """A nested map (``grasp: {erosion_px: 2}``) or flat dotted keys (``grasp.erosion_px: 2``)."""
    out = dict(parameters.get(prefix) or {})
    for key, value in parameters.items():
        if key.startswith(prefix + "."):
            out[key[len(prefix) + 1 :]] = value
    return out


def grasp_options(params_file: Optional[Path]) -> dict[str, Any]:
    """GraspRegionConfig keyword arguments set in the parameters file (empty without a file)."""
    if params_file is None or not Path(params_file).is_file():
        return {}
    return _nested(node_parameters(params_file), "grasp")


def backend_options(params_file: Optional[Path]) -> dict[str, Any]:
    """Backend keyword arguments set in the parameters file (empty without a file)."""
    if params_file is None or not Path(params_file).is_file():
        return {}
    return _nested(node_parameters(params_file), "backend_options")
