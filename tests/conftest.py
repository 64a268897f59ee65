"""Shared fixtures: real data from ``BILP_DATA`` (tests that need it skip with a visible reason otherwise)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


def _data_root() -> Path:
    root = os.environ.get("BILP_DATA")
    if not root:
        pytest.skip("BILP_DATA not set: run `python shared/data/tools/make_layouts.py DIR` and export "
                    "BILP_DATA=DIR to run the tests on real data")
    return Path(root)


@pytest.fixture(scope="session")
def mnist_root() -> Path:
    root = _data_root()
    if not (root / "MNIST" / "raw" / "train-images-idx3-ubyte").exists():
        pytest.skip(f"BILP_DATA={root} has no MNIST/raw layout")
    return root


@pytest.fixture(scope="session")
def cifar10_root() -> Path:
    root = _data_root()
    if not (root / "cifar-10-batches-py" / "data_batch_1").exists():
        pytest.skip(f"BILP_DATA={root} has no cifar-10-batches-py layout")
    return root
