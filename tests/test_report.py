"""``bilp report``: records in, Markdown and PNGs out; every plot has data and labelled axes, and a plot whose
data is absent is skipped with a line saying so."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import matplotlib.image
import numpy as np
import pytest

from bilp_plugin.lab import plots
from bilp_plugin.method import level1, scorefile
from bilp_plugin.cli import main
from bilp_plugin.lab.datasets import load_dataset
from bilp_plugin.lab.report import find_runs, write_report

N_SELECT, BATCH = 6, 32


def _record(folder: Path, *, criterion: str = "loss", alpha: float = 0.0, beta: float = 0.0,
            stratum: int | None = None, accuracy: list[float] | None = None, score_path: Path | None = None,
            method: str = "DM") -> Path:
    """A run record as the runtime writes it (config, level 1, level 2, summary) plus the host's result.json."""
    folder.mkdir(parents=True)
    bilp = {"alpha": alpha, "beta": beta, "criterion": criterion, "stratum": stratum, "seed": 0}
    (folder / "config.json").write_text(json.dumps(
        {"bilp": bilp, "upstream": "builtin", "upstream_args": {"method": method, "dataset": "digits"}}))
    if score_path is not None and (alpha > 0 or stratum):
        score_file = scorefile.load(score_path)
        kept = level1.select(score_file.scores, score_file.labels, alpha, criterion, 0, stratum)
        np.save(folder / "kept_indices.npy", kept)
        (folder / "level1.json").write_text(json.dumps(level1.summary(
            kept, score_file.labels, scores=str(score_path), scores_sha256=score_file.sha256, alpha=alpha,
            criterion=criterion)))
    summary: dict[str, Any] = {"selections": 0, "ite_s": 0.0, "matching_loop_s": 2.0, "ite_share": 0.0}
    if beta > 0:
        rows = [{"experiment": 0, "iteration": 10 * i, "class": c, "draw": i, "batch": BATCH, "kept": BATCH - 4 - c,
                 "mu": 1.0 + 0.1 * i, "sigma": 0.2, "low": 0.8, "high": 1.4 + 0.1 * i, "ite_s": 0.01}
                for i in range(N_SELECT) for c in range(3)]
        (folder / "level2.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        summary = {"selections": len(rows), "ite_s": 0.18, "matching_loop_s": 0.9, "ite_share": 0.2}
    (folder / "summary.json").write_text(json.dumps(summary))
    if accuracy is not None:
        (folder / "result.json").write_text(json.dumps({"accuracy": accuracy, "method": method}))
    return folder


@pytest.fixture(scope="module")
def score_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    digits = load_dataset("digits")
    rng = np.random.default_rng(0)
    path = tmp_path_factory.mktemp("scores") / "scores.npz"
    scorefile.save(path, scorefile.ScoreFile(rng.gamma(2.0, 0.5, len(digits)), digits.labels.numpy(),
                                       scorefile.dataset_meta("digits", digits.labels.numpy())))
    return path


@pytest.fixture
def figures(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Every figure the report saves, inspected before it is closed."""
    seen: list[Any] = []
    save = plots._save

    def spy(fig: Any, out: Path, name: str) -> str:
        seen.append(fig)
        return save(fig, out, name)

    monkeypatch.setattr(plots, "_save", spy)
    return seen


def test_every_section_plots_when_its_data_exists(tmp_path: Path, score_path: Path, figures: list[Any]) -> None:
    runs = tmp_path / "runs"
    _record(runs / "baseline", accuracy=[0.80, 0.82], score_path=score_path)
    _record(runs / "level12", alpha=0.5, beta=0.2, accuracy=[0.78], score_path=score_path)
    _record(runs / "loss-a0.5", alpha=0.5, accuracy=[0.81], score_path=score_path)
    _record(runs / "random-a0.5", criterion="random", alpha=0.5, accuracy=[0.70], score_path=score_path)
    for k in range(1, 11):
        _record(runs / f"s{k:02d}", criterion="stratum", stratum=k, accuracy=[0.5 + 0.03 * k, 0.52 + 0.03 * k],
                score_path=score_path)
    assert main(["report", str(runs), "--out", str(tmp_path / "report")]) == 0
    md = (tmp_path / "report" / "report.md").read_text()
    assert "Skipped" not in md
    pngs = sorted(p.name for p in (tmp_path / "report").glob("*.png"))
    assert pngs == ["alpha-curve.png", "ite-share.png", "level2.png", "scores-alpha0.5-1.png",
                    "strata-accuracy.png", "strata-diversity.png"]
    for name in pngs:
        assert f"({name})" in md
        assert matplotlib.image.imread(tmp_path / "report" / name).shape[2] in (3, 4)
    for fig in figures:
        for ax in fig.axes:
            assert ax.get_xlabel() and ax.get_ylabel(), f"unlabelled axes in {fig.texts or ax.get_title()}"
            assert ax.lines or ax.patches or ax.collections, f"empty axes: {ax.get_title()}"
    assert "| level12 | builtin | DM | loss | 0.5 | 0.2 | 753/1500 | 78.0 ± 0.0 | 20% |" in md
    assert "`level12` 84.4%" in md  # kept share: (28 + 27 + 26) / 96 per iteration


def test_missing_data_skips_each_plot_with_a_reason(tmp_path: Path, figures: list[Any]) -> None:
    _record(tmp_path / "runs" / "baseline")
    report = write_report([tmp_path / "runs"], tmp_path / "report")
    md = report.read_text()
    assert md.count("Skipped: ") == len(plots.SECTIONS) and not list((tmp_path / "report").glob("*.png"))
    assert "needs runs of at least two strata" in md and "no run computed an ITE" in md and not figures


def test_stratified_curve_is_the_mean_accuracy_per_stratum(tmp_path: Path, score_path: Path,
                                                          figures: list[Any]) -> None:
    for k, accs in ((1, [0.2, 0.4]), (10, [0.9])):
        _record(tmp_path / f"s{k}", criterion="stratum", stratum=k, accuracy=accs, score_path=score_path)
    plots.stratified_curve(find_runs([tmp_path]), tmp_path)
    (line,) = [c for c in figures[0].axes[0].lines if c.get_marker() == "o"]
    assert list(line.get_xdata()) == [1, 10] and np.allclose(line.get_ydata(), [30.0, 90.0])


def test_skewed_scores_get_log_bins_and_a_share_above_100_percent_stays_labelled(figures: list[Any],
                                                                                 tmp_path: Path) -> None:
    labels = np.repeat(np.arange(2), 500)
    rng = np.random.default_rng(0)  # class 0 as on MNIST: most losses near 0, a tail over decades
    scores = np.concatenate([np.exp(rng.normal(-6, 2, 500)), np.linspace(0.5, 2.5, 500)])
    fig = plots._histograms(scores, labels, np.arange(0, 1000, 2), 0.5)
    skewed, even = fig.axes[:2]
    assert skewed.get_xscale() == "log" and "log scale" in skewed.get_xlabel()
    assert even.get_xscale() == "linear" and max(p.get_height() for p in skewed.patches) < 150
    folder = _record(tmp_path / "runs" / "slow", alpha=0.5, beta=0.2)
    summary = json.loads((folder / "summary.json").read_text())
    (folder / "summary.json").write_text(json.dumps({**summary, "ite_s": 1.5, "matching_loop_s": 1.0,
                                                     "ite_share": 1.5}))
    plots.ite_share(find_runs([tmp_path / "runs"]), tmp_path)
    ax = figures[-1].axes[0]
    assert ax.get_xlim()[1] > 150 and "150.0%" in [text.get_text() for text in ax.texts]


def test_level2_series_per_iteration() -> None:
    rows = [{"iteration": it, "batch": 10, "kept": k, "mu": m, "sigma": 1.0, "low": 0.0, "high": 2.0}
            for it, k, m in ((0, 8, 1.0), (0, 6, 1.5), (5, 10, 2.0))]
    x, keep, mu, *_ = plots._level2_series(rows)
    assert list(x) == [0, 5] and np.allclose(keep, [70.0, 100.0]) and np.allclose(mu, [1.5, 2.0])


def test_a_folder_without_records_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", str(tmp_path)]) == 2
    assert "no run record" in capsys.readouterr().err
