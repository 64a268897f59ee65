"""ITE overhead of BiLP level 2 inside each upstream's own iteration: unpatched and level 2 side by side.

    python benchmarks/bench_overhead.py --preset cpu                    # dc, dm, idc, idm: one process each
    python benchmarks/bench_overhead.py --preset paper --run idc --random-data     # one GPU call per run
    python benchmarks/bench_overhead.py --preset cpu --run idc --rounds 1 --budget 0 -- --n_data 16  # overrides

Runs: ``dc`` (DatasetCondensation ``main.py --method DC``), ``dm`` (its ``main_DM.py``), ``idc`` (IDC
``condense.py``), ``idm`` (``IDM_cifar10.py``). Each run is one process that executes the patched upstream script
itself, as ``bilp launch --seed 0 --fake-clock`` does (IDC: CUDA redirected to the CPU where there is no GPU),
with ``--bilp --bilp-beta 0.2`` (level 1 off) and evaluation off; the arguments after ``--`` are appended to the
preset's (argparse: the last value wins). The script's ``select_batch`` hook is replaced by a rotator that runs
each *variant* for a block of consecutive units, in turn:

* ``unpatched``: the hook returns the batch untouched (what the script does without ``--bilp``);
* ``exact k=1``, ``exact k=10``, ``taylor k=1``, ``taylor k=10``: level 2 with that ITE and lazy interval, each
  variant with its own selector (``Session``, global running statistics, the relative rule).

A *unit* is one upstream iteration (DC, DM, IDM: the hook's ``iteration`` changes; IDC: one inner iteration, i.e.
every draw of class 0), from its first draw to the next unit's first draw: everything the script does in it.
A block covers whole selection cycles (``k`` draws of every class; the unpatched block as many as the longest).
First one warm-up unit per variant (not timed: first calls, torch.func's set-up; its ITE time is kept as the
one-off cost), then rounds: one block of every variant, in an order rotated every round. Rounds stop when the
next one would pass ``--budget`` seconds of wall clock (after at least one) or after ``--rounds``.

Printed per variant (medians over rounds of each block's per-unit means):
* ``s/unit``; ``ITE s/unit``: time inside the hook (``meta_grad`` + ``filter_batch`` + bookkeeping);
* ``ITE / iter``: ITE s/unit over the unpatched s/unit (the paper's Table 6: 0.03 / 0.44 s = 7% at k = 10);
* ``total / iter``: s/unit over the unpatched s/unit (the kept batches are smaller: matching gets a bit cheaper);
* ``ITE / run``: the ITE's share of a whole distillation run of the published length (``run units``, evaluation
  excluded): ``(units x ITE s/unit + one-off) / (setup + units x unpatched s/unit)``, setup = the script's time
  before its first draw (data loading), one-off = the warm-up unit's ITE time minus a steady selection round's;
* ``peak MiB``: the largest growth of memory within a block over its start (GPU: ``max_memory_allocated``;
  CPU: resident set size sampled every 5 ms, so short peaks may be missed); ``keep``: kept / drawn rows.

Progress: a line on stderr when setup ends and at the end of every block (its units, seconds and ITE seconds).

Clock: CPU time of the process (``time.process_time``, all its threads) on the CPU, so that other jobs on a
shared machine count less; on a GPU, wall clock with the device synchronised at every unit and hook call.
"""

from __future__ import annotations

import argparse
import atexit
import copy
import math
import os
import pickle
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bilp_plugin import runtime
from bilp_plugin.logs import say
from bilp_plugin.manager import PluginManager
from bilp_plugin.method.matchstep import MatchStep
from bilp_plugin.runtime.session import Session
from bilp_plugin.tools import apply, launch, layouts

ROOT = Path(__file__).resolve().parent.parent
BETA = 0.2


@dataclass(frozen=True)
class Variant:
    name: str
    ite: str | None  # None: unpatched
    interval: int = 1


