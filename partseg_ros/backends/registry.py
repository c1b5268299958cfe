"""Backends by name: adding a backend means adding one line here.

A name is either one of ``BACKENDS`` or ``package.module:Class`` for a backend
that lives outside this package (a user's own, or the small test backends).
Both resolve here and nowhere else, so the node, its launch arguments and the
evaluator accept exactly the same names and refuse a wrong one with the same
one-line ``ValueError`` (which the console commands print without a traceback).
"""

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
    """The class behind a registry name or a ``package.module:Class`` name, without constructing it."""
    if ":" not in name:
        try:
            target = BACKENDS[name]
        except KeyError:
            raise ValueError(
                f"unknown backend {name!r}; choose one of {available_backends()} or package.module:Class"
            ) from None
        module_name, class_name = target.split(":")
        return getattr(importlib.import_module(module_name), class_name)
    return _class_from_path(name)


def _class_from_path(name: str) -> type[PartGroundingBackend]:
    module_name, _, class_name = name.partition(":")
    if not module_name or not class_name or ":" in class_name:
        raise ValueError(f"backend {name!r}: expected package.module:Class")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        # Only the named module itself (or a package on its path) being absent is the user's
        # mistake; a backend module that exists but lacks one of its own imports is a real failure.
        if exc.name is None or not (module_name == exc.name or module_name.startswith(exc.name + ".")):
            raise
        raise ValueError(f"backend {name!r}: no module named {module_name!r} on the Python path") from None
    found = getattr(module, class_name, None)
    if found is None:
        raise ValueError(f"backend {name!r}: module {module_name!r} has no {class_name!r}")
    if not (isinstance(found, type) and issubclass(found, PartGroundingBackend)):
        raise ValueError(f"backend {name!r}: {module_name}.{class_name} is not a PartGroundingBackend subclass")
    return found


def create_backend(name: str, **options: Any) -> PartGroundingBackend:
    """Build (but do not load) a backend by its config name or ``package.module:Class``.

    The constructor checks the options against the backend's typed config
    (``backends.base.config_from_options``), so a misspelt option fails here,
    before any weights load.
    """
    return backend_class(name)(**options)
