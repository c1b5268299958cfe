"""The GPU-check command (``bench_backends.py --gpu-check``) runs end to end on CPU with tiny configs.

On CPU it measures the tiny InstructSAM in two dtypes and prints one table
with the peak-memory column; an ``--evaluate`` run whose bags are missing
becomes an error row of the same table instead of stopping the command.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _bench():
    spec = importlib.util.spec_from_file_location("bench_backends", ROOT / "benchmarks" / "bench_backends.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_backends"] = module
    spec.loader.exec_module(module)
    return module


def test_gpu_check_prints_one_table_with_dtypes_memory_and_evaluation_rows(capsys, tmp_path):
    bench = _bench()
    code = bench.main(["--backends", "instructsam", "--device", "cpu", "--dtypes", "fp32,bf16", "--height", "48",
                       "--width", "64", "--threads", "1", "--bags", str(tmp_path / "no_bags"),
                       "--evaluate", "shapegrasp", "--budget-s", "120"])
    assert code == 0
    out = capsys.readouterr().out
    table = out[out.index("\nbackend ") + 1:].splitlines()
    assert "peak GPU [GiB]" in table[0] and "dtype" in table[0]
    rows = [line for line in table[1:] if line.strip()]
    assert [r.split()[:2] for r in rows] == [["instructsam", "fp32"], ["instructsam", "bf16"], ["shapegrasp", "fp32"]]
    assert all("Error" not in r for r in rows[:2]), rows
    assert "evaluation failed" in rows[2]
