"""Two processes with the gloo backend on localhost: topologies wrapped in DDP keep their
replicas identical, and where the maths says so equal one process on the concatenated batch.

The encoders here have no BatchNorm, so a mean-over-samples loss trained with DDP (gradients
averaged over ranks) must match a single process on the whole batch: SimCLR through the
gradient-carrying gather of its negatives, DINO through its all-reduced center, MoCo through
keys gathered before they are enqueued, SwAV through its all-reduced Sinkhorn sums.
"""
from __future__ import annotations

import csv
import math
import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.nn.parallel import DistributedDataParallel as DDP

import archdsl

NET = """
network Flat(num_classes: int = 0) {
  in x: [B, 3, H = 8, W = 8]
  out x -> conv1: conv(4, 3, stride=2) -> relu -> mean(dims=[2, 3]) -> fc: linear(8)
}
"""
SPECS = {
    "simclr": "from ssl.simclr import SimCLR\nvariant t = SimCLR(backbone=Flat, dim=8, hidden=16, img=8, "
              "head_bn=false)\n",  # the head's BN would need SyncBatchNorm (CUDA only) to equal one process
    "moco": "from ssl.moco import MoCo\nvariant t = MoCo(version=1, backbone=Flat, dim=8, hidden=16, K=16, m=0.9, img=8)\n",
    # SwAV: Sinkhorn sums all-reduced; prototypes frozen for step 0 (DDP then needs
    # find_unused_parameters, as the reference's prototypes get no gradient in those steps)
    "swav": ("from ssl.swav import SwAV\nvariant t = SwAV(backbone=Flat, dim=8, hidden=0, n_prototypes=16, "
             "n_local=2, global_size=8, local_size=8, freeze_iters=1)\n"),
    "dino": ("from ssl.dino import DINO\nvariant t = DINO(backbone=Flat, out_dim=16, n_local=2, "
             "global_size=8, local_size=8, m=0.9, freeze_last_layer=0)\n"),
}
WORLD, LOCAL, STEPS = 2, 4, 3


def _batches(name: str, step: int) -> list[torch.Tensor]:
    """The global batch of a step (every rank takes its slice along the batch dim)."""
    g = torch.Generator().manual_seed(100 + step)
    if name in ("dino", "swav"):
        return [torch.randn(2, WORLD * LOCAL, 3, 8, 8, generator=g),
                torch.randn(2, WORLD * LOCAL, 3, 8, 8, generator=g)]
    return [torch.randn(WORLD * LOCAL, 3, 8, 8, generator=g) for _ in range(2)]


def _local(name: str, batch: list[torch.Tensor], rank: int, world: int) -> list[torch.Tensor]:
    dim = 1 if name in ("dino", "swav") else 0
    return [b.chunk(world, dim=dim)[rank] for b in batch]


def _shapes(name: str, world: int) -> list[tuple[int, ...]]:
    return [tuple(b.shape) for b in _local(name, _batches(name, 0), 0, world)]


def _train(name: str, rank: int, world: int):
    topo = archdsl.load_spec(source=NET + SPECS[name], seed=0, input_shape=_shapes(name, world))
    model = DDP(topo, find_unused_parameters=name == "swav") if world > 1 else topo
    opt = torch.optim.SGD(list(topo.parameters(phase="train")), lr=0.1)
    for step in range(STEPS):
        out = model(*_local(name, _batches(name, step), rank, world))
        out.loss.backward()
        opt.step()
        opt.zero_grad()
        topo.after_step()
    return {k: v.detach().clone() for k, v in topo.state_dict().items()}


def _worker(rank: int, world: int, port: int, name: str, out_dir: str):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        torch.save(_train(name, rank, world), os.path.join(out_dir, f"rank{rank}.pt"))
        dist.barrier()  # neither rank tears gloo down while the other still talks to it
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("name", sorted(SPECS))
def test_ddp_replicas_agree_with_each_other_and_with_one_process(name, tmp_path):
    mp.spawn(_worker, args=(WORLD, _free_port(), name, str(tmp_path)), nprocs=WORLD, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(WORLD)]
    single = _train(name, 0, 1)
    assert ranks[0].keys() == ranks[1].keys() == single.keys()
    for key in ranks[0]:
        torch.testing.assert_close(ranks[0][key], ranks[1][key], msg=f"replicas differ at {key}")
        torch.testing.assert_close(ranks[0][key].float(), single[key].float(), rtol=1e-4, atol=1e-5,
                                   msg=f"DDP differs from one process at {key}")


def _torchrun(tmp_path, *extra):
    """`torchrun --nproc-per-node 2 -m archdsl train` of a tiny MoCo v2 on a generated folder."""
    import subprocess
    import sys
    from test_train_data import TINY, make_folder
    folder = tmp_path / "images"
    if not folder.exists():
        make_folder(folder, per_class=8)
    spec = tmp_path / "t.arch"
    spec.write_text(TINY + "from ssl.moco import MoCo\n"
                    "variant t = MoCo(version=2, backbone=Tiny, dim=8, K=16, img=16)\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([os.getcwd(), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port",
           str(_free_port()), "-m", "archdsl", "train", str(spec), "--data", str(folder), "--input", "4x3x20x20",
           "--metrics", str(tmp_path / "m.csv"), "--checkpoint", str(tmp_path / "c.pt"), "--checkpoint-every", "2",
           *extra]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return torch.load(tmp_path / "c.pt", weights_only=False), list(csv.DictReader((tmp_path / "m.csv").open()))


def test_torchrun_trains_a_topology_on_an_image_folder(tmp_path):
    """Two gloo processes each train on their share of every batch, with their own view draws;
    rank 0 alone logs and checkpoints (with both processes' RNG states)."""
    pytest.importorskip("PIL")
    saved, rows = _torchrun(tmp_path, "--steps", "2")
    assert saved["step"] == 2 and len(saved["rng"]) == 2
    assert not torch.equal(saved["rng"][0]["cpu"], saved["rng"][1]["cpu"])
    assert [int(r["step"]) for r in rows] == [0, 1]
    assert all(math.isfinite(float(r["loss.train"])) for r in rows)


@pytest.mark.slow
def test_torchrun_resumes_its_checkpoint(tmp_path):
    pytest.importorskip("PIL")
    _torchrun(tmp_path, "--steps", "2")
    saved, rows = _torchrun(tmp_path, "--steps", "4", "--resume", str(tmp_path / "c.pt"))
    assert saved["step"] == 4 and [int(r["step"]) for r in rows] == [0, 1, 2, 3]
