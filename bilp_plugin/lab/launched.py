"""Hosts that run each point as launches of a patched upstream, so that the accuracies are the upstream's own:
the mechanics every such host shares, once.

* :func:`unavailable` / :func:`patched_copy`: whether the adapter's upstream can run here, and a patched copy of
  its files (the pinned commit plus its patch series, from the submodule's git objects, written once under the
  command's folder; the submodule checkout itself is never touched).
* :class:`Launch` and :func:`stream`: one ``bilp launch`` of an upstream script (seeded, fake clock), its output
  streamed to ``<run>/upstream/log.txt`` and read line by line for its progress (:class:`Signal`: the line that
  tells the upstream's iteration or evaluated network), reported by :class:`~bilp_plugin.lab.progress.PointProgress`.
* :func:`saved_accuracies`, :func:`result`: the accuracies an upstream saved, and ``result.json``.
* :class:`LaunchedHost`: the template an adapter's ``host.py`` fills in: its launches and how it evaluated;
  :func:`refuse_unavailable`: the refusal an adapter's ``make_host`` raises when its host cannot run here.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import git
import numpy as np
import torch

from bilp_plugin import files
from bilp_plugin.errors import BiLPError
from bilp_plugin.hosting import HostSettings, Point
from bilp_plugin.lab.hosts import upstream_args
from bilp_plugin.lab.progress import PointProgress
from bilp_plugin.runtime.record import write_result
from bilp_plugin.tools import apply

TREE_MARKER = ".bilp-tree"
LOG_TAIL = 30
"""Lines of the upstream's log quoted when it fails."""


# ------------------------------------------------------------------------------------------- the patched copy
def unavailable(adapter: Path) -> str | None:
    """Why the upstream of the adapter in folder ``adapter`` cannot run here (``None`` when it can): the adapter,
    its manifest's patches, the submodule (initialised, at the pinned commit), the patch series."""
    if not (adapter / "plugin.py").is_file():
        return f"{adapter} has no plugin.py (the {adapter.name} adapter is not installed)"
    manifest = apply.Manifest.load(adapter)
    if not manifest.patches:
        return f"adapters/{manifest.name}/manifest.toml lists no patches"
    row = apply.status_row(manifest)
    if row["commit"] == "not initialised":
        return f"submodule {manifest.path} is not initialised: run `git submodule update --init {manifest.path}`"
    if row["pinned"] != "yes":
        return f"{manifest.path} is at {row['commit']}, not the pinned {manifest.commit[:12]}"
    try:
        with git.Repo(manifest.checkout) as repo:
            apply.patched_tree(repo, manifest)
    except BiLPError as err:
        return str(err).splitlines()[0]
    return None


def patched_copy(adapter: Path, dest: Path) -> Path:
    """The patched upstream's files under ``dest`` (written once; an existing copy of the same tree is reused)."""
    manifest = apply.Manifest.load(adapter)
    with git.Repo(manifest.checkout) as repo:
        tree = apply.patched_tree(repo, manifest)
        marker = dest / TREE_MARKER
        if not (marker.is_file() and marker.read_text() == tree):
            apply.export_tree(repo, tree, dest)
            files.write_text(marker, tree)
    return dest


# ------------------------------------------------------------------------------------------------ the launch
@dataclass(frozen=True)
class Signal:
    """A line of the upstream's output that tells its progress: ``pattern``'s first group (0 without a group) is
    the step (plus ``offset``) of ``phase`` out of ``total``; with ``sets_total`` the group is the phase's total."""

    pattern: str
    phase: str
    total: int | None = None
    offset: int = 0
    sets_total: bool = False


@dataclass
class Launch:
    """One launch of an upstream script: the command, its folder, extra environment, its progress signals."""

    command: list[str]
    cwd: Path
    signals: list[Signal] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)


def bilp_launch(python: str, script: Path, args: list[str], seed: int, threads: int,
                flags: tuple[str, ...] = ()) -> list[str]:
    """``python -m bilp_plugin launch --seed S --fake-clock --threads T [flags] SCRIPT -- ARGS``: seeded, with the
    fake clock (the upstreams seed from the wall clock), so that a point reruns identically."""
    return [python, "-m", "bilp_plugin", "launch", "--seed", str(seed), "--fake-clock", "--threads", str(threads),
            *flags, str(script), "--", *args]


