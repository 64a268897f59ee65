"""Reproduce the paper's level-1 claims through the patched DatasetCondensation (``--host dc``), resumably and in
time-boxed chunks: the max pruning ratio of loss vs random selection (Tables 1-2), the best pruned accuracy vs the
full set (Table 3), the stratified curve (Fig. 3) and, at GPU scale, Table 4's BiLP+DC on CIFAR-10 at ipc 1.

    python benchmarks/reproduce.py --preset cpu --out /work/repro/cpu                    # the CPU plan, to the end
    timeout 500 python benchmarks/reproduce.py --preset gpu --out runs/gpu --budget-s 450  # one GPU chunk
    python benchmarks/reproduction_doc.py runs/gpu --out docs/reproduction.md             # the document

Every cell (method x dataset x ipc x score file) is one ``bilp sweep`` folder under ``--out``. A plan runs its
steps in order; a step adds seeds, alphas, criteria or strata to a cell, so the first claims are complete early
and later steps only tighten them. Each step is one ``bilp sweep`` line (the cell's fixed options plus the step's
``--seeds --alphas --criteria --strata``) that makes exactly the step's points; ``<out>/plan.json`` lists every
cell's command, its steps and its planned points, for the document. Points are run one at a time through
:class:`bilp_plugin.lab.resumable.PointRunner`: each finished point is stored and never rerun, an interrupted one
is rerun from scratch.

Chunks: with ``--budget-s B`` the script starts a point only while the time left is at least the longest point of
that cell so far (or, for a cell's first point, half of ``B``), then stops with exit status 3 and the number of
points left; rerun the same command to continue. Wrap it in ``timeout`` a little above ``B``: a point killed by
it is rerun in the next chunk. A point that was started in a fresh chunk and still did not finish is reported
before it is tried again (it needs more than one chunk: lower that preset's iterations or evaluation networks).

Cells that differ only in their score file share the full-set baseline (``shares_baseline``): with alpha 0 level
1 is off and the run does not depend on the scores, so the second cell's baseline points are copies of the first
one's, marked ``shared_from``.
Progress: one line per point (cell, point, accuracy, seconds, points left, estimated time left) and
``<out>/progress.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from bilp_plugin.cli import build_parser
from bilp_plugin.errors import BiLPError
from bilp_plugin.lab import hosts, sweep
from bilp_plugin.lab.resumable import PointRunner, check_settings

STRATA = "1,2,3,4,5,6,7,8,9,10"
CHUNK_EXIT = 3
"""Exit status of a chunk that stopped with points left."""


@dataclass(frozen=True)
class Cell:
    """One sweep folder: its fixed settings (``bilp sweep`` options) and its score file; a Tables 1-3 / Fig. 3
    cell, or Table 4's BiLP+DC (``level2``)."""

    name: str
    method: str
    dataset: str
    ipc: int
    options: dict[str, str]
    scores: str
    """``authors`` (their file) or ``ours`` (a file made by ``bilp score``)."""
    shares_baseline: str | None = None
    level2: dict[str, Any] | None = None
    """Table 4 cells: ``{"beta": B, "alpha_from": CELL}``. Per seed they run the full set (``baseline``), level 1
    (``level1``) and levels 1+2 (``bilp``), at the best loss alpha of ``CELL`` (on its test accuracy, as a best-of
    table chooses) and the cell's own settings, so the three are compared at one scale."""


@dataclass(frozen=True)
class Step:
    """Points to add to a cell: the sweep's ``--alphas --criteria --seeds --strata`` (or Table 4 seeds)."""

    cell: str
    seeds: str
    alphas: str = ""
    criteria: str = "loss,random"
    strata: str = ""


@dataclass
class Plan:
    preset: str
    cells: list[Cell]
    steps: list[Step]
    notes: list[str] = field(default_factory=list)


