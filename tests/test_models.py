"""ConvNet: DatasetCondensation's layer structure, parameter names and (with its source present) values."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch
from torch import nn

from bilp_plugin.errors import BiLPError
from bilp_plugin.method.convnet import ConvNet

UPSTREAM = Path(__file__).resolve().parents[1] / "third_party" / "DatasetCondensation" / "networks.py"
SHAPES = [(3, (32, 32), 2048), (1, (28, 28), 2048), (1, (8, 8), 128), (3, (64, 64), 8192)]


def test_layer_structure_and_parameter_names() -> None:
    net = ConvNet(3, 10)
    kinds = [type(m) for m in net.features]
    assert kinds == [nn.Conv2d, nn.GroupNorm, nn.ReLU, nn.AvgPool2d] * 3
    norm = net.features[1]
    assert (norm.num_groups, norm.num_channels, norm.affine) == (128, 128, True)
    names = [f"features.{i}.{p}" for i in (0, 1, 4, 5, 8, 9) for p in ("weight", "bias")]
    assert list(net.state_dict()) == names + ["classifier.weight", "classifier.bias"]


def test_first_padding_follows_upstream() -> None:
    assert ConvNet(1, 10).features[0].padding == (3, 3) and ConvNet(3, 10).features[0].padding == (1, 1)
    assert ConvNet(1, 10).features[4].padding == (1, 1)


@pytest.mark.parametrize("channel, im_size, features", SHAPES)
def test_embed_and_forward_shapes(channel: int, im_size: tuple[int, int], features: int) -> None:
    net = ConvNet(channel, 7, im_size=im_size)
    x = torch.randn(2, channel, *im_size)
    embedding = net.embed(x)
    assert embedding.shape == (2, features)
    assert torch.equal(net(x), net.classifier(embedding))


def test_width_and_depth() -> None:
    net = ConvNet(1, 10, width=16, depth=2, im_size=(8, 8))
    assert len(net.features) == 8 and net.classifier.in_features == 16 * 3 * 3


def test_too_deep_for_the_image_is_an_error() -> None:
    with pytest.raises(BiLPError, match=r"depth 5 pools 8x8 inputs to nothing: use depth <= 3"):
        ConvNet(3, 10, depth=5, im_size=(8, 8))


@pytest.mark.parametrize("channel, im_size, features", SHAPES)
def test_matches_upstream_convnet(channel: int, im_size: tuple[int, int], features: int) -> None:
    if not UPSTREAM.is_file():
        pytest.skip(f"{UPSTREAM} missing: `git submodule update --init third_party/DatasetCondensation`")
    spec = importlib.util.spec_from_file_location("dc_networks", UPSTREAM)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    torch.manual_seed(0)
    upstream = module.ConvNet(channel, 10, 128, 3, "relu", "instancenorm", "avgpooling", im_size)
    torch.manual_seed(0)
    ours = ConvNet(channel, 10, 128, 3, im_size)
    theirs, mine = upstream.state_dict(), ours.state_dict()
    assert list(theirs) == list(mine) and all(torch.equal(theirs[k], mine[k]) for k in theirs)
    x = torch.randn(2, channel, *im_size)
    assert torch.equal(upstream(x), ours(x)) and torch.equal(upstream.embed(x), ours.embed(x))
