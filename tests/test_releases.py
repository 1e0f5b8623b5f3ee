"""Checkpoints of the papers' own releases load into the stdlib topologies and networks.

For each release, the test builds the checkpoint's key list and shapes from a port of the
release's model definition (cited at each case), fills it deterministically (tests/fixtures/fill.py),
loads it strictly with `archdsl.load_weights(..., source=...)` and compares outputs where the
architecture is the same. torchvision's ResNets use the stdlib ResNet's names (checked against
torchvision in tests/test_checkpoints.py), so a release's torchvision backbone is the stdlib
backbone's key list.
"""
from __future__ import annotations

import pytest
import torch

import archdsl
from archdsl import ArchError, SpecText

from fixtures.fill import _values, reference_input

SMALL = [2, 3, 32, 32]


def _fill(shapes: dict[str, tuple[list[int], torch.dtype]]) -> dict[str, torch.Tensor]:
    return {k: _values(k, torch.Size(s)) if dt.is_floating_point else torch.full(s, 3, dtype=dt)
            for k, (s, dt) in shapes.items()}


def _resnet_keys(name: str) -> dict[str, tuple[list[int], torch.dtype]]:
    """torchvision's resnet `name` without its fc (the stdlib ResNet has the same names)."""
    sd = archdsl.load_spec(name, input_shape=SMALL).state_dict()
    return {k: (list(v.shape), v.dtype) for k, v in sd.items() if not k.startswith("fc.")}


def _moco_release(dim: int, K: int, mlp: bool, backbone: str, width: int) -> dict:
    """facebookresearch/moco, moco/builder.py `MoCo(base_encoder, dim, K, m, T, mlp)` wrapped in
    DataParallel ("module."): encoder_q/encoder_k = base_encoder(num_classes=dim), with mlp the fc
    becomes Sequential(Linear(w, w), ReLU(), Linear(w, dim)); buffers queue [dim, K] and
    queue_ptr [1] (long)."""
    fc = ({"fc.0.weight": [width, width], "fc.0.bias": [width], "fc.2.weight": [dim, width],
           "fc.2.bias": [dim]} if mlp else {"fc.weight": [dim, width], "fc.bias": [dim]})
    encoder = {**_resnet_keys(backbone), **{k: (s, torch.float32) for k, s in fc.items()}}
    shapes = {f"module.encoder_{e}.{k}": v for e in "qk" for k, v in encoder.items()}
    shapes["module.queue"] = ([dim, K], torch.float32)
    shapes["module.queue_ptr"] = ([1], torch.int64)
    return _fill(shapes)


@pytest.mark.parametrize("version", ["moco_v1", "moco_v2"])
def test_moco_release_loads_both_encoders_and_the_queue(version):
    mlp = version == "moco_v2"
    sd = _moco_release(128, 64, mlp, "resnet18", 512)
    topo = archdsl.load_spec(version, input_shape=[SMALL, SMALL], backbone=SpecText("resnet18"),
                             K=64, hidden=512 if mlp else -1)
    archdsl.load_weights(topo, sd, source=version)
    state = topo.state_dict()
    assert torch.equal(state["state.queue"], sd["module.queue"])
    assert int(state["state.queue_ptr"]) == 3 and int(state["steps"]) == 0
    assert torch.equal(state["nets.key.backbone.layer4.1.bn2.running_var"],
                       sd["module.encoder_k.layer4.1.bn2.running_var"])
    # the query encoder computes the release's encoder_q: the ResNet features, then its fc
    backbone = archdsl.load_spec("resnet18", input_shape=SMALL, num_classes=0).eval()
    q = "module.encoder_q."
    backbone.load_state_dict({k[len(q):]: v for k, v in sd.items()
                              if k.startswith(q) and not k.startswith(q + "fc")})
    x = reference_input(SMALL)
    with torch.no_grad():
        f = backbone(x)
        q += "fc"
        ref = (torch.relu(f @ sd[f"{q}.0.weight"].T + sd[f"{q}.0.bias"]) @ sd[f"{q}.2.weight"].T
               + sd[f"{q}.2.bias"]) if mlp else f @ sd[f"{q}.weight"].T + sd[f"{q}.bias"]
        out = topo.nets.query.eval()(x)
    assert torch.allclose(out, ref, atol=1e-5, rtol=1e-4)


