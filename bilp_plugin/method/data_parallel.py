"""Data-parallel empirical-loss scoring under ``torchrun`` (docs/scaling.md).

    torchrun --nproc_per_node 2 -m bilp_plugin score --dataset digits --device cpu --out scores.npz

Every rank holds the same network (same seed) and draws the same seeded permutation of the dataset each epoch.
Each global batch of ``B`` samples is split the way ``DistributedSampler`` splits an epoch (rank ``r`` takes
positions ``r, r + N, ...``), each rank records the per-sample losses of its share, and the gradients
``sum(loss of my share) / B`` are summed over ranks (``all_reduce``), which is the single-process gradient of the
mean loss over the whole batch. So the training trajectory, and the scores, equal the single-process ones up to
the order of float summation. At the end the per-sample totals are summed over ranks and rank 0 writes the file.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from bilp_plugin.errors import BiLPError


@dataclass(frozen=True)
class World:
    """This process's place among the scoring processes (``size == 1``: a plain single process)."""

    rank: int = 0
    size: int = 1

    @property
    def active(self) -> bool:
        return self.size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def shard(self, index: torch.Tensor) -> torch.Tensor:
        """This rank's share of a batch of dataset indices."""
        return index[self.rank::self.size] if self.active else index

    def sum_grads(self, model: torch.nn.Module) -> None:
        """Replace every gradient by its sum over ranks (one flat ``all_reduce``)."""
        params = list(model.parameters())
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
        flat = torch.cat([g.reshape(-1) for g in grads])
        dist.all_reduce(flat)
        for p, g in zip(params, flat.split([q.numel() for q in params]), strict=True):
            p.grad = g.view_as(p)

    def sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """``tensor`` summed over ranks, in place (every rank gets the sum)."""
        if self.active:
            dist.all_reduce(tensor)
        return tensor


def current() -> World:
    """The world of the initialised process group, or a single process."""
    if dist.is_available() and dist.is_initialized():
        return World(dist.get_rank(), dist.get_world_size())
    return World()


def _env_int(name: str, default: int, least: int = 0) -> int:
    text = os.environ.get(name)
    if text is None:
        return default
    try:
        value = int(text)
    except ValueError:
        value = least - 1
    if value < least:
        raise BiLPError(f"{name}={text!r} is not a count{f' >= {least}' if least else ''}: unset it, or let "
                        "torchrun set it")
    return value


def world_size() -> int:
    """``WORLD_SIZE`` (1 when unset), checked with the rest of the distributed environment before any process
    group starts: ``RANK`` within it, ``MASTER_ADDR`` and ``MASTER_PORT`` that a group can meet at, ``LOCAL_RANK``
    a count. (A rank outside the world, or a group without an address, would wait forever or fail deep in
    ``torch.distributed``.)"""
    size = _env_int("WORLD_SIZE", 1, least=1)
    rank = os.environ.get("RANK")
    if size == 1:
        if rank not in (None, "0"):
            raise BiLPError(f"RANK={rank} without WORLD_SIZE (or with WORLD_SIZE=1): unset RANK, or start the "
                            "processes with torchrun")
        return size
    if rank is None:
        raise BiLPError(f"WORLD_SIZE={size} needs RANK (0..{size - 1}) in each process: start them with torchrun, "
                        "which sets both")
    if _env_int("RANK", 0) >= size:
        raise BiLPError(f"RANK={rank} must be below WORLD_SIZE={size}: start the processes with torchrun")
    address, port = os.environ.get("MASTER_ADDR"), os.environ.get("MASTER_PORT")
    if address is None or port is None:
        raise BiLPError(f"WORLD_SIZE={size} needs MASTER_ADDR and MASTER_PORT (where the processes meet): start "
                        "them with torchrun, which sets both")
    if not address.strip():
        raise BiLPError("MASTER_ADDR is empty: set it to the host of rank 0 (torchrun sets it)")
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        raise BiLPError(f"MASTER_PORT={port!r} is not a port (1..65535): set a free port (torchrun sets it)")
    _env_int("LOCAL_RANK", 0)
    return size


def init_from_env(device: str) -> tuple[World, str]:
    """Join ``torchrun``'s process group when ``WORLD_SIZE`` > 1 (gloo on CPU, nccl on CUDA; each rank on
    ``cuda:LOCAL_RANK``); returns the world and the device this rank uses."""
    size = world_size()
    if size <= 1:
        return World(), device
    if not dist.is_available():
        raise BiLPError(f"WORLD_SIZE={size} but this torch build has no torch.distributed: run one process")
    kind = torch.device(device).type
    if kind == "cuda":
        device = f"cuda:{_env_int('LOCAL_RANK', 0)}"
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if kind == "cuda" else "gloo")
    return current(), device


def finish() -> None:
    """Leave the process group (after rank 0 has written its file)."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
