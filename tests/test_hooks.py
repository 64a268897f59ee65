"""The hook spec and the plugin manager: built-ins, overrides of each hook, listing, documentation."""

from __future__ import annotations

import importlib
import inspect
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from bilp_plugin import hookimpl, hookspecs
from bilp_plugin.method.level2 import Selection, SelectionState
from bilp_plugin.config import BiLPConfig, ScoringConfig
from bilp_plugin.method.realset import RealSet
from bilp_plugin.errors import BiLPError
from bilp_plugin.hosting import HostSettings
from bilp_plugin.manager import PluginManager, adapter_entry_points
from bilp_plugin.method.scorefile import ScoreFile
from bilp_plugin.method.matchstep import MatchStep

HOOKS = sorted(name for name, f in inspect.getmembers(hookspecs, inspect.isfunction) if hasattr(f, "bilp_spec"))
"""Every hook of the spec (the registry drives the documentation and coverage tests)."""
DOCS = Path(__file__).resolve().parent.parent / "docs" / "hooks.md"


def _realset() -> RealSet:
    return RealSet(name="toy", images=torch.zeros(4, 1, 2, 2), labels=torch.tensor([0, 1, 0, 1]), num_classes=2,
                   mean=(0.0,), std=(1.0,))


class Override:
    @hookimpl(tryfirst=True)
    def score_samples(self, dataset: RealSet, config: ScoringConfig) -> ScoreFile:
        return ScoreFile(np.full(len(dataset.labels), 7.0), dataset.labels.numpy(), {"by": "override"})

    @hookimpl
    def meta_grad(self, step: MatchStep, method: str) -> torch.Tensor:
        return torch.arange(len(step.real), dtype=torch.float)

    @hookimpl(tryfirst=True)
    def filter_batch(self, norms: torch.Tensor, cls: int, state: SelectionState, config: BiLPConfig) -> Selection:
        return Selection(keep=norms < 2)


def test_builtins_are_registered_once() -> None:
    manager = PluginManager()
    manager.load()
    manager.load()
    names = dict(manager.plugins())
    assert names["bilp_plugin.method.empirical_loss"] == ["score_samples"]
    assert names["bilp_plugin.method.scorefile"] == ["score_samples"]
    assert names["bilp_plugin.method.level2"] == ["filter_batch"]


def test_a_plugin_overrides_every_hook(tmp_path: Path) -> None:
    manager = PluginManager()
    manager.register(Override(), name="override")
    assert manager.score_samples(_realset(), ScoringConfig()).meta == {"by": "override"}
    step = MatchStep("toy", 0, torch.zeros(4, 3), torch.zeros(4, dtype=torch.long), torch.nn.Identity(), None, None)
    hooks = manager.run_hooks(None)
    norms = hooks.meta_grad(step, "exact")
    assert norms.tolist() == [0, 1, 2, 3]
    keep = hooks.filter_batch(norms, 0, SelectionState(0.1), BiLPConfig(beta=0.5)).keep
    assert keep.tolist() == [True, True, False, False]


def test_declining_falls_through_to_the_builtin() -> None:
    class Declines:
        @hookimpl(tryfirst=True)
        def filter_batch(self, norms, cls, state, config):  # noqa: ANN001, ANN201
            return None

    manager = PluginManager()
    manager.register(Declines(), name="declines")
    selection = manager.run_hooks(None).filter_batch(torch.ones(8), 0, SelectionState(0.1), BiLPConfig(beta=0.2))
    assert selection.keep.all()  # zero variance: the built-in keeps everything


def test_bilp_plugins_lists_hooks_per_plugin() -> None:
    out = subprocess.run([sys.executable, "-m", "bilp_plugin", "plugins"], capture_output=True, text=True,
                         check=True).stdout
    assert re.search(r"bilp_plugin\.method\.level2\s+filter_batch", out)
    assert re.search(r"bilp_plugin\.method\.empirical_loss\s+score_samples", out)


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_is_documented_with_its_signature(hook: str) -> None:
    spec = getattr(hookspecs, hook)
    params = ", ".join(inspect.signature(spec).parameters)
    assert f"## {hook}({params})" in DOCS.read_text()
    assert "Called by" in (spec.__doc__ or "")


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_has_a_test(hook: str) -> None:
    tests = "".join(p.read_text() for p in Path(__file__).parent.rglob("*.py"))  # tests and their plugins
    assert f"def {hook}(" in tests


class Heard:
    """An adapter that logs every call it hears and answers with its own name."""

    def __init__(self, name: str, log: list[tuple[str, str]]) -> None:
        self.name, self.log = name, log

    @hookimpl
    def check_run(self, args, config):  # noqa: ANN001, ANN201
        self.log.append((self.name, "check_run"))

    @hookimpl
    def meta_grad(self, step, method):  # noqa: ANN001, ANN201
        self.log.append((self.name, "meta_grad"))
        return torch.full((len(step.real),), float(len(self.log)))

    @hookimpl
    def make_host(self, options, workdir):  # noqa: ANN001, ANN201
        return self.name


class Shared:
    """A shared plugin: it hears every run, with the run's upstream."""

    def __init__(self, log: list[tuple[str, str]]) -> None:
        self.log = log

    @hookimpl
    def check_run(self, upstream, args, config):  # noqa: ANN001, ANN201
        self.log.append(("shared", upstream))


def test_each_run_hears_only_its_own_adapter(tmp_path: Path) -> None:
    log: list[tuple[str, str]] = []
    manager = PluginManager()
    manager.register_adapter("a", Heard("a", log))
    manager.register_adapter("b", Heard("b", log))
    manager.register(Shared(log), name="shared")
    a, b = manager.run_hooks("a"), manager.run_hooks("b")
    manager.register_adapter("c", Heard("c", log))  # registered after the runs resolved theirs: still not heard
    a.check_run(None, BiLPConfig())
    assert sorted(log) == [("a", "check_run"), ("shared", "a")]
    log.clear()
    b.check_run(None, BiLPConfig())
    assert sorted(log) == [("b", "check_run"), ("shared", "b")]
    log.clear()
    step = MatchStep("b", 0, torch.zeros(3, 2), torch.zeros(3, dtype=torch.long), torch.nn.Identity(), None, None)
    b.meta_grad(step, "exact")
    a.meta_grad(step, "exact")
    assert log == [("b", "meta_grad"), ("a", "meta_grad")]
    assert (a.make_host(HostSettings(), tmp_path), b.make_host(HostSettings(), tmp_path)) == ("a", "b")
    with pytest.raises(BiLPError, match="no plugin computes the ITE"):
        manager.run_hooks(None).meta_grad(step, "exact")  # outside a run: no adapter answers


@pytest.mark.parametrize("module", [*adapter_entry_points().values(), "bilp_toy_adapter.plugin"])
def test_no_adapter_asks_which_upstream_runs(module: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """An adapter's implementations take no upstream name (``upstream``, ``make_host``'s ``name``) and read no
    ``step.upstream``: routing, not a guard, keeps them out of other upstreams' runs."""
    monkeypatch.syspath_prepend(str(Path(__file__).parent / "thirdparty"))
    plugin = importlib.import_module(module)
    impls = {name: f for name, f in inspect.getmembers(plugin) if hasattr(f, "bilp_impl")}
    assert impls, module
    for name, impl in impls.items():
        assert not {"upstream", "name"} & set(inspect.signature(impl).parameters), f"{module}.{name}"
    assert "step.upstream" not in inspect.getsource(plugin)
