"""The point runner demo, sweep and ablate share (``lab/resumable.py``) and the progress lines (``lab/progress.py``,
``lab/launched.py``'s streamed launch): stored points, the budget, the record totals, one line per interval."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from bilp_plugin.errors import BiLPError
from bilp_plugin.lab import hosts, launched, progress
from bilp_plugin.lab.resumable import INCOMPLETE, PointRunner, check_settings


class Clock:
    """A clock the test moves."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class SlowHost:
    """Each point takes ``seconds`` on ``clock`` and writes a result and a record summary with level-2 totals."""

    name = "slow"

    def __init__(self, clock: Clock, seconds: float) -> None:
        self.clock, self.seconds, self.ran = clock, seconds, []

    def run(self, point: hosts.Point, run_dir: Path, scores: Path) -> dict[str, Any]:
        self.ran.append(point.name)
        self.clock.now += self.seconds
        run_dir.mkdir(parents=True)
        rows = 100 if point.beta else 0
        (run_dir / "summary.json").write_text(json.dumps({"selections": 1, "rows": rows, "kept_rows": rows // 2,
                                                          "ite_s": 1.0, "matching_loop_s": 4.0, "ite_share": 0.25}))
        return {"accuracy": [0.5 + point.seed / 10], "real_kept": 10, "real_total": 20, "distill_s": 4.0,
                "eval_s": 1.0}


POINTS = [hosts.Point(f"p{i}-s{s}", beta=0.2 if i else 0.0, seed=s) for i in range(3) for s in (0, 1)]


def test_a_budget_stops_before_a_point_that_would_not_fit_and_a_rerun_continues(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    clock = Clock()
    host = SlowHost(clock, 10.0)
    runner = PointRunner(host, tmp_path, tmp_path / "s.npz", "test", budget_s=25, clock=clock)
    results = runner.run(POINTS)
    assert host.ran == ["p0-s0", "p0-s1"] and sorted(results) == ["p0-s0", "p0-s1"]  # a third would end at 30 s
    assert runner.stopped(POINTS) == INCOMPLETE
    err = capsys.readouterr().err
    assert "with 4 of 6 points left: rerun the same command to continue" in err
    assert "p0-s1 finished; 2/6 points done; about 40s left (mean 10s per point, 1 at a time)" in err
    host.ran.clear()
    again = PointRunner(host, tmp_path, tmp_path / "s.npz", "test", clock=clock)
    results = again.run(POINTS)
    assert host.ran == [p.name for p in POINTS[2:]] and not again.missing(POINTS)
    assert "6 points on the slow host: 2 stored, 4 to run" in capsys.readouterr().err


def test_stored_points_carry_their_record_totals_into_the_summary(tmp_path: Path) -> None:
    clock = Clock()
    results = PointRunner(SlowHost(clock, 1.0), tmp_path, tmp_path / "s.npz", "test", clock=clock).run(POINTS)
    stored = json.loads((tmp_path / "points" / "p1-s0.json").read_text())
    assert stored["record"]["kept_rows"] == 50 and stored["seconds"] == 1.0 and stored["point"]["beta"] == 0.2
    level2 = hosts.summary([results["p1-s0"], results["p1-s1"]])
    assert level2["level2_kept"] == 0.5 and level2["ite_share"] == 0.25
    assert level2["accuracy_mean"] == pytest.approx(0.55) and level2["accuracy_std"] == pytest.approx(0.05)
    assert hosts.summary([results["p0-s0"]])["level2_kept"] is None  # no level 2: no rows


def test_settings_of_another_run_are_refused(tmp_path: Path) -> None:
    check_settings(tmp_path, "x.json", {"host": "dc", "ipc": 1})
    check_settings(tmp_path, "x.json", {"host": "dc", "ipc": 1})
    with pytest.raises(BiLPError, match="other settings \\(ipc: 1 -> 10\\)"):
        check_settings(tmp_path, "x.json", {"host": "dc", "ipc": 10})


def test_a_point_prints_one_line_per_interval_with_the_time_left() -> None:
    clock, lines = Clock(), []
    bar = progress.PointProgress("p", every_s=30, clock=clock, write=lines.append)
    for it in range(0, 101, 10):
        clock.now = it * 0.6  # 6 s per 10 iterations
        bar.step("distill", it, 100)
    clock.now = 90
    bar.step("evaluate", 1, 3)
    assert lines == ["p: distill 50/100, 30s elapsed, about 30s left in distill",
                     "p: distill 100/100, 1m00s elapsed, about 0s left in distill",
                     "p: evaluate 1/3, 1m30s elapsed"]


def test_a_launch_is_streamed_to_its_log_and_read_for_progress(tmp_path: Path) -> None:
    script = tmp_path / "upstream.py"
    script.write_text("import sys\nprint('total 5 iterations')\nfor i in range(5):\n    print(f'iter = {i:04d}')\n"
                      "print('Evaluation')\nprint('Evaluate_00: test acc = 0.5')\nsys.exit(int(sys.argv[1]))\n")
    lines: list[str] = []
    bar = progress.PointProgress("p", every_s=0, write=lines.append)
    signals = [launched.Signal(r"total (\d+) iterations", "distill", sets_total=True),
               launched.Signal(r"iter = (\d+)", "distill", offset=1),
               launched.Signal(r"^Evaluation$", "evaluate", 2),
               launched.Signal(r"Evaluate_(\d+):", "evaluate", 2, offset=1)]
    watcher = launched.stream(launched.Launch([sys.executable, str(script), "0"], tmp_path / "cwd", signals),
                              tmp_path / "log.txt", bar)
    assert [line.split(",")[0] for line in lines] == [*(f"p: distill {i}/5" for i in range(1, 6)), "p: evaluate 0/2",
                                                      "p: evaluate 1/2"]
    assert set(watcher.spans) == {"distill", "evaluate"} and 0 <= watcher.seconds("evaluate") < 60
    assert "iter = 0004" in (tmp_path / "log.txt").read_text()
    with pytest.raises(BiLPError, match="the patched upstream failed \\(3\\); its log is .*\n.*total 5"):
        launched.stream(launched.Launch([sys.executable, str(script), "3"], tmp_path, []), tmp_path / "log.txt", bar)


def test_eta_line_and_durations() -> None:
    assert progress.duration(75) == "1m15s" and progress.duration(4000) == "1h06m"
    assert progress.eta_line(3, 3, 1, [5.0], 2) == "3/3 points done (1 stored earlier)"
    assert progress.eta_line(2, 10, 0, [60.0, 120.0], 2) == ("2/10 points done; about 6m00s left (mean 1m30s per "
                                                             "point, 2 at a time)")
