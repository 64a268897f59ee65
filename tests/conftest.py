"""Shared fixtures: real data from ``BILP_DATA`` (tests that need it skip with a visible reason otherwise), and a
fresh ``--bilp`` session for every test; the run's skips, grouped by reason, at the end of its summary."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from bilp_plugin import runtime


@pytest.fixture(autouse=True)
def fresh_bilp_session(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Each test starts without a ``--bilp`` session; the run record it opens is closed when it ends (not at
    interpreter exit, after pytest has reported)."""
    monkeypatch.setattr(runtime, "_session", None)
    yield
    if runtime._session is not None:
        runtime._session.close()


def _data_root() -> Path:
    root = os.environ.get("BILP_DATA")
    if not root:
        pytest.skip("BILP_DATA not set: export BILP_DATA=DIR, a folder of torchvision layouts (docs/data.md), "
                    "to run the tests on real data")
    return Path(root)


@pytest.fixture(scope="session")
def mnist_root() -> Path:
    root = _data_root()
    if not (root / "MNIST" / "raw" / "train-images-idx3-ubyte").exists():
        pytest.skip(f"BILP_DATA={root} has no MNIST/raw layout: docs/data.md says how to make it")
    return root


@pytest.fixture(scope="session")
def cifar10_root() -> Path:
    root = _data_root()
    if not (root / "cifar-10-batches-py" / "data_batch_1").exists():
        pytest.skip(f"BILP_DATA={root} has no cifar-10-batches-py layout: docs/data.md says how to make it")
    return root


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """One line per skip reason with its count, most frequent first (each reason names its fix), instead of one
    line per skipped test (``-rs``)."""
    skipped = terminalreporter.stats.get("skipped", [])
    reasons = Counter(r.longrepr[2].removeprefix("Skipped: ") for r in skipped if isinstance(r.longrepr, tuple))
    if reasons:
        terminalreporter.section(f"{sum(reasons.values())} skipped, by reason")
        for reason, count in reasons.most_common():
            terminalreporter.write_line(f"{count:4d}  {reason}")
