"""Empirical-loss scoring: index mapping, modes, trials, determinism, the hook and ``bilp score``."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from bilp_plugin import hookimpl
from bilp_plugin.method import scorefile
from bilp_plugin.cli import main
from bilp_plugin.config import ScoringConfig
from bilp_plugin.lab.datasets import load_dataset
from bilp_plugin.method.realset import RealSet
from bilp_plugin.errors import BiLPError
from bilp_plugin.manager import PluginManager
from bilp_plugin.method.empirical_loss import build_model, empirical_loss

FAST = ScoringConfig(model_width=32, batch_size=32, epochs=2, progress=False)
TINY = ScoringConfig(model_width=8, batch_size=256, epochs=1, progress=False)


@pytest.fixture(scope="module")
def digits() -> RealSet:
    pytest.importorskip("sklearn", reason="the digits dataset needs scikit-learn")
    return load_dataset("digits")


def auroc(values: np.ndarray, positive: np.ndarray) -> float:
    """Probability that a random positive scores above a random negative (ties count half)."""
    pos, neg = values[positive][:, None], values[~positive][None, :]
    return float((pos > neg).mean() + 0.5 * (pos == neg).mean())


def flip_labels(dataset: RealSet, share: float, seed: int = 0) -> tuple[RealSet, np.ndarray]:
    """A copy of ``dataset`` with ``share`` of its labels moved to another class, and the flip mask."""
    generator = torch.Generator().manual_seed(seed)
    flipped = torch.randperm(len(dataset), generator=generator)[: int(share * len(dataset))]
    labels = dataset.labels.clone()
    shift = torch.randint(1, dataset.num_classes, (len(flipped),), generator=generator)
    labels[flipped] = (labels[flipped] + shift) % dataset.num_classes
    mask = np.zeros(len(dataset), dtype=bool)
    mask[flipped.numpy()] = True
    return replace(dataset, labels=labels), mask


@pytest.mark.parametrize("mode", ["mean", "final"])
def test_flipped_digits_get_the_largest_losses(digits: RealSet, mode: str) -> None:
    noisy, flipped = flip_labels(digits, 0.05)
    result = empirical_loss(noisy, replace(FAST, mode=mode))
    value = auroc(result.scores, flipped)
    assert value >= 0.9, f"AUROC of flipped labels by {mode} loss: {value:.3f}"


def test_flipped_mnist_subset_get_the_largest_losses() -> None:
    root = os.environ.get("BILP_DATA")
    if not root:
        pytest.skip("BILP_DATA not set: export BILP_DATA=DIR, a folder of torchvision layouts (docs/data.md)")
    subset = load_dataset("mnist", root).subset(torch.arange(3000))
    noisy, flipped = flip_labels(subset, 0.05)
    value = auroc(empirical_loss(noisy, FAST).scores, flipped)
    assert value >= 0.9, f"AUROC of flipped MNIST labels by mean loss: {value:.3f}"


def test_auroc_helper() -> None:
    values = np.array([0.1, 0.4, 0.35, 0.8, 0.8])
    positive = np.array([False, False, True, True, False])
    assert auroc(values, positive) == pytest.approx(3.5 / 6)  # sklearn's roc_auc_score agrees


def test_scores_belong_to_their_sample(digits: RealSet) -> None:
    """One full-batch epoch: the recorded loss is exactly the initial network's loss on each sample."""
    config = replace(TINY, batch_size=len(digits), seed=3)
    recorded = empirical_loss(digits, config).scores
    with torch.no_grad():
        model = build_model(digits, config, seed=3, device=torch.device("cpu"))
        expected = F.cross_entropy(model(digits.images), digits.labels, reduction="none").double().numpy()
    np.testing.assert_allclose(recorded, expected, rtol=1e-5)


def test_trials_average_their_seeds(digits: RealSet) -> None:
    both = empirical_loss(digits, replace(TINY, trials=2, seed=4)).scores
    first, second = (empirical_loss(digits, replace(TINY, seed=seed)).scores for seed in (4, 5))
    np.testing.assert_allclose(both, (first + second) / 2, rtol=1e-12)
    assert not np.array_equal(first, second)


def test_same_seed_same_scores_and_caller_rng_untouched(digits: RealSet) -> None:
    state = torch.get_rng_state()
    first = empirical_loss(digits, TINY).scores
    assert torch.equal(torch.get_rng_state(), state)
    assert np.array_equal(first, empirical_loss(digits, TINY).scores)
    assert not np.array_equal(first, empirical_loss(digits, replace(TINY, seed=1)).scores)


def test_final_mode_is_the_trained_network_in_eval(digits: RealSet) -> None:
    final = empirical_loss(digits, replace(TINY, mode="final"))
    mean = empirical_loss(digits, TINY)
    assert final.meta["mode"] == "final" and not np.allclose(final.scores, mean.scores)
    assert final.scores.mean() < mean.scores.mean()


def test_score_file_records_how_it_was_made(digits: RealSet) -> None:
    result = empirical_loss(digits, TINY)
    assert result.scores.dtype == np.float64 and result.scores.shape == (1500,)
    assert np.array_equal(result.labels, digits.labels.numpy())
    assert result.meta.items() >= scorefile.dataset_meta("digits", digits.labels.numpy()).items()
    expected = {"model": "convnet", "width": 8, "depth": 3, "epochs": 1, "trials": 1, "mode": "mean",
                "seed": 0, "lr": 0.01, "batch_size": 256, "device": "cpu"}
    assert result.meta.items() >= expected.items() and result.meta["elapsed_s"] > 0


