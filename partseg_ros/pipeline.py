"""One frame's answer: the backend, then the grasp regions of its instances, with stage timings.

The node (camera topics, ``~/segment_parts`` and ``~/ask``) and the offline
evaluator both answer a frame through :class:`PartPipeline`, so the figures
the evaluator reports are those of the code the robot runs: the same backend
construction, the same option checks, the same geometry on the same masks.
Before this module each wrote its own loader and its own "ground, then lift
into 3D" loop, and the two could drift apart unnoticed.

Plain Python on purpose (no ROS import, a test enforces it): the evaluator
runs without a ROS installation, and the node keeps everything ROS-specific
(decoding messages, tf, building and publishing result messages) on its side.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np

from partseg_ros.backends.base import PartGroundingBackend, config_from_options
from partseg_ros.backends.registry import create_backend
from partseg_ros.geometry.grasp_region import GraspRegion, GraspRegionConfig, compute_grasp_region
from partseg_ros.geometry.transforms import RigidTransform
from partseg_ros.types import GroundingRequest, GroundingResult

# Stage names in PipelineResult.stages_ms (the node reports "geometry" in its diagnostics).
STAGE_INFERENCE = "inference"
STAGE_GEOMETRY = "geometry"


@dataclass
class PipelineResult:
    """The backend's answer and the grasp region of each instance, in the backend's order.

    ``regions[i]`` belongs to ``grounding.instances[i]``. ``regions`` is empty
    when the request had no depth or no camera (there is nothing to lift into
    3D), and shorter than the instances when the caller capped it.
    """

    grounding: GroundingResult
    regions: list[GraspRegion]
    stages_ms: dict[str, float] = field(default_factory=dict)
    image_shape: tuple[int, int] = (0, 0)

    @property
    def inference_ms(self) -> float:
        return self.stages_ms.get(STAGE_INFERENCE, 0.0)

    @property
    def geometry_ms(self) -> float:
        return self.stages_ms.get(STAGE_GEOMETRY, 0.0)

    def union_mask(self) -> np.ndarray:
        """Every instance's pixels together (computed on demand: only some callers need it)."""
        return self.grounding.union_mask(self.image_shape)


class PartPipeline:
    """A backend and the grasp-region geometry, answering one request at a time.

    Thread-safe: the node's worker and its services share one pipeline, and a
    backend is not assumed to be re-entrant, so requests take turns on it.
    """

    def __init__(self, backend: PartGroundingBackend, grasp_config: Optional[GraspRegionConfig] = None) -> None:
        self.backend = backend
        self.grasp_config = grasp_config if grasp_config is not None else GraspRegionConfig()
        self._backend_lock = threading.Lock()

    @classmethod
    def build(cls, backend: str, backend_options: Mapping[str, Any] | None = None,
              grasp_options: Mapping[str, Any] | None = None) -> "PartPipeline":
        """The pipeline for a backend name (registry or ``package.module:Class``), not yet loaded.

        Every option is checked here, before any weights load: the grasp options
        against :class:`GraspRegionConfig` and the backend's against its typed
        config (its constructor does that), each failing with a ``ValueError``
        that names the closest valid option. A misspelt ``grasp.min_pionts`` or
        ``strde=4`` is therefore caught in milliseconds, not after a model load.
        """
        grasp_config = config_from_options(GraspRegionConfig, dict(grasp_options or {}), "grasp")
        return cls(create_backend(backend, **dict(backend_options or {})), grasp_config)

    def load(self, warmup: bool = True) -> None:
        """Load the weights and, with ``warmup``, run once so the first timed frame pays no lazy start-up."""
        self.backend.load()
        if warmup:
            self.backend.warmup()

    def run(
        self,
        request: GroundingRequest,
        camera_to_target: Optional[RigidTransform] = None,
        max_regions: Optional[int] = None,
    ) -> PipelineResult:
        """Ground ``request``, then lift each instance (up to ``max_regions``) into a grasp region.

        The regions use the request's own ``camera`` (distortion included), the
        model the backend grounded with, so masks and 3D regions agree on where
        a pixel lies. ``camera_to_target`` expresses the regions in another
        frame. ``max_regions`` caps how many instances get a region, best
        first: the evaluator scores only the top one, the node publishes all.
        Raises ``ValueError`` when the backend returns masks of another size than the image.
        """
        camera = request.camera
        started = time.perf_counter()
        with self._backend_lock:  # the wait for the backend is part of what the frame costs
            grounding = self.backend.ground(request)
        inference_ms = (time.perf_counter() - started) * 1000.0
        shape = request.image_size
        for instance in grounding.instances:
            if instance.mask.shape != shape:
                raise ValueError(f"backend returned a {instance.mask.shape} mask for a {shape} image")
        started = time.perf_counter()
        regions: list[GraspRegion] = []
        if request.depth_m is not None and camera is not None:
            instances = grounding.instances if max_regions is None else grounding.instances[:max_regions]
            regions = [
                compute_grasp_region(instance.mask, request.depth_m, camera, rgb=request.rgb,
                                     camera_to_target=camera_to_target, config=self.grasp_config)
                for instance in instances
            ]
        geometry_ms = (time.perf_counter() - started) * 1000.0
        return PipelineResult(grounding, regions, {STAGE_INFERENCE: inference_ms, STAGE_GEOMETRY: geometry_ms},
                              shape)
