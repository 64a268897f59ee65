"""``ite._vjp`` builds the Jacobian once when the batch has more rows than the synthetic statistic has elements
(DM/IDM with ``batch_real`` above the embedding size): same ITE as one product per row and as the definition."""

from __future__ import annotations

import pytest
import torch

from bilp_plugin.method import ite


def embed(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    return torch.tanh(x.reshape(len(x), -1) @ w)


@pytest.mark.parametrize("batch", [3, 9])  # below and above the 2 + 2 output elements
def test_jacobian_path_equals_rows_path_and_leave_one_out(batch: int) -> None:
    g = torch.Generator().manual_seed(0)
    w1 = torch.randn(12, 2, generator=g, dtype=torch.float64)
    w2 = torch.randn(12, 2, generator=g, dtype=torch.float64)
    real = torch.randn(batch, 3, 4, generator=g, dtype=torch.float64)
    syn = torch.randn(2, 3, 4, generator=g, dtype=torch.float64)

    def stats(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # two output tensors, as layers would be
        return embed(x, w1), embed(x, w2) ** 2

    loss = ite.SeparableLoss(stats(real), lambda s: tuple(t.mean(0) for t in stats(s)), ite.MEAN_EMBEDDING)
    reference = ite.ite_naive(lambda r, s: ite.MEAN_EMBEDDING(tuple(t.mean(0) for t in stats(s)),
                                                              tuple(t.mean(0) for t in stats(r))),
                              real, ite.leaf(syn))
    for chunk in (1, None):
        torch.testing.assert_close(ite.ite_exact(loss, ite.leaf(syn), chunk=chunk), reference, rtol=1e-9, atol=1e-12)
        torch.testing.assert_close(ite.ite_taylor(loss, ite.leaf(syn), chunk=chunk), reference, rtol=1e-9,
                                   atol=1e-12)
    cot = tuple(torch.randn(batch, 2, generator=g, dtype=torch.float64) for _ in range(2))
    rows = ite._rows_looped(loss.synthetic, syn, cot)
    for chunk in (1, None):
        torch.testing.assert_close(ite._vjp(loss.synthetic, syn, cot, chunk), rows, rtol=1e-12, atol=1e-14)
        torch.testing.assert_close(ite._rows_batched(loss.synthetic, syn, cot, chunk), rows, rtol=1e-12,
                                   atol=1e-14)