@pytest.mark.parametrize("change, message", [({"mode": "max"}, "mode must be one of mean, final, got 'max'"),
                                             ({"epochs": 0}, "epochs must be >= 1, got 0"),
                                             ({"lr": 0.0}, "lr must be a finite number > 0"),
                                             ({"device": "gpu7"}, "unknown device 'gpu7'")])
def test_bad_recipe_is_an_error(digits: RealSet, change: dict, message: str) -> None:
    with pytest.raises(BiLPError, match=message):
        empirical_loss(digits, replace(TINY, **change))


def test_progress_bar_shows_loss_and_rate(digits: RealSet, capsys: pytest.CaptureFixture[str]) -> None:
    empirical_loss(digits, replace(TINY, progress=True))
    err = capsys.readouterr().err
    assert "scoring digits" in err and "loss=" in err and "sample/s" in err


def test_the_estimated_time_is_said_after_the_first_batches(digits: RealSet, capsys: pytest.CaptureFixture[str],
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    from bilp_plugin.method import empirical_loss as scorer

    few = replace(digits, images=digits.images[:160], labels=digits.labels[:160])
    monkeypatch.setattr(scorer, "ESTIMATE_MIN_S", 0.0)
    empirical_loss(few, replace(TINY, batch_size=8, epochs=2, trials=2))
    lines = [line for line in capsys.readouterr().err.splitlines() if "in all" in line]
    assert lines == [lines[0]] and lines[0].startswith("bilp: scoring 160 samples x 2 epochs x 2 trial(s) on cpu: "
                                                       "about ") and "first 11 batches" in lines[0]
    monkeypatch.setattr(scorer, "ESTIMATE_MIN_S", 1e9)  # a short run says nothing
    empirical_loss(few, replace(TINY, batch_size=8))
    assert "in all" not in capsys.readouterr().err


def test_tryfirst_plugin_overrides_the_scorer(digits: RealSet) -> None:
    class Constant:
        @hookimpl(tryfirst=True)
        def score_samples(self, dataset: RealSet, config: ScoringConfig) -> scorefile.ScoreFile:
            return scorefile.ScoreFile(np.full(len(dataset), 7.0), dataset.labels.numpy(), {"model": "constant"})

    manager = PluginManager()
    manager.register(Constant(), name="constant")
    result = manager.score_samples(digits, TINY)
    assert result.meta == {"model": "constant"} and (result.scores == 7.0).all()


def test_declining_plugin_and_score_file_import(digits: RealSet, tmp_path: Path) -> None:
    class Declines:
        @hookimpl(tryfirst=True)
        def score_samples(self, dataset: RealSet, config: ScoringConfig) -> None:
            return None

    manager = PluginManager()
    manager.register(Declines(), name="declines")
    made = manager.score_samples(digits, TINY)
    assert made.meta["model"] == "convnet"
    scorefile.save(tmp_path / "s.npz", made)
    imported = manager.score_samples(digits, replace(TINY, scores_path=str(tmp_path / "s.npz")))
    assert imported.path == str(tmp_path / "s.npz") and np.array_equal(imported.scores, made.scores)


def score_argv(out: Path, *extra: str) -> list[str]:
    return ["score", "--dataset", "digits", "--epochs", "1", "--width", "8", "--device", "cpu",
            "--out", str(out), *extra]


def test_bilp_score_writes_a_loadable_file(digits: RealSet, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "digits.npz"
    assert main(score_argv(out, "--seed", "2", "--mode", "final")) == 0
    printed = capsys.readouterr().out.strip().splitlines()
    assert len(printed) == 1 and printed[0].startswith(f"wrote {out}: 1500 scores of digits")
    loaded = scorefile.load(out)
    scorefile.check_matches(loaded, digits.labels, "digits")
    expected = {"dataset": "digits", "n": 1500, "epochs": 1, "width": 8, "depth": 3, "mode": "final",
                "seed": 2, "trials": 1}
    assert {key: loaded.meta[key] for key in expected} == expected
    assert np.array_equal(loaded.scores, empirical_loss(digits, replace(TINY, seed=2, mode="final")).scores)


def test_bilp_score_refuses_to_overwrite_before_training(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "digits.npz"
    out.write_bytes(b"keep me")

    def no_loading(*args: object, **kwargs: object) -> None:
        raise AssertionError("loaded the dataset before refusing")

    monkeypatch.setattr("bilp_plugin.commands.score.load_dataset", no_loading)
    assert main(score_argv(out)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"bilp: error: --out {out} exists: pass --force to overwrite it"]
    assert out.read_bytes() == b"keep me"


def test_bilp_score_force_overwrites(tmp_path: Path) -> None:
    out = tmp_path / "digits.npz"
    out.write_bytes(b"old")
    assert main(score_argv(out, "--force")) == 0
    assert scorefile.load(out).meta["dataset"] == "digits"


@pytest.mark.parametrize("argv, message", [
    (["--out", "x.json"], "--out must name a .npz file, got x.json"),
    (["--model", "resnet18"], "--model must be convnet"),
])
def test_bilp_score_bad_flags(tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str],
                              message: str) -> None:
    assert main(score_argv(tmp_path / "s.npz", *argv)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]


def test_bilp_score_missing_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("BILP_DATA", raising=False)
    argv = ["score", "--dataset", "mnist", "--device", "cpu", "--out", str(tmp_path / "m.npz")]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--data-root DIR" in err[0] and "BILP_DATA" in err[0]
    assert not (tmp_path / "m.npz").exists()


def test_bilp_score_unknown_dataset(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["score", "--dataset", "imagenet", "--out", str(tmp_path / "s.npz")])
    assert exit_.value.code == 2 and "invalid choice: 'imagenet'" in capsys.readouterr().err