VARIANTS = (Variant("unpatched", None), Variant("exact k=1", "exact", 1), Variant("exact k=10", "exact", 10),
            Variant("taylor k=1", "taylor", 1), Variant("taylor k=10", "taylor", 10))


@dataclass(frozen=True)
class Run:
    """One upstream script at one setting."""

    upstream: str  # the adapter
    script: str
    args: tuple[str, ...]
    data: str  # "mnist" or "cifar10"
    per_class: int  # CIFAR-10: training images per class (0: all)
    unit: str  # "iteration" or "inner" (IDC: every draw of class 0 starts one)
    run_units: int  # units of a whole published run
    run_note: str


_DC_QUIET = ("--num_exp", "1", "--num_eval", "0", "--eval_mode", "none", "--Iteration", "1000000")
_IDM_PUBLISHED = ("--dataset", "CIFAR10", "--dsa_strategy", "color_crop_cutout_flip_scale_rotate", "--init", "real",
                  "--lr_img", "0.2", "--net_train_real", "--outer_loop", "1", "--mismatch_lambda", "0", "--net_decay",
                  "--embed_last", "1000", "--syn_ce", "--ce_weight", "0.5", "--train_net_num", "1", "--aug")
"""IDM's command.txt for CIFAR-10 (without --model, --ipc and the evaluation flags)."""
_IDM_QUIET = ("--num_exp", "1", "--num_eval", "0", "--Iteration", "1000000", "--eval_interval", "2000000")

PRESETS: dict[str, dict[str, Run]] = {
    # small enough for 2 CPU cores: the settings of the earlier CPU figures (IDM at width 32)
    "cpu": {
        "dc": Run("dc", "main.py", ("--method", "DC", "--dataset", "MNIST", "--model", "ConvNetW32", "--ipc", "1",
                                    "--batch_real", "64", *_DC_QUIET), "mnist", 0, "iteration", 1000,
                  "main.py's --Iteration 1000"),
        "dm": Run("dc", "main_DM.py", ("--dataset", "MNIST", "--model", "ConvNetW32", "--ipc", "10", "--batch_real",
                                       "64", *_DC_QUIET), "mnist", 0, "iteration", 20000,
                  "main_DM.py's --Iteration 20000"),
        "idc": Run("idc", "condense.py", ("-d", "cifar10", "--ipc", "1", "-f", "2", "--width", "0.0625", "--batch_real",
                                          "16", "--n_data", "32", "--metric", "mse", "--test"), "cifar10", 100,
                   "inner", 50000, "--niter 500 x 100 inner iterations"),
        "idm": Run("idm", "IDM_cifar10.py", (*_IDM_PUBLISHED, "--model", "ConvNetW32", "--ipc", "1", "--batch_real",
                                             "64", "--model_train_steps", "2", "--trained_bs", "64", *_IDM_QUIET),
                   "cifar10", 50, "iteration", 20000, "--Iteration 20000"),
    },
    # Table 6 (IDC, CIFAR-10, ipc 10, factor 2, IDC's CIFAR preset), DC and DM at ipc 10 with their defaults, IDM's
    # published CIFAR-10 ipc-10 command
    "paper": {
        "dc": Run("dc", "main.py", ("--method", "DC", "--dataset", "CIFAR10", "--model", "ConvNet", "--ipc", "10",
                                    *_DC_QUIET), "cifar10", 0, "iteration", 1000, "main.py's --Iteration 1000"),
        "dm": Run("dc", "main_DM.py", ("--dataset", "CIFAR10", "--model", "ConvNet", "--ipc", "10", *_DC_QUIET),
                  "cifar10", 0, "iteration", 20000, "main_DM.py's --Iteration 20000"),
        "idc": Run("idc", "condense.py", ("-d", "cifar10", "--ipc", "10", "-f", "2", "--reproduce", "--test"),
                   "cifar10", 0, "inner", 200000, "--reproduce: --niter 2000 x 100 inner iterations"),
        "idm": Run("idm", "IDM_cifar10.py", (*_IDM_PUBLISHED, "--model", "ConvNet", "--ipc", "10", *_IDM_QUIET),
                   "cifar10", 0, "iteration", 20000, "--Iteration 20000"),
    },
}
BUDGETS = {"cpu": 60.0, "paper": 240.0}
"""Default seconds of wall clock for the timed rounds of one run (setup and warm-up come on top)."""