def cpu_plan(authors: Path, ours: Path | None) -> Plan:
    """The CPU-scale plan: ipc 1, DC's ConvNetW32 for distillation and evaluation, short distillation (DM 200, DC
    100 iterations), alphas 0.5, 0.9, 0.99, 3 seeds; 4 evaluation networks per seed (6 for DC on MNIST, whose
    networks, trained 1000 epochs with augmentation, scatter most). Measured on a shared 2-core machine: about
    95-125 CPU seconds per point, 170 for DC on MNIST; about 4.5 hours of one core in all. Steps in order of
    importance: Tables 1-2 at 2 seeds for every cell, the CIFAR-10 strata, the third seed, the MNIST strata."""
    common = {"--model": "ConvNetW32", "--batch-real": "64", "--threads": "1", "--jobs": "1", "--eval-epochs": "300"}
    iterations = {"DM": "200", "DC": "100"}
    cells = []
    for dataset, file in (("cifar10", "CIFAR10_LossConverge.json"), ("mnist", "MNIST_LossConverge.json")):
        for method in ("DM", "DC"):
            name = f"{method.lower()}-{dataset}-ipc1"
            options = {**common, "--iterations": iterations[method],
                       "--eval-models": "6" if (method, dataset) == ("DC", "mnist") else "4"}
            cells.append(Cell(f"{name}-authors", method, dataset, 1, {**options, "--scores": str(authors / file)},
                              "authors"))
            if dataset == "cifar10" and ours is not None:
                cells.append(Cell(f"{name}-ours", method, dataset, 1, {**options, "--scores": str(ours)}, "ours",
                                  shares_baseline=f"{name}-authors"))
    alphas = "0.5,0.9,0.99"

    def criteria(c: Cell) -> str:
        return "loss,random" if c.scores == "authors" else "loss"

    steps = [Step(c.name, "0,1", alphas, criteria(c)) for c in cells]
    steps += [Step(c.name, "0", strata=STRATA, criteria="loss") for c in cells if c.dataset == "cifar10"]
    steps += [Step(c.name, "2", alphas, criteria(c)) for c in cells]
    steps += [Step(c.name, "0", strata=STRATA, criteria="loss") for c in cells if c.dataset == "mnist"]
    return Plan("cpu", cells, steps, ["CPU scale: the smaller ConvNet (ConvNetW32, width 32) for distillation and "
                                      "evaluation, short distillation; the paper's cells use ConvNet width 128 and "
                                      "the upstream defaults (DC 1000, DM 20000 iterations).",
                                      "Our scores only on CIFAR-10: MNIST with ours would not fit the budget of "
                                      "about 4-5 hours of one core."])


def gpu_plan(authors: Path, ours: Path | None) -> Plan:
    """The GPU-scale plan: CIFAR-10, DM and DC at ipc 1 and 10 with the upstream's ConvNet (width 128), the
    authors' score file, 10 evaluation networks per seed, 3 then 5 seeds, alphas up to the paper's 0.995; then
    Table 4's BiLP+DC at ipc 1. Iterations are cut below the upstream defaults (DC 1000, DM 20000) where one
    point is expected not to fit in an 8-minute chunk on one GPU (estimates, not measured: the first chunk's
    progress lines give each point's seconds; ``--set CELL:iterations=N`` changes one cell, in a new --out)."""
    file = str(authors / "CIFAR10_LossConverge.json")
    base = {"--jobs": "1", "--threads": "4", "--batch-real": "256", "--eval-models": "10", "--scores": file}
    sizes = {("DC", 1): "1000", ("DC", 10): "50", ("DM", 1): "10000", ("DM", 10): "10000"}
    cells = [Cell(f"{m.lower()}-cifar10-ipc{ipc}-authors", m, "cifar10", ipc,
                  {**base, "--iterations": it, "--eval-epochs": "300" if m == "DC" else "1000"}, "authors")
             for (m, ipc), it in sizes.items()]
    # level 2 selects every 10th draw of a class (the ITE of a batch of 256): fewer iterations to fit a chunk
    cells.append(Cell("table4-bilp-dc-cifar10-ipc1", "DC", "cifar10", 1, {**cells[0].options, "--iterations": "200"},
                      "authors", level2={"beta": 0.1, "alpha_from": cells[0].name}))
    alphas = "0.3,0.5,0.7,0.9,0.99,0.995"
    steps = [Step(c.name, "0,1,2", alphas) for c in cells[:4]]
    steps += [Step(c.name, "3,4", alphas) for c in cells[:4]]
    steps.append(Step(cells[4].name, "0,1,2,3,4"))
    return Plan("gpu", cells, steps, ["Table 4: alpha is the best loss alpha of the DC ipc 1 cell (chosen on its "
                                      "test accuracy, as a best-of table does), beta 0.1 (the paper's main text "
                                      "gives neither); its cell runs the full set, level 1 and levels 1+2 at "
                                      "200 iterations."])


PRESETS = {"cpu": cpu_plan, "gpu": gpu_plan}


