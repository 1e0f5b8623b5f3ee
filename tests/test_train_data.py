"""`archdsl train --data FOLDER`: topologies that make their own views from raw images, trained
on a small generated image folder (archdsl/topology/data.py, train.py, checkpoint.py).

- each of SimCLR, MoCo v2, BYOL, DINO, MAE and DCGAN, built with views=true on a tiny backbone,
  lowers its loss over a short seeded run (mean of the last k rounds below the first k);
- a run resumed from the checkpoint of round k ends in bit-equal tensors (networks, EMA twins,
  queues, centres, optimizer moments, step) to an uninterrupted run;
- the CLI writes a CSV log and refuses a folder without images with an error, not a traceback.
The two-process (torchrun, gloo) run is in tests/test_distributed.py.
"""
from __future__ import annotations

import csv

import pytest
import torch
from click.testing import CliRunner

pytest.importorskip("PIL")

import archdsl  # noqa: E402
from archdsl.cli import main  # noqa: E402
from archdsl.topology.data import ImageFolderSource, load_image, scan  # noqa: E402
from archdsl.topology.train import input_specs, train  # noqa: E402

TINY = """
network Tiny(num_classes: int = 0) {
  in x: [B, 3, H, W]
  out x -> conv1: conv(8, 3, stride=2) -> bn1: bn -> relu -> conv2: conv(16, 3, stride=2) -> relu
        -> mean(dims=[2, 3]) -> fc: linear(16)
}
"""
# (spec, input shapes, rounds, k, skip): the first `skip` rounds are left out of the comparison —
# MoCo's first 2 fill its queue of random keys (easy negatives); DINO's loss, a cross-entropy
# against the teacher, includes the teacher's entropy, which rises from near 0 while the centre
# spreads the teacher's outputs (about 25 rounds here) before the loss falls.
SPECS = {
    "simclr": ("from ssl.simclr import SimCLR\nvariant t = SimCLR(backbone=Tiny, dim=16, hidden=32, img=16, views=true)",
               [(16, 3, 20, 20)], 24, 6, 0),
    "moco_v2": ("from ssl.moco import MoCo\nvariant t = MoCo(version=2, backbone=Tiny, dim=16, K=32, img=16, views=true)",
                [(16, 3, 20, 20)], 24, 6, 2),
    "byol": ("from ssl.byol import BYOL\nvariant t = BYOL(backbone=Tiny, dim=16, hidden=32, img=16, views=true)",
             [(16, 3, 20, 20)], 24, 6, 0),
    "dino": ("from ssl.dino import DINO\nvariant t = DINO(backbone=Tiny, out_dim=32, hidden=32, bottleneck=16, "
             "n_local=2, global_size=16, local_size=8, freeze_last_layer=0, views=true)", [(8, 3, 20, 20)], 44, 6, 26),
    "mae": ("from nets.mae import MAE\nfrom ssl.mae import MAEPretrain\n"
            "variant t = MAEPretrain(model=MAE(4, 32, 1, 2, 16, 1, 2, img_size=16), patch=4, img=16, views=true)",
            [(8, 3, 20, 20)], 24, 6, 0),
    "dcgan": ("from gan.dcgan_train import DCGAN\nvariant t = DCGAN(nz=8, ngf=4, ndf=4, img=16, views=true)",
              [(8, 3, 16, 16)], 24, 6, 0),
}


def make_folder(root, classes: int = 2, per_class: int = 12, seed: int = 0):
    """Images of assorted sizes: a class colour, a bright square at a random place, noise."""
    from PIL import Image
    g = torch.Generator().manual_seed(seed)
    for c in range(classes):
        (root / f"class{c}").mkdir(parents=True)
        for i in range(per_class):
            h, w = (int(v) for v in torch.randint(18, 40, (2,), generator=g))
            img = torch.rand(h, w, 3, generator=g) * 0.3 + torch.tensor([0.6 * c, 0.3, 0.6 * (1 - c)])
            y, x = int(torch.randint(0, h - 8, (), generator=g)), int(torch.randint(0, w - 8, (), generator=g))
            img[y:y + 8, x:x + 8] = torch.rand(3, generator=g)
            Image.fromarray((img.clamp(0, 1) * 255).byte().numpy()).save(root / f"class{c}" / f"{i}.png")
    return root


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return make_folder(tmp_path_factory.mktemp("images"))


def topology(name: str):
    src, shapes = SPECS[name][:2]
    return archdsl.load_spec(source=TINY + src + "\n", seed=0, input_shape=shapes)


def test_the_folder_is_read_as_image_folder(folder):
    files, labels, classes = scan(folder)
    assert classes == ["class0", "class1"] and len(files) == 24 and labels == [0] * 12 + [1] * 12
    x = load_image(files[0], 3, 20, 20)
    assert x.shape == (3, 20, 20) and 0 <= float(x.min()) and float(x.max()) <= 1
    # the class colour survives decoding: class 1 is redder than class 0 on average
    assert float(load_image(files[-1], 3, 20, 20)[0].mean()) > float(x[0].mean())


