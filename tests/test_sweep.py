"""``bilp sweep``: the max-pruning-ratio rule, and resumability (finished points are never rerun)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from cli_exit import exit_status

from bilp_plugin.lab import hosts
from bilp_plugin.cli import main

ACCURACY = {"loss": lambda a: 0.80 - 0.05 * a ** 4, "random": lambda a: 0.80 - 0.10 * a}
"""Fake accuracy by criterion and alpha; baseline 0.80 +- 0.01 (seeds 0, 1 give 0.79 and 0.81)."""


class FakeHost:
    """Stands in for a distillation host: records which points it ran, writes a result.json."""

    name = "fake"

    def __init__(self) -> None:
        self.ran: list[str] = []

    def run(self, point: hosts.Point, run_dir: Path, scores: Path) -> dict[str, Any]:
        self.ran.append(point.name)
        run_dir.mkdir(parents=True)
        base = ACCURACY[point.criterion](point.alpha) if point.alpha else 0.80
        acc = base + (0.01 if point.seed else -0.01)
        result = {"accuracy": [acc], "real_kept": 100, "real_total": 100, "distill_s": 1.0, "eval_s": 0.5}
        (run_dir / "result.json").write_text(json.dumps(result))
        return result


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> FakeHost:
    host = FakeHost()
    monkeypatch.setattr(hosts, "make_host", lambda args, workdir: host)
    monkeypatch.setattr(hosts, "score_file", lambda args, out: out / "scores.npz")
    return host


def _sweep(out: Path, *flags: str) -> int:
    """``bilp sweep``'s exit status (a flag refused at parse time exits through argparse)."""
    return exit_status(main, ["sweep", "--seeds", "0,1", "--jobs", "1", "--out", str(out), *flags])


def test_max_alpha_within_the_baseline_std(tmp_path: Path, fake: FakeHost,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    assert _sweep(tmp_path, "--alphas", "0.3,0.5,0.7,0.9") == 0
    # floor = 0.80 - 0.01; loss: 0.80 - 0.05 a^4 >= 0.79 up to a = 0.67; random: 0.80 - 0.1 a up to a = 0.1
    result = json.loads((tmp_path / "sweep-results.json").read_text())
    assert result["max_alpha"] == {"loss": 0.5, "random": 0.0}
    out = capsys.readouterr().out
    assert "max alpha within the baseline's std: loss 0.5, random 0" in out
    assert "| 0.5 | 79.7 ± 1.0 (se 1.0)* | 75.0 ± 1.0 (se 1.0) |" in out


def test_strata_points_and_standard_errors(tmp_path: Path, fake: FakeHost) -> None:
    """--strata adds one run per named decile and seed; each mean carries its standard error over seeds."""
    assert _sweep(tmp_path, "--alphas", "0.5", "--criteria", "loss", "--strata", "10,1") == 0
    assert sorted(n for n in fake.ran if n.startswith("stratum")) == ["stratum01-s0", "stratum01-s1",
                                                                      "stratum10-s0", "stratum10-s1"]
    result = json.loads((tmp_path / "sweep-results.json").read_text())
    assert sorted(result["by_stratum"]) == ["1", "10"]
    base = result["baseline"]  # runs at 0.79 and 0.81: se = stdev / sqrt(2) = 0.01
    assert base["run_means"] == pytest.approx([0.79, 0.81]) and base["accuracy_se"] == pytest.approx(0.01)
    assert "| S10 | 80.0 ± 1.0 (se 1.0) |" in (tmp_path / "sweep.md").read_text()
    assert hosts.summary([{"accuracy": [0.5, 0.7], "real_kept": 1, "real_total": 1, "distill_s": 0,
                           "eval_s": 0}])["accuracy_se"] is None  # one run: no standard error


def test_bad_strata_are_errors(tmp_path: Path, fake: FakeHost, capsys: pytest.CaptureFixture[str]) -> None:
    assert _sweep(tmp_path, "--strata", "0,3") == 2
    assert "stratum must be in 1..10" in capsys.readouterr().err


def test_resume_runs_only_missing_points(tmp_path: Path, fake: FakeHost) -> None:
    assert _sweep(tmp_path, "--alphas", "0.5") == 0
    assert sorted(fake.ran) == ["baseline-s0", "baseline-s1", "loss-a0.5-s0", "loss-a0.5-s1", "random-a0.5-s0",
                                "random-a0.5-s1"]
    fake.ran.clear()
    assert _sweep(tmp_path, "--alphas", "0.5") == 0
    assert fake.ran == []
    assert _sweep(tmp_path, "--alphas", "0.5,0.7") == 0
    assert sorted(fake.ran) == ["loss-a0.7-s0", "loss-a0.7-s1", "random-a0.7-s0", "random-a0.7-s1"]


def test_an_interrupted_point_is_rerun_from_scratch(tmp_path: Path, fake: FakeHost) -> None:
    assert _sweep(tmp_path, "--alphas", "0.5") == 0
    (tmp_path / "points" / "loss-a0.5-s1.json").unlink()  # as if killed after its run folder was written
    fake.ran.clear()
    assert _sweep(tmp_path, "--alphas", "0.5") == 0
    assert fake.ran == ["loss-a0.5-s1"]


def test_other_settings_in_the_same_folder_are_refused(tmp_path: Path, fake: FakeHost,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    assert _sweep(tmp_path, "--alphas", "0.5") == 0
    assert _sweep(tmp_path, "--alphas", "0.5", "--ipc", "10") == 2
    assert "ipc: 1 -> 10" in capsys.readouterr().err


@pytest.mark.parametrize("flag, value, message", [("--alphas", "0.5,1.0", "--alphas must be in [0, 1), got 1.0"),
                                                  ("--criteria", "loss,stratum", "must name loss and/or random"),
                                                  ("--seeds", "a", "comma-separated integers")])
def test_bad_lists_are_errors(tmp_path: Path, fake: FakeHost, capsys: pytest.CaptureFixture[str], flag: str,
                              value: str, message: str) -> None:
    with pytest.raises(SystemExit) as exit_info:  # refused as the command line is parsed
        main(["sweep", flag, value, "--out", str(tmp_path)])
    assert exit_info.value.code == 2 and message in capsys.readouterr().err


def test_tiny_sweep_on_the_builtin_host_resumes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    flags = ["--host", "builtin", "--alphas", "0.5", "--seeds", "0", "--iterations", "2", "--width", "8",
             "--batch-real", "8", "--eval-models", "2", "--eval-epochs", "2", "--score-epochs", "1", "--jobs", "1",
             "--out", str(tmp_path)]
    assert main(["sweep", *flags]) == 0
    first = capsys.readouterr().out
    assert "max alpha within the baseline's std: loss" in first
    stored = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "points").iterdir()}
    assert sorted(stored) == ["baseline-s0.json", "loss-a0.5-s0.json", "random-a0.5-s0.json"]
    assert (tmp_path / "runs" / "loss-a0.5-s0" / "kept_indices.npy").is_file()
    assert main(["sweep", *flags]) == 0
    assert capsys.readouterr().out == first
    assert {p.name: p.stat().st_mtime_ns for p in (tmp_path / "points").iterdir()} == stored
