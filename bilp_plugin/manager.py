"""The pluggy plugin manager: built-in plugins, then entry points, loaded once and on first use."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

import pluggy

from bilp_plugin import PROJECT, hookspecs
from bilp_plugin.errors import BiLPError

if TYPE_CHECKING:
    import torch

    from bilp_plugin.adaptive import Selection, SelectionState
    from bilp_plugin.config import BiLPConfig, ScoringConfig
    from bilp_plugin.datasets import RealSet
    from bilp_plugin.scores import ScoreFile
    from bilp_plugin.step import MatchStep

BUILTIN_PLUGINS = ("bilp_plugin.scores", "bilp_plugin.scoring", "bilp_plugin.adaptive")
ADAPTERS = ("builtin", "dc", "mtt", "idc", "idm")


class PluginManager:
    """Typed access to the three hooks over a :class:`pluggy.PluginManager`."""

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
        """Register a plugin object or module (tests and adapters)."""
        self.load()
        if name is None or self._pm.get_plugin(name) is None:
            self._pm.register(plugin, name=name)
            self._pm.check_pending()

    def unregister(self, name: str) -> None:
        self._pm.unregister(name=name)

    def register_adapter(self, upstream: str) -> None:
        """Register ``adapters/<upstream>/plugin.py``, the hook implementations for that upstream."""
        name = f"bilp_adapters.{upstream}.plugin"
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as err:
            if err.name not in (name, f"bilp_adapters.{upstream}"):
                raise
            raise BiLPError(f"no adapter for upstream {upstream!r}: expected one of {', '.join(ADAPTERS)}") from None
        self.register(module, name=name)

    def plugins(self) -> list[tuple[str, list[str]]]:
        """(name, implemented hooks) for every registered plugin, in registration order."""
        self.load()
        return [
            (self._pm.get_name(plugin) or repr(plugin),
             sorted(impl.name for impl in (self._pm.get_hookcallers(plugin) or [])))
            for plugin in self._pm.get_plugins()
        ]

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

    @property
    def hook(self) -> Any:
        return self._pm.hook


_manager: PluginManager | None = None


def get_manager() -> PluginManager:
    """The process-wide manager (plugins load on the first hook call, not at import)."""
    global _manager
    if _manager is None:
        _manager = PluginManager()
    return _manager
