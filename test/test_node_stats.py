"""The node's counters, rates and percentiles (what /diagnostics reports) and parameter helpers, no DDS."""

import math

from partseg_ros.ros.stats import NodeStats, RollingRate, limited_log


class FakeClock:
    """Deterministic time for rate tests."""

    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_rolling_rate_follows_the_stream_and_decays():
    clock = FakeClock()
    rate = RollingRate(window_s=2.0, clock=clock)
    for _ in range(61):
        rate.tick()
        clock.now += 1 / 30
    assert abs(rate.rate() - 30.0) < 1.0
    clock.now += 5.0  # the stream stopped
    assert rate.rate() == 0.0


def test_snapshot_reports_percentiles_drops_and_rejections():
    clock = FakeClock()
    stats = NodeStats(clock=clock)
    assert math.isnan(stats.snapshot()["latency_p50_ms"])
    for k in range(1, 101):
        stats.frame_received(transport_ms=k / 10)
        stats.frame_processed(latency_ms=k, inference_ms=2 * k, overhead_ms=3.0, stages_ms={"geometry": 1.5})
        clock.now += 0.1
    stats.reject("bad_encoding")
    assert stats.reject("bad_encoding") == 2
    stats.drop("stale_frame", 3)
    stats.set_drops("unmatched", 7)
    snap = stats.snapshot()
    assert snap["frames_in"] == snap["frames_processed"] == 100
    assert abs(snap["latency_p50_ms"] - 50.5) < 1e-6 and abs(snap["latency_p95_ms"] - 95.05) < 1e-6
    assert abs(snap["inference_p50_ms"] - 101.0) < 1e-6 and snap["overhead_p50_ms"] == 3.0
    assert abs(snap["transport_p50_ms"] - 5.05) < 1e-6 and snap["stage.geometry_p50_ms"] == 1.5
    assert snap["rejected.bad_encoding"] == 2 and snap["rejected_total"] == 2
    assert snap["dropped.stale_frame"] == 3 and snap["dropped.unmatched"] == 7 and snap["dropped_total"] == 10
    assert abs(snap["input_hz"] - 10.0) < 0.5


def test_limited_log_logs_first_few_then_every_hundredth():
    logged = [n for n in range(1, 1001) if limited_log(n)]
    assert logged[:5] == [1, 2, 3, 4, 5] and 100 in logged and 6 not in logged and len(logged) == 15


def test_open_parameter_maps_are_nested_again():
    from partseg_ros.ros.params import nest

    assert nest({"segmentation.min_points": 50, "segmentation.max_gap.m": 0.01, "stride": 2}) == {
        "segmentation": {"min_points": 50, "max_gap": {"m": 0.01}}, "stride": 2}
