"""The one interface every part-grounding backend implements."""

from __future__ import annotations

import abc
import dataclasses
import difflib
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, ClassVar, TypeVar

from partseg_ros.types import GroundingRequest, GroundingResult

ConfigT = TypeVar("ConfigT")


class CheckpointNotFoundError(FileNotFoundError):
    """Raised when a backend's weights are missing; the message says how to get them."""


def config_from_options(config_type: type[ConfigT], options: Mapping[str, Any], backend: str,
                        ignore: Iterable[str] = ()) -> ConfigT:
    """A backend's typed config (a dataclass) from its options, refusing names it does not have.

    Options come as free text (``--backend-option strde=4``, ``backend_options.*``
    node parameters), so a misspelt name would otherwise be silently ignored, or
    caught only after a model load of several seconds. Every backend builds its
    config here in its constructor, before any weights load; an unknown name
    raises ``ValueError`` naming the closest valid one. A field whose default is
    itself a dataclass (a nested config) takes a mapping of its own fields,
    checked the same way and reported with a dotted name (``segmentation.min_height_m``).
    Names in ``ignore`` are accepted but not passed to the config (the backend
    reads them itself).
    """
    return _build_config(config_type, options, backend, set(ignore), prefix="")


def _build_config(config_type: type[ConfigT], options: Mapping[str, Any], backend: str, ignore: set[str],
                  prefix: str) -> ConfigT:
    fields = {f.name: f for f in dataclasses.fields(config_type) if f.init}
    options = _nest_dotted(options, {name for name, f in fields.items() if _nested_config_type(f) is not None})
    unknown = sorted(set(options) - set(fields) - ignore)
    if unknown:
        valid = sorted(fields)
        hints = []
        for name in unknown:
            close = difflib.get_close_matches(name, valid, 1)
            hints.append(f"{prefix}{name} (did you mean {prefix}{close[0]}?)" if close else f"{prefix}{name}")
        raise ValueError(f"unknown {backend} option(s): {', '.join(hints)}; valid: {[prefix + v for v in valid]}")
    values = {}
    for name, value in options.items():
        if name not in fields:
            continue
        nested = _nested_config_type(fields[name])
        if nested is not None and isinstance(value, Mapping):
            value = _build_config(nested, value, backend, set(), prefix=f"{prefix}{name}.")
        values[name] = value
    return config_type(**values)


def _nest_dotted(options: Mapping[str, Any], nested_names: set[str]) -> dict[str, Any]:
    """``{"segmentation.min_height_m": v}`` (a command-line option) as ``{"segmentation": {"min_height_m": v}}``."""
    out: dict[str, Any] = {}
    for name, value in options.items():
        head, dot, rest = name.partition(".")
        if head in nested_names and (dot or isinstance(value, Mapping)):
            group = out.setdefault(head, {})
            if not isinstance(group, dict):
                raise ValueError(f"option {head} is given whole and field by field")
            group.update({rest: value} if dot else value)
        elif name in out:
            raise ValueError(f"option {name} is given whole and field by field")
        else:
            out[name] = value
    return out


def _nested_config_type(field: dataclasses.Field) -> type | None:
    """The dataclass type of a field whose default is a dataclass instance, else None."""
    if field.default_factory is not dataclasses.MISSING:
        default = field.default_factory()
    else:
        default = field.default
    return type(default) if dataclasses.is_dataclass(default) and not isinstance(default, type) else None


class StageClock:
    """Per-stage wall times of one request, in milliseconds, for ``GroundingResult.timings_ms``.

    Each ``lap`` charges the time since the previous one to its stage, so the
    stages add up to the whole request and diagnostics can say where it went.
    """

    def __init__(self) -> None:
        self.timings: dict[str, float] = {}
        self._clock = time.perf_counter()

    def lap(self, stage: str) -> None:
        now = time.perf_counter()
        self.timings[stage] = (now - self._clock) * 1000.0
        self._clock = now


class PartGroundingBackend(abc.ABC):
    """Image + instruction (+ optional depth, intrinsics, object hint) -> part instances.

    Construction is cheap and never touches weights; ``load`` does the heavy
    work so the ROS node can do it in its lifecycle ``configure`` step.
    """

    name: ClassVar[str] = "base"

    def __init__(self, **options: Any) -> None:
        self.options = options
        self._loaded = False

    @property
    def loaded(self) -> bool:
        return self._loaded

    def load(self) -> None:
        """Load weights and build the model; idempotent."""
        if not self._loaded:
            self._load()
            self._loaded = True

    def _load(self) -> None:  # pragma: no cover - trivial default  # noqa: B027 - optional hook, empty by design
        """Subclasses that need weights override this."""

    def warmup(self) -> None:  # noqa: B027 - optional hook, empty by design
        """Run once on a dummy input so the first real frame is not slow; optional."""

    def ground(self, request: GroundingRequest) -> GroundingResult:
        self.load()
        return self._ground(request)

    @abc.abstractmethod
    def _ground(self, request: GroundingRequest) -> GroundingResult:
        """Answer one request; never returns canned output."""


def parse_options(items: Sequence[str]) -> dict[str, Any]:
    """``key=value`` pairs from a command line; values are parsed as YAML scalars so numbers and booleans keep
    their type (``stride=4`` is an int, ``fp16=true`` a bool)."""
    import argparse

    import yaml

    options: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise argparse.ArgumentTypeError(f"--backend-option expects key=value, got {item!r}")
        options[key.strip()] = yaml.safe_load(value) if value else ""
    return options