class Finished(BaseException):
    """Raised from the hook to end the upstream script once the rounds are done (not an ``Exception``: nothing in
    an upstream catches it)."""


# ------------------------------------------------------------------------------------------- clock, memory
class Meter:
    """The clock (CPU time on the CPU, synchronised wall clock on a GPU) and the memory peak of a block."""

    def __init__(self, cuda: bool) -> None:
        self.cuda = cuda
        self._rss = 0
        self._peak = 0
        self._base = 0
        if not cuda:
            threading.Thread(target=self._sample, daemon=True).start()

    def now(self) -> float:
        if self.cuda:
            torch.cuda.synchronize()
            return time.perf_counter()
        return time.process_time()

    @staticmethod
    def _resident() -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def _sample(self) -> None:
        while True:
            self._rss = self._resident()
            self._peak = max(self._peak, self._rss)
            time.sleep(0.005)

    def reset(self) -> None:
        if self.cuda:
            torch.cuda.reset_peak_memory_stats()
            self._base = torch.cuda.memory_allocated()
        else:
            self._base = self._peak = self._resident()

    def peak_growth_mib(self) -> float:
        peak = torch.cuda.max_memory_allocated() if self.cuda else self._peak
        return max(0, peak - self._base) / 2**20


# ------------------------------------------------------------------------------------------------- rotator
@dataclass
class Block:
    variant: Variant
    units: int
    timed: bool
    start: float = 0.0
    seconds: float = 0.0
    ite_s: float = 0.0
    kept: int = 0
    drawn: int = 0
    peak_mib: float = 0.0


