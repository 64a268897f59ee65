"""Bad input, tried as a hostile user would, against ``bilp score/prune/report/sweep/demo``, ``bilp-apply`` and the
patched DatasetCondensation: every case ends with exit status 2 and exactly one ``error:`` line naming the value
(no traceback), and leaves every file as it was (the working folder is hashed before and after). Then faults: a
kill between the writes of ``bilp prune`` and of a run record leaves no partial file under a final name, and the
rerun works.

Nothing is trained: the refusals come before any work (the few cases that the code as it was refused only after
training are given tiny settings). The patched-upstream cases run through ``bilp launch``, all at once, on a
small MNIST subset made from ``BILP_DATA``, and skip visibly without it or without the submodule.
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib
import io
import json
import os
import pickle
import signal
import subprocess
import sys
import textwrap
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from cli_exit import exit_status

from bilp_plugin import cli
from bilp_plugin.lab.datasets import load_dataset
from bilp_plugin.method import scorefile

ROOT = Path(__file__).resolve().parent.parent
N_DIGITS = 1500


# ------------------------------------------------------------------------------------------------- inputs
def npz(path: Path, scores: object, labels: object, meta: object) -> None:
    """A score file as given, unchecked (``bilp score`` would never write most of these)."""
    np.savez(path, scores=np.asarray(scores), labels=np.asarray(labels), meta=np.array(json.dumps(meta)))


@pytest.fixture(scope="module")
def digits_labels() -> np.ndarray:
    return load_dataset("digits").labels.numpy()


def good_scores(path: Path, labels: np.ndarray) -> Path:
    scores = np.random.default_rng(0).random(len(labels))
    scorefile.save(path, scorefile.ScoreFile(scores, labels, scorefile.dataset_meta("digits", labels)))
    return path


def altered(path: Path, digits: np.ndarray, **change: object) -> None:
    """A digits score file with one part changed: ``labels``, ``meta`` (merged), or ``scores``."""
    meta = {**scorefile.dataset_meta("digits", digits), **change.get("meta", {})}  # type: ignore[dict-item]
    npz(path, change.get("scores", np.linspace(0, 1, len(digits))), change.get("labels", digits), meta)


def consistent(path: Path, labels: np.ndarray) -> None:
    """A score file whose meta matches its (odd) labels: only the labels themselves are wrong."""
    meta = {"format": scorefile.FORMAT, "dataset": "digits", "n": len(labels),
            "labels_sha256": scorefile.labels_sha256(labels)}
    npz(path, np.linspace(0, 1, len(labels)), labels, meta)


def npy_bytes(array: np.ndarray, **save: bool) -> bytes:
    data = io.BytesIO()
    np.save(data, array, **save)
    return data.getvalue()


def record(folder: Path, **damage: object) -> Path:
    """A complete run record (a level-1 run with level 2 and a result), with ``damage``: file name -> bytes."""
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"bilp": {"criterion": "random", "alpha": 0.5, "beta": 0.2,
                                                             "stratum": None},
                                                    "upstream": "builtin", "upstream_args": {"method": "DM"}}))
    (folder / "level1.json").write_text(json.dumps({"kept": 3, "n": 6, "criterion": "random"}))
    np.save(folder / "kept_indices.npy", np.array([0, 2, 4]))
    rows = [{"iteration": i, "class": 0, "batch": 4, "kept": 3, "mu": 1.0, "sigma": 0.5, "low": 0.2, "high": 1.8,
             "ite_s": 0.01} for i in range(3)]
    (folder / "level2.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (folder / "summary.json").write_text(json.dumps({"selections": 3, "ite_s": 0.03, "matching_loop_s": 1.0,
                                                     "ite_share": 0.03}))
    (folder / "result.json").write_text(json.dumps({"accuracy": [0.5, 0.6], "method": "DM"}))
    for name, data in damage.items():
        target = folder / name.replace("__", ".")
        target.write_bytes(data if isinstance(data, bytes) else str(data).encode())
    return folder


def truncated(path: Path, keep: int = 20) -> bytes:
    return path.read_bytes()[:keep]


def idx(path: Path, array: np.ndarray) -> None:
    """An MNIST idx file (uint8) of ``array``."""
    header = bytes([0, 0, 8, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def fake_mnist(root: Path, n: int = 40, truncate: bool = False) -> Path:
    """An MNIST layout of ``n`` blank images (its training images cut short with ``truncate``)."""
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for prefix in ("train", "t10k"):
        idx(raw / f"{prefix}-images-idx3-ubyte", np.zeros((n, 28, 28)))
        idx(raw / f"{prefix}-labels-idx1-ubyte", np.arange(n) % 10)
    if truncate:
        images = raw / "train-images-idx3-ubyte"
        images.write_bytes(images.read_bytes()[:1000])
    return root


def fake_cifar(root: Path) -> Path:
    """A CIFAR-10 layout of blank batches, one of them cut short."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {"data": np.zeros((10, 3072), dtype=np.uint8), "labels": list(range(10))}
        (folder / name).write_bytes(pickle.dumps(batch))
    (folder / "data_batch_3").write_bytes((folder / "data_batch_3").read_bytes()[:100])
    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": [str(i) for i in range(10)]}))
    return root


