"""VQ-VAE-2 (Razavi et al., NeurIPS 2019): the two-level network of stdlib/gan/vqvae2.arch against
an independent PyTorch port of rosinality/vq-vae-2-pytorch's vqvae.py written here: same
state_dict keys and shapes in order, strict load, same reconstruction, codes and latent loss, the
same EMA codebook updates in training, same parameter count at the default sizes; the latent grid
sizes of the paper (256x256 → top 32x32, bottom 64x64); the straight-through gradients; and the
training topology of stdlib/gan/vqvae2_train.arch (its loss against the formula, reconstruction
error falls in a short run).
"""
from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
import torch.nn.functional as F

import archdsl
from topology_checks import step
from archdsl.ir.cost import cost

NET = "stdlib/gan/vqvae2.arch"
TRAIN = "stdlib/gan/vqvae2_train.arch"
pytestmark = pytest.mark.usefixtures("one_thread")


# ---------------------------------------------------------------------------------------------
# independent port of vqvae.py

class RefQuantize(nn.Module):  # vqvae.py Quantize (single process: no all_reduce)
    def __init__(self, dim, n_embed, decay=0.99, eps=1e-5):
        super().__init__()
        self.dim, self.n_embed, self.decay, self.eps = dim, n_embed, decay, eps
        embed = torch.randn(dim, n_embed)
        self.register_buffer("embed", embed)
        self.register_buffer("cluster_size", torch.ones(n_embed))
        self.register_buffer("embed_avg", embed.clone())

    def forward(self, input):
        flatten = input.reshape(-1, self.dim)
        dist = flatten.pow(2).sum(1, keepdim=True) - 2 * flatten @ self.embed + self.embed.pow(2).sum(0, keepdim=True)
        _, embed_ind = (-dist).max(1)
        embed_onehot = F.one_hot(embed_ind, self.n_embed).type(flatten.dtype)
        embed_ind = embed_ind.view(*input.shape[:-1])
        quantize = F.embedding(embed_ind, self.embed.transpose(0, 1))
        if self.training:
            embed_onehot_sum = embed_onehot.sum(0)
            embed_sum = flatten.transpose(0, 1) @ embed_onehot
            self.cluster_size.data.mul_(self.decay).add_(embed_onehot_sum, alpha=1 - self.decay)
            self.embed_avg.data.mul_(self.decay).add_(embed_sum, alpha=1 - self.decay)
            n = self.cluster_size.sum()
            cluster_size = (self.cluster_size + self.eps) / (n + self.n_embed * self.eps) * n
            self.embed.data.copy_(self.embed_avg / cluster_size.unsqueeze(0))
        diff = (quantize.detach() - input).pow(2).mean()
        quantize = input + (quantize - input).detach()
        return quantize, diff, embed_ind


class RefResBlock(nn.Module):
    def __init__(self, in_channel, channel):
        super().__init__()
        self.conv = nn.Sequential(nn.ReLU(), nn.Conv2d(in_channel, channel, 3, padding=1), nn.ReLU(),
                                  nn.Conv2d(channel, in_channel, 1))

    def forward(self, x):
        return self.conv(x) + x


