"""Expert-training wall time of MTT's buffer.py under BiLP level 1 at several alphas, as ratios to alpha = 0.

    # CPU-sized (2 cores): 500 training and 100 test images per class, a narrow ConvNet, 2 epochs
    python benchmarks/bench_mtt.py --data-root $BILP_DATA --scores CIFAR10_LossConverge.json \\
        --per-class 500 --test-per-class 100 --model ConvNetW32 --epochs 2 --threads 2
    # GPU-scale: MTT's CIFAR-10 buffer command (full set, ConvNet, ZCA, 50 epochs), one expert per alpha
    python benchmarks/bench_mtt.py --data-root $BILP_DATA --scores CIFAR10_LossConverge.json --zca --epochs 50

Protocol: the patched buffer.py (whole patch series, exported from the submodule to a work folder) runs once per
alpha, one after the other, each in a fresh process and folder, seeded and with a fake clock (bilp launch),
``--bilp --bilp-alpha A --bilp-scores FILE`` (alpha 0 with --bilp as well, so every run pays the same BiLP
overhead). Each child times, with perf_counter, the phases of its run by wrapping the upstream's own functions:
``setup`` (everything before the first training epoch: torchvision load, the per-sample tensor building loop, ZCA,
level 1), of which ``level1`` (prune_real: reading the score file, selection, records), ``train`` (utils.epoch in
train mode: batches, DSA augmentation, forward/backward), ``augment`` (DiffAugment, inside train), ``test``
(utils.epoch in test mode: buffer.py evaluates the whole test set after every epoch), ``save`` (torch.save of the
trajectories) and ``other``. Ratios divide each alpha's time by alpha 0's; the goal is that training time tracks
1 - alpha within 10%.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import expert_timing

PHASES = ("setup", "level1", "train", "augment", "test", "save", "other")


def child(out: str, launch_args: list[str]) -> None:
    """Run buffer.py through bilp launch with its phases timed (DiffAugment as ``augment``); write them to ``out``
    at exit."""
    from bilp_plugin import cli

    script = Path(cli.build_parser().parse_args(["launch", *launch_args]).script).resolve()
    sys.path.insert(0, str(script.parent))
    import utils  # the upstream's, imported before buffer.py binds its names

    expert_timing.timed_buffer_child(out, launch_args, utils, {"DiffAugment": "augment"})


def build_parser() -> argparse.ArgumentParser:
    p = expert_timing.build_parser(__doc__.splitlines()[0])
    p.add_argument("--model", default="ConvNet", help="buffer.py --model")
    p.add_argument("--epochs", type=int, default=50, help="buffer.py --train_epochs")
    p.add_argument("--experts", type=int, default=1, help="buffer.py --num_experts (and --save_interval)")
    p.add_argument("--batch-train", type=int, default=256, help="buffer.py --batch_train")
    p.add_argument("--zca", action="store_true", help="buffer.py --zca (MTT's CIFAR setting)")
    p.add_argument("--threads", type=int, default=None, help="torch threads in each run")
    p.add_argument("--workdir", default=None, help="keep the runs here (default: a temporary folder)")
    return p


def run_alpha(tree: Path, data: Path, scores: Path, alpha: float, a: argparse.Namespace, work: Path) -> dict[str, Any]:
    cwd = work / f"alpha-{alpha}"
    cwd.mkdir(parents=True)
    out = cwd / "phases.json"
    launch_args = ["--seed", "0", "--fake-clock", "--skip-cifar-integrity",
                   *(["--threads", str(a.threads)] if a.threads else []), str(tree / "buffer.py"), "--",
                   "--dataset", "CIFAR10", "--model", a.model, "--data_path", str(data), "--buffer_path", "buffers",
                   "--num_experts", str(a.experts), "--save_interval", str(a.experts), "--train_epochs",
                   str(a.epochs), "--batch_train", str(a.batch_train), *(["--zca"] if a.zca else []),
                   "--bilp", "--bilp-alpha", str(alpha), "--bilp-scores", str(scores), "--bilp-out", "record"]
    env = {**os.environ, "WANDB_MODE": "disabled", "PYTHONUNBUFFERED": "1"}
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, __file__, "--child", str(out), "--", *launch_args], cwd=cwd, env=env,
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        sys.exit(f"alpha {alpha} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    level1 = json.loads((cwd / "record" / "level1.json").read_text()) if alpha > 0 else None
    return {"alpha": alpha, "process_s": time.perf_counter() - start, **json.loads(out.read_text()),
            "kept": level1["kept"] if level1 else None}


def print_table(rows: list[dict[str, Any]]) -> None:
    base = rows[0]
    for suffix, title in (("", "wall"), ("_cpu", "CPU (this process, all threads)")):
        print(f"\n{title} seconds per phase" + (" (process: the whole child, interpreter start and imports too)"
                                                 if not suffix else ""))
        print(f"{'alpha':>5} {'kept':>6} {'process' if not suffix else '':>8} {'total':>8} "
              + " ".join(f"{p:>8}" for p in PHASES))
        for r in rows:
            kept = r["kept"] if r["kept"] is not None else "all"
            process = f"{r['process_s']:>8.2f}" if not suffix else " " * 8
            print(f"{r['alpha']:>5} {kept:>6} {process} {r['wall' + suffix]:>8.2f} "
                  + " ".join(f"{r[p + suffix]:>8.2f}" for p in PHASES))
    print("\nratios to alpha = 0 (goal: training time within 10% of 1 - alpha)")
    print(f"{'alpha':>5} {'1-alpha':>8} {'total':>7} {'train':>7} {'train/(1-a)':>12} {'total cpu':>10} "
          f"{'train cpu':>10} {'train cpu/(1-a)':>16}")
    for r in rows:
        target = 1 - r["alpha"]
        train, train_cpu = r["train"] / base["train"], r["train_cpu"] / base["train_cpu"]
        print(f"{r['alpha']:>5} {target:>8.2f} {r['wall'] / base['wall']:>7.3f} {train:>7.3f} {train / target:>12.3f} "
              f"{r['wall_cpu'] / base['wall_cpu']:>10.3f} {train_cpu:>10.3f} {train_cpu / target:>16.3f}")
    print("\nshare of alpha = 0's wall time: " + ", ".join(
        f"{p} {base[p] / base['wall']:.0%}" for p in PHASES if p not in ("level1", "augment"))
        + f"; augment is {base['augment'] / base['train']:.0%} of train")


def main(argv: Sequence[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--child"]:
        child(argv[1], argv[3:])
        return
    a = build_parser().parse_args(argv)
    header = (f"bench_mtt: buffer.py, CIFAR-10 from {a.data_root} ({a.per_class or 'all'} train / "
              f"{a.test_per_class or 'all'} test per class), --model {a.model} --train_epochs {a.epochs} "
              f"--num_experts {a.experts} --batch_train {a.batch_train}{' --zca' if a.zca else ''}, "
              f"threads {a.threads or 'default'}, scores {Path(a.scores).name}; one run per alpha, in order")
    expert_timing.run("mtt", a, header, resolve_data=False, run_alpha=run_alpha, print_table=print_table)


if __name__ == "__main__":
    main()
