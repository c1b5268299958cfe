"""Where and how a backend's networks run: device, dtype, input bound, warm-up, caches.

Shared by every torch backend so that the node's parameters mean the same
thing whichever backend is configured. Importing this module never touches a
GPU; torch is imported lazily so ``partseg_ros.backends`` stays light.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Generic, Hashable, Optional, TypeVar

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    import torch

LOG = logging.getLogger(__name__)

#: Longest image side fed to the networks under the Jetson profile; masks are
#: still returned at the input resolution.
JETSON_MAX_INPUT_SIDE = 640

_DTYPE_NAMES = {
    "fp32": "float32",
    "float32": "float32",
    "fp16": "float16",
    "float16": "float16",
    "half": "float16",
    "bf16": "bfloat16",
    "bfloat16": "bfloat16",
}


@dataclass(frozen=True)
class RuntimeProfile:
    """The resolved answer to "where does this model run, in what precision, at what size"."""

    device: "torch.device"
    dtype: "torch.dtype"
    max_input_side: Optional[int] = None
    name: str = "default"

    @property
    def is_cuda(self) -> bool:
        return self.device.type == "cuda"

    def describe(self) -> str:
        bound = f", input <= {self.max_input_side}px" if self.max_input_side else ""
        return f"{self.name}: {self.device} {str(self.dtype).replace('torch.', '')}{bound}"


def is_jetson() -> bool:
    """True on an NVIDIA Jetson (L4T), detected from files L4T always ships."""
    if Path("/etc/nv_tegra_release").exists():
        return True
    model = Path("/proc/device-tree/model")
    try:
        return model.exists() and "jetson" in model.read_text(errors="ignore").lower()
    except OSError:
        return False


def select_device(spec: str = "auto") -> "torch.device":
    """Turn 'auto', 'cpu', 'cuda' or 'cuda:N' into a device, failing loudly on a missing GPU.

    A robot configured for 'cuda' that silently ran on CPU would miss every
    deadline without saying why, so an explicit CUDA request without CUDA is an error.
    """
    import torch

    spec = (spec or "auto").strip().lower()
    if spec == "auto":
        return torch.device("cuda:0" if torch.cuda.is_available() else "cpu")
    if spec == "cpu":
        return torch.device("cpu")
    if spec == "cuda" or spec.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise RuntimeError(f"device {spec!r} requested but CUDA is not available on this machine")
        device = torch.device("cuda:0" if spec == "cuda" else spec)
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise RuntimeError(f"device {spec!r} requested but only {torch.cuda.device_count()} CUDA device(s) exist")
        return device
    raise ValueError(f"unknown device {spec!r}; use 'auto', 'cpu', 'cuda' or 'cuda:N'")


def select_dtype(device: "torch.device", requested: str = "auto") -> "torch.dtype":
    """fp16/bf16 on CUDA ('auto' picks bf16 where supported), always fp32 on CPU.

    Half precision on CPU is slower than fp32 and loses accuracy, so a half
    request on CPU is downgraded with a warning rather than honoured.
    """
    import torch

    requested = (requested or "auto").strip().lower()
    if requested != "auto" and requested not in _DTYPE_NAMES:
        raise ValueError(f"unknown dtype {requested!r}; use 'auto', 'fp32', 'fp16' or 'bf16'")
    if device.type != "cuda":
        if requested not in ("auto", "fp32", "float32"):
            LOG.warning("dtype %s requested on %s; using float32 (half precision is not useful on CPU)",
                        requested, device)
        return torch.float32
    if requested == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return getattr(torch, _DTYPE_NAMES[requested])


def resolve_runtime(
    device: str = "auto",
    dtype: str = "auto",
    profile: str = "default",
    max_input_side: Optional[int] = None,
) -> RuntimeProfile:
    """Build the runtime profile from the node's parameters.

    ``profile='jetson'`` (or 'auto' on a Jetson) means fp16 on the GPU and a
    bounded input size, the settings that fit an Orin's memory and clock.
    """
    profile = (profile or "default").strip().lower()
    if profile == "auto":
        profile = "jetson" if is_jetson() else "default"
    if profile not in ("default", "jetson"):
        raise ValueError(f"unknown runtime profile {profile!r}; use 'default', 'jetson' or 'auto'")
    torch_device = select_device(device)
    if profile == "jetson":
        half_default = "fp16" if torch_device.type == "cuda" else "fp32"
        torch_dtype = select_dtype(torch_device, half_default if dtype == "auto" else dtype)
        bound = max_input_side or JETSON_MAX_INPUT_SIDE
    else:
        torch_dtype = select_dtype(torch_device, dtype)
        bound = max_input_side
    if bound is not None and bound < 32:
        raise ValueError(f"max_input_side must be at least 32 pixels, got {bound}")
    return RuntimeProfile(torch_device, torch_dtype, bound, profile)


def bound_image(rgb: np.ndarray, max_side: Optional[int]) -> tuple[np.ndarray, float]:
    """Downscale so the longest side is at most ``max_side``; returns the image and the scale used."""
    h, w = rgb.shape[:2]
    if not max_side or max(h, w) <= max_side:
        return rgb, 1.0
    from PIL import Image

    scale = max_side / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return np.array(Image.fromarray(rgb).resize(size, Image.BILINEAR)), scale


def resize_mask(mask: np.ndarray, height: int, width: int) -> np.ndarray:
    """Nearest-neighbour resize of a boolean mask back to the input resolution."""
    if mask.shape == (height, width):
        return mask.astype(bool)
    from PIL import Image

    img = Image.fromarray(mask.astype(np.uint8) * 255).resize((width, height), Image.NEAREST)
    return np.asarray(img) > 127


def image_key(rgb: np.ndarray) -> str:
    """Content hash of an image: equal pixels give equal keys, whatever array object holds them."""
    digest = hashlib.blake2b(digest_size=16)
    digest.update(repr((rgb.shape, str(rgb.dtype))).encode())
    digest.update(np.ascontiguousarray(rgb).data)
    return digest.hexdigest()


V = TypeVar("V")


class ComputeCache(Generic[V]):
    """A small LRU of expensive intermediate results (image embeddings, text states).

    A robot re-asks about the same frame with a new instruction, or the same
    instruction on every new frame; caching each half separately makes the
    repeated half free. Hits and misses are counted so tests and logs can
    confirm the reuse actually happens.
    """

    def __init__(self, max_entries: int = 4) -> None:
        if max_entries < 0:
            raise ValueError("max_entries must be >= 0")
        self.max_entries = max_entries
        self._entries: OrderedDict[Hashable, V] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def get_or_compute(self, key: Hashable, compute: Callable[[], V]) -> V:
        if key in self._entries:
            self.hits += 1
            self._entries.move_to_end(key)
            return self._entries[key]
        self.misses += 1
        value = compute()
        if self.max_entries > 0:
            self._entries[key] = value
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
        return value

    def clear(self) -> None:
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._entries


class Stopwatch:
    """Collects named wall-clock spans in milliseconds for ``GroundingResult.timings_ms``.

    On CUDA the device is synchronised at span ends so the figures measure
    the GPU work, not the asynchronous launch.
    """

    def __init__(self, device: Optional["torch.device"] = None) -> None:
        self.timings_ms: dict[str, float] = {}
        self._cuda = device is not None and device.type == "cuda"

    def _sync(self) -> None:
        if self._cuda:
            import torch

            torch.cuda.synchronize()

    def span(self, name: str) -> "_Span":
        return _Span(self, name)


class _Span:
    def __init__(self, watch: Stopwatch, name: str) -> None:
        self.watch, self.name = watch, name

    def __enter__(self) -> "_Span":
        self.watch._sync()
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.watch._sync()
        elapsed = (time.perf_counter() - self.start) * 1000.0
        self.watch.timings_ms[self.name] = self.watch.timings_ms.get(self.name, 0.0) + elapsed


def warm_up(run_once: Callable[[], Any], repeats: int = 1) -> float:
    """Run a dummy inference so kernels, allocators and lazy inits are paid at configure time.

    Returns the duration of the last run in milliseconds (the steady-state figure).
    """
    elapsed = 0.0
    for _ in range(max(1, repeats)):
        start = time.perf_counter()
        run_once()
        elapsed = (time.perf_counter() - start) * 1000.0
    return elapsed


def dummy_rgb(height: int = 480, width: int = 640, seed: int = 0) -> np.ndarray:
    """A textured random frame for warm-up: non-constant so no path short-circuits on it."""
    return np.random.default_rng(seed).integers(0, 256, size=(height, width, 3), dtype=np.uint8)