@dataclass
class Rotator:
    """Stands in for ``runtime.select_batch`` (and wraps ``runtime.prune_real``): routes each draw to the variant
    of the current block and times units, blocks and hook calls."""

    run: Run
    variants: tuple[Variant, ...]
    meter: Meter
    records: Path
    budget: float
    max_rounds: int
    setup_started: float = 0.0
    setup_s: float = 0.0
    timed_started: float = 0.0
    blocks: list[Block] = field(default_factory=list)
    sessions: dict[str, Session] = field(default_factory=dict)
    experiment: tuple[Any, str | None] | None = None
    last_iteration: Any = None
    units_done: int = 0
    class0_draws: int = 0
    round: int = -1
    round_started: float = 0.0
    queue: list[Block] = field(default_factory=list)

    def prune_real(self, args: Any, real: Any, labels: Any, **kw: Any) -> Any:
        self.experiment = (labels, kw.get("dataset"))
        return _PRUNE_REAL(args, real, labels, **kw)

    def select_batch(self, args: Any, cls: int, real: torch.Tensor, *, net: torch.nn.Module, syn: Any,
                     labels: torch.Tensor | None = None, iteration: int | None = None, **extra: Any) -> Any:
        if self._starts_unit(cls, iteration):
            self._unit_boundary()
        if cls == 0 and len(self.blocks) == 1 and self.units_done == 0:  # the first unit: draws per class
            self.class0_draws += 1
        block = self.blocks[-1]
        if block.variant.ite is None:
            return real if labels is None else (real, labels)
        start = self.meter.now()
        step_labels = labels if labels is not None else torch.full((len(real),), cls, dtype=torch.long,
                                                                   device=real.device)
        step = MatchStep(self.run.upstream, cls, real, step_labels, net, syn, args, iteration, extra)
        kept_real, kept_labels = self._session(block.variant, args).select(step)
        block.ite_s += self.meter.now() - start
        block.drawn += len(real)
        block.kept += len(kept_real)
        return kept_real if labels is None else (kept_real, kept_labels)

    # -- units and blocks
    def _starts_unit(self, cls: int, iteration: Any) -> bool:
        if self.run.unit == "inner":
            return cls == 0
        new = iteration != self.last_iteration or not self.blocks
        self.last_iteration = iteration
        return new

    def _unit_boundary(self) -> None:
        now = self.meter.now()
        if not self.blocks:  # the script's first draw: setup is over
            self.setup_s = now - self.setup_started
            say(f"{self.run.script}: setup done in {self.setup_s:.1f} s; warm-up units next")
            self._open()
            return
        block = self.blocks[-1]
        self.units_done += 1
        if self.units_done < block.units:
            return
        block.seconds = now - block.start
        block.peak_mib = self.meter.peak_growth_mib()
        say(f"{self.run.script}: {'round ' + str(self.round) if block.timed else 'warm-up'}, {block.variant.name}: "
            f"{block.units} unit(s) in {block.seconds:.1f} s (ITE {block.ite_s:.1f} s)")
        self._open()

    def _open(self) -> None:
        if not self.queue:
            self._plan_round()
        block = self.queue.pop(0)
        self.blocks.append(block)
        self.units_done = 0
        self.meter.reset()
        block.start = self.meter.now()

    def _plan_round(self) -> None:
        self.round += 1
        wall = time.perf_counter()
        if self.round >= 2:  # stop when the next round, as long as the last, would pass the budget
            last = wall - self.round_started
            if self.round - 1 >= self.max_rounds or wall - self.timed_started + last > self.budget:
                raise Finished
        if self.round == 1:
            self.timed_started = wall
        self.round_started = wall
        if self.round == 0:  # one warm-up unit per variant
            self.queue = [Block(v, 1, timed=False) for v in self.variants]
            return
        shift = (self.round - 1) % len(self.variants)
        order = self.variants[shift:] + self.variants[:shift]
        self.queue = [Block(v, self._units(v), timed=True) for v in order]

    def _units(self, variant: Variant) -> int:
        """Units for whole selection cycles: ``k`` draws of every class (the unpatched block: the longest k)."""
        per_unit = max(1, self.class0_draws)
        k = variant.interval if variant.ite else max(v.interval for v in self.variants)
        return k // math.gcd(k, per_unit)

    def _session(self, variant: Variant, args: Any) -> Session:
        if variant.name not in self.sessions:
            if self.experiment is None:
                raise SystemExit("the script drew a batch before prune_real: is the hook patch applied?")
            mine = copy.copy(args)
            mine.bilp_ite, mine.bilp_interval = variant.ite, variant.interval
            mine.bilp_out = str(self.records / variant.name.replace(" ", "-").replace("=", ""))
            session = Session(mine, self.run.upstream, PluginManager())
            labels, dataset = self.experiment
            session.start_experiment(labels, None, dataset)
            self.sessions[variant.name] = session
        return self.sessions[variant.name]


_PRUNE_REAL = runtime.prune_real