def test_batches_cover_an_epoch_and_split_over_ranks(folder):
    specs = [("images", (4, 3, 8, 8), "float32"), ("y", (4,), "int64")]
    one = ImageFolderSource(folder, specs, seed=3)
    seen = [one._indices() for _ in range(6)]
    assert sorted(i for b in seen for i in b) == list(range(24))    # one epoch: every image once
    ranks = [ImageFolderSource(folder, specs, seed=3, rank=r, world=2) for r in range(2)]
    first = [r._indices() for r in ranks]
    assert first[0] + first[1] == seen[0] + seen[1]                # rank r takes its share of 8
    images, labels = ImageFolderSource(folder, specs, seed=3).next()
    assert images.shape == (4, 3, 8, 8) and labels.tolist() == [one.labels[i] for i in seen[0]]


def _losses(name: str, folder, steps: int) -> list[float]:
    topo = topology(name)
    source = ImageFolderSource(folder, input_specs(topo), seed=0)
    history = train(topo, steps, optimizer="adam", lr=1e-3, source=source, seed=0)
    return [sum(e.losses.values()) if name != "dcgan" else e.losses["d_step"] for e in history]


FAST = ["moco_v2", "mae"]


@pytest.mark.parametrize("name", FAST + [pytest.param(n, marks=pytest.mark.slow) for n in SPECS if n not in FAST])
def test_a_short_run_on_images_lowers_the_loss(name, folder):
    _, _, steps, k, skip = SPECS[name]
    losses = _losses(name, folder, steps)[skip:]
    first, last = sum(losses[:k]) / k, sum(losses[-k:]) / k
    assert last < first, f"{name}: first {k} rounds {first:.4f}, last {k} {last:.4f}"


@pytest.mark.parametrize("name", ["moco_v2", pytest.param("dino", marks=pytest.mark.slow),
                                  pytest.param("byol", marks=pytest.mark.slow)])
def test_resuming_a_checkpoint_gives_the_uninterrupted_state(name, folder, tmp_path):
    """Recipe optimizer and schedules, EMA twin, queue or centre, data order and view draws: all
    resume exactly."""
    def run(steps, resume=None, checkpoint=None):
        topo = topology(name)
        source = ImageFolderSource(folder, input_specs(topo), seed=0)
        train(topo, steps, source=source, seed=0, checkpoint=checkpoint, checkpoint_every=2, resume=resume)
        return topo
    whole = run(4, checkpoint=tmp_path / "whole.pt")
    run(2, checkpoint=tmp_path / "half.pt")
    resumed = run(4, resume=tmp_path / "half.pt")
    a, b = whole.state_dict(), resumed.state_dict()
    assert a.keys() == b.keys() and int(b["steps"]) == 4
    for key in a:
        assert torch.equal(a[key], b[key]), f"{name}: {key} differs after resuming"
    saved = torch.load(tmp_path / "whole.pt", weights_only=False)
    assert saved["step"] == 4 and all(torch.equal(saved["topology"][k], a[k]) for k in a)
    first = next(iter(saved["optimizers"].values()))["state"]
    assert first, "the optimizer's state (momentum buffers) is in the checkpoint"


def test_cli_trains_on_a_folder_and_logs_csv(folder, tmp_path):
    spec = tmp_path / "t.arch"
    spec.write_text(TINY + "from ssl.simclr import SimCLR\nvariant t = SimCLR(backbone=Tiny, dim=16, hidden=32, img=16)\n")
    log = tmp_path / "m.csv"
    r = CliRunner().invoke(main, ["train", str(spec), "--data", str(folder), "--input", "8x3x20x20", "--steps", "3",
                                  "--log", str(log), "--checkpoint-every", "3", "--checkpoint", str(tmp_path / "c.pt")])
    assert r.exit_code == 0, r.output
    rows = list(csv.DictReader(log.open()))
    assert [int(r["step"]) for r in rows] == [0, 1, 2] and float(rows[1]["lr.train"]) > 0
    assert torch.load(tmp_path / "c.pt", weights_only=False)["step"] == 3
    again = CliRunner().invoke(main, ["train", str(spec), "--data", str(folder), "--input", "8x3x20x20",
                                      "--steps", "4", "--log", str(log), "--resume", str(tmp_path / "c.pt")])
    assert again.exit_code == 0, again.output
    assert [int(r["step"]) for r in csv.DictReader(log.open())] == [0, 1, 2, 3]


def test_cli_errors_are_messages(tmp_path):
    (tmp_path / "empty" / "a").mkdir(parents=True)
    r = CliRunner().invoke(main, ["train", "simclr_v1", "--data", str(tmp_path / "empty")])
    assert r.exit_code == 1 and "no images" in r.output and "Traceback" not in r.output
    r = CliRunner().invoke(main, ["train", "simclr_v1"])
    assert r.exit_code != 0 and "--synthetic or --data" in r.output
