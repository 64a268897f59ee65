"""ITE overhead inside IDM's iteration: the patched ``IDM_cifar10.py`` without and with level 2, side by side.

Protocol (printed with the results): one invocation launches the patched script (seeded, fake wall clock,
``bilp launch``) ``--repeats`` times in each configuration, alternating: ``base`` (no ``--bilp``) and
``bilp`` (``--bilp --bilp-beta B --bilp-interval K``, alpha 0). Each run records, with ``time.perf_counter``, the
moment every ``select_batch`` call begins (the hook line, once per class per matching step), so one iteration is
the time from its first draw to the next iteration's first draw: matching of all classes, the model queue's
training steps, everything but evaluation (disabled). Iteration 0 (first calls, torch.func warm-up, the first
selection round) is reported apart; the ratios use iterations 1..N, N a multiple of K, so they hold N / K
selection rounds. Two numbers:

* ``overhead``: (s/iter bilp - s/iter base) / s/iter base, the wall-clock cost as a user sees it (the kept batches
  are smaller, which saves a little of the real forward pass);
* ``ite share``: ITE seconds (``meta_grad`` + ``filter_batch``, from the run record) / s/iter base.

Examples::

    # CPU-sized (about 10 minutes on one busy core): 500 CIFAR-10 images, ipc 1, B 64, 10 measured iterations
    python benchmarks/bench_idm.py --data $BILP_DATA --threads 1
    # GPU scale: the published ipc-10 setting on the whole training set, 100 measured iterations
    python benchmarks/bench_idm.py --data $BILP_DATA --train-per-batch 10000 --ipc 10 --batch-real 256 \\
        --train-steps 10 --trained-bs 256 --iterations 100
    # speed only, without the data set: random images in the CIFAR-10 layout
    python benchmarks/bench_idm.py --random-data --train-per-batch 10000 ...
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import pickle
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from statistics import mean
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
STUBS = ROOT / "tests" / "stubs"
PUBLISHED = ["--dataset", "CIFAR10", "--model", "ConvNet", "--dsa_strategy", "color_crop_cutout_flip_scale_rotate",
             "--init", "real", "--lr_img", "0.2", "--net_train_real", "--outer_loop", "1", "--mismatch_lambda", "0",
             "--net_decay", "--embed_last", "1000", "--syn_ce", "--ce_weight", "0.5", "--train_net_num", "1",
             "--aug", "--num_exp", "1"]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--data", type=Path, help="folder holding cifar-10-batches-py (e.g. $BILP_DATA)")
    src.add_argument("--random-data", action="store_true", help="random images in the CIFAR-10 layout (speed only)")
    p.add_argument("--train-per-batch", type=int, default=100, help="training images taken from each of the 5 "
                   "batches (10000: the whole set)")
    p.add_argument("--idm", type=Path, default=None, help="a patched IDM tree (default: materialise the submodule)")
    p.add_argument("--ipc", type=int, default=1)
    p.add_argument("--batch-real", type=int, default=64)
    p.add_argument("--train-steps", type=int, default=2, help="--model_train_steps (published: 10)")
    p.add_argument("--trained-bs", type=int, default=64, help="--trained_bs (published: 256)")
    p.add_argument("--iterations", type=int, default=10, help="measured iterations (a multiple of --interval)")
    p.add_argument("--interval", type=int, default=10, help="--bilp-interval k")
    p.add_argument("--beta", type=float, default=0.1, help="--bilp-beta")
    p.add_argument("--ite", default="exact", choices=["exact", "taylor"], help="--bilp-ite")
    p.add_argument("--stats", default="global", choices=["global", "class"], help="--bilp-stats")
    p.add_argument("--repeats", type=int, default=1, help="runs per configuration, alternating")
    p.add_argument("--threads", type=int, default=None, help="torch threads in the runs")
    return p


def child(out: Path, launcher_argv: list[str]) -> None:
    """Run the script through the launcher, recording when each ``select_batch`` call begins."""
    from bilp_plugin import runtime
    from bilp_plugin.tools import launch

    stamps: list[tuple[Any, int, float]] = []
    select = runtime.select_batch

    def timed(args: Any, cls: int, real: Any, **kw: Any) -> Any:
        stamps.append((kw.get("iteration"), cls, time.perf_counter()))
        return select(args, cls, real, **kw)

    runtime.select_batch = timed  # the patched script looks it up on the module at every call
    atexit.register(lambda: out.write_text(json.dumps(stamps)))
    launch.main(launcher_argv)


def cifar_layout(dest: Path, source: Path | None, per_batch: int) -> Path:
    """A cifar-10-batches-py folder: the first ``per_batch`` rows of each batch of ``source``, or random images."""
    folder = dest / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    names = [*(f"data_batch_{i}" for i in range(1, 6)), "test_batch"]
    for name in names:
        n = per_batch if name != "test_batch" else 200
        if source is None:
            batch = {"batch_label": name, "labels": (np.arange(n) % 10).tolist(), "filenames": [""] * n,
                     "data": rng.integers(0, 256, (n, 3072), dtype=np.uint8)}
        else:
            with open(source / "cifar-10-batches-py" / name, "rb") as f:
                full = pickle.load(f, encoding="latin1")
            batch = {k: full[k][:n] if k != "batch_label" else full[k] for k in full}
        with open(folder / name, "wb") as f:
            pickle.dump(batch, f)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": [str(c) for c in range(10)], "num_cases_per_batch": per_batch,
                     "num_vis": 3072}, f)
    return dest


def patched_tree(dest: Path) -> Path:
    sys.path.insert(0, str(ROOT / "tests"))
    from upstreams import materialise

    return materialise("idm", dest)


def one_run(tree: Path, data: Path, work: Path, a: argparse.Namespace, bilp: bool) -> dict[str, Any]:
    work.mkdir(parents=True)
    stamps_file = work / "stamps.json"
    script_args = [*PUBLISHED, "--ipc", str(a.ipc), "--batch_real", str(a.batch_real), "--model_train_steps",
                   str(a.train_steps), "--trained_bs", str(a.trained_bs), "--Iteration", str(a.iterations + 1),
                   "--eval_interval", str(a.iterations + 10), "--data_path", str(data), "--save_path", str(work)]
    if bilp:
        script_args += ["--bilp", "--bilp-beta", str(a.beta), "--bilp-interval", str(a.interval), "--bilp-ite", a.ite,
                        "--bilp-stats", a.stats, "--bilp-out", str(work / "record")]
    launcher = ["--seed", "0", "--fake-clock", "--skip-cifar-integrity",
                *(["--threads", str(a.threads)] if a.threads else []), str(tree / "IDM_cifar10.py"), "--",
                *script_args]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(STUBS), str(ROOT), os.environ.get("PYTHONPATH", "")])}
    with open(work / "log.txt", "w") as log:
        proc = subprocess.run([sys.executable, __file__, "--child", str(stamps_file), "--", *launcher], cwd=work,
                              check=False,
                              env=env, stdout=log, stderr=subprocess.STDOUT)
    if proc.returncode:
        raise SystemExit(f"the {'bilp' if bilp else 'base'} run failed:\n{(work / 'log.txt').read_text()[-3000:]}")
    firsts: dict[int, float] = {}
    for it, _cls, t in json.loads(stamps_file.read_text()):
        firsts.setdefault(it, t)
    per_iter = {it: firsts[it + 1] - firsts[it] for it in sorted(firsts) if it + 1 in firsts}
    result = {"iter0": per_iter[0], "iters": [per_iter[i] for i in range(1, a.iterations + 1)], "ite_s": 0.0}
    if bilp:
        rows = [json.loads(line) for line in (work / "record" / "level2.jsonl").read_text().splitlines()]
        result["ite_s"] = sum(r["ite_s"] for r in rows if 1 <= r["iteration"] <= a.iterations)
        result["ite0_s"] = sum(r["ite_s"] for r in rows if r["iteration"] == 0)
        result["keep"] = sum(r["kept"] for r in rows) / sum(r["batch"] for r in rows)
    return result


def report(a: argparse.Namespace, runs: dict[str, list[dict[str, Any]]], device: str) -> None:
    base = mean(mean(r["iters"]) for r in runs["base"])
    bilp = mean(mean(r["iters"]) for r in runs["bilp"])
    ite = mean(r["ite_s"] / a.iterations for r in runs["bilp"])
    print(f"protocol: patched IDM_cifar10.py, ipc {a.ipc} --aug, batch_real {a.batch_real}, model_train_steps "
          f"{a.train_steps} x trained_bs {a.trained_bs}, {5 * a.train_per_batch} training images "
          f"({'random' if a.random_data else 'CIFAR-10'}), device {device}, threads {a.threads or 'default'}; "
          f"{a.repeats} run(s) per configuration, alternating; iterations 1..{a.iterations} measured "
          f"({a.iterations // a.interval} selection round(s) of k = {a.interval}); bilp: beta {a.beta}, ITE {a.ite}, "
          f"stats {a.stats}")
    print(f"{'config':<8}{'iter 0 s':>10}{'s/iter':>10}{'ITE s/iter':>12}{'keep rate':>11}")
    for name in ("base", "bilp"):
        rs = runs[name]
        keep = f"{mean(r['keep'] for r in rs):.3f}" if name == "bilp" else "-"
        ite_col = f"{mean(r['ite_s'] / a.iterations for r in rs):.4f}" if name == "bilp" else "-"
        print(f"{name:<8}{mean(r['iter0'] for r in rs):>10.3f}{mean(mean(r['iters']) for r in rs):>10.4f}"
              f"{ite_col:>12}{keep:>11}")
    print(f"overhead (s/iter bilp / base - 1): {bilp / base - 1:+.1%}")
    print(f"ite share (ITE s/iter / base s/iter): {ite / base:.1%}   goal <= 5% with k = 10")
    print(f"first selection round (iteration 0, warm-up included): {mean(r['ite0_s'] for r in runs['bilp']):.3f} s")


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child"]:
        child(Path(argv[1]), argv[argv.index("--") + 1:])
        return
    a = build_parser().parse_args(argv)
    if a.iterations % a.interval:
        raise SystemExit(f"--iterations must be a multiple of --interval ({a.interval}), got {a.iterations}")
    import torch

    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
    with tempfile.TemporaryDirectory(prefix="bench-idm-") as tmp:
        tmp_path = Path(tmp)
        tree = a.idm.resolve() if a.idm else patched_tree(tmp_path / "idm")
        data = cifar_layout(tmp_path / "data", None if a.random_data else a.data, a.train_per_batch)
        runs: dict[str, list[dict[str, Any]]] = {"base": [], "bilp": []}
        for rep in range(a.repeats):
            for name in ("base", "bilp"):
                runs[name].append(one_run(tree, data, tmp_path / f"{name}{rep}", a, bilp=name == "bilp"))
        report(a, runs, device)


if __name__ == "__main__":
    main()
