"""Backends by name: adding a backend means adding one line here."""

from __future__ import annotations

import importlib
from typing import Any

from partseg_ros.backends.base import PartGroundingBackend

# name -> "module:ClassName"; imported lazily so that optional heavy
# dependencies (torch, transformers) are only needed by the backend that uses them.
BACKENDS: dict[str, str] = {
    "shapegrasp": "partseg_ros.backends.shapegrasp.backend:ShapeGraspBackend",
    "pisa": "partseg_ros.backends.pisa.backend:PisaBackend",
    "instructsam": "partseg_ros.backends.instructsam.backend:InstructSamBackend",
    "grounded_sam": "partseg_ros.backends.grounded_sam.backend:GroundedSamBackend",
    "pisa_rgbd": "partseg_ros.backends.pisa_rgbd.backend:PisaRgbdBackend",
}


def available_backends() -> list[str]:
    return sorted(BACKENDS)


def backend_class(name: str) -> type[PartGroundingBackend]:
    try:
        target = BACKENDS[name]
    except KeyError:
        raise ValueError(f"unknown backend {name!r}; choose one of {available_backends()}") from None
    module_name, class_name = target.split(":")
    return getattr(importlib.import_module(module_name), class_name)


def create_backend(name: str, **options: Any) -> PartGroundingBackend:
    """Build (but do not load) a backend by its config name."""
    return backend_class(name)(**options)
