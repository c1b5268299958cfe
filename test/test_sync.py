"""The approximate-time synchroniser, without DDS."""

import numpy as np
import pytest

from partseg_ros.ros.sync import (
    FUTURE_STAMP,
    OUT_OF_ORDER,
    QUEUE_OVERFLOW,
    UNMATCHED,
    ApproximateTimeSync,
)

MS = 1_000_000


def make(slop_ms=10, queue_size=10, future_ms=None):
    out = []
    sync = ApproximateTimeSync(
        ["color", "depth", "info"],
        slop_ns=slop_ms * MS,
        queue_size=queue_size,
        future_tolerance_ns=None if future_ms is None else future_ms * MS,
        on_match=out.append,
    )
    return sync, out


def test_identical_stamps_pair_in_any_arrival_order():
    sync, out = make()
    for t in (100, 133, 166):
        for stream in ("depth", "info", "color"):
            assert sync.add(stream, t * MS, f"{stream}@{t}") is None
    assert [s.messages for s in out] == [
        ("color@100", "depth@100", "info@100"),
        ("color@133", "depth@133", "info@133"),
        ("color@166", "depth@166", "info@166"),
    ]
    assert sum(sync.drops.values()) == 0


def test_jitter_within_slop_pairs_and_beyond_slop_drops():
    sync, out = make(slop_ms=10)
    sync.add("color", 100 * MS, "c100")
    sync.add("info", 100 * MS, "i100")
    sync.add("depth", 104 * MS, "d104")  # 4 ms apart: a set
    assert len(out) == 1 and out[0].spread_ns == 4 * MS

    sync.add("color", 133 * MS, "c133")
    sync.add("info", 133 * MS, "i133")
    sync.add("depth", 160 * MS, "d160")  # 27 ms after: colour/info 133 are dead
    assert len(out) == 1
    assert sync.drops[UNMATCHED] == 2
    assert sync.drops[f"{UNMATCHED}:color"] == 1
    sync.add("color", 166 * MS, "c166")
    sync.add("info", 166 * MS, "i166")
    assert [m for m in out[-1].messages] == ["c166", "d160", "i166"]


def test_lagging_stream_takes_closest_partner_and_drops_older():
    sync, out = make(slop_ms=10)
    for t in (100, 133, 166):
        sync.add("color", t * MS, f"c{t}")
        sync.add("info", t * MS, f"i{t}")
    sync.add("depth", 167 * MS, "d167")
    assert len(out) == 1
    assert out[0].messages == ("c166", "d167", "i166")
    assert sync.drops[UNMATCHED] == 4  # colour and info at 100 and 133


def test_queue_is_bounded_and_overflow_counted():
    sync, out = make(queue_size=3)
    for k in range(5):
        sync.add("color", (100 + 33 * k) * MS, k)
    assert sync.pending("color") == 3
    assert sync.drops[QUEUE_OVERFLOW] == 2
    assert not out


def test_out_of_order_duplicate_and_future_stamps_are_refused():
    sync, out = make(future_ms=50)
    now = 1_000 * MS
    assert sync.add("color", 500 * MS, "a", now_ns=now) is None
    assert sync.add("color", 400 * MS, "b", now_ns=now) == OUT_OF_ORDER
    assert sync.add("color", 500 * MS, "dup", now_ns=now) == OUT_OF_ORDER
    assert sync.add("color", 1_100 * MS, "future", now_ns=now) == FUTURE_STAMP
    assert sync.add("color", 1_040 * MS, "near future is fine", now_ns=now) is None
    assert sync.pending("color") == 2


def test_reset_accepts_time_going_back():
    sync, out = make()
    sync.add("color", 500 * MS, "a")
    sync.reset()
    assert sync.add("color", 100 * MS, "b") is None


def test_random_streams_never_emit_wide_or_reused_sets():
    """Three 30 Hz streams with jitter, random drop-outs and interleaving."""
    rng = np.random.default_rng(7)
    slop = 8 * MS
    sync, out = make(slop_ms=8, queue_size=6)
    events = []
    for k in range(400):
        base = k * 33 * MS
        for stream, jitter in (("color", 0), ("depth", 3), ("info", 1)):
            if rng.random() < 0.1:
                continue  # lost frame
            stamp = base + int(rng.integers(-jitter * MS, jitter * MS + 1))
            arrival = stamp + int(rng.integers(0, 20 * MS))
            events.append((arrival, stream, stamp))
    # Per-stream delivery stays in order (DDS keeps writer order); streams interleave.
    events.sort()
    last = {}
    for _, stream, stamp in events:
        if last.get(stream, -1) >= stamp:
            continue
        last[stream] = stamp
        sync.add(stream, stamp, (stream, stamp))
    assert len(out) > 250
    seen = set()
    previous = -1
    for s in out:
        assert s.spread_ns <= slop
        assert [m[0] for m in s.messages] == ["color", "depth", "info"]
        for m in s.messages:
            assert m not in seen
            seen.add(m)
        assert min(s.stamps_ns) > previous
        previous = max(s.stamps_ns)
        # Same frame index for all three: the pairing is exact when slop < half a period.
        assert len({round(st / (33 * MS)) for st in s.stamps_ns}) == 1


def test_bad_construction_is_refused():
    with pytest.raises(ValueError):
        ApproximateTimeSync(["a", "a"], slop_ns=1)
    with pytest.raises(ValueError):
        ApproximateTimeSync(["a"], slop_ns=-1)
    with pytest.raises(ValueError):
        ApproximateTimeSync(["a"], slop_ns=1, queue_size=0)


