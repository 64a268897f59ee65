"""BiLP hooks for ``toy_upstream.py``: its meta loss (mean-embedding matching), its real-set structure, its checks,
and a host for ``bilp demo`` / ``bilp sweep``. Registered by the entry point ``bilp.adapters: toy``."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bilp_plugin import hookimpl
from bilp_plugin.config import BiLPConfig
from bilp_plugin.errors import BiLPError
from bilp_plugin.hosting import HostSettings
from bilp_plugin.method import ite
from bilp_plugin.method.level1 import Subset
from bilp_plugin.method.matchstep import MatchStep

UPSTREAM = "toy"


@hookimpl
def meta_grad(step: MatchStep, method: str) -> torch.Tensor:
    return ite.ite(ite.embedding_matching(step.net, step.real), ite.leaf(step.syn), method)


@hookimpl
def check_run(args: Any, config: BiLPConfig) -> None:
    if config.level2 and args.batch_real < 2:
        raise BiLPError(f"toy: level 2 needs --batch-real >= 2, got {args.batch_real}")


@hookimpl
def check_level1(subset: Subset) -> None:
    if min(subset.kept_per_class) < 1:
        raise BiLPError("toy: every class needs a real image for its synthetic initialisation")


@hookimpl
def restrict_real(real: Any, kept: np.ndarray) -> Any:
    keep = set(kept.tolist())
    return type(real)(real.images, real.labels, {c: [i for i in idx if i in keep] for c, idx in real.indices.items()})


@hookimpl
def real_images(real: Any) -> torch.Tensor:
    return real.images


class ToyHost:
    """Runs a point as one in-process run of ``toy_upstream.main``."""

    name = UPSTREAM

    def __init__(self, options: HostSettings) -> None:
        self.iterations = options.iterations

    def run(self, point: Any, run_dir: Path, scores: Path) -> dict[str, Any]:
        import json

        import toy_upstream

        start = time.perf_counter()
        toy_upstream.main(["--iterations", str(self.iterations), "--seed", str(point.seed),
                           *point.bilp_flags(scores), "--bilp-out", str(run_dir)])
        result = json.loads((run_dir / "result.json").read_text())
        return {**result, "distill_s": time.perf_counter() - start}


@hookimpl
def make_host(options: HostSettings) -> ToyHost:
    return ToyHost(options)