def make_clone(at: Path) -> Path:
    from upstreams import clone

    return clone("dc", at)


HELD: list[int] = []
"""Locks a case holds until its end."""


def hold_apply_lock(clone: Path) -> None:
    """What a concurrent bilp-apply holds while it changes the checkout."""
    fd = os.open(clone / ".git", os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    HELD.append(fd)


# -------------------------------------------------------------------------------------------------- cases
@dataclass
class Case:
    """``argv`` of ``command`` (``bilp`` or ``bilp-apply``), run in a fresh folder prepared by ``setup`` (given the
    folder and the digits labels), with ``env``; refused with one line holding ``message``."""

    name: str
    command: str
    argv: list[str]
    message: str
    setup: Callable[[Path, np.ndarray], object] = lambda here, labels: None
    env: dict[str, str] = field(default_factory=dict)


def _p(name: str, argv: list[str], message: str, setup: Callable[[Path, np.ndarray], object] = lambda h, y: None,
       **env: str) -> Case:
    return Case(name, "bilp", argv, message, setup, env)


PRUNE = ["prune", "--alpha", "0.5", "--out", "kept.npy"]
SCORE = ["score", "--dataset", "digits", "--epochs", "1", "--width", "4", "--out", "s.npz"]
HOST = ["--host", "builtin", "--iterations", "0", "--eval-models", "1", "--eval-epochs", "1", "--width", "4",
        "--score-epochs", "1", "--jobs", "1", "--seeds", "0", "--no-strata"]
SWEEP = ["sweep", *HOST[:-1], "--alphas", "0.5", "--criteria", "loss"]
DEMO = ["demo", "--dataset", "digits", *HOST]

CASES: list[Case] = [
    # bilp prune: score files that are not what they say
    _p("prune-meta-is-a-list", [*PRUNE, "--scores", "s.npz"], "its meta is not a bilp-scores/1 record",
       lambda h, y: npz(h / "s.npz", np.zeros(len(y)), y, [1, 2])),
    _p("prune-npy-renamed-npz", [*PRUNE, "--scores", "s.npz"], "not an .npz archive",
       lambda h, y: (h / "s.npz").write_bytes(npy_bytes(np.zeros(5)))),
    _p("prune-label-minus-1", [*PRUNE, "--scores", "s.npz"], "label -1 is not a class index",
       lambda h, y: consistent(h / "s.npz", np.r_[y[:-1], -1])),
    _p("prune-label-10**9-no-hang", [*PRUNE, "--scores", "s.npz"], "label 1000000000 is not a class index",
       lambda h, y: consistent(h / "s.npz", np.r_[y[:-1], 10**9])),
    _p("prune-float-labels", [*PRUNE, "--scores", "s.npz"], "labels must be integers",
       lambda h, y: altered(h / "s.npz", y, labels=y + 0.7)),
    _p("prune-meta-n-disagrees", [*PRUNE, "--scores", "s.npz"], "its meta says n = 1400",
       lambda h, y: altered(h / "s.npz", y, meta={"n": 1400})),
    _p("prune-labels-sha-disagrees", [*PRUNE, "--scores", "s.npz"], "do not match the labels_sha256",
       lambda h, y: altered(h / "s.npz", y, labels=np.roll(y, 1))),
    _p("prune-boolean-scores-npz", [*PRUNE, "--scores", "s.npz"], "scores must be numbers",
       lambda h, y: altered(h / "s.npz", y, scores=np.ones(len(y), dtype=bool))),
    _p("prune-json-numeric-strings", [*PRUNE, "--scores", "s.json", "--dataset", "digits"], "'0.5', not a number",
       lambda h, y: (h / "s.json").write_text(json.dumps([0.1] * (N_DIGITS - 1) + ["0.5"]))),
    _p("prune-json-booleans", [*PRUNE, "--scores", "s.json", "--dataset", "digits"], "True, not a number",
       lambda h, y: (h / "s.json").write_text(json.dumps([True] + [0.1] * (N_DIGITS - 1)))),
    _p("prune-json-not-a-list", [*PRUNE, "--scores", "s.json", "--dataset", "digits"], "got a JSON dict",
       lambda h, y: (h / "s.json").write_text('{"scores": [1]}')),
    _p("prune-empty-json-list", [*PRUNE, "--scores", "s.json", "--dataset", "digits"], "got an empty list",
       lambda h, y: (h / "s.json").write_text("[]")),
    _p("prune-empty-npz", [*PRUNE, "--scores", "s.npz"], "it holds no scores",
       lambda h, y: altered(h / "s.npz", y[:0], scores=np.zeros(0))),
    _p("prune-empty-scores-flag", [*PRUNE, "--scores", ""], "names no file"),
    _p("prune-truncated-npz", [*PRUNE, "--scores", "s.npz"], "cannot read score file",
       lambda h, y: (h / "s.npz").write_bytes(truncated(good_scores(h / "g.npz", y), 300))),
    _p("prune-nan-score", [*PRUNE, "--scores", "s.npz"], "NaN or infinite",
       lambda h, y: altered(h / "s.npz", y, scores=np.r_[np.zeros(len(y) - 1), np.nan])),
    _p("prune-missing-score-file", [*PRUNE, "--scores", "none.npz"], "does not exist"),
    _p("prune-other-dataset", [*PRUNE, "--scores", "s.json", "--dataset", "digits"], "has 1400 scores",
       lambda h, y: (h / "s.json").write_text(json.dumps([0.5] * 1400))),
    # bilp prune: flags
    _p("prune-loss-with-stratum", [*PRUNE, "--scores", "g.npz", "--stratum", "3"],
       "--stratum needs --criterion stratum", lambda h, y: good_scores(h / "g.npz", y)),
    _p("prune-stratum-without-k", [*PRUNE, "--scores", "g.npz", "--criterion", "stratum"],
       "--criterion stratum needs --stratum K", lambda h, y: good_scores(h / "g.npz", y)),
    _p("prune-random-alone", [*PRUNE, "--criterion", "random"], "--criterion random needs the labels"),
    _p("prune-seed-minus-1", [*PRUNE, "--criterion", "random", "--dataset", "digits", "--seed", "-1"],
       "--seed must be in 0..4294967295, got -1"),
    _p("prune-alpha-1", [*PRUNE[:2], "1", *PRUNE[3:], "--scores", "g.npz"], "--alpha must be in [0, 1), got 1.0"),
    _p("prune-alpha-nan", [*PRUNE[:2], "nan", *PRUNE[3:], "--scores", "g.npz"], "--alpha must be in [0, 1)"),
    _p("prune-stratum-11", [*PRUNE, "--criterion", "stratum", "--stratum", "11"], "stratum must be in 1..10"),
    _p("prune-out-not-npy", ["prune", "--alpha", "0.5", "--out", "kept.txt", "--scores", "g.npz"],
       "--out must name a .npy file", lambda h, y: good_scores(h / "g.npz", y)),
    _p("prune-out-under-a-file", ["prune", "--alpha", "0.5", "--out", "afile/kept.npy", "--scores", "g.npz"],
       "afile is a file, not a folder",
       lambda h, y: (good_scores(h / "g.npz", y), (h / "afile").write_text("x"))),
    _p("prune-out-is-a-folder", [*PRUNE, "--scores", "g.npz", "--force"], "--out kept.npy is a folder",
       lambda h, y: (good_scores(h / "g.npz", y), (h / "kept.npy").mkdir())),
    _p("prune-out-exists", [*PRUNE, "--scores", "g.npz"], "kept.npy exists: pass --force",
       lambda h, y: (good_scores(h / "g.npz", y), (h / "kept.npy").write_text("mine"))),
    # bilp score
    _p("score-lr-nan-before-training", [*SCORE, "--lr", "nan"], "--lr must be a finite number > 0, got nan"),
    _p("score-out-under-a-file", ["score", "--dataset", "digits", "--epochs", "1", "--width", "4", "--out",
                                  "afile/s.npz"], "afile is a file, not a folder",
       lambda h, y: (h / "afile").write_text("x")),
    _p("score-world-size-abc", SCORE, "WORLD_SIZE='abc' is not a count", WORLD_SIZE="abc"),
    _p("score-seed-minus-1", [*SCORE, "--seed", "-1"], "--seed must be in 0..4294967295"),
    _p("score-epochs-0", [*SCORE, "--epochs", "0"], "--epochs must be >= 1, got 0"),
    _p("score-out-not-npz", [*SCORE[:-1], "s.txt"], "--out must name a .npz file"),
    _p("score-out-exists", SCORE, "s.npz exists: pass --force", lambda h, y: (h / "s.npz").write_text("mine")),
    _p("score-unknown-device", [*SCORE, "--device", "tpu9"], "unknown device 'tpu9'"),
    _p("score-no-data-root", ["score", "--dataset", "mnist", "--data-root", "none", "--out", "s.npz"],
       "data root none is not a folder"),
    _p("score-truncated-mnist", ["score", "--dataset", "mnist", "--data-root", "data", "--out", "s.npz"],
       "one is truncated or damaged", lambda h, y: fake_mnist(h / "data", truncate=True)),
    _p("score-truncated-cifar-pickle", ["score", "--dataset", "cifar10", "--data-root", "data", "--out", "s.npz"],
       "data_batch_3 (", lambda h, y: fake_cifar(h / "data")),
    # bilp report
    _p("report-truncated-config", ["report", "run", "--out", "rep"], "config.json: unreadable",
       lambda h, y: record(h / "run", config__json=b'{"bilp": {"crit')),
    _p("report-config-is-a-list", ["report", "run", "--out", "rep"], "expected a JSON object, got list",
       lambda h, y: record(h / "run", config__json=b"[1]")),
    _p("report-bilp-config-wrong-type", ["report", "run", "--out", "rep"], "'alpha' must be int or float",
       lambda h, y: record(h / "run", config__json=json.dumps({"bilp": {"alpha": "big"}, "upstream_args": {}}))),
    _p("report-truncated-level2-line", ["report", "run", "--out", "rep"], "line 2 is not JSON",
       lambda h, y: record(h / "run", level2__jsonl=b'{"batch": 4, "kept": 3}\n{"batch": 4, "ke\n{"batch": 4}\n')),
    _p("report-truncated-kept-indices", ["report", "run", "--out", "rep"], "kept_indices.npy: unreadable",
       lambda h, y: record(h / "run", kept_indices__npy=truncated(record(h / "good") / "kept_indices.npy", 90))),
    _p("report-object-array", ["report", "run", "--out", "rep"], "kept_indices.npy: unreadable",
       lambda h, y: record(h / "run", kept_indices__npy=npy_bytes(np.array([0, "x"], dtype=object),
                                                                  allow_pickle=True))),
    _p("report-kept-disagrees-with-level1", ["report", "run", "--out", "rep"], "expected 3 integer indices",
       lambda h, y: np.save(record(h / "run") / "kept_indices.npy", np.array([0, 1, 2, 3, 4]))),
    _p("report-accuracy-strings", ["report", "run", "--out", "rep"], "'accuracy' must be a list of numbers",
       lambda h, y: record(h / "run", result__json=json.dumps({"accuracy": ["x"]}))),
    _p("report-level1-wrong-type", ["report", "run", "--out", "rep"], "'kept' must be int",
       lambda h, y: record(h / "run", level1__json=json.dumps({"kept": "3", "n": 6}))),
    _p("report-out-under-a-file", ["report", "run", "--out", "afile/rep"], "afile is a file, not a folder",
       lambda h, y: (record(h / "run"), (h / "afile").write_text("x"))),
    _p("report-foreign-report-md", ["report", "run", "--out", "rep"], "is not a report of `bilp report`",
       lambda h, y: (record(h / "run"), (h / "rep").mkdir(), (h / "rep" / "report.md").write_text("# mine"))),
    _p("report-out-holds-other-files", ["report", "run", "--out", "rep"], "holds other files",
       lambda h, y: (record(h / "run"), (h / "rep").mkdir(), (h / "rep" / "level2.png").write_text("mine"))),
    _p("report-no-record", ["report", "empty", "--out", "rep"], "no run record",
       lambda h, y: (h / "empty").mkdir()),
    # bilp sweep
    _p("sweep-corrupt-sweep-json", [*SWEEP, "--out", "sw"], "sw/sweep.json is damaged",
       lambda h, y: ((h / "sw").mkdir(), (h / "sw" / "sweep.json").write_text('{"host": "buil'))),
    _p("sweep-corrupt-point", [*SWEEP, "--out", "sw", "--scores", "g.npz"], "baseline-s0.json is damaged",
       lambda h, y: corrupt_point(h, y)),
    _p("sweep-out-is-a-file", [*SWEEP, "--out", "afile"], "afile is a file, not a folder",
       lambda h, y: (h / "afile").write_text("x")),
    _p("sweep-dc-host-on-digits", [*SWEEP, "--host", "dc", "--out", "sw"], "does not load 'digits'"),
    _p("sweep-alpha-1", [*SWEEP, "--alphas", "0.5,1", "--out", "sw"], "--alphas must be in [0, 1), got 1.0"),
    _p("sweep-scores-strings", [*SWEEP, "--out", "sw", "--scores", "s.json"], "not a number",
       lambda h, y: (h / "s.json").write_text(json.dumps(["1"] * N_DIGITS))),
    # bilp demo
    _p("demo-dc-host-on-digits", [*DEMO, "--host", "dc", "--out", "dm"], "does not load 'digits'"),
    _p("demo-out-is-a-file", [*DEMO, "--out", "afile"], "afile is a file, not a folder",
       lambda h, y: (h / "afile").write_text("x")),
    _p("demo-scores-booleans", [*DEMO, "--out", "dm", "--scores", "s.json"], "True, not a number",
       lambda h, y: (h / "s.json").write_text(json.dumps([True] * N_DIGITS))),
    _p("demo-seeds-empty", [*DEMO, "--seeds", ",", "--out", "dm"], "--seeds names no seed"),
    _p("demo-seed-minus-1", [*DEMO, "--seeds", "0,-1", "--out", "dm"], "--seeds must be in 0..4294967295"),
    _p("demo-beta-1", [*DEMO, "--beta", "1", "--out", "dm"], "--beta must be in [0, 1)"),
    _p("demo-not-a-demo-folder", [*DEMO, "--out", "dm", "--force"], "is not a demo folder",
       lambda h, y: ((h / "dm").mkdir(), (h / "dm" / "mine.txt").write_text("x"))),
    # bilp-apply
    Case("apply-malformed-manifest", "bilp-apply", ["adapter"], "manifest.toml is not valid TOML",
         lambda h, y: ((h / "adapter").mkdir(), (h / "adapter" / "manifest.toml").write_text("name = dc\n["))),
    Case("apply-manifest-wrong-type", "bilp-apply", ["adapter"], "patches must be a list of strings",
         lambda h, y: ((h / "adapter").mkdir(), (h / "adapter" / "manifest.toml").write_text(
             'name = "x"\nupstream = "u"\npath = "p"\ncommit = "c"\npatches = "0001.patch"\n'))),
    Case("apply-upstream-another-repo", "bilp-apply", ["dc", "--upstream", "other"],
         "lacks the pinned commit 53f63a672eab", lambda h, y: other_repo(h / "other")),
    Case("apply-stale-index-lock", "bilp-apply", ["dc", "--upstream", "dc"], "remove the stale lock with `rm",
         lambda h, y: (make_clone(h / "dc") / ".git" / "index.lock").write_text("")),
    Case("apply-concurrent-run", "bilp-apply", ["dc", "--upstream", "dc"], "another bilp-apply is changing",
         lambda h, y: hold_apply_lock(make_clone(h / "dc"))),
    Case("apply-unknown-adapter", "bilp-apply", ["nope"], "neither an adapter folder"),
]


def corrupt_point(here: Path, labels: np.ndarray) -> None:
    """A sweep folder whose first point's stored result is damaged."""
    good_scores(here / "g.npz", labels)
    assert cli.main([*SWEEP, "--out", "sw", "--scores", "g.npz"]) == 0
    (here / "sw" / "points" / "baseline-s0.json").write_text('{"result": {"accur')


def other_repo(path: Path) -> None:
    subprocess.run(["git", "init", "-q", str(path)], check=True)
    subprocess.run(["git", "-C", str(path), "-c", "user.name=x", "-c", "user.email=x@x", "commit", "-q",
                    "--allow-empty", "-m", "x"], check=True)


def snapshot(folder: Path) -> dict[str, str]:
    """Every path below ``folder`` with the sha256 of its content (``/`` for folders)."""
    return {str(p.relative_to(folder)): "/" if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if not p.is_symlink()}


def one_error_line(err: str, message: str) -> None:
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if "error:" in line]
    assert len(lines) == 1, err
    assert message in lines[0], lines[0]


