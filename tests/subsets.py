"""Level-1 subsets with given per-class kept counts, and an adapter's checks called as the runtime calls them."""

from __future__ import annotations

from typing import Any

import numpy as np

from bilp_plugin.config import BiLPConfig
from bilp_plugin.manager import PluginManager
from bilp_plugin.method.level1 import Subset


def subset(kept_per_class: list[int], extra: int = 1) -> Subset:
    """Each class ``c`` has ``kept_per_class[c] + extra`` samples, of which the first ``kept_per_class[c]`` are
    kept."""
    labels = np.repeat(np.arange(len(kept_per_class)), [n + extra for n in kept_per_class])
    kept = np.concatenate([np.flatnonzero(labels == c)[:n] for c, n in enumerate(kept_per_class)])
    return Subset(labels, np.sort(kept).astype(np.int64), {"kept_per_class": list(kept_per_class)})


def run_checks(plugin: Any, upstream: str, args: Any, config: BiLPConfig, kept: list[int] | None) -> None:
    """An adapter's checks as the runtime calls them, through a run's hooks (with the built-in checks):
    ``check_run`` before the run (``kept`` is ``None``), or ``check_level1`` with a subset of these per-class
    counts."""
    manager = PluginManager()
    manager.register_adapter(upstream, plugin)
    hooks = manager.run_hooks(upstream)
    if kept is None:
        hooks.check_run(args, config)
    else:
        hooks.check_level1(args, config, subset(kept))
