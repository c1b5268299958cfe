"""A structured-light / active-stereo depth noise model.

Axial noise grows with the square of range (Nguyen et al. 2012 measured
sigma_z = 0.0012 + 0.0019 (z - 0.4)^2 m for a Kinect; RealSense D4xx behave
alike), grows again at grazing angles, and pixels drop out at random, at
grazing angles and on depth edges (shadowing). Edges also get "flying pixels"
mixed from both sides. Output is quantised to the sensor's millimetre step.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class DepthNoiseModel:
    sigma_base_m: float = 0.0012
    sigma_quadratic: float = 0.0019  # per m^2 of (z - z_ref)
    z_ref_m: float = 0.4
    dropout_rate: float = 0.01  # uniform random holes
    grazing_dropout_deg: float = 78.0  # beyond this incidence angle the pixel is lost
    edge_dropout_rate: float = 0.3  # probability to lose a pixel on a depth edge
    edge_jump_m: float = 0.02  # neighbour depth jump that counts as an edge
    flying_pixel_rate: float = 0.3  # probability that a kept edge pixel is mixed with its neighbour
    quantisation_m: float = 0.001

    def sigma(self, z: np.ndarray) -> np.ndarray:
        return self.sigma_base_m + self.sigma_quadratic * (z - self.z_ref_m) ** 2

    def apply(self, depth: np.ndarray, normals: np.ndarray | None, rng: np.random.Generator) -> np.ndarray:
        """Noisy copy of a clean z-depth image (metres, NaN = no return)."""
        clean = depth.astype(np.float64)
        valid = np.isfinite(clean)
        z = np.where(valid, clean, 0.0)
        sigma = self.sigma(z)
        if normals is not None:
            # Incidence angle between the surface normal and the optical axis.
            cos_incidence = np.clip(np.abs(normals[..., 2]), 1e-3, 1.0)
            sigma = sigma / np.sqrt(cos_incidence)
            valid &= cos_incidence > np.cos(np.deg2rad(self.grazing_dropout_deg))
        noisy = z + rng.standard_normal(z.shape) * sigma

        edges = _depth_edges(np.where(np.isfinite(clean), clean, np.inf), self.edge_jump_m)
        valid &= ~(edges & (rng.random(z.shape) < self.edge_dropout_rate))
        flying = edges & valid & (rng.random(z.shape) < self.flying_pixel_rate)
        if flying.any():
            neighbour = _max_neighbour(np.where(np.isfinite(clean), clean, 0.0))
            mix = rng.random(int(flying.sum()))
            noisy[flying] = mix * noisy[flying] + (1.0 - mix) * neighbour[flying]
        valid &= rng.random(z.shape) >= self.dropout_rate

        if self.quantisation_m > 0:
            noisy = np.round(noisy / self.quantisation_m) * self.quantisation_m
        return np.where(valid & (noisy > 0), noisy, np.nan).astype(np.float32)


def _depth_edges(depth: np.ndarray, jump: float) -> np.ndarray:
    edges = np.zeros(depth.shape, dtype=bool)
    with np.errstate(invalid="ignore"):
        dx = np.abs(np.diff(depth, axis=1)) > jump
        dy = np.abs(np.diff(depth, axis=0)) > jump
    edges[:, 1:] |= dx
    edges[:, :-1] |= dx
    edges[1:, :] |= dy
    edges[:-1, :] |= dy
    return edges


def _max_neighbour(depth: np.ndarray) -> np.ndarray:
    padded = np.pad(depth, 1, mode="edge")
    h, w = depth.shape
    stack = [padded[1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w] for dy in (-1, 0, 1) for dx in (-1, 0, 1)]
    return np.max(stack, axis=0)