@pytest.fixture
def here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.chdir(tmp_path)
    yield tmp_path
    while HELD:
        os.close(HELD.pop())


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_is_one_line_and_changes_nothing(case: Case, here: Path, digits_labels: np.ndarray,
                                                    monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    case.setup(here, digits_labels)
    for key, value in case.env.items():
        monkeypatch.setenv(key, value)
    before = snapshot(here)
    capsys.readouterr()
    main = cli.apply_main if case.command == "bilp-apply" else cli.main
    status = exit_status(main, case.argv)  # argparse refuses a value as it parses it: it exits
    err = capsys.readouterr().err
    assert status == 2, err
    one_error_line(err, case.message)
    assert snapshot(here) == before


# ------------------------------------------------------------------------------------- the patched upstream
UPSTREAM_CASES: dict[str, tuple[list[str], str]] = {
    "eta-2": (["--bilp", "--bilp-eta", "2"], "--bilp-eta must be in (0, 1], got 2.0"),
    "interval-0": (["--bilp", "--bilp-interval", "0"], "--bilp-interval must be >= 1, got 0"),
    "min-keep-0": (["--bilp", "--bilp-min-keep", "0"], "--bilp-min-keep must be >= 1, got 0"),
    "ite-unknown": (["--bilp", "--bilp-beta", "0.2", "--bilp-ite", "rand"],
                    "argument --bilp-ite: invalid choice: 'rand'"),
    "score-epochs-0": (["--bilp", "--bilp-score-epochs", "0"], "--bilp-score-epochs must be >= 1, got 0"),
    "loss-with-stratum": (["--bilp", "--bilp-alpha", "0.5", "--bilp-stratum", "3"],
                          "--bilp-criterion stratum needs --bilp-stratum K"),
    "out-is-a-file": (["--bilp", "--bilp-out", "afile"], "afile is a file, not a folder"),
    "scores-self-inconsistent": (["--bilp", "--bilp-alpha", "0.5", "--bilp-scores", "bad.json"], "not a number"),
    "scores-of-another-dataset": (["--bilp", "--bilp-alpha", "0.5", "--bilp-scores", "other.json"],
                                  "has 50 scores but the dataset MNIST has 40 samples"),
}
"""Refused by the patched ``main_DM.py`` on a 40-sample MNIST: name -> (flags, message). All but the last at parse
time, before the upstream creates its ``--save_path``; the last once the data is loaded, and no run record may
remain. :data:`LAUNCHED` run through ``bilp launch`` (at once, in the background); the others call the script's
``main`` in this process, which is quicker."""
LAUNCHED = ("eta-2", "scores-of-another-dataset")


def upstream_folder(top: Path, name: str) -> Path:
    """A case's working folder, with the files its flags name."""
    folder = top / name
    folder.mkdir()
    (folder / "afile").write_text("x")
    (folder / "bad.json").write_text(json.dumps([0.5, "0.5"]))
    (folder / "other.json").write_text(json.dumps([0.5] * 50))
    if name == "scores-of-another-dataset":
        (folder / "result").mkdir()  # the upstream makes its --save_path before it loads data
    return folder


@dataclass
class Upstream:
    tree: Path
    mnist: Path
    top: Path
    launched: dict[str, tuple[dict[str, str], subprocess.Popen[str]]]

    def argv(self, name: str) -> list[str]:
        return ["--dataset", "MNIST", "--data_path", str(self.mnist), "--ipc", "1", "--Iteration", "1",
                "--num_exp", "1", "--num_eval", "0", *UPSTREAM_CASES[name][0]]


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Upstream:
    """The patched upstream, a tiny MNIST, and the :data:`LAUNCHED` cases started."""
    from upstreams import materialise

    data = Path(os.environ.get("BILP_DATA", ""))
    if not (data / "MNIST" / "raw" / "train-images-idx3-ubyte").is_file():
        pytest.skip("BILP_DATA has no MNIST/raw layout: export BILP_DATA=DIR (docs/data.md) to run the patched "
                    "upstream's cases")
    top = tmp_path_factory.mktemp("upstream")
    found = Upstream(materialise("dc", top / "tree"), fake_mnist(top / "mnist"), top, {})
    for name in LAUNCHED:
        folder = upstream_folder(top, name)
        cmd = [sys.executable, "-m", "bilp_plugin", "launch", "--seed", "0", "--fake-clock", "--threads", "1",
               str(found.tree / "main_DM.py"), "--", *found.argv(name)]
        found.launched[name] = (snapshot(folder), subprocess.Popen(cmd, cwd=folder, stdout=subprocess.PIPE,
                                                                   stderr=subprocess.PIPE, text=True))
    return found


@pytest.mark.integration
@pytest.mark.parametrize("name", UPSTREAM_CASES)
def test_patched_upstream_refuses_with_one_line_and_leaves_nothing(
        name: str, upstream: Upstream, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from upstreams import importable

    folder = upstream.top / name
    if name in LAUNCHED:
        before, proc = upstream.launched[name]
        _, err = proc.communicate(timeout=600)
        status = proc.returncode
    else:
        folder = upstream_folder(upstream.top, name)
        before = snapshot(folder)
        monkeypatch.chdir(folder)
        monkeypatch.setattr(sys, "argv", ["main_DM.py", *upstream.argv(name)])
        with importable(upstream.tree), pytest.raises(SystemExit) as exit_info:
            with warnings.catch_warnings():  # its utils imports scipy.ndimage.interpolation, deprecated
                warnings.simplefilter("ignore", DeprecationWarning)
                main_dm = importlib.import_module("main_DM")
            main_dm.main()
        status, err = exit_info.value.code, capsys.readouterr().err
    assert status == 2, err[-3000:]
    one_error_line(err, UPSTREAM_CASES[name][1])
    assert snapshot(folder) == before


def test_table_size() -> None:
    assert len(CASES) + len(UPSTREAM_CASES) >= 50


# ---------------------------------------------------------------------------------------- faults: kill -9
def killed_at(here: Path, target: str, trigger: str, code: str, after: int = 0) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter in which the ``after``-th call (0 = first) of ``target``
    (``module:function``) whose first argument's text contains ``trigger`` kills the process (SIGKILL)
    before it does anything."""
    module, function = target.split(":")
    script = textwrap.dedent(f"""
        import os, signal, importlib
        module = importlib.import_module({module!r})
        original = getattr(module, {function!r})
        calls = []
        def dying(first, *args, **kwargs):
            if {trigger!r} in str(first):
                calls.append(1)
                if len(calls) > {after}:
                    os.kill(os.getpid(), signal.SIGKILL)
            return original(first, *args, **kwargs)
        setattr(module, {function!r}, dying)
    """) + textwrap.dedent(code)
    return subprocess.run([sys.executable, "-c", script], cwd=here, capture_output=True, text=True, timeout=300)


def finals(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if not p.name.endswith(".bilp-tmp") and p.name[0] != ".")


PRUNE_CALL = """
from bilp_plugin import cli
raise SystemExit(cli.main(["prune", "--alpha", "0.5", "--scores", "g.npz", "--out", "out/kept.npy"]))
"""


@pytest.mark.parametrize("where", ["between-the-two-files", "inside-the-npy-write"])
def test_prune_killed_mid_write_leaves_no_partial_file_and_reruns(where: str, here: Path,
                                                                  digits_labels: np.ndarray) -> None:
    good_scores(here / "g.npz", digits_labels)
    if where == "between-the-two-files":  # the summary is written, the .npy not yet
        proc = killed_at(here, "bilp_plugin.files:write_bytes", "kept.npy", PRUNE_CALL)
    else:  # the .npy is in its temporary file, not yet renamed (fsync: the summary, its folder, the .npy)
        proc = killed_at(here, "os:fsync", "", PRUNE_CALL, after=2)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    out = here / "out"
    assert "kept.npy" not in finals(out)  # no partial .npy under its final name
    if (out / "kept.json").exists():
        json.loads((out / "kept.json").read_text())  # complete
    rerun = subprocess.run([sys.executable, "-c", PRUNE_CALL], cwd=here, capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr  # the same command, without --force
    summary = json.loads((out / "kept.json").read_text())
    assert summary["kept_sha256"] == scorefile.file_sha256(out / "kept.npy")
    assert len(np.load(out / "kept.npy")) == summary["kept"] and 0 < summary["kept"] < N_DIGITS
    assert finals(out) == ["kept.json", "kept.npy"] and sorted(os.listdir(out)) == finals(out)  # leftovers gone


RECORD_RUN = """
import torch
from argparse import ArgumentParser
from bilp_plugin import runtime
parser = ArgumentParser()
parser.add_argument("--ipc", type=int, default=1)
parser.add_argument("--init", default="real")
runtime.add_arguments(parser)
args = parser.parse_args(["--bilp", "--bilp-alpha", "0.5", "--bilp-criterion", "random", "--bilp-out", "rec"])
labels = torch.arange(60) % 3
indices_class = [torch.nonzero(labels == c).flatten().tolist() for c in range(3)]
kept = runtime.prune_real(args, indices_class, labels, upstream="builtin", dataset="toy")
print(sum(map(len, kept)))
"""


def test_run_record_killed_between_its_writes_is_read_and_replaced(here: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """Killed after ``kept_indices.npy``, before ``level1.json``: no partial file; ``bilp report`` reads the
    interrupted record; the same command again replaces it."""
    proc = killed_at(here, "bilp_plugin.files:write_json", "level1.json", RECORD_RUN)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert finals(here / "rec") == ["config.json", "kept_indices.npy"]
    json.loads((here / "rec" / "config.json").read_text())
    assert cli.main(["report", "rec", "--out", "rep"]) == 0
    assert "| rec | builtin |" in (here / "rep" / "report.md").read_text()
    rerun = subprocess.run([sys.executable, "-c", RECORD_RUN], cwd=here, capture_output=True, text=True)
    assert rerun.returncode == 0 and rerun.stdout.strip() == "30", rerun.stderr
    assert "replacing the interrupted run record" in rerun.stderr
    assert finals(here / "rec") == ["config.json", "kept_indices.npy", "level1.json", "summary.json"]


def test_report_reads_a_level2_log_cut_by_a_kill(here: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A run killed while appending to ``level2.jsonl`` leaves a last line without its end: it is skipped."""
    run = record(here / "run")
    with open(run / "level2.jsonl", "a") as f:
        f.write('{"iteration": 3, "class": 0, "batch": 4, "ke')
    assert cli.main(["report", "run", "--out", "rep"]) == 0
    assert "Kept share over all selections: `run` 75.0%" in (here / "rep" / "report.md").read_text()


def test_bilp_flags_without_bilp_print_one_warning_and_change_nothing(here: Path, monkeypatch: pytest.MonkeyPatch,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    """A patched upstream without --bilp: the flags are ignored with one line on stderr; no random number is
    drawn, the clock is not read, nothing is written, stdout is untouched."""
    import time
    from argparse import ArgumentParser

    import torch

    from bilp_plugin import runtime

    clock: list[int] = []
    monkeypatch.setattr(time, "time", lambda: clock.append(1) or 0.0)
    parser = ArgumentParser()
    runtime.add_arguments(parser)
    before = (torch.get_rng_state(), repr(np.random.get_state()))
    args = parser.parse_args(["--bilp-alpha", "0.5", "--bilp-out=x", "--bilp-alpha", "0.3"])
    assert (torch.equal(torch.get_rng_state(), before[0]), repr(np.random.get_state())) == (True, before[1])
    out, err = capsys.readouterr()
    assert out == "" and clock == [] and list(here.iterdir()) == []
    assert err.splitlines() == ["bilp: warning: --bilp-alpha, --bilp-out given without --bilp: ignored (add --bilp "
                                "to enable BiLP)"]
    assert args.bilp is False and args.bilp_alpha == 0.3
    parser.parse_args([])
    assert capsys.readouterr().err == ""


def test_score_files_get_the_mode_of_a_plain_file(here: Path, digits_labels: np.ndarray) -> None:
    umask = os.umask(0o022)
    os.umask(umask)
    good_scores(here / "s.npz", digits_labels)
    assert (here / "s.npz").stat().st_mode & 0o777 == 0o666 & ~umask
    assert os.listdir(here) == ["s.npz"]


def test_a_killed_bilp_apply_leaves_no_index_file_behind(here: Path) -> None:
    """Its temporary index lives in the checkout's git folder, named for its process: the next run removes the
    one a killed run left, and none ever lands in the system's temporary folder."""
    clone = make_clone(here / "dc")
    tmp = here / "tmp"
    tmp.mkdir()
    call = f"""
from bilp_plugin import cli
raise SystemExit(cli.apply_main(["dc", "--check", "--upstream", {str(clone)!r}]))
"""
    env = {**os.environ, "TMPDIR": str(tmp)}
    killer = textwrap.dedent("""
        import os, signal, git.cmd
        execute = git.cmd.Git.execute
        def dying(self, command, *args, **kwargs):
            if "apply" in command:
                os.kill(os.getpid(), signal.SIGKILL)
            return execute(self, command, *args, **kwargs)
        git.cmd.Git.execute = dying
    """) + call
    killed = subprocess.run([sys.executable, "-c", killer], cwd=here, env=env, capture_output=True, text=True)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    git_dir = clone / ".git"
    assert [p.name for p in git_dir.glob(".bilp-index.*")] and os.listdir(tmp) == []
    again = subprocess.run([sys.executable, "-c", call], cwd=here, env=env, capture_output=True, text=True)
    assert again.returncode == 0 and "apply cleanly" in again.stdout, again.stderr
    assert list(git_dir.glob(".bilp-index.*")) == [] and os.listdir(tmp) == []
