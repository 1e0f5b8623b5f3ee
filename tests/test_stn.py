"""Spatial transformer networks (stdlib/nets/stn.arch): the transformer starts as the identity,
resamples as F.affine_grid + F.grid_sample do for the theta its last layer produces, trains its
regression layer from the first step, and the variants run forward, backward and under
torch.compile(fullgraph=True)."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import archdsl

ST_ONLY = """
from nets.stn import MnistLoc
network N() {
  in x: [B, 1, H = 28, W = 28]
  out x -> stn: STN(MnistLoc())
}
"""


def _st_only():
    return archdsl.load_spec(source=ST_ONLY, seed=0, input_shape=[3, 1, 28, 28]).eval()


def test_transformer_starts_as_the_identity():
    model = _st_only()
    assert model.stn.fc_loc.weight.abs().max().item() == 0
    assert model.stn.fc_loc.bias.tolist() == [1, 0, 0, 0, 1, 0]
    x = torch.randn(3, 1, 28, 28)
    torch.testing.assert_close(model(x), x, atol=1e-4, rtol=1e-5)  # float32 grid rounding


def test_resampling_follows_theta():
    model = _st_only()
    theta = torch.tensor([0.5, 0.1, 0.2, -0.1, 0.7, -0.3])
    with torch.no_grad():
        model.stn.fc_loc.bias.copy_(theta)
    x = torch.randn(3, 1, 28, 28)
    grid = F.affine_grid(theta.view(1, 2, 3).expand(3, 2, 3), [3, 1, 28, 28], align_corners=False)
    expected = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    torch.testing.assert_close(model(x), expected, atol=1e-5, rtol=1e-5)


def test_regression_layer_gets_gradients_at_the_first_step():
    model = archdsl.load_spec("st_cnn_mnist", seed=0, input_shape=[4, 1, 28, 28]).train()
    F.cross_entropy(model(torch.randn(4, 1, 28, 28)), torch.tensor([0, 1, 2, 3])).backward()
    assert model.stn.fc_loc.weight.grad.abs().sum().item() > 0
    assert model.cnn.conv1.weight.grad.abs().sum().item() > 0


@pytest.mark.parametrize("variant, shape", [("st_cnn_mnist", [2, 1, 28, 28]), ("stn_resnet18", [2, 3, 32, 32])])
def test_variants_train_and_compile(variant, shape):
    model = archdsl.load_spec(variant, seed=0, input_shape=shape)
    x = torch.randn(shape)
    y = model(x)
    y.sum().backward()
    assert all(p.grad is not None for n, p in model.named_parameters() if not n.startswith("stn.loc"))
    compiled = torch.compile(model.eval(), fullgraph=True, backend="eager")
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), model(x))


def test_stn_resnet18_is_resnet18_plus_the_transformer():
    ours = archdsl.check_spec("stn_resnet18").totals.params
    resnet18 = archdsl.check_spec("resnet18").totals.params
    # ConvLoc: 5x5 convs 3→16 and 16→32 (with bias), linear 32→64, theta 64→6
    loc = (16 * 3 * 25 + 16) + (32 * 16 * 25 + 32) + (32 * 64 + 64) + (64 * 6 + 6)
    assert ours == resnet18 + loc
