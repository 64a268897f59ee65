"""``benchmarks/lowrank_ite.py``: the low-rank ITE it measures is the exact ITE at full rank, truncates as asked, and
the benchmark prints its table (scikit-learn's digits: no data path needed)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from bilp_plugin.method import ite
from bilp_plugin.method.convnet import ConvNet

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import lowrank_ite  # noqa: E402


@pytest.mark.parametrize("match", ["dc", "dm"])
def test_full_rank_is_the_exact_ite_and_fewer_directions_are_not(match: str) -> None:
    torch.manual_seed(0)
    net = ConvNet(1, 3, width=4, depth=2, im_size=(8, 8)).double()
    real, syn = torch.randn(6, 1, 8, 8, dtype=torch.float64), torch.randn(2, 1, 8, 8, dtype=torch.float64)
    if match == "dm":
        loss = ite.embedding_matching(net.embed, real)
    else:
        loss = ite.gradient_matching(net, real, torch.tensor([0, 1, 2, 0, 1, 2]), torch.tensor([1, 1]), "ours")
    h = ite.Linearised(loss.synthetic, syn)
    rows = ite.exact_cotangents(loss, h)
    exact = ite.ite_norms(ite.ite_exact(loss, syn))
    full, r = lowrank_ite.lowrank_norms(h, rows, "6")
    assert r == 6
    torch.testing.assert_close(full, exact, rtol=1e-9, atol=1e-12)
    two, r = lowrank_ite.lowrank_norms(h, rows, "2")
    assert r == 2 and not torch.allclose(two, exact, rtol=1e-3)


@pytest.mark.parametrize("match", ["dc", "dm"])
def test_the_range_finder_is_exact_at_full_rank_and_not_below(match: str) -> None:
    torch.manual_seed(0)
    net = ConvNet(1, 3, width=4, depth=2, im_size=(8, 8)).double()
    real, syn = torch.randn(6, 1, 8, 8, dtype=torch.float64), torch.randn(2, 1, 8, 8, dtype=torch.float64)
    if match == "dm":
        loss = ite.embedding_matching(net.embed, real)
    else:
        loss = ite.gradient_matching(net, real, torch.tensor([0, 1, 2, 0, 1, 2]), torch.tensor([1, 1]), "ours")
    h = ite.Linearised(loss.synthetic, syn)
    rows = ite.exact_cotangents(loss, h)
    exact = ite.ite_norms(ite.ite_exact(loss, syn))
    gen = torch.Generator().manual_seed(0)
    torch.testing.assert_close(lowrank_ite.range_finder_norms(h, rows, 6, gen), exact, rtol=1e-9, atol=1e-12)
    assert not torch.allclose(lowrank_ite.range_finder_norms(h, rows, 2, gen), exact, rtol=1e-3)


def test_energy_share_picks_the_fewest_directions() -> None:
    energy = torch.tensor([6.0, 3.0, 1.0], dtype=torch.float64)
    assert lowrank_ite.rank_of(energy, "e0.5") == 1
    assert lowrank_ite.rank_of(energy, "e0.9") == 2
    assert lowrank_ite.rank_of(energy, "e0.95") == 3
    assert lowrank_ite.rank_of(energy, "8") == 3


def test_prints_a_row_per_candidate(capsys: pytest.CaptureFixture[str]) -> None:
    assert lowrank_ite.main(["--dataset", "digits", "--batch", "8", "--width", "4", "--trials", "1",
                             "--class-step", "5"]) == 0
    out = capsys.readouterr().out
    for candidate in lowrank_ite.RANKS:
        assert f"| {candidate} | " in out
