"""``benchmarks/bench_overhead.py`` stays runnable: its smallest run of the CPU preset (IDC), shrunk to one level-2
variant, one round and random CIFAR-10-sized images, prints its table."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from upstreams import repo_or_skip

BENCH = Path(__file__).resolve().parent.parent / "benchmarks" / "bench_overhead.py"


@pytest.mark.integration
@pytest.mark.slow
def test_cpu_preset_idc_prints_a_row_per_variant() -> None:
    repo_or_skip("idc").close()
    proc = subprocess.run([sys.executable, str(BENCH), "--preset", "cpu", "--run", "idc", "--variants", "exact k=1",
                           "--rounds", "1", "--budget", "0", "--threads", "1", "--random-data", "--", "--n_data", "8"],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "## idc: condense.py -d cifar10 --ipc 1" in proc.stdout
    assert re.search(r"^\| unpatched \| [0-9.]+ \| - \| - \| 1\.000 \|", proc.stdout, re.M), proc.stdout
    row = re.search(r"^\| exact k=1 \| ([0-9.]+) \| ([0-9.]+) \| ([0-9.]+)% \|", proc.stdout, re.M)
    assert row and float(row[2]) > 0, proc.stdout
