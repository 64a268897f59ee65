"""The pluggy plugin manager: the built-in plugins, then the ``bilp`` entry points, loaded once and on first use;
adapters from the ``bilp.adapters`` entry points, registered by name when an upstream (or a command) needs one.
A run calls its hooks through :class:`RunHooks`, which routes every call to the shared plugins and the run's own
adapter only."""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any

import pluggy

from bilp_plugin import hookspecs
from bilp_plugin.errors import BiLPError
from bilp_plugin.hookspecs import PROJECT

if TYPE_CHECKING:
    from pathlib import Path

    import numpy as np
    import torch

    from bilp_plugin.config import BiLPConfig, ScoringConfig
    from bilp_plugin.hosting import Host, HostSettings
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


ADAPTER_PREFIX = "adapter:"


def adapter_name(upstream: str) -> str:
    """The plugin name an adapter is registered under."""
    return f"{ADAPTER_PREFIX}{upstream}"


class PluginManager:
    """The plugins of this process over a :class:`pluggy.PluginManager`; typed hook calls through
    :meth:`run_hooks`."""

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
        return sorted(rows, key=lambda row: (row[0].startswith(ADAPTER_PREFIX), order.get(row[0], len(order)),
                                             row[0]))

    def score_samples(self, dataset: RealSet, config: ScoringConfig) -> ScoreFile:
        """``score_samples`` outside a run (``bilp score``, the lab's score files): the shared plugins only."""
        return self.run_hooks(None).score_samples(dataset, config)

    def run_hooks(self, upstream: str | None) -> RunHooks:
        """The hooks of one run of ``upstream``, its adapter registered first (:meth:`register_adapter`); ``None``:
        a call outside any upstream, which reaches the shared plugins only."""
        if upstream is not None:
            self.register_adapter(upstream)
        self.load()
        return RunHooks(self._pm, upstream)


class RunHooks:
    """Typed calls of every hook for one run: each reaches the shared plugins (built-ins, ``bilp`` entry points,
    plugins registered by name) and the run's own adapter, never another adapter registered in the same process.

    The routing is pluggy's: each call goes through ``subset_hook_caller`` without the other adapters, taken at
    the call (an adapter registered later is left out too). The hooks that concern one upstream get its name
    (``upstream``, ``make_host``'s ``name``) for the shared plugins; an adapter's implementation may leave that
    argument out, as pluggy allows any subset of a hook's arguments."""

    def __init__(self, pm: pluggy.PluginManager, upstream: str | None) -> None:
        self._pm = pm
        self.upstream = upstream

    def _hook(self, name: str) -> Any:
        mine = None if self.upstream is None else adapter_name(self.upstream)
        others = [plugin for plugin_name, plugin in self._pm.list_name_plugin()
                  if plugin_name.startswith(ADAPTER_PREFIX) and plugin_name != mine]
        return self._pm.subset_hook_caller(name, others)

    def _named(self) -> str:
        if self.upstream is None:
            raise BiLPError("an upstream's hook was called outside a run of that upstream (no adapter resolved)")
        return self.upstream

    def score_samples(self, dataset: RealSet, config: ScoringConfig) -> ScoreFile:
        result = self._hook("score_samples")(dataset=dataset, config=config)
        if result is None:
            raise BiLPError("no plugin answered score_samples (is the built-in scorer unregistered?)")
        return result

    def meta_grad(self, step: MatchStep, method: str) -> torch.Tensor:
        result = self._hook("meta_grad")(step=step, method=method)
        if result is None:
            raise BiLPError(f"no plugin computes the ITE for upstream {step.upstream!r}: level 2 (--bilp-beta > 0) "
                            "needs its adapter's meta_grad")
        return result

    def filter_batch(self, norms: torch.Tensor, cls: int, state: SelectionState, config: BiLPConfig) -> Selection:
        result = self._hook("filter_batch")(norms=norms, cls=cls, state=state, config=config)
        if result is None:
            raise BiLPError("no plugin answered filter_batch (is the built-in rule unregistered?)")
        return result

    def check_script(self, script: str) -> None:
        self._hook("check_script")(upstream=self._named(), script=script)

    def check_run(self, args: Any, config: BiLPConfig) -> None:
        self._hook("check_run")(upstream=self._named(), args=args, config=config)

    def check_level1(self, args: Any, config: BiLPConfig, subset: Subset) -> None:
        self._hook("check_level1")(upstream=self._named(), args=args, config=config, subset=subset)

    def after_level1(self, args: Any, config: BiLPConfig, subset: Subset) -> None:
        self._hook("after_level1")(upstream=self._named(), args=args, config=config, subset=subset)

    def restrict_real(self, real: Any, kept: np.ndarray) -> Any:
        result = self._hook("restrict_real")(upstream=self._named(), real=real, kept=kept)
        if result is None:
            raise BiLPError(f"level 1 cannot restrict a {type(real).__name__} of upstream {self.upstream!r}: its "
                            "adapter implements no restrict_real for it")
        return result

    def real_files(self, real: Any) -> list[str] | None:
        return self._hook("real_files")(upstream=self._named(), real=real)

    def real_images(self, real: Any, dataset: str | None) -> torch.Tensor | None:
        return self._hook("real_images")(upstream=self._named(), real=real, dataset=dataset)

    def make_host(self, options: HostSettings, workdir: Path) -> Host:
        result = self._hook("make_host")(name=self._named(), options=options, workdir=workdir)
        if result is None:
            raise BiLPError(f"adapter {self.upstream!r} offers no host for bilp demo/sweep/ablate")
        return result


_manager: PluginManager | None = None


def get_manager() -> PluginManager:
    """The process-wide manager (plugins load on the first hook call, not at import)."""
    global _manager
    if _manager is None:
        _manager = PluginManager()
    return _manager
