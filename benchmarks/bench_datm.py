"""What BiLP level 1 saves in DATM: expert-training time of buffer_FTD.py, and the real set distillation holds in
memory (DATM.py), at several alphas, as ratios to alpha = 0.

    # CPU-sized (full CIFAR-10, a narrow ConvNet, one epoch of one expert, one distillation iteration)
    python benchmarks/bench_datm.py --data-root $BILP_DATA --scores CIFAR10_LossConverge.json \\
        --model ConvNetW32 --epochs 1 --threads 1
    # GPU-scale: DATM's CIFAR-10 buffer command (ConvNet, ZCA, 100 epochs), one expert per alpha
    python benchmarks/bench_datm.py --data-root $BILP_DATA --scores CIFAR10_LossConverge.json --zca --epochs 100

Protocol: the patched scripts (whole patch series, exported from the submodule to a work folder) run once per
alpha, one after the other, each in a fresh process and folder, seeded and with a fake clock (bilp launch), with
``--bilp --bilp-alpha A --bilp-scores FILE`` (alpha 0 with --bilp as well, so every run pays the same BiLP
overhead). ``buffer_FTD.py`` trains the experts (DATM's GSAM settings: rho 0.01, GSAM alpha 0.3, no momentum); each
child times, with perf_counter and process_time, the phases of its run by wrapping the upstream's own functions:
``setup`` (everything before the first training epoch: torchvision load, the per-sample tensor building loop, ZCA,
level 1), of which ``level1`` (prune_real), ``train`` (utils_gsam.epoch in train mode: batches, DSA augmentation,
GSAM's two forward/backward passes), ``test`` (the whole test set after every epoch), ``save`` and ``other``.
Then ``DATM.py`` distils one iteration from that alpha's experts (``--pix_init real``, no evaluation), and reports
the real set it holds once level 1 has run (``images_all`` and ``labels_all``, bytes), its resident memory (VmRSS)
at the first distillation step, and its peak (ru_maxrss).
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import resource
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import expert_timing

PHASES = ("setup", "level1", "train", "test", "save", "other")
MIB = 2**20


def _rss() -> int:
    """This process's resident memory now, bytes."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def buffer_child(out: str, launch_args: list[str], tree: Path) -> None:
    """Run buffer_FTD.py through bilp launch with its phases timed; write them to ``out`` at exit."""
    sys.path.insert(0, str(tree))
    import utils.utils_gsam as utils  # the upstream's, patched before buffer_FTD.py binds its names

    expert_timing.timed_buffer_child(out, launch_args, utils)