def apply_overrides(plan: Plan, overrides: list[str]) -> Plan:
    """``--set KEY=VALUE``: a sweep option for every cell (``iterations=2``) or a step field for every step
    (``seeds=0``, ``alphas=0.5``, ``strata=1,10``); ``--set CELL:KEY=VALUE``: a sweep option of one cell."""
    cells, steps = plan.cells, plan.steps
    for item in overrides:
        key, sep, value = item.partition("=")
        only, colon, key = key.rpartition(":")
        if not sep or (colon and only not in {c.name for c in cells}):
            raise BiLPError(f"--set takes KEY=VALUE or CELL:KEY=VALUE (a cell of the plan), got {item!r}")
        if colon:
            flag = "--" + key.replace("_", "-")
            cells = [Cell(**{**vars(c), "options": {**c.options, flag: value}}) if c.name == only else c
                     for c in cells]
            continue
        if key in ("seeds", "alphas", "criteria", "strata"):  # seeds of every step; the others where set
            steps = [Step(**{**vars(s), key: value}) if key == "seeds" or getattr(s, key) else s for s in steps]
        else:
            flag = "--" + key.replace("_", "-")
            cells = [Cell(**{**vars(c), "options": {**c.options, flag: value}}) for c in cells]
    return Plan(plan.preset, cells, _dedupe(steps), plan.notes)


def _dedupe(steps: list[Step]) -> list[Step]:
    seen, out = set(), []
    for s in steps:
        if s not in seen:
            seen.add(s)
            out.append(s)
    return out


def fixed_argv(cell: Cell, out: Path, data_root: str | None) -> list[str]:
    """The ``bilp sweep`` options every point of the cell shares (its folder's settings)."""
    argv = ["--host", "dc", "--method", cell.method, "--dataset", cell.dataset, "--ipc", str(cell.ipc)]
    for flag, value in cell.options.items():
        argv += [flag, value]
    if data_root:
        argv += ["--data-root", data_root]
    return [*argv, "--out", str(out / cell.name)]


def step_argv(step: Step) -> list[str]:
    """The ``bilp sweep`` options that name a step's points (a strata step runs no alpha)."""
    argv = ["--seeds", step.seeds, "--alphas", step.alphas or "0", "--criteria",
            step.criteria if step.alphas else "loss"]
    return [*argv, "--strata", step.strata] if step.strata else argv


def sweep_argv(cell: Cell, out: Path, step: Step, data_root: str | None) -> list[str]:
    """The ``bilp sweep`` command line (without ``bilp sweep``) that makes exactly the points of ``step``."""
    return [*fixed_argv(cell, out, data_root), *step_argv(step)]


def parse_sweep(argv: list[str]) -> sweep.SweepSettings:
    """The settings ``bilp sweep ARGV`` runs with."""
    return sweep.SweepSettings.from_options(build_parser().parse_args(["sweep", *argv]))


