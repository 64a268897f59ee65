"""``bilp launch --cuda-to-cpu``: code that hard-codes CUDA runs on the CPU, values unchanged."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from bilp_plugin.tools.launch import CudaToCpu

pytestmark = pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is present: nothing to redirect")


def test_cuda_calls_run_on_the_cpu() -> None:
    net = torch.nn.Linear(3, 2)
    with CudaToCpu():
        x = torch.ones(4, 3, device="cuda")
        same = torch.arange(3.0).cuda()
        moved = net.cuda()
        out = moved(x.to("cuda:0")).to(torch.device("cuda"), non_blocking=True)
        tensor = torch.tensor([1, 2], device=torch.device("cuda", 0)).to(0)
    assert {x.device.type, same.device.type, out.device.type, tensor.device.type} == {"cpu"}
    assert moved is net
    torch.testing.assert_close(out, net(torch.ones(4, 3)))


def test_other_arguments_are_untouched() -> None:
    with CudaToCpu():
        y = torch.ones(2, dtype=torch.float64).to(torch.float32)
        z = torch.zeros(2, device="cpu").to(y)
    assert y.dtype == torch.float32 and z.device.type == "cpu"


def test_launch_flag(tmp_path: Path) -> None:
    script = tmp_path / "cuda_only.py"
    script.write_text("import torch\nprint(torch.randn(2, device='cuda').cuda().device)\n")
    cmd = [sys.executable, "-m", "bilp_plugin", "launch", "--cuda-to-cpu", str(script)]
    assert subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip() == "cpu"
