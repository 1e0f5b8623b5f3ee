"""A GAN's D-step calls D once per batch: BatchNorm's running statistics move once for the real
batch and once for the fake one, as in pytorch/examples' dcgan (`output = netD(real_cpu)`, then
`output = netD(fake.detach())`, dcgan/main.py), not once more for a logged value."""
from __future__ import annotations

import copy

import torch

import archdsl


def test_dcgan_d_step_updates_batch_norm_once_per_batch():
    topo = archdsl.load_spec("dcgan", ngf=8, ndf=8, img=32, input_shape=(4, 3, 32, 32), seed=0)
    D = topo.nets.D
    before = copy.deepcopy(D).train()
    seen: list[torch.Tensor] = []
    hook = D.register_forward_pre_hook(lambda m, args: seen.append(args[0].detach().clone()))
    real = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    out = topo(real, phase="d_step")
    hook.remove()
    assert len(seen) == 2 and torch.equal(seen[0], real)   # the real batch, then the fake one
    with torch.no_grad():
        for x in seen:       # the same two forward passes on the copy taken before the step
            probability = torch.sigmoid(before(x)).mean(dim=0)
            if x is seen[0]:  # the logged D(x) is the loss's own call on the real batch
                torch.testing.assert_close(out.logs["d_real"], probability)
    stats = {k: v for k, v in D.state_dict().items() if "running" in k or "num_batches" in k}
    assert stats and all(torch.equal(v, before.state_dict()[k]) for k, v in stats.items())
    assert all(v.item() == 2 for k, v in stats.items() if "num_batches" in k)


DEAD = """
network Lin() {
  in x: [B, 4]
  out x -> fc: linear(4) -> bn: bn
}
topology T() {
  in x: [B = 4, 4]
  net f = Lin()
  phase train(update=[f]) {
    unused = x -> f -> relu   # computed, never used: neither built nor counted
    loss = mean(x -> f, dims=[0, 1])
  }
}
"""


def test_a_phase_value_nothing_uses_is_not_built():
    ir = archdsl.load_topology(source=DEAD)
    graph = ir.phases["train"].graph
    assert [n.title for n in graph.nodes() if n.title in ("net", "relu")] == ["net"]
    topo = archdsl.load_spec(source=DEAD, seed=0)
    topo(torch.randn(4, 4), phase="train")
    assert topo.nets.f.bn.num_batches_tracked.item() == 1   # one call of f, not two
