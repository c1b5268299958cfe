"""Depth images in whatever a driver publishes -> float32 metres with NaN holes.

ROS depth images come as ``16UC1`` (unsigned millimetres by convention, REP-118,
with 0 meaning "no return") or ``32FC1`` (metres, NaN/inf for no return).
Everything downstream works with one representation: float32 metres, NaN
where the sensor has nothing. Zero, negative, NaN and inf all become NaN.
This module works on arrays; reading them out of an Image message's fields
(encoding, step, byte order) is the codec's job (:mod:`partseg_ros.codec`).
"""

from __future__ import annotations

import numpy as np


def depth_to_metres(depth: np.ndarray, depth_scale_m: float = 0.001) -> np.ndarray:
    """Float32 metres with NaN for invalid pixels.

    ``depth_scale_m`` is the size of one integer unit (0.001 for millimetres;
    some sensors publish other steps) and is only used for integer images.
    Float images are taken to be metres already.
    """
    depth = np.asarray(depth)
    if depth.ndim != 2:
        raise ValueError(f"depth must be HxW, got shape {depth.shape}")
    # Compare kinds and sizes, not dtypes: a big-endian '>u2' view is not == np.uint16.
    if depth.dtype.kind == "u" and depth.dtype.itemsize == 2:
        if not depth_scale_m > 0:
            raise ValueError(f"depth scale must be positive, got {depth_scale_m}")
        metres = depth.astype(np.float32) * np.float32(depth_scale_m)
        metres[depth == 0] = np.nan
        return metres
    if depth.dtype.kind == "f":
        metres = depth.astype(np.float32, copy=True)
        with np.errstate(invalid="ignore"):
            metres[~(np.isfinite(metres) & (metres > 0))] = np.nan
        return metres
    raise ValueError(f"unsupported depth dtype {depth.dtype}: expected uint16 (scaled units) or float32 (metres)")