def distill_child(out: str, launch_args: list[str]) -> None:
    """Run DATM.py through bilp launch; write the real set it holds after level 1 and its memory to ``out``."""
    import torch

    from bilp_plugin import cli, runtime

    seen: dict[str, int] = {}
    prune_real, randperm = runtime.prune_real, torch.randperm

    def held(*args: Any, **kwargs: Any) -> Any:
        real = prune_real(*args, **kwargs)
        seen["real_bytes"] = sum(t.nbytes for t in real)
        seen["real_rows"] = len(real[0])
        return real

    def first_step(*args: Any, **kwargs: Any) -> Any:  # the matching loop draws its synthetic batches with it
        if "real_bytes" in seen:
            seen.setdefault("rss_first_step", _rss())
        return randperm(*args, **kwargs)

    runtime.prune_real, torch.randperm = held, first_step
    atexit.register(lambda: Path(out).write_text(json.dumps(
        {**seen, "peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024})))
    cli.main(["launch", *launch_args])


def build_parser() -> argparse.ArgumentParser:
    p = expert_timing.build_parser(__doc__.splitlines()[0])
    p.add_argument("--model", default="ConvNet", help="--model of both scripts")
    p.add_argument("--epochs", type=int, default=100, help="buffer_FTD.py --train_epochs")
    p.add_argument("--batch-train", type=int, default=256, help="buffer_FTD.py --batch_train")
    p.add_argument("--zca", action="store_true", help="ZCA whitening in both scripts (DATM's CIFAR setting)")
    p.add_argument("--threads", type=int, default=None, help="torch threads in each run")
    p.add_argument("--workdir", default=None, help="keep the runs here (default: a temporary folder)")
    return p


CONFIG = """dataset: CIFAR10
model: {model}
ipc: 1
syn_steps: 2
expert_epochs: 1
current_max_start_epoch: 1
max_start_epoch: 1
Iteration: 0
eval_it: 100
skip_first_eva: True
pix_init: real
zca: {zca}
buffer_path: buffers
data_path: {data}
"""


def launch_args(a: argparse.Namespace, script: Path, args: list[str]) -> list[str]:
    return ["--seed", "0", "--fake-clock", "--skip-cifar-integrity",
            *(["--threads", str(a.threads)] if a.threads else []), str(script), "--", *args]


def child_run(cwd: Path, kind: str, tree: Path, args: list[str]) -> dict[str, Any]:
    out = cwd / f"{kind}.json"
    env = {**os.environ, "WANDB_MODE": "disabled", "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(tree)}
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, __file__, f"--{kind}", str(out), str(tree), "--", *args], cwd=cwd,
                          env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        sys.exit(f"{kind} in {cwd} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return {"process_s": time.perf_counter() - start, **json.loads(out.read_text())}


def run_alpha(tree: Path, data: Path, scores: Path, alpha: float, a: argparse.Namespace, work: Path) -> dict[str, Any]:
    cwd = work / f"alpha-{alpha}"
    cwd.mkdir(parents=True)
    bilp = ["--bilp", "--bilp-alpha", str(alpha), "--bilp-scores", str(scores)]
    buffer = child_run(cwd, "buffer", tree, launch_args(a, tree / "buffer" / "buffer_FTD.py", [
        "--dataset", "CIFAR10", "--model", a.model, "--data_path", str(data), "--buffer_path", "buffers",
        "--num_experts", "1", "--save_interval", "1", "--train_epochs", str(a.epochs), "--batch_train",
        str(a.batch_train), "--rho_max", "0.01", "--rho_min", "0.01", "--alpha", "0.3", "--lr_teacher", "0.01",
        "--mom", "0", *(["--zca"] if a.zca else []), *bilp, "--bilp-out", "record-buffer"]))
    (cwd / "bench.yaml").write_text(CONFIG.format(model=a.model, zca=a.zca, data=data))
    distill = child_run(cwd, "distill", tree, launch_args(a, tree / "distill" / "DATM.py", [
        "--cfg", "bench.yaml", *bilp, "--bilp-out", "record-distill"]))
    level1 = json.loads((cwd / "record-buffer" / "level1.json").read_text()) if alpha > 0 else None
    return {"alpha": alpha, **buffer, "kept": level1["kept"] if level1 else None,
            **{f"distill_{k}": v for k, v in distill.items()}}


def print_table(rows: list[dict[str, Any]]) -> None:
    base = rows[0]
    for suffix, title in (("", "wall"), ("_cpu", "CPU (this process, all threads)")):
        print(f"\nbuffer_FTD.py, {title} seconds per phase")
        print(f"{'alpha':>5} {'kept':>6} {'total':>8} " + " ".join(f"{p:>8}" for p in PHASES))
        for r in rows:
            kept = r["kept"] if r["kept"] is not None else "all"
            print(f"{r['alpha']:>5} {kept:>6} {r['wall' + suffix]:>8.2f} "
                  + " ".join(f"{r[p + suffix]:>8.2f}" for p in PHASES))
    print("\nratios to alpha = 0 (expert training against 1 - alpha)")
    print(f"{'alpha':>5} {'1-alpha':>8} {'train cpu':>10} {'train cpu/(1-a)':>16} {'total cpu':>10} {'train':>7} "
          f"{'total':>7}")
    for r in rows:
        target = 1 - r["alpha"]
        train_cpu = r["train_cpu"] / base["train_cpu"]
        print(f"{r['alpha']:>5} {target:>8.2f} {train_cpu:>10.3f} {train_cpu / target:>16.3f} "
              f"{r['wall_cpu'] / base['wall_cpu']:>10.3f} {r['train'] / base['train']:>7.3f} "
              f"{r['wall'] / base['wall']:>7.3f}")
    print("\nDATM.py: the real set held after level 1, and the process's memory (MiB)")
    print(f"{'alpha':>5} {'rows':>6} {'real set':>9} {'ratio':>6} {'RSS at step 1':>14} {'peak RSS':>9}")
    for r in rows:
        print(f"{r['alpha']:>5} {r['distill_real_rows']:>6} {r['distill_real_bytes'] / MIB:>9.1f} "
              f"{r['distill_real_bytes'] / base['distill_real_bytes']:>6.3f} "
              f"{r['distill_rss_first_step'] / MIB:>14.1f} {r['distill_peak_rss'] / MIB:>9.1f}")


def main(argv: Sequence[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] in (["--buffer"], ["--distill"]):
        out, tree, rest = argv[1], Path(argv[2]), argv[4:]
        if argv[0] == "--buffer":
            buffer_child(out, rest, tree)
        else:
            distill_child(out, rest)
        return
    a = build_parser().parse_args(argv)
    header = (f"bench_datm: buffer_FTD.py and DATM.py, CIFAR-10 from {a.data_root} ({a.per_class or 'all'} train / "
              f"{a.test_per_class or 'all'} test per class), --model {a.model} --train_epochs {a.epochs} "
              f"--batch_train {a.batch_train}{' --zca' if a.zca else ''}, threads {a.threads or 'default'}, "
              f"scores {Path(a.scores).name}; one run per alpha, in order")
    expert_timing.run("datm", a, header, resolve_data=True, run_alpha=run_alpha, print_table=print_table)


if __name__ == "__main__":
    main()
