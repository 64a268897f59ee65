"""``Session`` calls the ``after_level1`` hook once per process, right after level 1 (with the full set when
level 1 is off)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from bilp_plugin import hookimpl, runtime
from bilp_plugin.manager import get_manager
from bilp_plugin.runtime import flags


def run_args(tmp_path: Path, *options: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    flags.add_arguments(parser)
    return parser.parse_args(["--bilp", "--bilp-out", str(tmp_path / "record"), *options])


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Any, ...]]:
    seen: list[tuple[Any, ...]] = []

    class Spy:
        @hookimpl
        def after_level1(self, upstream, args, config, subset):  # noqa: ANN001, ANN201
            seen.append((upstream, args, config, subset))

    monkeypatch.setattr("bilp_plugin.manager._manager", None)
    get_manager().register_adapter("toy", Spy())
    return seen


def test_after_level1_gets_the_kept_set_once(tmp_path: Path, calls: list[tuple[Any, ...]]) -> None:
    args = run_args(tmp_path, "--bilp-alpha", "0.5", "--bilp-criterion", "random")
    labels = torch.arange(20) % 2
    first = runtime.prune_real(args, torch.arange(20), labels, upstream="toy", dataset="toy")
    second = runtime.prune_real(args, torch.arange(20), labels, upstream="toy", dataset="toy")
    assert torch.equal(first, second) and len(first) == 10
    ((upstream, got_args, config, subset),) = calls
    assert upstream == "toy" and got_args is args and config.alpha == 0.5
    assert np.array_equal(subset.labels, labels.numpy()) and np.array_equal(subset.kept, first.numpy())
    assert subset.summary["kept"] == 10 and subset.summary["kept_per_class"] == [5, 5]


def test_after_level1_is_called_when_level1_is_off(tmp_path: Path, calls: list[tuple[Any, ...]]) -> None:
    args = run_args(tmp_path)
    real = torch.arange(6)
    assert runtime.prune_real(args, real, real % 3, upstream="toy") is real
    ((_, _, config, subset),) = calls
    assert config.alpha == 0.0 and subset.kept is None and subset.summary is None