# ------------------------------------------------------------------------------------------------- report
def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def report(rotator: Rotator, run: Run, name: str, cuda: bool, load: tuple[float, float]) -> str:
    timed = [b for b in rotator.blocks if b.timed and b.seconds > 0]
    rounds = len(timed) // len(rotator.variants)
    per_unit = {v.name: [b.seconds / b.units for b in timed if b.variant == v] for v in rotator.variants}
    ite_unit = {v.name: [b.ite_s / b.units for b in timed if b.variant == v] for v in rotator.variants}
    base = _median(per_unit[VARIANTS[0].name])
    lines = [
        f"## {name}: {run.script} {' '.join(run.args)}",
        f"device {torch.cuda.get_device_name() if cuda else 'cpu'}, torch {torch.__version__}, threads "
        f"{torch.get_num_threads()}, clock {'wall (synchronised)' if cuda else 'process CPU time'}; "
        f"{rounds} timed round(s), {sum(b.units for b in timed)} units timed; unit = "
        f"{'inner iteration' if run.unit == 'inner' else 'iteration'} ({rotator.class0_draws} draw(s) per class); "
        f"setup {rotator.setup_s:.1f} s; whole run = {run.run_units} units ({run.run_note}); load average "
        f"{load[0]:.2f} -> {load[1]:.2f}",
        "",
        "| variant | s/unit | ITE s/unit | ITE / iter | total / iter | ITE / run | peak MiB | keep |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for v in rotator.variants:
        total = _median(per_unit[v.name])
        ite = _median(ite_unit[v.name])
        mine = [b for b in timed if b.variant == v]
        peak = max((b.peak_mib for b in mine), default=float("nan"))
        if v.ite is None:
            lines.append(f"| {v.name} | {total:.4f} | - | - | 1.000 | - | {peak:.0f} | - |")
            continue
        per_class = max(1, rotator.class0_draws)
        cycle = ite * v.interval / per_class  # one selection of every class
        warm = next((b.ite_s for b in rotator.blocks if not b.timed and b.variant == v), 0.0)
        one_off = max(0.0, warm - cycle * max(1, per_class // v.interval))
        run_share = (run.run_units * ite + one_off) / (rotator.setup_s + run.run_units * base)
        keep = sum(b.kept for b in mine) / max(1, sum(b.drawn for b in mine))
        lines.append(f"| {v.name} | {total:.4f} | {ite:.4f} | {ite / base:.1%} | {total / base:.3f} | "
                     f"{run_share:.1%} | {peak:.0f} | {keep:.3f} |")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------------- data
def random_cifar10(dest: Path, per_class: int) -> Path:
    """A ``cifar-10-batches-py`` layout of uniform random images: ``per_class`` training and 10 test images per
    class (speed only: timings do not depend on pixel values)."""
    folder = dest / layouts.FOLDER
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    train = 10 * per_class
    names = [*layouts.TRAIN_FILES, "test_batch"]
    sizes = [train // 5 + (i < train % 5) for i in range(5)] + [100]
    for name, n in zip(names, sizes):
        batch = {"batch_label": name, "labels": (np.arange(n) % 10).tolist(), "filenames": [""] * n,
                 "data": rng.integers(0, 256, (n, 3072), dtype=np.uint8)}
        with open(folder / name, "wb") as f:
            pickle.dump(batch, f)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": [str(c) for c in range(10)], "num_cases_per_batch": train // 5,
                     "num_vis": 3072}, f)
    return dest


def data_root(run: Run, a: argparse.Namespace, tmp: Path) -> Path:
    per_class = run.per_class if a.per_class is None else a.per_class
    if run.data == "cifar10" and a.random_data:
        return random_cifar10(tmp / "data", per_class or 5000)
    if not a.data:
        raise SystemExit(f"run {run.script} reads {run.data}: set --data or BILP_DATA (a folder with MNIST/raw and "
                         "cifar-10-batches-py){'' if run.data == 'mnist' else ', or pass --random-data'}")
    if run.data == "cifar10" and per_class:
        layouts.write_cifar10_subset(a.data, tmp / "data", per_class, test_per_class=10)
        return tmp / "data"
    return Path(a.data).resolve()


def script_args(run: Run, data: Path, work: Path, extra: list[str]) -> list[str]:
    paths = (["--data_dir", str(data)] if run.upstream == "idc"
             else ["--data_path", str(data), "--save_path", str(work)])
    return [*run.args, *paths, "--bilp", "--bilp-beta", str(BETA), "--bilp-out", str(work / "record"), *extra]


# ---------------------------------------------------------------------------------------------- processes
def child(a: argparse.Namespace, extra: list[str]) -> None:
    run = PRESETS[a.preset][a.run]
    cuda = torch.cuda.is_available()
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix=f"bench-{a.run}-") as tmp_name:
        tmp = Path(tmp_name)
        tree = (Path(a.tree).resolve() if a.tree else
                apply.export_patched(apply.Manifest.load(ROOT / "adapters" / run.upstream), tmp / "upstream"))
        data = data_root(run, a, tmp)
        work = tmp / "work"
        work.mkdir()
        os.chdir(work)  # IDC writes ./results
        if run.upstream == "idm":
            sys.path.insert(0, str(ROOT / "tests" / "stubs"))  # torchnet's one meter class
        variants = tuple(v for v in VARIANTS if v.ite is None or v.name in a.variants)
        rotator = Rotator(run, variants, Meter(cuda), tmp / "records", a.budget, a.rounds)
        runtime.select_batch = rotator.select_batch  # the patched script looks both up on the module
        runtime.prune_real = rotator.prune_real
        rotator.setup_started = rotator.meter.now()
        try:
            launch.run_script(tree / run.script, script_args(run, data, work, extra), seed=a.seed, fake_clock=True,
                              skip_cifar_integrity=True, cuda_to_cpu=run.upstream == "idc", threads=a.threads)
        except Finished:
            pass
        else:
            raise SystemExit(f"{run.script} ended before the rounds were done")
        for session in [*rotator.sessions.values(), *([runtime._session] if runtime._session else [])]:
            session.record.close()  # now, while its folder exists
            atexit.unregister(session.record.close)
        print(report(rotator, run, a.run, cuda, (load_before, os.getloadavg()[0])), flush=True)


def parse(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    extra: list[str] = []
    if "--" in argv:
        extra = argv[argv.index("--") + 1:]
        argv = argv[:argv.index("--")]
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("--preset", choices=sorted(PRESETS), default="cpu")
    p.add_argument("--run", nargs="+", choices=["dc", "dm", "idc", "idm"], default=["dc", "dm", "idc", "idm"])
    p.add_argument("--variants", nargs="+", choices=[v.name for v in VARIANTS if v.ite],
                   default=[v.name for v in VARIANTS if v.ite], help="level-2 variants (unpatched always runs)")
    p.add_argument("--budget", type=float, default=None,
                   help="wall seconds for the timed rounds of one run (default: cpu 60, paper 240)")
    p.add_argument("--rounds", type=int, default=5, help="at most this many timed rounds")
    p.add_argument("--data", default=os.environ.get("BILP_DATA"), help="data root (default: $BILP_DATA)")
    p.add_argument("--random-data", action="store_true",
                   help="CIFAR-10 runs: random images in the CIFAR-10 layout (speed only; no data set needed)")
    p.add_argument("--per-class", type=int, default=None,
                   help="CIFAR-10 runs: training images per class (default: the preset's; a real batch larger than "
                        "it is cut to it, e.g. IDM's default 256 against the cpu preset's 50)")
    p.add_argument("--tree", default=None, help="a patched upstream tree (one --run; default: export the "
                                                "submodule with the adapter's series into a temporary folder)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.budget is None:
        a.budget = BUDGETS[a.preset]
    if a.tree and len(a.run) > 1:
        p.error("--tree names one upstream tree: pass one --run")
    return a, extra


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    a, extra = parse(argv)
    if a.child:
        a.run = a.run[0]
        child(a, extra)
        return
    print(f"# bench_overhead --preset {a.preset}: runs {', '.join(a.run)}; budget {a.budget:.0f} s of timed rounds "
          f"per run (setup and warm-up on top), at most {a.rounds} rounds", flush=True)
    for name in a.run:
        own = argv[:argv.index("--")] if "--" in argv else argv
        cmd = [sys.executable, __file__, *_without_run(own), "--run", name, "--child",
               *(["--", *extra] if extra else [])]
        started = time.perf_counter()
        proc = subprocess.run(cmd, check=False)
        if proc.returncode:
            raise SystemExit(f"run {name} failed ({proc.returncode})")
        print(f"({name}: {time.perf_counter() - started:.0f} s wall in all)\n", flush=True)


def _without_run(argv: list[str]) -> list[str]:
    """``argv`` without ``--run`` and its values."""
    out, skipping = [], False
    for x in argv:
        if x == "--run":
            skipping = True
            continue
        if skipping and not x.startswith("--"):
            continue
        skipping = False
        out.append(x)
    return out


if __name__ == "__main__":
    main()
