"""``ite.Linearised``: the Jacobian built once when the batch has more rows than the synthetic statistic has elements
(DM/IDM with ``batch_real`` above the embedding size) gives the same ITE as one product per row and as the
definition; rows per vmapped product from free GPU memory, halved after an out-of-memory error."""

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
    s = ite.leaf(syn)
    outputs = tuple(t.mean(0) for t in stats(s))
    rows = torch.stack([torch.autograd.grad(outputs, s, (cot[0][i], cot[1][i]), retain_graph=True)[0]
                        for i in range(batch)])
    for chunk in (1, None, 2):
        linearised = ite.Linearised(loss.synthetic, syn, chunk)
        torch.testing.assert_close(linearised.outputs, outputs, rtol=0, atol=0)
        torch.testing.assert_close(linearised.rows(cot), rows, rtol=1e-12, atol=1e-14)


def test_gpu_rows_fill_a_share_of_free_memory() -> None:
    assert ite.gpu_rows(free_bytes=1000, graph_bytes=10, rows=64, factor=4) == int(ite.GPU_SHARE * 1000 / 40)
    assert ite.gpu_rows(free_bytes=10**12, graph_bytes=10, rows=64) is None  # everything at once
    assert ite.gpu_rows(free_bytes=0, graph_bytes=10, rows=64) == 1


def test_out_of_memory_halves_the_rows_and_remembers(monkeypatch: pytest.MonkeyPatch) -> None:
    """A vmapped product that runs out of GPU memory is retried with half the rows; the per-row guess doubles."""
    tried: list[int | None] = []
    real_vmap = ite.vmap

    def vmap(fn, chunk_size=None):  # type: ignore[no-untyped-def]
        tried.append(chunk_size)
        if chunk_size is None or chunk_size > 2:
            raise torch.cuda.OutOfMemoryError("fake")
        return real_vmap(fn, chunk_size=chunk_size)

    monkeypatch.setattr(ite, "vmap", vmap)
    monkeypatch.setattr(ite, "_learned", {"row_factor": ite.ROW_FACTOR})
    monkeypatch.setattr(ite.torch.cuda, "empty_cache", lambda: None)
    monkeypatch.setattr(ite.Linearised, "_chunk", lambda self, rows: 8)
    w = torch.randn(12, 3, dtype=torch.float64)
    linearised = ite.Linearised(lambda x: (torch.tanh(x.reshape(-1) @ w),), torch.randn(3, 4, dtype=torch.float64))
    cot = (torch.randn(5, 3, dtype=torch.float64),)
    got = linearised.rows(cot)
    assert tried == [8, 4, 2]
    assert ite._learned["row_factor"] == 4 * ite.ROW_FACTOR
    torch.testing.assert_close(got, ite.Linearised(linearised.fn, linearised.syn, 1).rows(cot), rtol=1e-12,
                               atol=1e-14)
