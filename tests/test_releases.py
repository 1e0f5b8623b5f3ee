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
import torch.nn.functional as F
from torch import nn

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


# ---- DINO (facebookresearch/dino)

class RefDinoViT(torch.nn.Module):
    """dino vision_transformer.py VisionTransformer (vit_small's form: qkv_bias, LayerNorm eps 1e-6,
    num_classes=0), at its own input size: the class token after the final norm."""

    def __init__(self, img=16, patch=4, dim=32, depth=2, heads=2):
        super().__init__()
        from test_attention import RefAttention, RefMlp
        self.patch_embed = torch.nn.Module()
        self.patch_embed.proj = torch.nn.Conv2d(3, dim, patch, patch)
        self.cls_token = torch.nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = torch.nn.Parameter(torch.zeros(1, (img // patch) ** 2 + 1, dim))
        self.blocks = torch.nn.ModuleList()
        for _ in range(depth):
            blk = torch.nn.Module()
            blk.norm1, blk.norm2 = torch.nn.LayerNorm(dim, eps=1e-6), torch.nn.LayerNorm(dim, eps=1e-6)
            blk.attn, blk.mlp = RefAttention(dim, heads), RefMlp(dim, 4 * dim)
            self.blocks.append(blk)
        self.norm = torch.nn.LayerNorm(dim, eps=1e-6)

    def forward(self, x):
        x = self.patch_embed.proj(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls_token.expand(len(x), -1, -1), x], dim=1) + self.pos_embed
        for blk in self.blocks:
            x = x + blk.attn(blk.norm1(x))
            x = x + blk.mlp(blk.norm2(x))
        return self.norm(x)[:, 0]


DINO_TINY = dict(out_dim=16, hidden=32, bottleneck=8, n_local=2)


def _dino_release(backbone: torch.nn.Module, embed: int, teacher_ddp: bool) -> tuple[dict, dict]:
    """main_dino.py's save_dict, flattened: student (DDP: "module.") and teacher (DDP only when the
    backbone has batch norms) MultiCropWrapper(backbone, DINOHead(embed, out_dim)), and
    dino_loss.center [1, out_dim]; returns the filled reference networks and the dict."""
    import copy

    from test_recipes import RefDINOHead, RefMultiCropWrapper
    a = DINO_TINY
    refs, sd = {}, {}
    for net, prefix in (("student", "module."), ("teacher", "module." if teacher_ddp else "")):
        ref = RefMultiCropWrapper(copy.deepcopy(backbone), RefDINOHead(embed, a["out_dim"], True, a["hidden"],
                                                                       a["bottleneck"]))
        own = _fill({f"{net}.{prefix}{k}": (list(v.shape), v.dtype) for k, v in ref.state_dict().items()})
        ref.load_state_dict({k.split(".", 1 + bool(prefix))[-1]: v for k, v in own.items()})
        refs[net] = ref.eval()
        sd.update(own)
    sd["dino_loss.center"] = _values("dino_loss.center", torch.Size([1, a["out_dim"]]))
    return refs, sd


def _dino_topology(backbone: str, size: int) -> torch.nn.Module:
    args = ", ".join(f"{k}={v}" for k, v in DINO_TINY.items())
    src = (f"from nets.vit import ViT\nfrom ssl.dino import DINO\n"
           f"variant tiny_vit = ViT(4, 32, 2, 2, img_size=16)\n"
           f"variant t = DINO(backbone={backbone}, {args}, global_size={size}, local_size={size})\n")
    return archdsl.load_spec(source=src, variant="t",
                             input_shape=[[2, 2, 3, size, size], [2, 2, 3, size, size]])


def test_dino_vit_release_loads_student_teacher_and_center_with_their_outputs():
    """dino_deitsmall16_pretrain_full_checkpoint.pth's layout (a ViT backbone: no batch norm, so
    the teacher is saved without DDP's "module.")."""
    refs, sd = _dino_release(RefDinoViT(), 32, teacher_ddp=False)
    assert "teacher.head.last_layer.weight_g" in sd and "student.module.head.mlp.4.bias" in sd
    topo = _dino_topology("tiny_vit", 16)
    archdsl.load_weights(topo, sd, source="dino")
    assert torch.equal(topo.state_dict()["state.center"], sd["dino_loss.center"])
    x = reference_input([3, 3, 16, 16])
    with torch.no_grad():
        for net, ref in refs.items():
            torch.testing.assert_close(topo.nets[net].eval()(x), ref([x]), atol=1e-5, rtol=1e-4)


def test_dino_resnet_release_loads_with_both_networks_in_ddp():
    """dino_resnet50_pretrain_full_checkpoint.pth's layout: a torchvision ResNet without fc (the
    stdlib ResNet's names), batch norms, so the teacher is saved in DDP too."""
    backbone = archdsl.load_spec("resnet18", input_shape=SMALL, num_classes=0)
    refs, sd = _dino_release(backbone, 512, teacher_ddp=True)
    assert "teacher.module.backbone.layer4.1.bn2.running_var" in sd
    topo = _dino_topology("resnet18", 32)
    archdsl.load_weights(topo, sd, source="dino")
    x = reference_input(SMALL)
    with torch.no_grad():
        torch.testing.assert_close(topo.nets["teacher"].eval()(x), refs["teacher"]([x]), atol=1e-5, rtol=1e-4)


def test_dino_backbone_release_loads_into_the_vit_as_it_is():
    """dino_deitsmall16_pretrain.pth: the teacher's backbone in DINO's ViT naming (timm's)."""
    ref = RefDinoViT().eval()
    sd = _fill({k: (list(v.shape), v.dtype) for k, v in ref.state_dict().items()})
    ref.load_state_dict(sd)
    net = archdsl.load_spec(source="from nets.vit import ViT\nvariant t = ViT(4, 32, 2, 2, img_size=16, "
                                   "num_classes=0)\n").eval()
    archdsl.load_weights(net, sd, source="dino_deitsmall16_pretrain")
    x = reference_input([3, 3, 16, 16])
    with torch.no_grad():
        torch.testing.assert_close(net(x), ref(x), atol=1e-5, rtol=1e-4)


# ---- SimSiam (facebookresearch/simsiam)

def test_simsiam_release_loads_into_the_official_projector_form():
    """simsiam/builder.py SimSiam(resnet, dim, pred_dim) in DDP ("module."): the encoder is the
    ResNet with fc = Sequential(Linear(w, w, bias=False), BN, ReLU, Linear(w, w, bias=False), BN, ReLU,
    Linear(w, dim), BN(dim, affine=False)), the predictor Sequential(Linear(dim, p, bias=False), BN,
    ReLU, Linear(p, dim)). The projector's last bias (never trained) needs proj_bias=true."""
    from torch import nn
    dim, pred, width = 64, 16, 512
    fc = nn.Sequential(nn.Linear(width, width, bias=False), nn.BatchNorm1d(width), nn.ReLU(),
                       nn.Linear(width, width, bias=False), nn.BatchNorm1d(width), nn.ReLU(),
                       nn.Linear(width, dim), nn.BatchNorm1d(dim, affine=False)).eval()
    predictor = nn.Sequential(nn.Linear(dim, pred, bias=False), nn.BatchNorm1d(pred), nn.ReLU(),
                              nn.Linear(pred, dim)).eval()
    shapes = {f"module.encoder.{k}": v for k, v in _resnet_keys("resnet18").items()}
    for name, m in (("encoder.fc", fc), ("predictor", predictor)):
        shapes.update({f"module.{name}.{k}": (list(v.shape), v.dtype) for k, v in m.state_dict().items()})
    sd = _fill(shapes)
    for name, m in (("encoder.fc", fc), ("predictor", predictor)):
        m.load_state_dict({k[len(f"module.{name}."):]: v for k, v in sd.items() if k.startswith(f"module.{name}.")})
    args = dict(input_shape=[SMALL, SMALL], backbone=SpecText("resnet18"), dim=dim, pred_hidden=pred)
    with pytest.raises(ArchError, match=r"unexpected nets.encoder.head.layer2.bias \(from 'module.encoder.fc.6.bias'\)"):
        archdsl.load_weights(archdsl.load_spec("simsiam", **args), sd, source="simsiam")
    topo = archdsl.load_spec("simsiam", proj_bias=True, **args)
    archdsl.load_weights(topo, sd, source="simsiam")
    backbone = archdsl.load_spec("resnet18", input_shape=SMALL, num_classes=0).eval()
    backbone.load_state_dict({k[len("module.encoder."):]: v for k, v in sd.items()
                              if k.startswith("module.encoder.") and ".fc." not in k})
    x = reference_input(SMALL)
    with torch.no_grad():
        z = topo.nets["encoder"].eval()(x)
        torch.testing.assert_close(z, fc(backbone(x)), atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(topo.nets["predictor"].eval()(z), predictor(z), atol=1e-5, rtol=1e-4)


# ---- BEiT (microsoft/unilm beit)

class RefUnilmAttention(torch.nn.Module):
    """unilm beit/modeling_finetune.py Attention (qkv_bias): q/v biases, with `window` its own
    relative position table and index buffer, and forward(x, rel_pos_bias) adding a shared bias."""

    def __init__(self, dim, heads, window=None):
        super().__init__()
        from test_attention import RefBeitAttention
        self.num_heads, self.scale = heads, (dim // heads) ** -0.5
        self.qkv = torch.nn.Linear(dim, dim * 3, bias=False)
        self.q_bias, self.v_bias = torch.nn.Parameter(torch.zeros(dim)), torch.nn.Parameter(torch.zeros(dim))
        self.relative_position_bias_table = None
        if window:
            ref = RefBeitAttention(dim, heads, window)  # its index: cls→token, token→cls, cls→cls last
            self.relative_position_bias_table = torch.nn.Parameter(torch.zeros_like(ref.relative_position_bias_table))
            self.register_buffer("relative_position_index", ref.index)
        self.proj = torch.nn.Linear(dim, dim)

    def forward(self, x, rel_pos_bias=None):
        b, n, c = x.shape
        qkv_bias = torch.cat((self.q_bias, torch.zeros_like(self.v_bias), self.v_bias))
        qkv = torch.nn.functional.linear(x, self.qkv.weight, qkv_bias).reshape(b, n, 3, self.num_heads, -1)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)
        attn = (q * self.scale) @ k.transpose(-2, -1)
        if self.relative_position_bias_table is not None:
            table = self.relative_position_bias_table[self.relative_position_index.view(-1)]
            attn = attn + table.view(n, n, -1).permute(2, 0, 1).contiguous().unsqueeze(0)
        if rel_pos_bias is not None:
            attn = attn + rel_pos_bias
        return self.proj((attn.softmax(dim=-1) @ v).transpose(1, 2).reshape(b, n, -1))


class RefRelativePositionBias(torch.nn.Module):
    """unilm beit/modeling_finetune.py RelativePositionBias: one table and its index buffer;
    forward() → the bias [heads, N, N] every block adds."""

    def __init__(self, dim, heads, window):
        super().__init__()
        ref = RefUnilmAttention(dim, heads, window)
        self.relative_position_bias_table = ref.relative_position_bias_table
        self.register_buffer("relative_position_index", ref.relative_position_index)

    def forward(self):
        n = self.relative_position_index.shape[0]
        bias = self.relative_position_bias_table[self.relative_position_index.view(-1)].view(n, n, -1)
        return bias.permute(2, 0, 1).contiguous()


class RefBeitMIM(torch.nn.Module):
    """unilm beit/modeling_pretrain.py VisionTransformerForMaskedImageModeling, use_abs_pos_emb
    False, with the shared table of run_beit_pretraining.py's default --rel_pos_bias
    (use_shared_rel_pos_bias: `rel_pos_bias`, modeling_finetune.py RelativePositionBias) or a table
    per block (use_rel_pos_bias); Block and Attention as modeling_finetune.py (layer scale, its
    Mlp: fc1, GELU, fc2). forward(x, bool_masked_pos) returns the masked patches' logits."""

    def __init__(self, img=16, patch=4, dim=32, depth=2, heads=2, vocab=6, shared=False):
        super().__init__()
        from test_attention import RefMlp
        window = (img // patch, img // patch)
        self.patch_embed = torch.nn.Module()
        self.patch_embed.proj = torch.nn.Conv2d(3, dim, patch, patch)
        self.cls_token = torch.nn.Parameter(torch.zeros(1, 1, dim))
        self.mask_token = torch.nn.Parameter(torch.zeros(1, 1, dim))
        self.rel_pos_bias = RefRelativePositionBias(dim, heads, window) if shared else None
        self.blocks = torch.nn.ModuleList()
        for _ in range(depth):
            blk = torch.nn.Module()
            blk.gamma_1, blk.gamma_2 = torch.nn.Parameter(torch.ones(dim)), torch.nn.Parameter(torch.ones(dim))
            blk.norm1, blk.norm2 = torch.nn.LayerNorm(dim, eps=1e-6), torch.nn.LayerNorm(dim, eps=1e-6)
            blk.attn, blk.mlp = RefUnilmAttention(dim, heads, None if shared else window), RefMlp(dim, 4 * dim)
            self.blocks.append(blk)
        self.norm = torch.nn.LayerNorm(dim, eps=1e-6)
        self.lm_head = torch.nn.Linear(dim, vocab)

    def forward(self, x, bool_masked_pos):
        x = self.patch_embed.proj(x).flatten(2).transpose(1, 2)
        w = bool_masked_pos.unsqueeze(-1).type_as(x)
        x = x * (1 - w) + self.mask_token.expand_as(x) * w
        x = torch.cat([self.cls_token.expand(len(x), -1, -1), x], dim=1)
        rel_pos_bias = self.rel_pos_bias() if self.rel_pos_bias is not None else None
        for blk in self.blocks:
            x = x + blk.gamma_1 * blk.attn(blk.norm1(x), rel_pos_bias=rel_pos_bias)
            x = x + blk.gamma_2 * blk.mlp(blk.norm2(x))
        return self.lm_head(self.norm(x)[:, 1:][bool_masked_pos])


def _beit_release(shared: bool) -> tuple[torch.nn.Module, dict]:
    """The filled reference and its state_dict; the index buffers keep their true values."""
    ref = RefBeitMIM(shared=shared).eval()
    sd = _fill({k: (list(v.shape), v.dtype) for k, v in ref.state_dict().items()})
    sd.update({k: v for k, v in ref.state_dict().items() if k.endswith("relative_position_index")})
    ref.load_state_dict(sd)
    return ref, sd


@pytest.mark.parametrize("shared", [True, False], ids=["shared_table", "table_per_block"])
def test_beit_release_loads_into_the_network_and_the_topology(shared):
    """shared: the pre-training releases (rel_pos_bias.relative_position_bias_table and its index)
    into shared_rel_pos_bias=true; a table per block into the default."""
    from test_beit import MIM
    ref, sd = _beit_release(shared)
    assert ("rel_pos_bias.relative_position_index" in sd) == shared
    assert ("blocks.1.attn.relative_position_index" in sd) != shared
    args = f"{MIM}, shared_rel_pos_bias={str(shared).lower()}"
    net = archdsl.load_spec(source=f"from nets.beit import BeitMIM\nvariant t = BeitMIM({args})\n").eval()
    archdsl.load_weights(net, sd, source="beit")
    x = reference_input([3, 3, 16, 16])
    mask = torch.rand(3, 16, generator=torch.Generator().manual_seed(0)) < 0.4
    with torch.no_grad():
        torch.testing.assert_close(net(x, mask)[mask], ref(x, mask), atol=1e-5, rtol=1e-4)
    topo = archdsl.load_spec(source=f"from nets.beit import BeitMIM\nfrom ssl.beit import BEiTPretrain\n"
                                    f"variant t = BEiTPretrain(model=BeitMIM({args}), patch=4, num_masking_patches=6, "
                                    f"min_num_patches=2, img=16)\n")
    archdsl.load_weights(topo, sd, source="beit")
    key = "rel_pos_bias.relative_position_bias_table" if shared else "blocks.1.attn.relative_position_bias_table"
    assert torch.equal(topo.state_dict()[f"nets.beit.{key}"], sd[key])


def test_beit_shared_table_release_into_the_per_block_default_names_the_key():
    _, sd = _beit_release(shared=True)
    net = archdsl.load_spec(source="from nets.beit import BeitMIM\nvariant t = BeitMIM(patch=4, dim=32, depth=2, "
                                   "num_heads=2, vocab_size=6, img_size=16)\n")
    with pytest.raises(ArchError, match="unexpected rel_pos_bias.relative_position_bias_table"):
        archdsl.load_weights(net, sd, source="beit")


# ---- the releases at full size: key lists and shapes (meta tensors, nothing allocated)

def _meta_keys(module: torch.nn.Module, prefix: str = "") -> dict:
    return {f"{prefix}{k}": torch.empty(v.shape, dtype=v.dtype, device="meta") for k, v in module.state_dict().items()}


@pytest.mark.slow
def test_full_size_releases_fit_the_default_topologies():
    """dino_resnet50_pretrain_full_checkpoint.pth (out_dim 65536, both networks in DDP),
    SimSiam's checkpoint_0099.pth.tar (ResNet-50, dim 2048, pred_dim 512) and BEiT-base's
    pre-training release (shared table) against the stdlib's defaults."""
    from torch import nn

    from test_recipes import RefDINOHead
    with torch.device("meta"):
        backbone = archdsl.load_spec("resnet50", num_classes=0, device="meta")
        sd = {}
        for net in ("student", "teacher"):
            sd.update(_meta_keys(backbone, f"{net}.module.backbone."))
            sd.update(_meta_keys(RefDINOHead(2048, 65536), f"{net}.module.head."))
        sd["dino_loss.center"] = torch.empty(1, 65536, device="meta")
        archdsl.load_weights(archdsl.load_spec("dino", device="meta"), sd, source="dino")

        fc = nn.Sequential(nn.Linear(2048, 2048, bias=False), nn.BatchNorm1d(2048), nn.ReLU(),
                           nn.Linear(2048, 2048, bias=False), nn.BatchNorm1d(2048), nn.ReLU(),
                           nn.Linear(2048, 2048), nn.BatchNorm1d(2048, affine=False))
        predictor = nn.Sequential(nn.Linear(2048, 512, bias=False), nn.BatchNorm1d(512), nn.ReLU(), nn.Linear(512, 2048))
        sd = {**_meta_keys(backbone, "module.encoder."), **_meta_keys(fc, "module.encoder.fc."),
              **_meta_keys(predictor, "module.predictor.")}
        archdsl.load_weights(archdsl.load_spec("simsiam", proj_bias=True, device="meta"), sd, source="simsiam")

        beit = RefBeitMIM(224, 16, 768, 12, 12, 8192, shared=True)
        topo = archdsl.load_spec(source="from nets.beit import BeitMIM\nfrom ssl.beit import BEiTPretrain\n"
                                        "variant t = BEiTPretrain(model=BeitMIM(shared_rel_pos_bias=true))\n",
                                 device="meta")
        archdsl.load_weights(topo, _meta_keys(beit), source="beit")
        assert sum(p.numel() for p in beit.parameters()) == 91_965_776


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


# ---- BigGAN-PyTorch (ajbrock/BigGAN-PyTorch): layers.py (SN with power_iteration, SNConv2d,
# SNLinear, SNEmbedding, Attention, ccbn, bn, GBlock, DBlock) and BigGAN.py (G_arch / D_arch,
# Generator with G_shared and hier, Discriminator), ported for one singular value and one power
# iteration, norm_style "bn", no cross-replica BN. Its G, D and G_ema files are these state_dicts.

def _power_iteration(W, u_, update, eps):
    with torch.no_grad():
        v = F.normalize(torch.matmul(u_, W), eps=eps)
        u = F.normalize(torch.matmul(v, W.t()), eps=eps)
        if update:
            u_[:] = u
    return torch.squeeze(torch.matmul(torch.matmul(v, W.t()), u.t()))


class RefSN:
    def sn_init(self, num_outputs, eps):
        self.sn_eps = eps
        self.register_buffer("u0", torch.randn(1, num_outputs))
        self.register_buffer("sv0", torch.ones(1))

    def W_(self):
        sv = _power_iteration(self.weight.view(self.weight.size(0), -1), self.u0, self.training, self.sn_eps)
        if self.training:
            self.sv0[:] = sv
        return self.weight / sv


class RefSNConv2d(nn.Conv2d, RefSN):
    def __init__(self, cin, cout, kernel_size=3, padding=1, bias=True, eps=1e-6):
        nn.Conv2d.__init__(self, cin, cout, kernel_size, padding=padding, bias=bias)
        self.sn_init(cout, eps)

    def forward(self, x):
        return F.conv2d(x, self.W_(), self.bias, self.stride, self.padding)


class RefSNLinear(nn.Linear, RefSN):
    def __init__(self, fin, fout, bias=True, eps=1e-6):
        nn.Linear.__init__(self, fin, fout, bias)
        self.sn_init(fout, eps)

    def forward(self, x):
        return F.linear(x, self.W_(), self.bias)


class RefSNEmbedding(nn.Embedding, RefSN):
    def __init__(self, num, dim, eps=1e-6):
        nn.Embedding.__init__(self, num, dim)
        self.sn_init(num, eps)

    def forward(self, x):
        return F.embedding(x, self.W_())


class RefAttention(nn.Module):
    def __init__(self, ch):
        super().__init__()
        self.ch = ch
        self.theta = RefSNConv2d(ch, ch // 8, 1, 0, bias=False)
        self.phi = RefSNConv2d(ch, ch // 8, 1, 0, bias=False)
        self.g = RefSNConv2d(ch, ch // 2, 1, 0, bias=False)
        self.o = RefSNConv2d(ch // 2, ch, 1, 0, bias=False)
        self.gamma = nn.Parameter(torch.tensor(0.))

    def forward(self, x):
        theta = self.theta(x).view(-1, self.ch // 8, x.shape[2] * x.shape[3])
        phi = F.max_pool2d(self.phi(x), [2, 2]).view(-1, self.ch // 8, x.shape[2] * x.shape[3] // 4)
        g = F.max_pool2d(self.g(x), [2, 2]).view(-1, self.ch // 2, x.shape[2] * x.shape[3] // 4)
        beta = F.softmax(torch.bmm(theta.transpose(1, 2), phi), -1)
        o = self.o(torch.bmm(g, beta.transpose(1, 2)).view(-1, self.ch // 2, x.shape[2], x.shape[3]))
        return self.gamma * o + x


class RefCCBN(nn.Module):
    def __init__(self, output_size, input_size, eps=1e-5):
        super().__init__()
        self.gain = RefSNLinear(input_size, output_size, bias=False)
        self.bias = RefSNLinear(input_size, output_size, bias=False)
        self.eps = eps
        self.register_buffer("stored_mean", torch.zeros(output_size))
        self.register_buffer("stored_var", torch.ones(output_size))

    def forward(self, x, y):
        gain = (1 + self.gain(y)).view(y.size(0), -1, 1, 1)
        bias = self.bias(y).view(y.size(0), -1, 1, 1)
        out = F.batch_norm(x, self.stored_mean, self.stored_var, None, None, self.training, 0.1, self.eps)
        return out * gain + bias


class RefBN(nn.Module):
    def __init__(self, output_size, eps=1e-5):
        super().__init__()
        self.gain = nn.Parameter(torch.ones(output_size))
        self.bias = nn.Parameter(torch.zeros(output_size))
        self.eps = eps
        self.register_buffer("stored_mean", torch.zeros(output_size))
        self.register_buffer("stored_var", torch.ones(output_size))

    def forward(self, x):
        return F.batch_norm(x, self.stored_mean, self.stored_var, self.gain, self.bias, self.training, 0.1, self.eps)


class RefGBlock(nn.Module):
    def __init__(self, cin, cout, bn_input):
        super().__init__()
        self.conv1, self.conv2 = RefSNConv2d(cin, cout), RefSNConv2d(cout, cout)
        self.conv_sc = RefSNConv2d(cin, cout, 1, 0)          # learnable_sc: upsample is always on
        self.bn1, self.bn2 = RefCCBN(cin, bn_input), RefCCBN(cout, bn_input)

    def forward(self, x, y):
        h = F.relu(self.bn1(x, y))
        h, x = F.interpolate(h, scale_factor=2), F.interpolate(x, scale_factor=2)
        h = self.conv2(F.relu(self.bn2(self.conv1(h), y)))
        return h + self.conv_sc(x)


class RefDBlock(nn.Module):
    def __init__(self, cin, cout, preactivation, downsample):
        super().__init__()
        self.preactivation, self.downsample = preactivation, downsample
        self.conv1, self.conv2 = RefSNConv2d(cin, cout), RefSNConv2d(cout, cout)
        self.learnable_sc = cin != cout or downsample
        if self.learnable_sc:
            self.conv_sc = RefSNConv2d(cin, cout, 1, 0)

    def shortcut(self, x):
        if self.preactivation:
            x = self.conv_sc(x) if self.learnable_sc else x
            return F.avg_pool2d(x, 2) if self.downsample else x
        x = F.avg_pool2d(x, 2) if self.downsample else x
        return self.conv_sc(x) if self.learnable_sc else x

    def forward(self, x):
        h = F.relu(x) if self.preactivation else x
        h = self.conv2(F.relu(self.conv1(h)))
        h = F.avg_pool2d(h, 2) if self.downsample else h
        return h + self.shortcut(x)


class RefBigGANG(nn.Module):
    """BigGAN.py Generator(G_shared=True, hier=True) for an arch of in/out channels and output
    resolutions, attention after the blocks whose resolution is in `attn`."""

    def __init__(self, in_ch, out_ch, resolution, attn, dim_z, shared_dim, n_classes, bottom_width=4):
        super().__init__()
        self.num_slots = len(in_ch) + 1
        self.z_chunk_size, self.bottom_width = dim_z // self.num_slots, bottom_width
        self.shared = nn.Embedding(n_classes, shared_dim)
        self.linear = RefSNLinear(self.z_chunk_size, in_ch[0] * bottom_width ** 2)
        blocks = []
        for index in range(len(out_ch)):
            blocks.append([RefGBlock(in_ch[index], out_ch[index], shared_dim + self.z_chunk_size)])
            if resolution[index] in attn:
                blocks[-1].append(RefAttention(out_ch[index]))
        self.blocks = nn.ModuleList([nn.ModuleList(b) for b in blocks])
        self.output_layer = nn.Sequential(RefBN(out_ch[-1]), nn.ReLU(), RefSNConv2d(out_ch[-1], 3))

    def forward(self, z, y):
        zs = torch.split(z, self.z_chunk_size, 1)
        ys = [torch.cat([y, item], 1) for item in zs[1:]]
        h = self.linear(zs[0]).view(z.size(0), -1, self.bottom_width, self.bottom_width)
        for index, blocklist in enumerate(self.blocks):
            for block in blocklist:
                h = block(h, ys[index]) if isinstance(block, RefGBlock) else block(h)
        return torch.tanh(self.output_layer(h))


class RefBigGAND(nn.Module):
    """BigGAN.py Discriminator (wide, projection): DBlocks, attention after the blocks whose
    resolution is in `attn`, ReLU + sum pool, linear + ⟨SN embedding(y), h⟩."""

    def __init__(self, in_ch, out_ch, downsample, resolution, attn, n_classes):
        super().__init__()
        blocks = []
        for index in range(len(out_ch)):
            blocks.append([RefDBlock(in_ch[index], out_ch[index], index > 0, downsample[index])])
            if resolution[index] in attn:
                blocks[-1].append(RefAttention(out_ch[index]))
        self.blocks = nn.ModuleList([nn.ModuleList(b) for b in blocks])
        self.linear = RefSNLinear(out_ch[-1], 1)
        self.embed = RefSNEmbedding(n_classes, out_ch[-1])

    def forward(self, x, y):
        h = x
        for blocklist in self.blocks:
            for block in blocklist:
                h = block(h)
        h = torch.sum(F.relu(h), [2, 3])
        return self.linear(h) + torch.sum(self.embed(y) * h, 1, keepdim=True)


def test_biggan_pytorch_release_loads_into_g_and_d_with_their_outputs():
    """The release's G / G_ema and D files (tiny: ch 8, 16x16, attention at 8x8) load strictly
    through `checkpoint "biggan_pytorch"`; torch's SN v and BN counters are derived, and in eval
    the outputs equal the release's (whose SN runs one power iteration from u0 in every forward)."""
    from test_biggan import SPEC, TINY_D, TINY_G
    torch.manual_seed(0)
    refs = {"biggan128_g": (RefBigGANG([16, 16], [16, 8], [8, 16], [8], 12, 6, 5), TINY_G),
            "biggan128_d": (RefBigGAND([3, 8, 16], [8, 16, 16], [True, True, False], [8, 4, 4], [8], 5), TINY_D)}
    z, y, x = reference_input([3, 12]), torch.tensor([0, 3, 4]), reference_input([3, 3, 16, 16], seed=1)
    for variant, (ref, kw) in refs.items():
        sd = _fill({k: (list(v.shape), v.dtype) for k, v in ref.state_dict().items()})
        sd = {k: 0.5 + v.abs() if k.endswith("stored_var") else v for k, v in sd.items()}
        ref.load_state_dict(sd)
        net = archdsl.load_spec(SPEC, variant, **kw)
        archdsl.load_weights(net, sd, source="biggan_pytorch")
        assert torch.equal(net.state_dict()["blocks0.conv1.parametrizations.weight.original"],
                           sd["blocks.0.0.conv1.weight"])
        ref.eval(), net.eval()
        with torch.no_grad():
            want = ref(z, ref.shared(y)) if variant.endswith("_g") else ref(x, y)
            got = net(z, y) if variant.endswith("_g") else net(x, y)
        assert got.abs().max() > 1e-3
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)
    del sd["blocks.0.1.gamma"]
    with pytest.raises(ArchError, match="missing attn0.gamma"):
        archdsl.load_weights(archdsl.load_spec(SPEC, "biggan128_d", **TINY_D), sd, source="biggan_pytorch")


def test_biggan_pytorch_release_files_load_into_the_topology():
    """The G, D and G_ema files of a run, gathered under the networks' names, fill the BigGAN
    topology's three networks; each computes its release module's output in eval."""
    from test_biggan import TINY_T, TRAIN
    torch.manual_seed(0)
    refs = {"G": RefBigGANG([16, 16], [16, 8], [8, 16], [8], 12, 6, 5),
            "G_ema": RefBigGANG([16, 16], [16, 8], [8, 16], [8], 12, 6, 5),
            "D": RefBigGAND([3, 8, 16], [8, 16, 16], [True, True, False], [8, 4, 4], [8], 5)}
    files = {}
    for name, ref in refs.items():
        sd = _fill({f"{name}.{k}": (list(v.shape), v.dtype) for k, v in ref.state_dict().items()})
        sd = {k: 0.5 + v.abs() if k.endswith("stored_var") else v for k, v in sd.items()}
        ref.load_state_dict({k[len(name) + 1:]: v for k, v in sd.items()})
        files.update(sd)
    topo = archdsl.load_spec(TRAIN, "biggan128", **TINY_T)
    archdsl.load_weights(topo, files, source="biggan_pytorch")
    z, y, x = reference_input([3, 12]), torch.tensor([0, 3, 4]), reference_input([3, 3, 16, 16], seed=1)
    with torch.no_grad():
        for name, ref in refs.items():
            ref.eval()
            net = topo.nets[name].eval()
            want, got = (ref(x, y), net(x, y)) if name == "D" else (ref(z, ref.shared(y)), net(z, y))
            torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)