class Watcher:
    """Reads the upstream's lines, tells ``progress`` what the signals say, and keeps when each phase was first and
    last signalled (:meth:`seconds`)."""

    def __init__(self, signals: list[Signal], progress: PointProgress,
                 clock: Callable[[], float] = time.perf_counter) -> None:
        self.signals = [(re.compile(s.pattern), s) for s in signals]
        self.totals = {s.phase: s.total for s in signals if not s.sets_total}
        self.progress = progress
        self.clock = clock
        self.spans: dict[str, tuple[float, float]] = {}

    def line(self, text: str) -> None:
        for pattern, signal in self.signals:
            match = pattern.search(text)
            if match is None:
                continue
            value = int(match.group(1)) if pattern.groups else 0
            if signal.sets_total:
                self.totals[signal.phase] = value
                continue
            now = self.clock()
            self.spans[signal.phase] = (self.spans.get(signal.phase, (now, now))[0], now)
            self.progress.step(signal.phase, value + signal.offset, self.totals.get(signal.phase))

    def seconds(self, phase: str) -> float:
        """Seconds from the first to the last signal of ``phase`` (0 when it had fewer than two)."""
        first, last = self.spans.get(phase, (0.0, 0.0))
        return last - first


def stream(launch: Launch, log: Path, progress: PointProgress) -> Watcher:
    """Run ``launch``, its stdout and stderr appended to ``log`` line by line and read for its signals; returns
    the watcher (the phases' times); a failure raises :class:`BiLPError` quoting the log's last lines."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **launch.env}
    watcher = Watcher(launch.signals, progress)
    tail: deque[str] = deque(maxlen=LOG_TAIL)
    launch.cwd.mkdir(parents=True, exist_ok=True)
    with open(log, "a") as out, subprocess.Popen(launch.command, cwd=launch.cwd, env=env, stdout=subprocess.PIPE,
                                                 stderr=subprocess.STDOUT, text=True, errors="replace") as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            out.write(line)
            tail.append(line)
            watcher.line(line)
        code = proc.wait()
    if code != 0:
        raise BiLPError(f"the patched upstream failed ({code}); its log is {log}; last lines:\n" + "".join(tail))
    return watcher


# ------------------------------------------------------------------------------------------------ the results
RESULT_GLOBALS = [np.float64(0).__reduce__()[0], np.dtype, type(np.dtype(np.float64))]
"""What a DatasetCondensation-style result file holds besides tensors, lists and dicts: numpy float64 scalars (its
accuracies, pickled as ``numpy._core.multiarray.scalar`` of a float64 ``numpy.dtype``); such files are read with
``weights_only=True`` and these alone allowed."""


def read_accuracies(file: Path) -> dict[str, list[float]]:
    """``accs_all_exps`` of an upstream's result file (architecture -> test accuracies), read without running any
    code the file may hold (``weights_only``, numpy scalars allowed: :data:`RESULT_GLOBALS`)."""
    try:
        with torch.serialization.safe_globals(RESULT_GLOBALS):
            saved = torch.load(file, weights_only=True)
        return {str(k): [float(a) for a in v] for k, v in saved["accs_all_exps"].items()}
    except (pickle.UnpicklingError, RuntimeError, EOFError, KeyError, TypeError, ValueError, AttributeError) as err:
        raise BiLPError(f"cannot read the accuracies in {file} ({type(err).__name__}): it is damaged, or holds "
                        "more than tensors and numpy floats; see the log.txt beside it") from None


def saved_accuracies(folder: Path) -> tuple[list[float], str]:
    """The accuracies of the evaluated networks in the one DatasetCondensation-style ``res_*.pt`` in ``folder``
    (DC, DSA, DM, IDM: ``accs_all_exps``, one evaluated architecture), and that architecture's name."""
    found = sorted(folder.glob("res_*.pt"))
    if len(found) != 1:
        raise BiLPError(f"the upstream wrote {len(found)} res_*.pt files in {folder}, not one: see the log.txt there")
    accs = read_accuracies(found[0])
    if len(accs) != 1:
        raise BiLPError(f"{found[0]} holds accuracies of {len(accs)} architectures ({', '.join(accs)}); the host "
                        "reads one: do not pass an --eval_mode that evaluates several")
    [(model, values)] = accs.items()
    return values, model


