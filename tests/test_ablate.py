"""``bilp ablate``: the five settings of the paper's Table 5 and the random-drop control, their flags, the table
(accuracy, level-1 kept rows, level-2 kept share, ITE share), resumability, and a tiny run on the built-in host."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from cli_exit import exit_status

from bilp_plugin.cli import main
from bilp_plugin.lab import hosts

ACCURACY = {"none": 0.70, "level1": 0.72, "small": 0.73, "large": 0.74, "both": 0.75, "random": 0.71}


class FakeHost:
    """Writes a result and a record summary per point; level 2 keeps 80 of 100 rows, ITE share 10%."""

    name = "fake"

    def __init__(self) -> None:
        self.flags: dict[str, list[str]] = {}

    def run(self, point: hosts.Point, run_dir: Path, scores: Path) -> dict[str, Any]:
        self.flags[point.name] = point.bilp_flags(scores)
        run_dir.mkdir(parents=True)
        rows = 100 if point.beta else 0
        (run_dir / "summary.json").write_text(json.dumps(
            {"selections": 1 if rows else 0, "rows": rows, "kept_rows": 80 if rows else 0, "ite_s": 0.1,
             "matching_loop_s": 1.0, "ite_share": 0.1 if rows else None}))
        setting = point.name.rsplit("-s", 1)[0]
        acc = ACCURACY[setting] + (0.01 if point.seed else -0.01)
        return {"accuracy": [acc], "real_kept": 50 if point.alpha else 100, "real_total": 100, "distill_s": 1.0,
                "eval_s": 1.0}


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> FakeHost:
    host = FakeHost()
    monkeypatch.setattr(hosts, "make_host", lambda args, workdir: host)
    monkeypatch.setattr(hosts, "score_file", lambda args, out: out / "scores.npz")
    return host


def _ablate(out: Path, *flags: str) -> int:
    """``bilp ablate``'s exit status (a flag refused at parse time exits through argparse)."""
    return exit_status(main, ["ablate", "--seeds", "0,1", "--jobs", "1", "--alpha", "0.3", "--beta", "0.2", "--out",
                              str(out), *flags])


def test_six_settings_their_flags_and_the_table(tmp_path: Path, fake: FakeHost,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    assert _ablate(tmp_path) == 0
    assert sorted(fake.flags) == sorted(f"{s}-s{i}" for s in ACCURACY for i in (0, 1))
    flags = {name: " ".join(f) for name, f in fake.flags.items()}
    assert "--bilp-alpha 0.0 --bilp-beta 0.0" in flags["none-s0"]
    assert "--bilp-alpha 0.3 --bilp-beta 0.0" in flags["level1-s1"] and "--bilp-side" not in flags["level1-s1"]
    assert "--bilp-beta 0.2" in flags["small-s0"] and "--bilp-side small" in flags["small-s0"]
    assert "--bilp-side large" in flags["large-s0"] and "--bilp-side" not in flags["both-s0"]
    assert "--bilp-ite" not in flags["both-s0"] and "--bilp-side" not in flags["random-s0"]
    assert "--bilp-alpha 0.3 --bilp-beta 0.2" in flags["random-s1"] and "--bilp-ite random" in flags["random-s1"]
    out = capsys.readouterr().out
    assert "| no pruning | ✗ | ✗ | ✗ | 70.0 ± 1.0 | 100/100 | - | - |" in out
    assert "| level 1 only | ✓ | ✗ | ✗ | 72.0 ± 1.0 | 50/100 | - | - |" in out
    assert "| level 1 + prune small ITE | ✓ | ✓ | ✗ | 73.0 ± 1.0 | 50/100 | 80.0% | 10.0% |" in out
    assert "| level 1 + prune both (BiLP) | ✓ | ✓ | ✓ | 75.0 ± 1.0 | 50/100 | 80.0% | 10.0% |" in out
    assert "| level 1 + drop beta at random (control) | ✓ | ✗ | ✗ | 71.0 ± 1.0 | 50/100 | 80.0% | 10.0% |" in out
    results = json.loads((tmp_path / "ablate-results.json").read_text())
    assert [r["setting"] for r in results["rows"]] == list(ACCURACY) and results["seeds"] == [0, 1]
    assert (tmp_path / "ablate.md").read_text().startswith("Table 5 ablation: DM on digits")


def test_resumes_and_refuses_other_rates(tmp_path: Path, fake: FakeHost, capsys: pytest.CaptureFixture[str]) -> None:
    assert _ablate(tmp_path) == 0
    fake.flags.clear()
    assert _ablate(tmp_path, "--seeds", "0,1,2") == 0
    assert sorted(fake.flags) == sorted(f"{s}-s2" for s in ACCURACY)
    assert _ablate(tmp_path, "--beta", "0.4") == 2
    assert "beta: 0.2 -> 0.4" in capsys.readouterr().err


@pytest.mark.parametrize("flags, message", [(["--alpha", "0"], "--alpha and --beta must be > 0"),
                                            (["--beta", "1"], "--beta must be in [0, 1), got 1.0"),
                                            (["--budget", "0"], "--budget 0: pass a positive number of seconds")])
def test_bad_rates_are_refused_before_any_work(tmp_path: Path, fake: FakeHost, capsys: pytest.CaptureFixture[str],
                                               flags: list[str], message: str) -> None:
    assert _ablate(tmp_path / "out", *flags) == 2
    assert message in capsys.readouterr().err and not (tmp_path / "out").exists()


def test_tiny_ablation_on_the_builtin_host(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["ablate", "--host", "builtin", "--seeds", "0", "--iterations", "2", "--width", "8", "--batch-real",
                 "8", "--eval-models", "1", "--eval-epochs", "2", "--score-epochs", "1", "--jobs", "1", "--out",
                 str(tmp_path)]) == 0
    rows = {r["setting"]: r for r in json.loads((tmp_path / "ablate-results.json").read_text())["rows"]}
    assert rows["none"]["real_kept"] == 1500 and rows["level1"]["real_kept"] == 753
    assert rows["none"]["level2_kept"] is None and rows["level1"]["level2_kept"] is None
    for setting in ("small", "large", "both"):
        assert 0 < rows[setting]["level2_kept"] < 1 and 0 < rows[setting]["ite_share"] < 1
        config = json.loads((tmp_path / "runs" / f"{setting}-s0" / "config.json").read_text())
        assert config["bilp"]["side"] == setting and config["bilp"]["beta"] == 0.2
    control = json.loads((tmp_path / "runs" / "random-s0" / "config.json").read_text())["bilp"]
    assert control["ite"] == "random" and control["side"] == "both" and 0 < rows["random"]["level2_kept"] < 1
    assert "| level 1 + prune large ITE | ✓ | ✗ | ✓ |" in capsys.readouterr().out
