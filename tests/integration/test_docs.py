"""The README's upstream example and every command of ``docs/adapter-*.md``, run as a user would
(:mod:`docs_commands`: a sandbox shaped like a fresh clone, this checkout's ``bilp`` on ``PATH``) with tiny settings
on fake data the test writes. Each test names its substitutions and asserts what the commands left behind."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from docs_commands import run, sandbox, script
from fake_data import write_mnist
from upstreams import ROOT

from bilp_plugin.tools import apply

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def reverted(box: Path, name: str) -> bool:
    """The sandbox's upstream checkout holds the pinned files again."""
    row = apply.status_row(apply.Manifest.load(box / "adapters" / name))
    return row["pinned"] == "yes" and row["patched"] == "no" and row["clean"] == "yes"


def test_readme_upstream_example(tmp_path: Path) -> None:
    box = sandbox(tmp_path / "project", ["dc"])
    data = write_mnist(tmp_path / "data", per_class=20, test_per_class=10)
    text = script(ROOT / "README.md", {"export BILP_DATA=$HOME/data": f"export BILP_DATA={data}",
                                       "--epochs 2": "--epochs 1 --width 8", "--ipc 10": "--ipc 1",
                                       "--Iteration 2000": "--Iteration 0", "--epoch_eval_train 300":
                                       "--epoch_eval_train 2"}, section="## Using it with an upstream repo")
    ran = run(text, box, {})
    record = box / "runs" / "dm-mnist" / "bilp"
    assert json.loads((record / "level1.json").read_text())["kept_per_class"] == [10] * 10
    assert (record / "level2.jsonl").read_text().count("\n") == 10  # one selection per class
    assert (box / "runs" / "dm-mnist" / "report" / "report.md").is_file()
    saved = torch.load(box / "runs" / "dm-mnist" / "res_DM_MNIST_ConvNet_1ipc.pt", weights_only=False)
    assert saved["data"][0][0].shape == (10, 1, 28, 28) and len(saved["accs_all_exps"]["ConvNet"]) == 1
    assert "mean = nan" not in ran.stdout and "Mean of empty slice" not in ran.stderr
    assert reverted(box, "dc")