def result(run_dir: Path, host: str, method: str, options: HostSettings, point: Point, n_real: int,
           accuracy: list[float], seconds: float, evaluation: dict[str, Any], evaluation_in_loop_s: float = 0.0
           ) -> dict[str, Any]:
    """``result.json`` of a launched point. ``distill_s`` is the record's matching-loop time (first to last real
    draw) less ``evaluation_in_loop_s``, an evaluation the upstream runs between two draws (DC and IDM evaluate at
    the start of their last iteration, which still matches); ``eval_s`` is the rest of the launches (data
    loading, evaluation)."""
    level1 = run_dir / "level1.json"
    kept = json.loads(level1.read_text())["kept"] if level1.is_file() else n_real
    summary = run_dir / "summary.json"
    loop = (json.loads(summary.read_text()).get("matching_loop_s") or 0.0) if summary.is_file() else 0.0
    distill = max(0.0, loop - evaluation_in_loop_s)
    return {
        "host": host, "method": method, "dataset": options.dataset, "ipc": options.ipc,
        "iterations": options.iterations, "seed": point.seed, "real_total": n_real, "real_kept": kept,
        "accuracy": accuracy, "accuracy_mean": float(np.mean(accuracy)), "accuracy_std": float(np.std(accuracy)),
        "distill_s": distill, "eval_s": seconds - distill, "wall_s": seconds, "eval": evaluation,
    }


class LaunchedHost:
    """A host whose points are launches of the patched upstream of one adapter. Subclasses set ``name`` (and
    ``method`` where it is not ``--method``) and implement :meth:`launches` and :meth:`evaluated`; each point's
    launches run in ``<run>/upstream/``, logged to ``<run>/upstream/log.txt``."""

    name = "launched"
    evaluates_in_loop = False
    """Whether the upstream evaluates between two real draws (then its evaluation time, from the first to the last
    ``evaluate`` signal, is taken off the matching loop: ``distill_s``)."""

    def __init__(self, options: HostSettings, workdir: Path, adapter: Path, python: str = sys.executable
                 ) -> None:
        from bilp_plugin.lab.datasets import load_dataset

        self.options = options
        self.python = python
        self.tree = patched_copy(adapter, (workdir / f"upstream-{adapter.name}").resolve())
        self.n_real = len(load_dataset(options.dataset, options.data_root))
        self.extra = upstream_args(options)

    @property
    def method(self) -> str:
        return str(self.options.method)

    def launches(self, point: Point, run_dir: Path, scores: Path) -> list[Launch]:
        """The launches of one point, in order; the BiLP flags and ``--bilp-out run_dir`` go to the one that
        distills."""
        raise NotImplementedError

    def evaluated(self, run_dir: Path) -> tuple[list[float], dict[str, Any]]:
        """The test accuracy of each evaluated network, in [0, 1], as the upstream saved it, and how it evaluated
        (``models``, ``epochs``, ``model``)."""
        raise NotImplementedError

    def launch(self, point: Point, script: str | Path, args: list[str], flags: tuple[str, ...] = ()) -> list[str]:
        """The ``bilp launch`` line of ``script`` (a path in the patched copy, or an absolute path such as an
        adapter's own runner), with ``--upstream-args`` last."""
        return bilp_launch(self.python, self.tree / script, [*args, *self.extra], point.seed, self.options.threads,
                           flags)

    def run(self, point: Point, run_dir: Path, scores: Path) -> dict[str, Any]:
        run_dir, scores = run_dir.resolve(), scores.resolve()
        upstream = run_dir / "upstream"
        upstream.mkdir(parents=True, exist_ok=True)
        progress = PointProgress(point.name)
        start = time.perf_counter()
        evaluating = 0.0
        for launch in self.launches(point, run_dir, scores):
            evaluating += stream(launch, upstream / "log.txt", progress).seconds("evaluate")
        accuracy, evaluation = self.evaluated(run_dir)
        outcome = result(run_dir, self.name, self.method, self.options, point, self.n_real, accuracy,
                         time.perf_counter() - start, evaluation, evaluating if self.evaluates_in_loop else 0.0)
        write_result(run_dir, outcome)
        return outcome


def refuse_unavailable(name: str, reason: str | None) -> None:
    """Refuse ``--host name`` when its host module's ``unavailable(dataset)`` gave a reason (``None``: it can run)."""
    if reason is not None:
        raise BiLPError(f"--host {name} cannot run: {reason}")
