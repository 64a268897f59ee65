"""Level 2 selection: the quantile rule, running statistics (Eq. 8), min_keep, lazy reuse."""

from __future__ import annotations

import math
from statistics import NormalDist

import pytest
import torch

from bilp_plugin import hookimpl
from bilp_plugin.method import level2
from bilp_plugin.config import BiLPConfig
from bilp_plugin.errors import BiLPError
from bilp_plugin.manager import PluginManager
from bilp_plugin.method.matchstep import MatchStep


@pytest.mark.parametrize("rule", ["relative", "paper"])
@pytest.mark.parametrize("beta", [0.1, 0.2, 0.5])
@pytest.mark.parametrize("side", ["both", "small", "large"])
def test_keeps_one_minus_beta_of_normal_samples(beta: float, side: str, rule: str) -> None:
    g = torch.Generator().manual_seed(0)
    config = BiLPConfig(beta=beta, side=side, rule=rule)
    state = level2.SelectionState(config.eta)
    kept = total = 0
    for _ in range(400):
        norms = 3.0 + 0.5 * torch.randn(256, generator=g, dtype=torch.float64)
        selection = level2.filter_batch(norms, 0, state, config)
        kept, total = kept + int(selection.keep.sum()), total + 256
    assert abs(kept / total - (1 - beta)) < 0.02


def test_two_sided_thresholds_are_the_normal_quantiles() -> None:
    low, high = level2.thresholds(2.0, 0.5, 0.2, "both")
    assert low == pytest.approx(NormalDist(2.0, 0.5).inv_cdf(0.1))
    assert high == pytest.approx(NormalDist(2.0, 0.5).inv_cdf(0.9))
    assert level2.thresholds(2.0, 0.5, 0.2, "small")[1] == float("inf")
    assert level2.thresholds(2.0, 0.5, 0.2, "large")[0] == float("-inf")
    assert level2.thresholds(2.0, 0.5, 0.0, "both") == (float("-inf"), float("inf"))


def test_running_statistics_follow_eq8() -> None:
    stats = level2.RunningStats(eta=0.1)
    first, second = torch.tensor([1.0, 2.0, 3.0]), torch.tensor([5.0, 7.0])
    stats.update(first)
    assert (stats.mean, stats.var) == pytest.approx((2.0, 1.0))  # initialised from the first batch, unbiased
    stats.update(second)
    assert stats.mean == pytest.approx(0.9 * 2.0 + 0.1 * 6.0)
    assert stats.var == pytest.approx(0.9 * 1.0 + 0.1 * 2.0)


def test_per_class_statistics_are_separate() -> None:
    state = level2.SelectionState(0.1, per_class=True)
    state.for_class(0).update(torch.tensor([1.0, 2.0]))
    assert state.for_class(1).mean is None
    shared = level2.SelectionState(0.1)
    assert shared.for_class(0) is shared.for_class(5)


