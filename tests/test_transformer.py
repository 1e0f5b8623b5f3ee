"""The Transformer (stdlib/nets/transformer.arch) and its seq2seq topology (stdlib/train/seq2seq.arch)."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import archdsl
from archdsl.ir.cost import cost
from archdsl.nn.text import sinusoid_table

TINY = dict(vocab=13, d_model=8, heads=2, ff=16, layers=2, drop=0.0, src_len=5, tgt_len=6)


pytestmark = pytest.mark.usefixtures("one_thread")


def tiny(**kw):
    return archdsl.load_spec("transformer_base", seed=0, input_shape=[(3, 5), (3, 6)], **{**TINY, **kw})


def test_param_count_is_the_papers_architecture():
    """Counted by hand from §3: per encoder layer 4 d² + 4 d (attention) + 2 d f + f + d (FFN) +
    4 d (two norms); decoder layers add a second attention and a third norm; one shared table."""
    for v, d, f in (("transformer_base", 512, 2048), ("transformer_big", 1024, 4096)):
        attn, ffn = 4 * d * d + 4 * d, 2 * d * f + f + d
        total = 6 * (attn + ffn + 4 * d) + 6 * (2 * attn + ffn + 6 * d) + 37000 * d
        assert cost(archdsl.load_graph(v)).totals.params == total


def test_sinusoid_table_matches_the_formula():
    pe = sinusoid_table(torch.zeros(1, 7, 6))[0]
    for pos in range(7):
        for i in range(3):
            angle = pos / 10000 ** (2 * i / 6)
            assert pe[pos, 2 * i].item() == pytest.approx(math.sin(angle), abs=1e-6)
            assert pe[pos, 2 * i + 1].item() == pytest.approx(math.cos(angle), abs=1e-6)


def test_decoder_is_causal_and_logits_are_tied_to_the_embedding():
    m = tiny().eval()
    src, tgt = torch.randint(0, 13, (3, 5)), torch.randint(0, 13, (3, 6))
    y = m(src, tgt)
    assert y.shape == (3, 6, 13)
    changed = tgt.clone()
    changed[:, 3] = (changed[:, 3] + 1) % 13
    y2 = m(src, changed)
    torch.testing.assert_close(y2[:, :3], y[:, :3])          # earlier positions never see position 3
    assert not torch.allclose(y2[:, 3:], y[:, 3:])
    names = [k for k, _ in m.named_parameters()]
    assert names.count("embed") == 1 and not any("lookup" in k or "proj" == k for k in names)
    with torch.no_grad():
        m.embed.mul_(2.0)   # one table: both embeddings and the output projection change with it
    assert not torch.allclose(m(src, tgt), y)


def test_tiny_transformer_compiles_without_graph_breaks():
    m = tiny().eval()
    src, tgt = torch.randint(0, 13, (3, 5)), torch.randint(0, 13, (3, 6))
    compiled = torch.compile(m, fullgraph=True, backend="eager")
    torch.testing.assert_close(compiled(src, tgt), m(src, tgt))
    m.train()
    m(src, tgt).sum().backward()
    assert m.embed.grad is not None


def seq2seq(**kw):
    src = ("from train.seq2seq import Seq2Seq\nfrom nets.transformer import Transformer\n"
           "variant t = Seq2Seq(model=Transformer(heads=2, ff=16, layers=1, drop=0.0), vocab=13, d_model=8, "
           "warmup=10, src_len=5, tgt_len=6)\n")
    return archdsl.load_spec(source=src, seed=0, input_shape=[(4, 5), (4, 7)], **kw)


def test_seq2seq_loss_is_teacher_forced_label_smoothed_cross_entropy():
    t = seq2seq()
    src, tgt = torch.randint(0, 13, (4, 5)), torch.randint(0, 13, (4, 7))
    logits = t.nets["transformer"](src, tgt[:, :-1])           # the decoder reads the shifted target
    logp = logits.log_softmax(-1).flatten(0, 1)
    labels = tgt[:, 1:].flatten()
    eps = 0.1
    expected = -((1 - eps) * logp[torch.arange(len(labels)), labels] + eps / 13 * logp.sum(-1)).mean()
    torch.testing.assert_close(t(src, tgt).loss, expected)
    assert t.lr_at(9) == pytest.approx((8 * 10) ** -0.5)        # the schedule's peak at warmup


def test_seq2seq_short_run_learns_to_copy():
    t = seq2seq()
    g = torch.Generator().manual_seed(0)
    src = torch.randint(1, 13, (64, 5), generator=g)
    tgt = torch.cat([torch.zeros(64, 1, dtype=torch.long), src, src[:, :1]], dim=1)  # start token 0
    from archdsl.topology.train import train
    curve = [h.losses["train"] for h in train(t, 160, lr=3e-2, data=[src, tgt])]
    assert sum(curve[-5:]) / 5 < 0.8 * sum(curve[:5]) / 5, curve