class RefEncoder(nn.Module):
    def __init__(self, in_channel, channel, n_res_block, n_res_channel, stride):
        super().__init__()
        if stride == 4:
            blocks = [nn.Conv2d(in_channel, channel // 2, 4, stride=2, padding=1), nn.ReLU(),
                      nn.Conv2d(channel // 2, channel, 4, stride=2, padding=1), nn.ReLU(),
                      nn.Conv2d(channel, channel, 3, padding=1)]
        else:
            blocks = [nn.Conv2d(in_channel, channel // 2, 4, stride=2, padding=1), nn.ReLU(),
                      nn.Conv2d(channel // 2, channel, 3, padding=1)]
        blocks += [RefResBlock(channel, n_res_channel) for _ in range(n_res_block)] + [nn.ReLU()]
        self.blocks = nn.Sequential(*blocks)

    def forward(self, x):
        return self.blocks(x)


class RefDecoder(nn.Module):
    def __init__(self, in_channel, out_channel, channel, n_res_block, n_res_channel, stride):
        super().__init__()
        blocks = [nn.Conv2d(in_channel, channel, 3, padding=1)]
        blocks += [RefResBlock(channel, n_res_channel) for _ in range(n_res_block)] + [nn.ReLU()]
        if stride == 4:
            blocks += [nn.ConvTranspose2d(channel, channel // 2, 4, stride=2, padding=1), nn.ReLU(),
                       nn.ConvTranspose2d(channel // 2, out_channel, 4, stride=2, padding=1)]
        else:
            blocks.append(nn.ConvTranspose2d(channel, out_channel, 4, stride=2, padding=1))
        self.blocks = nn.Sequential(*blocks)

    def forward(self, x):
        return self.blocks(x)


class RefVQVAE2(nn.Module):
    def __init__(self, in_channel=3, channel=128, n_res_block=2, n_res_channel=32, embed_dim=64, n_embed=512):
        super().__init__()
        self.enc_b = RefEncoder(in_channel, channel, n_res_block, n_res_channel, stride=4)
        self.enc_t = RefEncoder(channel, channel, n_res_block, n_res_channel, stride=2)
        self.quantize_conv_t = nn.Conv2d(channel, embed_dim, 1)
        self.quantize_t = RefQuantize(embed_dim, n_embed)
        self.dec_t = RefDecoder(embed_dim, embed_dim, channel, n_res_block, n_res_channel, stride=2)
        self.quantize_conv_b = nn.Conv2d(embed_dim + channel, embed_dim, 1)
        self.quantize_b = RefQuantize(embed_dim, n_embed)
        self.upsample_t = nn.ConvTranspose2d(embed_dim, embed_dim, 4, stride=2, padding=1)
        self.dec = RefDecoder(embed_dim + embed_dim, in_channel, channel, n_res_block, n_res_channel, stride=4)

    def forward(self, x):
        enc_b = self.enc_b(x)
        enc_t = self.enc_t(enc_b)
        qt, diff_t, id_t = self.quantize_t(self.quantize_conv_t(enc_t).permute(0, 2, 3, 1))
        qt = qt.permute(0, 3, 1, 2)
        enc_b = torch.cat([self.dec_t(qt), enc_b], 1)
        qb, diff_b, id_b = self.quantize_b(self.quantize_conv_b(enc_b).permute(0, 2, 3, 1))
        qb = qb.permute(0, 3, 1, 2)
        dec = self.dec(torch.cat([self.upsample_t(qt), qb], 1))
        return dec, id_t, id_b, diff_t + diff_b



TINY = dict(channel=8, n_res_block=1, n_res_channel=4, embed_dim=4, n_embed=16, img=32)


def _ours(**kw):
    return archdsl.load_spec(NET, "VQVAE2", input_shape=[2, 3, kw.get("img", 32), kw.get("img", 32)], seed=0,
                             **{**TINY, **kw})


def _ref():
    return RefVQVAE2(3, channel=8, n_res_block=1, n_res_channel=4, embed_dim=4, n_embed=16)


def test_network_matches_the_port():
    torch.manual_seed(0)
    ref, ours = _ref(), _ours()
    sd = {k: (v.abs() + 0.5 if k.endswith("cluster_size") else torch.randn_like(v) * 0.3)
          for k, v in ref.state_dict().items()}
    assert [(k, tuple(v.shape)) for k, v in ours.state_dict().items()] == \
        [(k, tuple(v.shape)) for k, v in sd.items()]
    assert not any("quantize" in k and "conv" not in k for k, _ in ours.named_parameters())  # buffers only
    ref.load_state_dict(sd, strict=True)
    ours.load_state_dict(sd, strict=True)
    x = torch.randn(2, 3, 32, 32)
    for train in (False, True):  # eval, then a training forward that moves both codebooks
        ref.train(train), ours.train(train)
        with torch.no_grad():
            recon, id_t, id_b, diff = ref(x)
            out = ours(x)
        assert out["codes_t"].shape == (2, 4, 4) and out["codes_b"].shape == (2, 8, 8)
        assert out["codes_t"].dtype == torch.int64
        assert torch.equal(out["codes_t"], id_t) and torch.equal(out["codes_b"], id_b)
        assert len(id_b.unique()) > 1  # the codes are not trivially all one entry
        assert torch.allclose(out["recon"], recon, atol=1e-4)
        assert torch.allclose(out["commit_loss"], 0.25 * diff, atol=1e-6)  # latent_loss_weight 0.25
    moved = ours.state_dict()
    for k, v in ref.state_dict().items():
        assert torch.allclose(moved[k], v, atol=1e-5), k
    assert not torch.allclose(moved["quantize_t.embed"], sd["quantize_t.embed"])  # the update ran
    assert torch.allclose(moved["quantize_b.cluster_size"].sum(), 0.99 * sd["quantize_b.cluster_size"].sum() +
                          0.01 * 2 * 8 * 8)  # decay · n + (1 − decay) · (vectors in the batch)


def test_the_bottom_code_depends_on_the_top_code():
    """quantize_conv_b reads [dec_t(top code), bottom features]: moving the top codebook changes
    the bottom codes for the same image (the bottom latents are conditioned on the top)."""
    torch.manual_seed(1)
    ours = _ours().eval()
    ours.load_state_dict({k: (v.abs() + 0.5 if k.endswith("cluster_size") else torch.randn_like(v) * 0.3)
                          for k, v in ours.state_dict().items()})
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        before = ours(x)
        assert len(before["codes_b"].unique()) > 1
        ours.quantize_t.embed.mul_(-3.0)
        after = ours(x)
    assert not torch.equal(before["codes_b"], after["codes_b"])


def test_paper_latent_grids_and_parameter_count():
    """256x256 → top 32x32 and bottom 64x64 codes of 512x64 codebooks; params equal the port's."""
    g = archdsl.load_graph(NET, "VQVAE2", input_shape=[1, 3, 256, 256])
    shapes = {n.id: n.shape for n in g.nodes() if n.op == "vq_ema"}
    assert shapes["quantize_t"][0] == (1, 64, 32, 32) and shapes["quantize_t"][1] == (1, 32, 32)
    assert shapes["quantize_b"][0] == (1, 64, 64, 64) and shapes["quantize_b"][1] == (1, 64, 64)
    with torch.device("meta"):
        ref = RefVQVAE2()
    c = cost(g).totals
    assert c.params == sum(p.numel() for p in ref.parameters()) == 1_388_867
    assert c.buffers == sum(b.numel() for b in ref.buffers()) == 2 * (2 * 64 * 512 + 512)


def test_straight_through_gradients():
    """The reconstruction's gradient reaches both encoders through the quantisers, as does the
    commitment term's; the codebooks are buffers, moved by the EMA update alone."""
    torch.manual_seed(2)
    ours = _ours().train()
    x = torch.randn(2, 3, 32, 32)
    sd = dict(ours.named_parameters())
    enc = [sd["enc_b.blocks.0.weight"], sd["enc_t.blocks.0.weight"]]
    for term in ("recon", "commit_loss"):
        ours.zero_grad(set_to_none=True)
        ours(x)[term].sum().backward()
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in enc), term
    assert not ours.quantize_t.embed.requires_grad and ours.quantize_t.embed.grad is None


def test_forward_backward_and_fullgraph_compile():
    model = _ours().train()
    x = torch.randn(2, 3, 32, 32)
    out = model(x)
    (out["recon"].square().mean() + out["commit_loss"]).backward()
    assert all(p.grad is not None for p in model.parameters())
    compiled = torch.compile(model.eval(), fullgraph=True, backend="eager")
    with torch.no_grad():
        a, b = compiled(x), model(x)
    assert all(torch.allclose(a[k], b[k], atol=1e-5) for k in b)


def _topo():
    return archdsl.load_spec(TRAIN, "vqvae2", input_shape=[[4, 3, 32, 32]], seed=0, **TINY)


def test_topology_loss_is_the_vq_objective():
    """loss = MSE(recon, x) + 0.25 · Σ_levels ‖z − sg[e]‖², with the codebooks moved by the
    training forward (the same update as a direct call of the network from the same state)."""
    topo = _topo()
    model = topo.nets.model
    x = torch.rand(4, 3, 32, 32) * 2 - 1
    start = copy.deepcopy(model.state_dict())
    out = topo(x, phase="train")
    after = copy.deepcopy(model.state_dict())
    model.load_state_dict(start)
    with torch.no_grad():
        r = model(x)
        want = ((r["recon"] - x) ** 2).mean() + r["commit_loss"]
    assert torch.allclose(out.loss, want, atol=1e-6)
    assert torch.allclose(out.logs["recon"], ((r["recon"] - x) ** 2).mean(), atol=1e-6)
    assert all(torch.allclose(after[k], v) for k, v in model.state_dict().items())
    assert not torch.equal(after["quantize_b.embed"], start["quantize_b.embed"])


def test_reconstruction_error_falls():
    """60 Adam steps on four smooth images: the reconstruction error falls by over a fifth (a faster
    codebook average, decay 0.8, for so short a run)."""
    topo = archdsl.load_spec(TRAIN, "vqvae2", input_shape=[[4, 3, 32, 32]], seed=0,
                             **{**TINY, "channel": 16, "embed_dim": 8, "decay": 0.8})
    g = torch.Generator().manual_seed(0)
    # smooth synthetic images (bilinear upsampling of 4x4 noise): structure the codes can carry
    x = F.interpolate(torch.rand(4, 3, 4, 4, generator=g) * 2 - 1, size=(32, 32), mode="bilinear")
    opt = torch.optim.Adam(topo.parameters(phase="train"), lr=3e-3)
    recs = []
    for _ in range(60):
        out = step(topo, opt, x, phase="train")
        recs.append(out.logs["recon"].item())
    assert recs[-1] < 0.8 * recs[0]