class Runner:
    """Runs a plan's points in step order, within a time budget."""

    def __init__(self, plan: Plan, out: Path, data_root: str | None, budget: float | None,
                 invocation: dict[str, Any] | None = None) -> None:
        self.plan, self.out, self.data_root, self.budget = plan, out, data_root, budget
        self.invocation = invocation or {}
        self.start = time.perf_counter()
        self.cells = {c.name: c for c in plan.cells}
        self.hosts: dict[str, tuple[Any, Path]] = {}
        self.points: list[tuple[Cell, hosts.Point]] = []
        self.attempts_file = out / "attempts.json"
        self.attempts: dict[str, str] = (json.loads(self.attempts_file.read_text())
                                         if self.attempts_file.is_file() else {})
        self.chunk = datetime.now().astimezone().isoformat(timespec="seconds")

    def write_plan(self) -> None:
        """``plan.json``: each cell's fixed command, its steps' options, and its planned points in order."""
        cells = []
        for c in self.plan.cells:
            steps = [s for s in self.plan.steps if s.cell == c.name]
            cells.append({**vars(c), "folder": c.name,
                          "command": "bilp sweep " + " ".join(fixed_argv(c, self.out, self.data_root)),
                          "steps": [" ".join(step_argv(s)) for s in steps],
                          "points": [p.name for cell, p in self.points if cell.name == c.name]})
        payload = {"preset": self.plan.preset, "notes": self.plan.notes, "cells": cells,
                   "steps": [vars(s) for s in self.plan.steps], "out": str(self.out), **self.invocation}
        _write_json(self.out / "plan.json", payload)

    def step_points(self, step: Step) -> list[hosts.Point]:
        cell = self.cells[step.cell]
        if cell.level2 is not None:
            return [hosts.Point(f"{kind}-s{s}", seed=int(s)) for s in step.seeds.split(",")
                    for kind in ("baseline", "level1", "bilp")]
        return sweep.sweep_points(parse_sweep(sweep_argv(cell, self.out, step, self.data_root)))

    def planned(self) -> list[tuple[Cell, hosts.Point]]:
        """Every point of the plan, in step order, once."""
        points, seen = [], set()
        for step in self.plan.steps:
            cell = self.cells[step.cell]
            for p in self.step_points(step):
                if (cell.name, p.name) not in seen:
                    seen.add((cell.name, p.name))
                    points.append((cell, p))
        return points

    def stored(self, cell: Cell, point: hosts.Point) -> bool:
        return (self.out / cell.name / "points" / f"{point.name}.json").is_file()

    def host(self, cell: Cell) -> tuple[Any, Path]:
        """The cell's host and score file (the sweep's settings are checked and recorded once)."""
        if cell.name not in self.hosts:
            first = next(s for s in self.plan.steps if s.cell == cell.name)
            args = parse_sweep(sweep_argv(cell, self.out, first, self.data_root))
            folder = self.out / cell.name
            folder.mkdir(parents=True, exist_ok=True)
            host = hosts.make_host(args, folder)
            check_settings(folder, "sweep.json", sweep.settings(args, host.name))
            self.hosts[cell.name] = (host, hosts.score_file(args, folder))
        return self.hosts[cell.name]

    def shared(self, cell: Cell, point: hosts.Point) -> dict[str, Any] | None:
        """A baseline point copied from the cell it shares them with (``None`` when there is none to copy)."""
        source = self.out / str(cell.shares_baseline) / "points" / f"{point.name}.json"
        if not (cell.shares_baseline and point.name.startswith("baseline-") and source.is_file()):
            return None
        stored = {**json.loads(source.read_text()), "shared_from": cell.shares_baseline}
        _write_json(self.out / cell.name / "points" / f"{point.name}.json", stored)
        return stored["result"]

    def point(self, cell: Cell, point: hosts.Point) -> dict[str, Any]:
        host, scores = self.host(cell)
        if cell.level2 is not None and not point.name.startswith("baseline-"):
            point = self.level2_point(cell, point)
        return PointRunner(host, self.out / cell.name, scores, cell.name).run([point])[point.name]

    def level2_point(self, cell: Cell, point: hosts.Point) -> hosts.Point:
        """Table 4: alpha = the best loss alpha of the cell named by ``alpha_from`` (needs all its points)."""
        spec = cell.level2 or {}
        source = self.cells[spec["alpha_from"]]
        if not self.cell_done(source):
            raise BiLPError(f"{cell.name} needs every point of {source.name} first")
        beta = float(spec["beta"]) if point.name.startswith("bilp-") else 0.0
        return hosts.Point(point.name, alpha=best_loss_alpha(self.out / source.name), beta=beta, seed=point.seed)

    def limit(self, cell: Cell) -> float:
        """How long a point of ``cell`` may take: its longest stored point, else half the budget."""
        stored = [json.loads(f.read_text()) for f in (self.out / cell.name / "points").glob("*.json")]
        walls = [s["result"].get("wall_s", 0.0) for s in stored if "shared_from" not in s]
        return max(walls) * 1.1 if walls else (self.budget or 0) / 2

    def run(self) -> int:
        self.out.mkdir(parents=True, exist_ok=True)
        self.points = self.planned()
        self.write_plan()
        with open(self.out / "chunks.jsonl", "a") as f:
            f.write(json.dumps({"started": self.chunk, "budget_s": self.budget, **hardware()}) + "\n")
        pending = [(c, p) for c, p in self.points if not self.stored(c, p)]
        total, done, times = len(pending), 0, []
        for cell, point in pending:
            if self.shared(cell, point) is not None:
                done += 1
                continue
            left = None if self.budget is None else self.budget - (time.perf_counter() - self.start)
            if left is not None and left < self.limit(cell):
                return self.stop(total - done, left)
            key = f"{cell.name}/{point.name}"
            if key in self.attempts and self.attempts[key] != self.chunk and done == 0:
                print(f"reproduce: {key} was started in an earlier chunk and did not finish; if it fails again, it "
                      "needs more than one chunk: lower this preset's iterations or evaluation networks", flush=True)
            self.attempts[key] = self.chunk
            _write_json(self.attempts_file, self.attempts)
            t0, cpu0 = time.perf_counter(), _cpu_seconds()
            result = self.point(cell, point)
            done += 1
            times.append(time.perf_counter() - t0)
            self.attempts.pop(key, None)
            _write_json(self.attempts_file, self.attempts)
            self.progress(cell, point, result, times, total - done, _cpu_seconds() - cpu0)
        print(f"reproduce: all {total} pending points done; {self.out}", flush=True)
        return 0

    def cell_done(self, cell: Cell) -> bool:
        """Whether every planned point of ``cell`` is stored."""
        return all(self.stored(c, p) for c, p in self.points if c.name == cell.name)

    def progress(self, cell: Cell, point: hosts.Point, result: dict[str, Any], times: list[float],
                 left: int, cpu: float) -> None:
        mean = statistics.fmean(times)
        eta = datetime.now().astimezone().timestamp() + mean * left
        acc = 100 * statistics.fmean(result["accuracy"])
        print(f"reproduce: {cell.name} {point.name}: {acc:.1f}% in {times[-1]:.0f} s ({cpu:.0f} CPU s); {left} "
              f"points left, about {mean * left / 3600:.1f} h (until {datetime.fromtimestamp(eta):%H:%M})",
              flush=True)
        _write_json(self.out / "progress.json", {
            "updated": datetime.now().astimezone().isoformat(timespec="seconds"), "last": f"{cell.name}/{point.name}",
            "last_wall_s": times[-1], "last_cpu_s": cpu, "points_left": left, "mean_point_s": mean,
            "eta": datetime.fromtimestamp(eta).astimezone().isoformat(timespec="minutes")})

    def stop(self, left: int, seconds: float) -> int:
        print(f"reproduce: chunk budget spent ({seconds:.0f} s left, less than the next point needs); {left} points "
              "left: rerun the same command to continue", flush=True)
        return CHUNK_EXIT


