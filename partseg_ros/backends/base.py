"""The one interface every part-grounding backend implements."""

from __future__ import annotations

import abc
from typing import Any, ClassVar

from partseg_ros.types import GroundingRequest, GroundingResult


class CheckpointNotFoundError(FileNotFoundError):
    """Raised when a backend's weights are missing; the message says how to get them."""


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

    def _load(self) -> None:  # pragma: no cover - trivial default
        """Subclasses that need weights override this."""

    def warmup(self) -> None:
        """Run once on a dummy input so the first real frame is not slow; optional."""

    def ground(self, request: GroundingRequest) -> GroundingResult:
        self.load()
        return self._ground(request)

    @abc.abstractmethod
    def _ground(self, request: GroundingRequest) -> GroundingResult:
        """Answer one request; never returns canned output."""
