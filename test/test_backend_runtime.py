"""Device/dtype selection, the Jetson profile, and the content-keyed caches."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from partseg_ros.backends.runtime import (
    JETSON_MAX_INPUT_SIDE,
    ComputeCache,
    Stopwatch,
    bound_image,
    image_key,
    resize_mask,
    resolve_runtime,
    select_device,
    select_dtype,
)


def test_device_selection():
    assert select_device("cpu") == torch.device("cpu")
    expected_auto = "cuda" if torch.cuda.is_available() else "cpu"
    assert select_device("auto").type == expected_auto
    with pytest.raises(ValueError, match="unknown device"):
        select_device("tpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error raised on a machine without CUDA")
def test_explicit_cuda_without_a_gpu_is_an_error_not_a_silent_cpu_fallback():
    for spec in ("cuda", "cuda:1"):
        with pytest.raises(RuntimeError, match="CUDA is not available"):
            select_device(spec)


def test_dtype_rules():
    cpu = torch.device("cpu")
    assert select_dtype(cpu, "auto") is torch.float32
    assert select_dtype(cpu, "fp16") is torch.float32  # half on CPU is downgraded
    assert select_dtype(cpu, "bf16") is torch.float32
    with pytest.raises(ValueError, match="unknown dtype"):
        select_dtype(cpu, "int4")


def test_jetson_profile_bounds_the_input_and_default_does_not():
    jetson = resolve_runtime("cpu", profile="jetson")
    assert jetson.max_input_side == JETSON_MAX_INPUT_SIDE and jetson.name == "jetson"
    assert resolve_runtime("cpu", profile="jetson", max_input_side=320).max_input_side == 320
    default = resolve_runtime("cpu")
    assert default.max_input_side is None and default.dtype is torch.float32
    assert "cpu" in default.describe()
    with pytest.raises(ValueError):
        resolve_runtime("cpu", profile="phone")


def test_bound_image_and_mask_restore():
    rgb = np.random.default_rng(0).integers(0, 256, (300, 500, 3), dtype=np.uint8)
    small, scale = bound_image(rgb, 100)
    assert small.shape == (60, 100, 3) and scale == pytest.approx(0.2)
    same, one = bound_image(rgb, 1000)
    assert same is rgb and one == 1.0
    mask = np.zeros((60, 100), bool)
    mask[10:30, 20:50] = True
    big = resize_mask(mask, 300, 500)
    assert big.shape == (300, 500) and big.dtype == bool
    assert abs(big.sum() - mask.sum() * 25) < 0.05 * mask.sum() * 25


def test_image_key_depends_on_content_only():
    a = np.random.default_rng(1).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    assert image_key(a) == image_key(a.copy())
    b = a.copy()
    b[0, 0, 0] ^= 1
    assert image_key(a) != image_key(b)
    assert image_key(a) != image_key(a.reshape(30, 20, 3))


def test_compute_cache_is_lru_and_counts():
    cache: ComputeCache[int] = ComputeCache(max_entries=2)
    calls = []

    def make(v):
        return lambda: calls.append(v) or v * 10

    assert cache.get_or_compute("a", make(1)) == 10
    assert cache.get_or_compute("b", make(2)) == 20
    assert cache.get_or_compute("a", make(99)) == 10  # hit, not recomputed
    cache.get_or_compute("c", make(3))  # evicts b (least recently used)
    assert cache.get_or_compute("b", make(4)) == 40
    assert calls == [1, 2, 3, 4] and cache.hits == 1 and cache.misses == 4 and len(cache) == 2
    disabled: ComputeCache[int] = ComputeCache(0)
    disabled.get_or_compute("a", make(5))
    disabled.get_or_compute("a", make(6))
    assert disabled.hits == 0 and len(disabled) == 0


def test_stopwatch_accumulates_spans():
    watch = Stopwatch()
    with watch.span("x"):
        sum(range(1000))
    with watch.span("x"):
        pass
    assert set(watch.timings_ms) == {"x"} and watch.timings_ms["x"] >= 0.0
