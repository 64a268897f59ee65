"""The facade patched upstreams call: inert without --bilp, levels 1 and 2 with it, the run record."""

from __future__ import annotations

import argparse
import re
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from bilp_plugin import hookimpl, runtime
from bilp_plugin.manager import get_manager
from bilp_plugin.method.matchstep import MatchStep

N_CLASSES, PER_CLASS = 3, 20


class ToyAdapter:
    """Stands in for an upstream's adapter: ITE norm = |sum of the row|."""

    calls = 0

    @hookimpl
    def meta_grad(self, step: MatchStep, method: str) -> torch.Tensor:
        ToyAdapter.calls += 1
        return step.real.reshape(len(step.real), -1).sum(1).abs()


@pytest.fixture(autouse=True)
def toy_adapter(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr("bilp_plugin.manager._manager", None)
    get_manager().register_adapter("toy", ToyAdapter())
    ToyAdapter.calls = 0
    yield


def parse(*flags: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--ipc", type=int, default=1)
    runtime.add_arguments(parser)
    return parser.parse_args(list(flags))


def toy_data() -> tuple[list[list[int]], torch.Tensor, torch.Tensor]:
    labels = torch.arange(N_CLASSES * PER_CLASS) % N_CLASSES
    images = torch.randn(len(labels), 1, 4, 4, generator=torch.Generator().manual_seed(0))
    indices_class = [torch.nonzero(labels == c).flatten().tolist() for c in range(N_CLASSES)]
    return indices_class, labels, images


def rng_state() -> tuple[bytes, str]:
    return torch.get_rng_state().numpy().tobytes(), repr(np.random.get_state())


def run_loop(args: argparse.Namespace, iterations: int = 4) -> list[torch.Tensor]:
    indices_class, labels, images = toy_data()
    indices_class = runtime.prune_real(args, indices_class, labels, upstream="toy", dataset="toy", images=images)
    drawn = []
    for it in range(iterations):
        for c in range(N_CLASSES):
            batch = images[indices_class[c][:16]]
            drawn.append(runtime.select_batch(args, c, batch, net=torch.nn.Identity(), syn=None, iteration=it))
    return drawn


def test_without_bilp_everything_is_untouched(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    args = parse()
    indices_class, labels, images = toy_data()
    before = rng_state()
    assert runtime.prune_real(args, indices_class, labels, upstream="toy") is indices_class
    batch = images[:8]
    assert runtime.select_batch(args, 0, batch, net=torch.nn.Identity(), syn=None) is batch
    pair = runtime.select_batch(args, 0, batch, net=torch.nn.Identity(), syn=None, labels=labels[:8])
    assert pair[0] is batch and pair[1] is not None
    assert rng_state() == before and list(tmp_path.iterdir()) == [] and runtime._session is None


def test_enabled_but_inert_changes_nothing(tmp_path: Path) -> None:
    baseline = run_loop(parse())
    before = rng_state()
    inert = run_loop(parse("--bilp", "--bilp-out", str(tmp_path / "run")))
    assert rng_state() == before and ToyAdapter.calls == 0
    assert all(torch.equal(a, b) for a, b in zip(baseline, inert))
    assert json.loads((tmp_path / "run" / "config.json").read_text())["bilp"]["beta"] == 0.0


def test_level1_random_restricts_every_draw(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = parse("--bilp", "--bilp-alpha", "0.5", "--bilp-criterion", "random", "--bilp-out", str(tmp_path))
    indices_class, labels, _ = toy_data()
    kept_lists = runtime.prune_real(args, indices_class, labels, upstream="toy", dataset="toy")
    assert "BiLP level 1: kept 30 of 60 real samples (random, alpha=0.5)" in capsys.readouterr().err
    kept = np.load(tmp_path / "kept_indices.npy")
    assert [len(k) for k in kept_lists] == [10, 10, 10]
    assert sorted(sum(kept_lists, [])) == kept.tolist()
    summary = json.loads((tmp_path / "level1.json").read_text())
    assert summary["kept_per_class"] == [10, 10, 10] and summary["criterion"] == "random"


def test_level1_scores_on_the_fly_without_touching_global_rng(tmp_path: Path) -> None:
    args = parse("--bilp", "--bilp-alpha", "0.25", "--bilp-score-epochs", "1", "--bilp-out", str(tmp_path))
    _, labels, images = toy_data()
    before = rng_state()
    rows = runtime.prune_real(args, images, labels, upstream="toy", dataset="toy", images=images)
    assert rng_state() == before
    assert rows.shape[0] == 45 and (tmp_path / "scores.npz").exists()
    assert json.loads((tmp_path / "level1.json").read_text())["scores_sha256"]


def test_level1_stratum_keeps_one_loss_decile_per_class(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = parse("--bilp", "--bilp-criterion", "stratum", "--bilp-stratum", "3", "--bilp-score-epochs", "1",
                 "--bilp-out", str(tmp_path))
    indices_class, labels, images = toy_data()
    kept_lists = runtime.prune_real(args, indices_class, labels, upstream="toy", dataset="toy", images=images)
    assert [len(k) for k in kept_lists] == [PER_CLASS // 10] * N_CLASSES
    assert "BiLP level 1: kept 6 of 60 real samples (stratum S3 of 10)" in capsys.readouterr().err


def test_level2_prunes_and_records(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = parse("--bilp", "--bilp-beta", "0.3", "--bilp-interval", "2", "--bilp-out", str(tmp_path))
    drawn = run_loop(args, iterations=4)
    assert ToyAdapter.calls == 2 * N_CLASSES  # draws 0 and 2 of each class select; 1 and 3 reuse
    assert all(len(batch) <= 16 for batch in drawn) and any(len(batch) < 16 for batch in drawn)
    runtime._session.record.close()  # type: ignore[union-attr]
    rows = [json.loads(line) for line in (tmp_path / "level2.jsonl").read_text().splitlines()]
    assert len(rows) == 6 and all(r["kept"] < r["batch"] == 16 for r in rows)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["selections"] == 6 and summary["draws"] == 12 and summary["ite_s"] > 0
    assert summary["rows"] == 6 * 16 and summary["kept_rows"] == sum(r["kept"] for r in rows)
    err = capsys.readouterr().err
    assert f"BiLP level 2: kept {summary['kept_rows']} of 96 real rows in 6 selections" in err
    assert f"BiLP run record written: {tmp_path}" in err


def test_bilp_never_reads_the_wall_clock(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    """The upstreams seed their generators from ``time.time`` and a reproducible launch replaces it with a clock
    that advances per call: both levels, the record and the progress lines must make no call to it."""
    calls: list[int] = []
    monkeypatch.setattr(time, "time", lambda: calls.append(1) or 0.0)
    run_loop(parse("--bilp", "--bilp-alpha", "0.5", "--bilp-criterion", "random", "--bilp-beta", "0.3",
                   "--bilp-interval", "2", "--bilp-out", str(tmp_path)))
    runtime._session.record.close()  # type: ignore[union-attr]
    assert calls == [] and "BiLP level 2: kept" in capsys.readouterr().err


def user_error(capsys: pytest.CaptureFixture[str], call: Callable[[], object]) -> str:
    """Inside an upstream, a BiLPError ends the run like argparse does: one line on stderr, exit status 2."""
    with pytest.raises(SystemExit) as exit_info:
        call()
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.splitlines()[-1].startswith("bilp: error: ") and "Traceback" not in err
    return err.splitlines()[-1]


def test_select_before_prune_is_a_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    args = parse("--bilp", "--bilp-beta", "0.2")
    err = user_error(capsys, lambda: runtime.select_batch(args, 0, torch.zeros(4, 2), net=torch.nn.Identity(),
                                                         syn=None))
    assert "before prune_real" in err


def test_an_existing_record_is_never_overwritten(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Refused when the upstream parses its flags, before it loads anything."""
    run_loop(parse("--bilp", "--bilp-out", str(tmp_path)))
    runtime._session.record.close()  # type: ignore[union-attr]  # the first process ends
    runtime._session = None
    with pytest.raises(SystemExit) as exit_info:
        parse("--bilp", "--bilp-out", str(tmp_path))
    assert exit_info.value.code == 2 and "already holds a run record" in capsys.readouterr().err


def test_level2_refuses_a_level1_subset_with_fewer_than_2_rows_in_a_class(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """For every upstream, before any matching step: the ITE needs at least 2 real rows per batch."""
    args = parse("--bilp", "--bilp-alpha", "0.95", "--bilp-criterion", "random", "--bilp-beta", "0.3",
                 "--bilp-out", str(tmp_path / "run"))
    line = user_error(capsys, lambda: run_loop(args))
    assert "leaves fewer than 2 samples in 3 class(es) (class 0: 1, class 1: 1, class 2: 1)" in line
    assert "level 2's ITE needs at least 2 real rows per batch" in line and ToyAdapter.calls == 0
    assert list(tmp_path.iterdir()) == []  # a refused run leaves no record


def test_a_refusal_after_the_record_began_removes_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``restrict_real`` runs once the record exists; its refusal removes what this run wrote, and only that."""
    (tmp_path / "mine.txt").write_text("kept")
    args = parse("--bilp", "--bilp-alpha", "0.5", "--bilp-criterion", "random", "--bilp-out", str(tmp_path / "a"))
    line = user_error(capsys, lambda: runtime.prune_real(args, {"not": "restrictable"}, torch.arange(6) % 3,
                                                         upstream="toy", dataset="toy"))
    assert "cannot restrict a dict" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine.txt"]


def test_unknown_upstream(capsys: pytest.CaptureFixture[str]) -> None:
    err = user_error(capsys, lambda: runtime.prune_real(parse("--bilp"), [], torch.zeros(0), upstream="nope"))
    assert "no adapter for upstream 'nope'" in err


@pytest.mark.parametrize("flags,message", [
    (["--bilp-alpha", "1.0"], r"--bilp-alpha must be in \[0, 1\), got 1.0"),
    (["--bilp-beta", "-0.1"], r"--bilp-beta must be in \[0, 1\)"),
    (["--bilp-stratum", "12"], "stratum must be in 1..10"),
    (["--bilp-criterion", "loudness"], "invalid choice"),
])
def test_bad_flags_exit_2_with_the_value(flags: list[str], message: str,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        parse("--bilp", *flags)
    assert exit_info.value.code == 2
    assert re.search(message, capsys.readouterr().err)
