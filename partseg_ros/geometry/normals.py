"""Surface normals from an organised point grid (image-shaped X, Y, Z).

Central differences along image rows and columns span the local tangent
plane, and their cross product is the normal; no neighbour search is needed
because the depth image already says who is next to whom.
"""

from __future__ import annotations

import numpy as np


def organised_normals(x: np.ndarray, y: np.ndarray, z: np.ndarray, step_px: int = 1) -> np.ndarray:
    """Unit normals facing the camera, (K, 3), for pixels whose 4 neighbours ``step_px`` away exist.

    ``x``, ``y``, ``z`` are HxW coordinate grids in the camera optical frame
    with NaN where there is no point. A wider step averages more sensor
    noise at the cost of a thicker rim where no normal can be formed.
    """
    s = int(step_px)
    h, w = z.shape
    if h <= 2 * s or w <= 2 * s:
        return np.zeros((0, 3), dtype=z.dtype)

    def along_u(grid: np.ndarray) -> np.ndarray:
        return grid[s:-s, 2 * s :] - grid[s:-s, : -2 * s]

    def along_v(grid: np.ndarray) -> np.ndarray:
        return grid[2 * s :, s:-s] - grid[: -2 * s, s:-s]

    ux, uy, uz = along_u(x), along_u(y), along_u(z)
    vx, vy, vz = along_v(x), along_v(y), along_v(z)
    nx = uy * vz - uz * vy
    ny = uz * vx - ux * vz
    nz = ux * vy - uy * vx
    cz = z[s:-s, s:-s]
    usable = np.isfinite(nx) & np.isfinite(ny) & np.isfinite(nz) & np.isfinite(cz)
    normals = np.stack([nx[usable], ny[usable], nz[usable]], axis=1)
    centre = np.stack([x[s:-s, s:-s][usable], y[s:-s, s:-s][usable], cz[usable]], axis=1)
    length = np.linalg.norm(normals, axis=1)
    nonzero = length > 0
    normals = normals[nonzero] / length[nonzero, None]
    # Face the camera: the vector from the point to the optical centre is -point.
    flip = np.einsum("ij,ij->i", normals, centre[nonzero]) > 0
    normals[flip] *= -1
    return normals