def scale_jump_stream(seed: int = 0, batches: int = 300, batch: int = 32) -> list[tuple[int, torch.Tensor]]:
    """(class, ITE norms) per selection, as an upstream that draws a fresh network every 10 selections produces:
    lognormal rows within a batch (log-std 0.3, the spread measured in the upstreams), every network scaling all
    norms by 10 or by 1/10 in turn, 10 classes a factor 1.3 apart, the class cycling per selection."""
    g = torch.Generator().manual_seed(seed)
    stream = []
    for i in range(batches):
        cls = i % 10
        network_scale = 10.0 ** ((i // 10) % 2)
        log_norms = 0.3 * torch.randn(batch, generator=g, dtype=torch.float64) + math.log(1.3) * cls
        stream.append((cls, network_scale * log_norms.exp()))
    return stream


def kept_share(stream: list[tuple[int, torch.Tensor]], config: BiLPConfig) -> float:
    state = level2.SelectionState(config.eta, per_class=config.stats == "class")
    kept = sum(int(level2.filter_batch(norms, cls, state, config).keep.sum()) for cls, norms in stream)
    return kept / sum(len(norms) for _, norms in stream)


@pytest.mark.parametrize("beta", [0.1, 0.2, 0.4])
@pytest.mark.parametrize("side", ["both", "small", "large"])
def test_the_default_rule_keeps_one_minus_beta_through_tenfold_scale_jumps(beta: float, side: str) -> None:
    for seed in range(3):
        share = kept_share(scale_jump_stream(seed), BiLPConfig(beta=beta, side=side))
        assert abs(share - (1 - beta)) <= 0.03, f"seed {seed}: kept {share:.3f}, target {1 - beta:.2f}"


def test_the_paper_rule_loses_rows_through_the_same_jumps() -> None:
    """What the default rule fixes: Eq. 8 on the raw norms lags every jump and prunes far more than beta."""
    share = kept_share(scale_jump_stream(), BiLPConfig(beta=0.2, rule="paper"))
    assert share < 0.8 - 0.1


def test_the_relative_rule_ignores_a_scale_common_to_the_batch() -> None:
    g = torch.Generator().manual_seed(1)
    norms = (0.3 * torch.randn(64, generator=g, dtype=torch.float64)).exp()
    masks = []
    for scale in (1.0, 1000.0):
        state = level2.SelectionState(0.1)
        masks.append(level2.filter_batch(scale * norms, 0, state, BiLPConfig(beta=0.2)).keep)
    assert torch.equal(masks[0], masks[1]) and 0 < int(masks[0].sum()) < 64


def test_the_relative_rule_records_its_keep_interval_in_norm_units() -> None:
    norms = torch.tensor([1.0, 2.0, 3.0, 4.0, 100.0], dtype=torch.float64)
    selection = level2.filter_batch(norms, 0, level2.SelectionState(0.1), BiLPConfig(beta=0.4))
    assert selection.mu == pytest.approx(3.0)  # the batch's median norm
    kept = norms[selection.keep]
    assert bool((kept > selection.low).all() and (kept < selection.high).all())
    assert not selection.keep[-1]  # 100 lies above the interval


def test_equal_norms_keep_the_whole_batch() -> None:
    selection = level2.filter_batch(torch.ones(8), 0, level2.SelectionState(0.1), BiLPConfig(beta=0.4))
    assert bool(selection.keep.all())


def test_never_empty_keeps_nearest_to_mean() -> None:
    norms = torch.tensor([10.0, 11.0, 0.0, 12.0])
    selection = level2.quantile_keep(norms, mu=1.0, sigma=0.1, beta=0.5, side="both", min_keep=2)
    assert selection.keep.tolist() == [True, False, True, False]
    single = level2.quantile_keep(torch.tensor([5.0]), mu=0.0, sigma=1.0, beta=0.9, side="both")
    assert single.keep.tolist() == [True]


class CountingITE:
    def __init__(self) -> None:
        self.calls = 0

    @hookimpl
    def meta_grad(self, step: MatchStep, method: str) -> torch.Tensor:
        self.calls += 1
        return step.real.reshape(len(step.real), -1).sum(1).abs()


def _step(cls: int, seed: int) -> MatchStep:
    real = torch.randn(32, 3, generator=torch.Generator().manual_seed(seed))
    return MatchStep("toy", cls, real, torch.full((32,), cls), torch.nn.Identity(), None, None)


def test_lazy_reuse_until_next_selection() -> None:
    counter = CountingITE()
    manager = PluginManager()
    manager.register(counter, name="counter")
    rows: list[dict] = []
    selector = level2.LazySelector(BiLPConfig(beta=0.3, interval=3), manager.run_hooks(None), rows.append)
    first = selector(_step(0, 0))
    assert torch.equal(selector(_step(0, 1))[0], first[0]) and torch.equal(selector(_step(0, 2))[0], first[0])
    other = selector(_step(1, 3))
    assert counter.calls == 2 and not torch.equal(other[0], first[0])
    fourth = selector(_step(0, 4))
    assert counter.calls == 3 and not torch.equal(fourth[0], first[0])
    assert [r["class"] for r in rows] == [0, 1, 0] and [r["draw"] for r in rows] == [0, 0, 3]
    assert all(r["kept"] == len(k) for r, k in zip(rows, (first[0], other[0], fourth[0])))
    assert set(rows[0]) >= {"iteration", "batch", "kept", "mu", "sigma", "low", "high", "ite_s"}


def test_a_plugin_mask_is_checked() -> None:
    class Empty:
        @hookimpl
        def filter_batch(self, norms, cls, state, config):  # noqa: ANN001, ANN201
            return level2.Selection(keep=torch.zeros(len(norms), dtype=torch.bool))

    manager = PluginManager()
    manager.register(CountingITE(), name="ite")
    manager.register(Empty(), name="empty")
    with pytest.raises(BiLPError, match="non-empty boolean mask"):
        level2.LazySelector(BiLPConfig(beta=0.3), manager.run_hooks(None))(_step(0, 0))
