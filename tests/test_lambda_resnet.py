"""LambdaResNets (stdlib/nets/lambda_resnet.arch): the layout per stage, timm's initialisation,
and training at a size other than the default (tests/test_reference.py checks keys, costs and
outputs against timm)."""
from __future__ import annotations

import math

import pytest
import torch

import archdsl


@pytest.fixture(scope="module")
def model():
    return archdsl.load_spec("lambda_resnet26t", input_shape=[2, 3, 64, 64], seed=0)


def test_lambda_blocks_sit_where_timm_puts_them(model):
    names = {k.split(".self_attn")[0] for k, _ in model.named_parameters() if ".self_attn." in k}
    assert names == {"stages.2.1", "stages.3.0", "stages.3.1"}
    g50 = archdsl.load_graph("lambda_resnet50ts")
    names = {n.id.split(".self_attn")[0] for n in g50.nodes() if ".self_attn." in n.id}
    assert names == {"stages.1.3", "stages.2.1", "stages.2.3", "stages.2.5", "stages.3.1"}


def test_initialisation_as_timm(model):
    # zero_init_last: every residual branch starts at zero
    for k, v in model.named_parameters():
        if k.endswith("conv3_1x1.bn.weight"):
            assert v.abs().max().item() == 0, k
    # LambdaLayer.reset_parameters: qkv ~ trunc_normal(std = C^-1/2), conv_lambda std = K^-1/2
    qkv = model.get_parameter("stages.3.0.self_attn.qkv.weight")
    assert qkv.std().item() == pytest.approx(512 ** -0.5, rel=0.03)
    lam = model.get_parameter("stages.3.0.self_attn.conv_lambda.weight")
    assert lam.std().item() == pytest.approx(16 ** -0.5, rel=0.1)
    # byobnet _init_weights: conv normal(0, sqrt(2 / fan_out)), linear normal(0, 0.01)
    conv = model.get_parameter("stages.1.0.conv2_kxk.conv.weight")
    assert conv.std().item() == pytest.approx(math.sqrt(2 / (128 * 9)), rel=0.03)
    fc = model.get_parameter("head.fc.weight")
    assert fc.std().item() == pytest.approx(0.01, rel=0.03)
    assert model.get_parameter("head.fc.bias").abs().max().item() == 0


def test_trains_at_another_size(model):
    x = torch.randn(2, 3, 64, 64)
    y = model(x)
    assert y.shape == (2, 1000)
    y.logsumexp(dim=1).mean().backward()
    # the zero-initialised last BN gets a gradient; the branch behind it none yet (zero_init_last)
    assert model.get_parameter("stages.3.1.conv3_1x1.bn.weight").grad.abs().sum() > 0
    assert model.get_parameter("stages.3.1.self_attn.conv_lambda.weight").grad.abs().sum() == 0
    assert model.get_parameter("stem.conv1.conv.weight").grad.abs().sum() > 0
