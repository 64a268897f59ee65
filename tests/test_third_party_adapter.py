"""An adapter shipped as its own package (``tests/thirdparty``: an adapter for a toy upstream script), registered
the way an installed package is, through a ``.dist-info`` with a ``bilp.adapters`` entry point on the path: the
toy upstream runs both levels through the facade, ``bilp plugins`` lists the adapter's hooks, and ``bilp sweep``
runs on the adapter's host."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

THIRD_PARTY = Path(__file__).resolve().parent / "thirdparty"


@pytest.fixture
def installed(tmp_path: Path) -> dict[str, str]:
    """The environment of a process in which the toy adapter's package is installed."""
    site = tmp_path / "site"
    info = site / "bilp_toy_adapter-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: bilp-toy-adapter\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[bilp.adapters]\ntoy = bilp_toy_adapter.plugin\n")
    path = os.pathsep.join([str(site), str(THIRD_PARTY), os.environ.get("PYTHONPATH", "")])
    return {**os.environ, "PYTHONPATH": path}


def run(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([sys.executable, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def test_the_toy_upstream_runs_both_levels_through_its_adapter(installed: dict[str, str], tmp_path: Path) -> None:
    run([str(THIRD_PARTY / "toy_upstream.py"), "--iterations", "12", "--bilp", "--bilp-alpha", "0.5",
         "--bilp-score-epochs", "1", "--bilp-beta", "0.2", "--bilp-interval", "1", "--bilp-out", "rec"],
        installed, tmp_path)
    record = tmp_path / "rec"
    level1 = json.loads((record / "level1.json").read_text())
    assert level1["kept"] == 30 and level1["kept_per_class"] == [10, 10, 10]  # scored on the fly: real_images
    assert (record / "scores.npz").is_file()
    selections = [json.loads(line) for line in (record / "level2.jsonl").read_text().splitlines()]
    assert len(selections) == 12 * 3 and all(s["batch"] == 8 for s in selections)
    assert json.loads((record / "result.json").read_text())["real_kept"] == 30  # restrict_real kept its type


def test_a_refusal_from_the_adapter_is_one_line(installed: dict[str, str], tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, str(THIRD_PARTY / "toy_upstream.py"), "--batch-real", "1", "--bilp",
                           "--bilp-beta", "0.2", "--bilp-out", "rec"], env=installed, cwd=tmp_path,
                          capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stderr.strip() == "bilp: error: toy: level 2 needs --batch-real >= 2, got 1"
    assert not (tmp_path / "rec").exists()


def test_bilp_plugins_lists_the_adapter_and_its_hooks(installed: dict[str, str], tmp_path: Path) -> None:
    out = run(["-m", "bilp_plugin", "plugins"], installed, tmp_path).stdout
    line = next(row for row in out.splitlines() if row.startswith("adapter:toy"))
    for hook in ("check_level1", "check_run", "make_host", "meta_grad", "real_images", "restrict_real"):
        assert hook in line
    assert "adapter:dc" in out and "bilp_plugin.method.level2" in out


def test_a_sweep_runs_on_the_adapters_host(installed: dict[str, str], tmp_path: Path) -> None:
    run(["-m", "bilp_plugin", "sweep", "--host", "toy", "--iterations", "3", "--alphas", "0.5", "--seeds", "0",
         "--criteria", "random", "--score-epochs", "1", "--jobs", "1", "--out", "sweep"], installed, tmp_path)
    results = json.loads((tmp_path / "sweep" / "sweep-results.json").read_text())
    assert results["by_alpha"]["random"]["0.5"]["real_kept"] == 30
    assert json.loads((tmp_path / "sweep" / "sweep.json").read_text())["host"] == "toy"
