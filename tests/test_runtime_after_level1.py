"""``Session`` calls the adapter's optional ``after_level1`` once per process, right after level 1."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from bilp_adapters.mtt import plugin

from bilp_plugin import config as config_mod
from bilp_plugin import runtime


def run_args(tmp_path: Path, *flags: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    config_mod.add_arguments(parser)
    return parser.parse_args(["--bilp", "--bilp-out", str(tmp_path / "record"), *flags])


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Any, ...]]:
    seen: list[tuple[Any, ...]] = []
    monkeypatch.setattr(plugin, "check", lambda args, config, kept_per_class: None)
    monkeypatch.setattr(plugin, "after_level1", lambda *a: seen.append(a))
    return seen


def test_after_level1_gets_the_kept_set_once(tmp_path: Path, calls: list[tuple[Any, ...]]) -> None:
    args = run_args(tmp_path, "--bilp-alpha", "0.5", "--bilp-criterion", "random")
    labels = torch.arange(20) % 2
    first = runtime.prune_real(args, torch.arange(20), labels, upstream="mtt", dataset="toy")
    second = runtime.prune_real(args, torch.arange(20), labels, upstream="mtt", dataset="toy")
    assert torch.equal(first, second) and len(first) == 10
    ((got_args, config, got_labels, kept, summary),) = calls
    assert got_args is args and config.alpha == 0.5
    assert np.array_equal(got_labels, labels.numpy()) and np.array_equal(kept, first.numpy())
    assert summary["kept"] == 10 and summary["kept_per_class"] == [5, 5]


def test_after_level1_is_called_when_level1_is_off(tmp_path: Path, calls: list[tuple[Any, ...]]) -> None:
    args = run_args(tmp_path)
    real = torch.arange(6)
    assert runtime.prune_real(args, real, real % 3, upstream="mtt") is real
    ((_, config, _, kept, summary),) = calls
    assert config.alpha == 0.0 and kept is None and summary is None
