"""Run an upstream script reproducibly, without editing it.

    bilp launch --seed 0 --fake-clock main.py -- --dataset MNIST --ipc 1 ...

The upstreams reseed torch from the wall clock whenever they build a network and draw augmentation seeds from
``time.time()``; they never seed numpy. This launcher seeds ``random``, numpy and torch, optionally replaces
``time.time`` with a clock that advances a fixed step per call, optionally skips torchvision's CIFAR md5 check
(the rebuilt CIFAR-10 cannot match it), optionally redirects CUDA to the CPU (for upstreams that hard-code
``.cuda()`` / ``device="cuda"``, when no GPU is present), then runs the script as ``__main__`` (its folder first on
``sys.path``, the current folder unchanged). Two launches with the same flags and the same script arguments give
bit-identical runs on the same machine.
"""

from __future__ import annotations

import random
import runpy
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch.overrides import TorchFunctionMode


class FakeClock:
    """``time.time`` stand-in: ``start``, then ``start + step``, ``start + 2 step``, ..."""

    def __init__(self, start: float = 1_700_000_000.0, step: float = 0.001) -> None:
        self.now = start
        self.step = step

    def __call__(self) -> float:
        self.now += self.step
        return self.now


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def disable_cifar_md5() -> None:
    import torchvision.datasets.cifar as cifar

    cifar.check_integrity = lambda *a, **k: True  # type: ignore[assignment]


def _cpu(device: object) -> object:
    """``device`` with any CUDA device (``"cuda"``, ``"cuda:1"``, ``torch.device("cuda")``, an index) as the CPU."""
    if isinstance(device, torch.device):
        return torch.device("cpu") if device.type == "cuda" else device
    if isinstance(device, str) and device.startswith("cuda") or isinstance(device, int) and device >= 0:
        return torch.device("cpu")
    return device


class CudaToCpu(TorchFunctionMode):
    """A torch function mode that runs CUDA-only code on the CPU: ``Tensor.cuda()`` (hence ``Module.cuda()``)
    returns the tensor, ``device=`` arguments and ``Tensor.to``'s device argument naming CUDA mean the CPU.
    Values are those of the same code written for the CPU; nothing else changes."""

    def __torch_function__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        kwargs = kwargs or {}
        if func is torch.Tensor.cuda:
            return args[0]
        if "device" in kwargs:
            kwargs["device"] = _cpu(kwargs["device"])
        if func is torch.Tensor.to and len(args) > 1:
            args = (args[0], _cpu(args[1]), *args[2:])
        return func(*args, **kwargs)


def redirect_cuda_to_cpu() -> None:
    """Redirect CUDA to the CPU for the rest of the process (only where no GPU is present)."""
    if torch.cuda.is_available():
        return
    CudaToCpu().__enter__()


def run_script(script: str | Path, args: Sequence[str], *, seed: int = 0, fake_clock: bool = False,
               skip_cifar_integrity: bool = False, cuda_to_cpu: bool = False, threads: int | None = None) -> None:
    """Run ``script`` as ``__main__`` with ``args``, after the settings above (its folder first on ``sys.path``,
    the current folder unchanged)."""
    script = Path(script).resolve()
    if threads:
        torch.set_num_threads(threads)
    if skip_cifar_integrity:
        disable_cifar_md5()
    if cuda_to_cpu:
        redirect_cuda_to_cpu()
    seed_everything(seed)
    if fake_clock:
        time.time = FakeClock()  # type: ignore[assignment]
    sys.path.insert(0, str(script.parent))
    sys.argv = [str(script), *args]
    runpy.run_path(str(script), run_name="__main__")