def test_a_moco_checkpoint_with_a_missing_key_names_it():
    sd = _moco_release(128, 64, True, "resnet18", 512)
    del sd["module.encoder_k.layer2.0.downsample.1.weight"]
    topo = archdsl.load_spec("moco_v2", input_shape=[SMALL, SMALL], backbone=SpecText("resnet18"),
                             K=64, hidden=512)
    with pytest.raises(ArchError, match="missing nets.key.backbone.layer2.0.downsample.1.weight"):
        archdsl.load_weights(topo, sd, source="moco_v2")


def _openai_clip_release() -> tuple[torch.nn.Module, dict]:
    """OpenAI's clip/model.py CLIP (ported in tests/test_clip.py as RefCLIP), filled, and its
    state_dict as a JIT archive holds it: with the metadata integers."""
    from test_clip import TINY, RefCLIP
    ref = RefCLIP(**TINY).eval()
    sd = _fill({k: (list(v.shape), v.dtype) for k, v in ref.state_dict().items()})
    ref.load_state_dict(sd)
    meta = {"input_resolution": TINY["image_resolution"], "context_length": TINY["context_length"],
            "vocab_size": TINY["vocab_size"]}
    return ref, {**sd, **{k: torch.tensor(v) for k, v in meta.items()}}


def test_openai_clip_release_loads_into_the_network_and_the_topology():
    from test_clip import TINY, _texts
    ref, sd = _openai_clip_release()
    args = ", ".join(f"{k}={v}" for k, v in TINY.items())
    net = archdsl.load_spec(source=f"from nets.clip import CLIP\nvariant t = CLIP({args})\n").eval()
    archdsl.load_weights(net, sd, source="openai")
    image, text = reference_input([3, 3, 16, 16]), _texts(3)
    with torch.no_grad():
        out, (img_ref, txt_ref) = net(image, text), ref(image, text)
    torch.testing.assert_close(out["image_features"], img_ref, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(out["text_features"], txt_ref, atol=1e-5, rtol=1e-4)

    topo = archdsl.load_spec(source=f"from nets.clip import CLIP\nfrom ssl.clip import CLIPTrain\n"
                                    f"variant t = CLIPTrain(model=CLIP({args}), img=16, context=7)\n")
    archdsl.load_weights(topo, sd, source="openai")
    state = topo.state_dict()
    assert torch.equal(state["state.logit_scale"], sd["logit_scale"])
    assert torch.equal(state["nets.clip.visual.proj"], sd["visual.proj"])


def test_mae_release_loads_into_the_network_and_the_topology():
    """facebookresearch/mae models_mae.py MaskedAutoencoderViT (ported in tests/test_mae.py as
    RefMAE): its filled state_dict loads; under one random stream the masks and predictions agree."""
    from test_mae import RefMAE, tiny_net, tiny_topo
    ref = RefMAE(16, 4, 32, 2, 2, 16, 1, 2).eval()
    sd = _fill({k: (list(v.shape), v.dtype) for k, v in ref.state_dict().items()})
    ref.load_state_dict(sd)
    net = tiny_net().eval()
    archdsl.load_weights(net, sd, source="mae")
    x = reference_input([3, 3, 16, 16])
    torch.manual_seed(7)
    out = net(x)
    torch.manual_seed(7)
    pred, mask = ref(x, 0.75)
    torch.testing.assert_close(out["mask"], mask)
    torch.testing.assert_close(out["pred"], pred, atol=1e-5, rtol=1e-4)
    topo = tiny_topo()
    archdsl.load_weights(topo, sd, source="mae")
    assert torch.equal(topo.state_dict()["nets.mae.decoder_pos_embed.weight"], sd["decoder_pos_embed"])


def test_cyclegan_release_files_load_into_the_topology_with_their_outputs():
    """junyanz/pytorch-CycleGAN-and-pix2pix models/networks.py (ported in tests/test_gen_a.py):
    the four files of a CycleGAN run, gathered under their network names; a pre-0.4 file's
    instance-norm running statistics are dropped as the release's loader drops them."""
    from test_gen_a import RefNLayerD, RefResnetG
    refs = {"G_A": RefResnetG(3, 3, 4), "G_B": RefResnetG(3, 3, 4), "D_A": RefNLayerD(3, 4), "D_B": RefNLayerD(3, 4)}
    sd = {}
    for name, ref in refs.items():
        own = _fill({k: (list(v.shape), v.dtype) for k, v in ref.state_dict().items()})
        ref.load_state_dict(own)
        sd.update({f"{name}.{k}": v for k, v in own.items()})
    sd["G_A.model.2.running_mean"] = torch.zeros(4)  # an InstanceNorm2d's, in a pre-0.4 file
    topo = archdsl.load_spec("cyclegan", input_shape=[[2, 3, 32, 32], [2, 3, 32, 32]], ngf=4, ndf=4, img=32)
    archdsl.load_weights(topo, sd, source="cyclegan")
    x = reference_input([2, 3, 32, 32])
    with torch.no_grad():
        for name, ref in refs.items():
            torch.testing.assert_close(topo.nets[name].eval()(x), ref.eval()(x), atol=1e-5, rtol=1e-4)


def test_pix2pix_release_files_load_into_the_topology():
    from test_gen_a import RefNLayerD, RefUnet
    refs = {"G": RefUnet(3, 3, 5, 2, "batch", True), "D": RefNLayerD(6, 4, norm="batch")}
    sd = {f"{name}.{k}": v for name, ref in refs.items()
          for k, v in _fill({k: (list(v.shape), v.dtype) for k, v in ref.state_dict().items()}).items()}
    topo = archdsl.load_spec("pix2pix", input_shape=[[1, 3, 32, 32], [1, 3, 32, 32]], ngf=2, ndf=4,
                             num_downs=5, img=32)
    archdsl.load_weights(topo, sd, source="pix2pix")
    assert torch.equal(topo.state_dict()["nets.D.model.2.weight"], sd["D.model.2.weight"])


@pytest.mark.parametrize("ddp", [False, True], ids=["plain", "module"])
def test_vqvae2_release_loads_into_the_network_and_the_topology(ddp):
    """rosinality/vq-vae-2-pytorch vqvae.py VQVAE() at the release's sizes (channel 128, two residual
    blocks of 32, codebooks of 512 × 64; ported in tests/test_vqvae2.py as RefVQVAE2): its filled
    state_dict — codebook buffers included — loads strictly, and reconstructions, codes and the
    latent loss agree; a DistributedDataParallel file (`module.` keys) loads the same."""
    from test_vqvae2 import RefVQVAE2
    ref = RefVQVAE2().eval()
    sd = _fill({k: (list(v.shape), v.dtype) for k, v in ref.state_dict().items()})
    sd = {k: v.abs() + 0.5 if k.endswith("cluster_size") else v for k, v in sd.items()}
    ref.load_state_dict(sd)
    file = {f"module.{k}": v for k, v in sd.items()} if ddp else sd
    net = archdsl.load_spec("stdlib/gan/vqvae2.arch", "VQVAE2", input_shape=[2, 3, 32, 32], img=32).eval()
    archdsl.load_weights(net, file, source="vqvae2")
    x = reference_input([2, 3, 32, 32])
    with torch.no_grad():
        out, (recon, id_t, id_b, diff) = net(x), ref(x)
    assert torch.equal(out["codes_t"], id_t) and torch.equal(out["codes_b"], id_b)
    assert len(id_b.unique()) > 1
    torch.testing.assert_close(out["recon"], recon, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(out["commit_loss"], 0.25 * diff, atol=1e-6, rtol=1e-5)
    topo = archdsl.load_spec("vqvae2", input_shape=[2, 3, 32, 32], img=32)
    archdsl.load_weights(topo, file, source="vqvae2")
    assert torch.equal(topo.state_dict()["nets.model.quantize_b.embed_avg"], sd["quantize_b.embed_avg"])
