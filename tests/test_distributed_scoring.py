"""Data-parallel scoring: ``bilp score`` under ``torchrun --nproc_per_node 2`` (gloo, CPU) on digits writes one
score file that matches the single-process one.

Tolerance: the two runs follow the same trajectory but sum gradients in another order (per-rank partial sums,
then ``all_reduce``), and SGD amplifies those float differences over the steps. Measured on digits (width 16,
batch 64, 3 epochs): max relative difference 3e-4, Spearman 0.9999999. Asserted: relative difference < 1e-2,
Spearman > 0.9999, and level-1 keep decisions at alpha = 0.5 equal on >= 99% of the samples.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr

from bilp_plugin.method import level1, scorefile
from bilp_plugin.cli import main
from bilp_plugin.method.data_parallel import World

RECIPE = ["--dataset", "digits", "--device", "cpu", "--width", "16", "--batch-size", "64"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _torchrun(out: Path, *flags: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
           "--master_port", str(_free_port()), "-m", "bilp_plugin", "score", *RECIPE, *flags, "--out", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, check=False, capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


@pytest.mark.parametrize("mode, epochs", [("mean", 2), ("final", 1)])
def test_two_ranks_write_one_file_matching_one_process(tmp_path: Path, mode: str, epochs: int) -> None:
    flags = ["--mode", mode, "--epochs", str(epochs)]
    proc = _torchrun(tmp_path / "two.npz", *flags)
    assert proc.stdout.count("wrote ") == 1 and sorted(p.name for p in tmp_path.iterdir()) == ["two.npz"]
    torch.set_num_threads(1)
    assert main(["score", *RECIPE, *flags, "--out", str(tmp_path / "one.npz")]) == 0
    two, one = scorefile.load(tmp_path / "two.npz"), scorefile.load(tmp_path / "one.npz")
    assert two.meta["world_size"] == 2 and "world_size" not in one.meta
    assert np.array_equal(two.labels, one.labels) and two.meta["labels_sha256"] == one.meta["labels_sha256"]
    relative = np.abs(two.scores - one.scores) / np.abs(one.scores)
    assert relative.max() < 1e-2, f"max relative difference {relative.max():.2e}"
    assert spearmanr(two.scores, one.scores)[0] > 0.9999
    kept_two, kept_one = (np.isin(np.arange(len(one)), level1.keep_lowest(s.scores, one.labels, 0.5))
                          for s in (two, one))
    assert (kept_two == kept_one).mean() >= 0.99


def test_shards_partition_each_batch_like_distributed_sampler() -> None:
    batch = torch.tensor([7, 3, 9, 0, 4])
    shards = [World(rank, 2).shard(batch) for rank in range(2)]
    assert shards[0].tolist() == [7, 9, 4] and shards[1].tolist() == [3, 0]
    sampler = torch.utils.data.DistributedSampler(range(4), num_replicas=2, rank=1, shuffle=False)
    assert World(1, 2).shard(torch.arange(4)).tolist() == list(sampler)
    assert World().shard(batch) is batch
