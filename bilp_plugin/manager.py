"""The pluggy plugin manager: the built-in plugins, then the ``bilp`` entry points, loaded once and on first use;
adapters from the ``bilp.adapters`` entry points, registered by name when an upstream (or a command) needs one."""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any

import pluggy

from bilp_plugin import hookspecs
from bilp_plugin.errors import BiLPError
from bilp_plugin.hookspecs import PROJECT

if TYPE_CHECKING:
    import argparse
    from pathlib import Path

    import numpy as np
    import torch

    from bilp_plugin.config import BiLPConfig, ScoringConfig
    from bilp_plugin.lab.hosts import Host
    from bilp_plugin.method.level1 import Subset
    from bilp_plugin.method.level2 import Selection, SelectionState
    from bilp_plugin.method.matchstep import MatchStep
    from bilp_plugin.method.realset import RealSet
    from bilp_plugin.method.scorefile import ScoreFile

BUILTIN_PLUGINS = ("bilp_plugin.method.scorefile", "bilp_plugin.method.empirical_loss",
                   "bilp_plugin.method.level2", "bilp_plugin.runtime.defaults")
ADAPTER_GROUP = f"{PROJECT}.adapters"
"""The entry-point group of adapters: ``<upstream name> = "<module of its hooks>"``."""


def adapter_entry_points() -> dict[str, str]:
    """Every installed adapter: upstream name -> module, in name order."""
    return {ep.name: ep.value for ep in sorted(entry_points(group=ADAPTER_GROUP), key=lambda ep: ep.name)}


def adapter_name(upstream: str) -> str:
    """The plugin name an adapter is registered under."""
    return f"adapter:{upstream}"


class PluginManager:
    """Typed access to every hook over a :class:`pluggy.PluginManager`."""

    def __init__(self) -> None:
        self._pm = pluggy.PluginManager(PROJECT)
        self._pm.add_hookspecs(hookspecs)
        self._loaded = False

    def load(self) -> None:
        """Register the built-in plugins and every ``bilp`` entry point, once."""
        if self._loaded:
            return
        for name in BUILTIN_PLUGINS:
            self._pm.register(importlib.import_module(name), name=name)
        self._pm.load_setuptools_entrypoints(PROJECT)
        self._pm.check_pending()
        self._loaded = True

    def register(self, plugin: object, name: str | None = None) -> None:
        """Register a plugin object or module (tests, hosts); a name already registered is kept."""
        self.load()
        if name is None or self._pm.get_plugin(name) is None:
            self._pm.register(plugin, name=name)
            self._pm.check_pending()

    def unregister(self, name: str) -> None:
        self._pm.unregister(name=name)

    def register_adapter(self, upstream: str, plugin: object | None = None) -> None:
        """Register the adapter of ``upstream``: ``plugin`` when given, else the module its ``bilp.adapters``
        entry point names (once: an adapter already registered under that name is kept)."""
        self.load()
        if self._pm.get_plugin(adapter_name(upstream)) is not None:
            return
        if plugin is None:
            module = adapter_entry_points().get(upstream)
            if module is None:
                known = ", ".join(adapter_entry_points()) or "none installed"
                raise BiLPError(f"no adapter for upstream {upstream!r} (adapters: {known}); an adapter is a module "
                                f"of hooks under the {ADAPTER_GROUP!r} entry-point group (docs/adapters.md)")
            plugin = importlib.import_module(module)
        self.register(plugin, name=adapter_name(upstream))

    def plugins(self) -> list[tuple[str, list[str]]]:
        """(name, implemented hooks) for every registered plugin: the built-ins, other plugins, then adapters,
        each by name."""
        self.load()
        rows = [(self._pm.get_name(plugin) or repr(plugin),
                 sorted(impl.name for impl in (self._pm.get_hookcallers(plugin) or [])))
                for plugin in self._pm.get_plugins()]
        order = {name: i for i, name in enumerate(BUILTIN_PLUGINS)}
        return sorted(rows, key=lambda row: (row[0].startswith(adapter_name("")), order.get(row[0], len(order)),
                                             row[0]))

    # ---------------------------------------------------------------------------------------- typed hook calls
    def score_samples(self, dataset: RealSet, config: ScoringConfig) -> ScoreFile:
        self.load()
        result = self._pm.hook.score_samples(dataset=dataset, config=config)
        if result is None:
            raise BiLPError("no plugin answered score_samples (is the built-in scorer unregistered?)")
        return result

    def meta_grad(self, step: MatchStep, method: str) -> torch.Tensor:
        self.load()
        result = self._pm.hook.meta_grad(step=step, method=method)
        if result is None:
            raise BiLPError(f"no plugin computes the ITE for upstream {step.upstream!r}: level 2 (--bilp-beta > 0) "
                            "needs its adapter's meta_grad")
        return result

    def filter_batch(self, norms: torch.Tensor, cls: int, state: SelectionState, config: BiLPConfig) -> Selection:
        self.load()
        result = self._pm.hook.filter_batch(norms=norms, cls=cls, state=state, config=config)
        if result is None:
            raise BiLPError("no plugin answered filter_batch (is the built-in rule unregistered?)")
        return result

    def check_script(self, upstream: str, script: str) -> None:
        self.load()
        self._pm.hook.check_script(upstream=upstream, script=script)

    def check_run(self, upstream: str, args: Any, config: BiLPConfig) -> None:
        self.load()
        self._pm.hook.check_run(upstream=upstream, args=args, config=config)

    def check_level1(self, upstream: str, args: Any, config: BiLPConfig, subset: Subset) -> None:
        self.load()
        self._pm.hook.check_level1(upstream=upstream, args=args, config=config, subset=subset)

    def after_level1(self, upstream: str, args: Any, config: BiLPConfig, subset: Subset) -> None:
        self.load()
        self._pm.hook.after_level1(upstream=upstream, args=args, config=config, subset=subset)

    def restrict_real(self, upstream: str, real: Any, kept: np.ndarray) -> Any:
        self.load()
        result = self._pm.hook.restrict_real(upstream=upstream, real=real, kept=kept)
        if result is None:
            raise BiLPError(f"level 1 cannot restrict a {type(real).__name__} of upstream {upstream!r}: its adapter "
                            "implements no restrict_real for it")
        return result

    def real_files(self, upstream: str, real: Any) -> list[str] | None:
        self.load()
        return self._pm.hook.real_files(upstream=upstream, real=real)

    def real_images(self, upstream: str, real: Any, dataset: str | None) -> torch.Tensor | None:
        self.load()
        return self._pm.hook.real_images(upstream=upstream, real=real, dataset=dataset)

    def make_host(self, name: str, options: argparse.Namespace, workdir: Path) -> Host:
        self.load()
        result = self._pm.hook.make_host(name=name, options=options, workdir=workdir)
        if result is None:
            raise BiLPError(f"adapter {name!r} offers no host for bilp demo/sweep/ablate")
        return result


_manager: PluginManager | None = None


def get_manager() -> PluginManager:
    """The process-wide manager (plugins load on the first hook call, not at import)."""
    global _manager
    if _manager is None:
        _manager = PluginManager()
    return _manager
