"""Pixel -> ray undistortion: the hand-written Newton iteration against OpenCV's undistortPoints.

Issue 13 asks for cv2.undistortPoints if it is as exact as the Newton
iteration in ``partseg_ros.geometry.camera`` and faster. Accuracy is the
round trip: every pixel of a 640x480 frame is undistorted to a ray, the ray
is distorted again with the package's forward model (checked against
cv2.projectPoints first, so both sides agree on what the model is) and the
distance to the pixel it came from is the error. Speed is one whole frame
(the ray map a distorted CameraModel builds once per camera and keeps).
OpenCV reports no failure, so its row "+ the checks" adds the ones the
Newton solver makes (converged, no fold-over, not mirrored through the
centre): that is what a drop-in replacement would cost.

OpenCV is not a dependency of partseg; install it to run this:

    .venv/bin/pip install opencv-python-headless
    .venv/bin/python benchmarks/bench_undistortion.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import time
from typing import Callable

import numpy as np

from partseg_ros.geometry.camera import distort_normalized, undistort_normalized

try:
    import cv2
except ImportError:  # pragma: no cover - a hint for whoever runs the benchmark
    raise SystemExit("this benchmark compares against OpenCV: .venv/bin/pip install opencv-python-headless") from None

WIDTH, HEIGHT = 640, 480
K = np.array([[600.0, 0.0, 320.0], [0.0, 602.0, 240.0], [0.0, 0.0, 1.0]])
# Strong lenses: a wide-angle barrel (plumb_bob), the test suite's pincushion, and a rational model.
CAMERAS = {
    "plumb_bob barrel": ("plumb_bob", (-0.32, 0.14, 0.0015, -0.0012, -0.035)),
    "plumb_bob pincushion": ("plumb_bob", (0.12, -0.25, 0.001, -0.0015, 0.08)),
    "rational_polynomial": ("rational_polynomial", (0.3, -0.1, 0.0008, 0.0005, 0.01, 0.25, -0.05, 0.02)),
    # Folds over inside the frame: the corners have no inverse, and both methods must say so.
    "plumb_bob folding": ("plumb_bob", (-0.9, 0.0, 0.0, 0.0, 0.0)),
}
# OpenCV stops iterating when the reprojection error (pixels) falls below epsilon or after maxCount steps.
EXACT_CRITERIA = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 200, 1e-9)

Rays = tuple[np.ndarray, np.ndarray]


def newton(u: np.ndarray, v: np.ndarray, model: str, coefficients: tuple[float, ...]) -> Rays:
    return undistort_normalized((u - K[0, 2]) / K[0, 0], (v - K[1, 2]) / K[1, 1], model, coefficients)


def _pixels(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    return np.stack([u.ravel(), v.ravel()], axis=1).reshape(-1, 1, 2)


def opencv_default(u: np.ndarray, v: np.ndarray, model: str, coefficients: tuple[float, ...]) -> Rays:
    rays = cv2.undistortPoints(_pixels(u, v), K, np.asarray(coefficients)).reshape(-1, 2)
    return rays[:, 0].reshape(u.shape), rays[:, 1].reshape(u.shape)


def opencv_iterated(u: np.ndarray, v: np.ndarray, model: str, coefficients: tuple[float, ...]) -> Rays:
    rays = cv2.undistortPoints(_pixels(u, v), K, np.asarray(coefficients), criteria=EXACT_CRITERIA).reshape(-1, 2)
    return rays[:, 0].reshape(u.shape), rays[:, 1].reshape(u.shape)


def opencv_checked(u: np.ndarray, v: np.ndarray, model: str, coefficients: tuple[float, ...]) -> Rays:
    """OpenCV's iteration plus the checks the Newton solver makes (converged, no fold-over, not mirrored)."""
    x, y = opencv_iterated(u, v, model, coefficients)
    xd, yd = (u - K[0, 2]) / K[0, 0], (v - K[1, 2]) / K[1, 1]
    fx, fy = distort_normalized(x, y, model, coefficients)
    step = 1e-6
    xpx, ypx = distort_normalized(x + step, y, model, coefficients)
    xmx, ymx = distort_normalized(x - step, y, model, coefficients)
    xpy, ypy = distort_normalized(x, y + step, model, coefficients)
    xmy, ymy = distort_normalized(x, y - step, model, coefficients)
    det = (xpx - xmx) * (ypy - ymy) - (xpy - xmy) * (ypx - ymx)
    bad = ~((np.abs(fx - xd) + np.abs(fy - yd)) < 1e-8) | ~(det > 0) | ~(x * xd + y * yd >= 0.0)
    return np.where(bad, np.nan, x), np.where(bad, np.nan, y)


Undistorter = Callable[[np.ndarray, np.ndarray, str, tuple[float, ...]], Rays]
METHODS: dict[str, Undistorter] = {
    "newton (geometry/camera.py)": newton,
    "cv2.undistortPoints (default, 5 steps)": opencv_default,
    "cv2.undistortPoints (eps 1e-9 px, 200 steps)": opencv_iterated,
    "  the same + the checks newton makes": opencv_checked,
}


def check_forward_model_matches_opencv() -> None:
    """The round trip uses the package's forward model; it must be OpenCV's, or the errors mean nothing."""
    rng = np.random.default_rng(0)
    x, y = rng.uniform(-0.5, 0.5, 1000), rng.uniform(-0.4, 0.4, 1000)
    for model, coefficients in CAMERAS.values():
        xd, yd = distort_normalized(x, y, model, coefficients)
        points = np.stack([x, y, np.ones_like(x)], axis=1)
        projected, _ = cv2.projectPoints(points, np.zeros(3), np.zeros(3), K, np.asarray(coefficients))
        ours = np.stack([K[0, 0] * xd + K[0, 2], K[1, 1] * yd + K[1, 2]], axis=1)
        assert np.abs(projected.reshape(-1, 2) - ours).max() < 1e-9, model


def round_trip_error_px(method: Undistorter, model: str, coefficients: tuple[float, ...]) -> tuple[float, int]:
    """(max reprojection error in pixels over the rays returned, how many pixels got no ray)."""
    v, u = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float64)
    x, y = method(u, v, model, coefficients)
    finite = np.isfinite(x) & np.isfinite(y)
    xd, yd = distort_normalized(x[finite], y[finite], model, coefficients)
    error = np.hypot(K[0, 0] * xd + K[0, 2] - u[finite], K[1, 1] * yd + K[1, 2] - v[finite])
    return float(error.max()), int((~finite).sum())


def frame_time_ms(method: Undistorter, model: str, coefficients: tuple[float, ...], repeats: int) -> float:
    """Best of ``repeats`` for one full frame (the machine is shared; the best is the steadiest figure)."""
    v, u = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float64)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        method(u, v, model, coefficients)
        times.append(time.perf_counter() - start)
    return min(times) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    cv2.setNumThreads(1)
    check_forward_model_matches_opencv()
    print(f"OpenCV {cv2.__version__}, {WIDTH}x{HEIGHT} frame, K fx=600 fy=602 cx=320 cy=240")
    print(f"{'camera':22s} {'method':48s} {'max error px':>12s} {'no ray':>7s} {'frame ms':>9s}")
    for camera, (model, coefficients) in CAMERAS.items():
        for name, method in METHODS.items():
            error, missing = round_trip_error_px(method, model, coefficients)
            ms = frame_time_ms(method, model, coefficients, args.repeats)
            print(f"{camera:22s} {name:48s} {error:12.2e} {missing:7d} {ms:9.1f}")


if __name__ == "__main__":
    main()