def _cpu_seconds() -> float:
    """CPU seconds (user + system) of this process and its finished children (the upstream launches)."""
    import resource

    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def hardware() -> dict[str, Any]:
    """Where a chunk runs: CPU model and count, load, GPU, versions."""
    import platform

    import torch

    cpu = platform.processor() or platform.machine()
    info = Path("/proc/cpuinfo")
    if info.is_file():
        names = [line.split(":", 1)[1].strip() for line in info.read_text().splitlines()
                 if line.startswith("model name")]
        cpu = names[0] if names else cpu
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {"cpu": cpu, "cpus": os.cpu_count(), "load_1min": os.getloadavg()[0], "gpu": gpu,
            "torch": torch.__version__, "python": platform.python_version()}


def best_loss_alpha(folder: Path) -> float:
    """The alpha whose loss-criterion points have the highest mean accuracy in a cell's folder."""
    by_alpha: dict[float, list[float]] = {}
    for f in (folder / "points").glob("*.json"):
        stored = json.loads(f.read_text())
        if stored["point"]["criterion"] == "loss" and stored["point"]["alpha"] > 0:
            by_alpha.setdefault(stored["point"]["alpha"], []).extend(stored["result"]["accuracy"])
    if not by_alpha:
        raise BiLPError(f"{folder} holds no loss-criterion point to choose an alpha from")
    return max(by_alpha, key=lambda a: statistics.fmean(by_alpha[a]))


def _write_json(path: Path, payload: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(payload, indent=1, default=str))
    tmp.replace(path)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", choices=PRESETS, required=True)
    p.add_argument("--out", required=True, help="folder of the cells (reused: finished points are kept)")
    p.add_argument("--data-root", default=None, help="default: $BILP_DATA")
    p.add_argument("--authors-scores", default=os.environ.get("BILP_SCORES_DIR"),
                   help="folder of the authors' score files (default: $BILP_SCORES_DIR)")
    p.add_argument("--our-scores", default=None, help="our CIFAR-10 score file (bilp score); without it, the "
                                                      "plan has no 'ours' cells")
    p.add_argument("--budget-s", type=float, default=None, help="chunk: stop before a point that would not fit")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a sweep option of every cell or a step field of every step (small test runs)")
    args = p.parse_args(argv)
    try:
        if not args.authors_scores:
            raise BiLPError("--authors-scores (or $BILP_SCORES_DIR) must name the authors' score files' folder")
        ours = Path(args.our_scores).resolve() if args.our_scores else None
        authors = Path(args.authors_scores).resolve()
        plan = apply_overrides(PRESETS[args.preset](authors, ours), args.set)
        words = argv if argv is not None else sys.argv[1:]
        invocation = {"script": "python benchmarks/reproduce.py " + " ".join(words),
                      "authors_scores": str(authors), "our_scores": str(ours) if ours else None,
                      "data_root": args.data_root}
        return Runner(plan, Path(args.out).resolve(), args.data_root, args.budget_s, invocation).run()
    except BiLPError as err:
        print(f"reproduce: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