def test_a_jump_back_beyond_the_threshold_starts_a_new_time_line():
    """A bag replayed again (or looped) pairs again; jitter stays refused (issue 15, item 3)."""
    out = []
    sync = ApproximateTimeSync(["color", "info"], slop_ns=10 * MS, on_match=out.append,
                               reset_jump_back_ns=1_000 * MS)
    for pass_ in range(2):
        for t in (0, 2_000, 4_000):
            assert sync.add("info", 10_000 * MS + t * MS, ("info", pass_, t)) is None
            assert sync.add("color", 10_000 * MS + t * MS, ("color", pass_, t)) is None
    assert [m.messages[0] for m in out] == [("color", p, t) for p in (0, 1) for t in (0, 2_000, 4_000)]
    assert sync.resets == 1 and sync.last_jump_back_ns == 4_000 * MS
    # Jitter within the threshold is still refused, and does not reset.
    assert sync.add("color", 10_000 * MS + 3_500 * MS, "late") == OUT_OF_ORDER
    assert sync.resets == 1


def test_discard_removes_a_queued_message():
    sync, out = make()
    sync.add("color", 100 * MS, "a")
    assert sync.discard("color", 100 * MS) and sync.pending("color") == 0
    assert not sync.discard("color", 100 * MS)


def test_a_head_left_over_from_a_broken_frame_never_pairs_across_frames():
    """Frame 1.16 s lost its camera_info; the older camera_info 1.12 s is dropped, and then the pivot
    is chosen again: colour and depth of 1.16 s never pair with the camera_info of 1.20 s."""
    sync, out = make(slop_ms=15)
    sync.add("info", 1120 * MS, "info 1.12")
    sync.add("info", 1200 * MS, "info 1.20")
    sync.add("color", 1160 * MS, "color 1.16")
    sync.add("depth", 1160 * MS, "depth 1.16")
    assert out == []
    sync.add("color", 1200 * MS, "color 1.20")
    sync.add("depth", 1200 * MS, "depth 1.20")
    assert [s.messages for s in out] == [("color 1.20", "depth 1.20", "info 1.20")]


def test_streams_lagging_by_frames_pair_every_complete_frame_exactly():
    """Executor order can put a stream several frames behind the others (per-stream order kept):
    every complete frame is paired with its own partners, and no set spans more than slop."""
    rng = np.random.default_rng(15)
    for _ in range(200):
        sync, out = make(slop_ms=15, queue_size=60)
        streams = {"color": [], "depth": [], "info": []}
        complete = set()
        for k in range(30):
            stamp = 1000 * MS + k * 40 * MS
            missing = rng.choice(["none", "none", "color", "depth", "info"])
            for name in streams:
                if name != missing:
                    streams[name].append(stamp)
            if missing == "none":
                complete.add(stamp)
        position = dict.fromkeys(streams, 0)
        while any(position[n] < len(streams[n]) for n in streams):
            name = str(rng.choice([n for n in streams if position[n] < len(streams[n])]))
            stamp = streams[name][position[name]]
            position[name] += 1
            assert sync.add(name, stamp, (name, stamp)) is None
        assert all(s.spread_ns == 0 for s in out), [s.stamps_ns for s in out if s.spread_ns]
        assert {s.stamps_ns[0] for s in out} == complete


def test_a_repeated_stamp_is_a_duplicate_back_to_back_and_a_new_time_line_after_a_silence():
    """A 1-frame bag replayed again (or another bag on the same timeline) repeats its stamp exactly."""
    out = []
    sync = ApproximateTimeSync(["color", "depth", "info"], slop_ns=10 * MS, reset_jump_back_ns=1000 * MS,
                               reset_repeat_after_ns=1000 * MS, on_match=out.append)
    for name in ("color", "depth", "info"):
        assert sync.add(name, 5000 * MS, name, now_ns=0) is None
    assert sync.add("color", 5000 * MS, "again", now_ns=30 * MS) == OUT_OF_ORDER  # a duplicate
    assert sync.resets == 0
    for name in ("info", "depth", "color"):  # the bag again, 2 s later
        assert sync.add(name, 5000 * MS, name + " 2", now_ns=2000 * MS) is None
    assert sync.resets == 1
    assert [s.messages for s in out] == [("color", "depth", "info"), ("color 2", "depth 2", "info 2")]
    assert sync.add("color", 4900 * MS, "jitter", now_ns=5000 * MS) == OUT_OF_ORDER  # earlier, not equal: jitter


def test_last_seen_and_nearest_stamp_describe_a_stream_that_never_pairs():
    """What the node's stall warning reads: per stream the newest stamp and arrival, and the
    colour stamp nearest to a partner's (its offset is what sync.slop_s would have to cover)."""
    sync = ApproximateTimeSync(["color", "depth"], slop_ns=15, queue_size=10)
    assert sync.last_seen("depth") == (None, None) and sync.nearest_stamp("color", 0) is None
    for k in range(5):
        sync.add("color", 100 * k, "c", now_ns=1000 + k)
        sync.add("depth", 100 * k - 40, "d", now_ns=1000 + k)  # 40 ns early: beyond the slop of 15
    assert sync.matched == 0
    assert sync.last_seen("depth") == (360, 1004) and sync.last_seen("color")[0] == 400
    assert sync.nearest_stamp("color", 360) == 400  # offset -40, not -40 +/- a frame period
