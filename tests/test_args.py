"""Arguments that are checked and networks that bend: choice types, asserts reported at the
caller's argument, per-stage blocks, in_chans / img_size, `archdsl args`, MoCo's explicit version,
and `archdsl train` refusing a batch its loss cannot learn from. Shapes and costs only (no torch
modules are built), so the file runs in seconds."""
from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

import archdsl
from archdsl import ArchError
from archdsl.cli import main
from archdsl.syntax import parse
from archdsl.syntax.fmt import fmt
from archdsl.topology.train import check_batch


def error_of(source: str, **kw) -> ArchError:
    with pytest.raises(ArchError) as info:
        archdsl.check_spec(source=source, **kw)
    return info.value


def at(err: ArchError, source: str) -> str:
    """The source text from the error's caret to the end of its line (the caller's argument)."""
    assert err.span is not None and err.span.file.startswith("<"), str(err)
    return source.splitlines()[err.span.line - 1][err.span.col - 1:]


# ---- wrong arguments are errors at the caller's argument ----------------------------------------

RESNET = "from nets.resnet import ResNet, BasicBlock, Bottleneck\n"


@pytest.mark.parametrize("call, points_at, message", [
    ("ResNet(layers=[2, 2, 2])", "layers=[2, 2, 2]", "a ResNet has 4 stages"),
    ("ResNet(layers=[1, 1, 1, 1], block=[BasicBlock, BasicBlock])", "block=[", "a list of 4"),
    ("ResNet(layers=[1, 1, 1, 1], stem=\"dep\")", "stem=\"dep\"", "must be one of \"\", \"deep\""),
], ids=["layers-length", "block-list-length", "stem-choice"])
def test_resnet_arguments_are_checked_where_written(call, points_at, message):
    source = RESNET + f"variant v = {call}\n"
    err = error_of(source)
    assert at(err, source).startswith(points_at) and message in str(err), str(err)


def test_a_choice_suggests_the_close_one_and_formats_back():
    err = error_of(RESNET + 'variant v = ResNet(layers=[1, 1, 1, 1], stem="dep")\n')
    assert err.found == '"dep"' and err.hint == "did you mean 'deep'?"
    text = 'network N(stem: "" | "deep" = "", k: "a" | "b"? = none) {\n  in x: [B, 8]\n  out x\n}\n'
    assert fmt(parse(text, "t.arch")) == text
    archdsl.check_spec(source=text + 'variant v = N(k="b")\n')  # a choice, and none, are accepted
    archdsl.check_spec(source=text + 'variant v = N(k=none)\n')
    assert error_of(text + 'variant v = N(k="c")\n').expected == 'one of "a", "b" or none'


@pytest.mark.parametrize("source, points_at, message, values", [
    ("from nets.vit import ViT\nvariant v = ViT(16, 192, 2, 5)\n", "5)", "num_heads must divide dim",
     "dim = 192, num_heads = 5"),
    ("from nets.convnext import ConvNeXt\nvariant v = ConvNeXt(depths=[1, 1, 1, 1], dims=[8, 16, 32])\n",
     "dims=", "dims and depths", "dims = [8, 16, 32], depths = [1, 1, 1, 1]"),
    ("from nets.swin import Swin\nvariant v = Swin(embed_dim=32, depths=[1, 1], num_heads=[1, 3])\n",
     "num_heads=", "num_heads[i] must divide", "embed_dim = 32"),
    ("from nets.swin import Swin\nvariant v = Swin(embed_dim=32, depths=[1, 1], num_heads=[1])\n",
     "depths=", "depths and num_heads", "num_heads = [1]"),
    ("from nets.nfnet import NormFreeNet\nvariant v = NormFreeNet([1, 1, 1, 1], act=\"swish\")\n",
     "act=", "must be one of \"relu\", \"gelu\", \"silu\"", None),
], ids=["vit-heads", "convnext-lengths", "swin-heads-divide", "swin-lengths", "nfnet-act"])
def test_stdlib_asserts_point_at_the_argument(source, points_at, message, values):
    err = error_of(source)
    assert at(err, source).startswith(points_at) and message in err.message, str(err)
    if values:
        assert values in err.hint and "the spec requires" in err.hint
        assert any(text.startswith("required by") for text, _ in err.notes)  # and the assert itself


def test_an_assert_on_a_command_line_value_shows_the_assert():
    with pytest.raises(ArchError) as info:
        archdsl.check_spec("convnext_tiny", dims=archdsl.SpecText("[96, 192, 384]"))
    err = info.value
    assert err.span.file.endswith("nets/convnext.arch") and "dims = [96, 192, 384]" in err.hint


def test_an_override_replaces_an_argument_the_variant_gave_by_position():
    # vit_tiny_patch16_224 = ViT(16, 192, 12, 3): depth is the third positional argument
    two = archdsl.check_spec("vit_tiny_patch16_224", depth=2).totals
    written = archdsl.check_spec(source="from nets.vit import ViT\nvariant v = ViT(16, 192, 2, 3)\n").totals
    full = archdsl.check_spec("vit_tiny_patch16_224").totals
    block = 12 * 192 ** 2 + 13 * 192  # qkv, proj, fc1, fc2 weights and biases, two layer norms
    assert two == written and full.params - two.params == 10 * block


# ---- position tables refuse an input of another size ---------------------------------------------

def test_vit_refuses_another_resolution_and_img_size_builds_for_it():
    with pytest.raises(ArchError) as info:
        archdsl.check_spec("vit_tiny_patch16_224", input_shape=(1, 3, 160, 160))
    assert "pass img_size=160" in info.value.message and "H = 160, img_size = 224" in info.value.hint
    at160 = archdsl.check_spec("vit_tiny_patch16_224", img_size=160)
    assert at160.input_shapes["x"] == [1, 3, 160, 160]
    # the position table: 1 + 14² rows at 224, 1 + 10² at 160, 192 wide
    assert archdsl.check_spec("vit_tiny_patch16_224").totals.params - at160.totals.params == (196 - 100) * 192


@pytest.mark.parametrize("spec, size", [("beit_base_patch16_224", "img_size"),
                                        ("mae_vit_base_patch16", "img_size"),
                                        ("clip_vit_b16", "image_resolution")])
def test_other_position_tables_refuse_another_resolution(spec, size):
    shapes = [(1, 3, 160, 160)] + ([(1, 77)] if spec.startswith("clip") else [])
    with pytest.raises(ArchError, match=f"pass {size}=160"):
        archdsl.check_spec(spec, input_shape=shapes)


# ---- networks that bend ------------------------------------------------------------------------

def test_per_stage_blocks_put_se_in_stage_3_only():
    source = RESNET + ("variant v = ResNet(layers=[3, 4, 6, 3], "
                       "block=[Bottleneck, Bottleneck, Bottleneck(attn=SE), Bottleneck])\n")
    graph = archdsl.load_graph(source=source)
    se = {n.id.split(".")[0] for n in graph.nodes() if ".se." in n.id}
    assert se == {"layer3"}
    # SE on 1024 channels (rd 1024/16 = 64): two 1x1 convs with biases, in each of the 6 blocks
    se_params = 1024 * 64 + 64 + 64 * 1024 + 1024
    assert archdsl.check_spec(source=source).totals.params == \
        archdsl.check_spec("resnet50").totals.params + 6 * se_params


def test_a_block_missing_parameters_is_told_all_of_them_at_once():
    source = RESNET + ("block Mine(planes: int, stride: int = 1) {\n  in x: [B, C, H, W]\n"
                       "  out x -> conv(planes, 3, stride=stride)\n}\n"
                       "variant v = ResNet(layers=[1, 1, 1, 1], block=Mine)\n")
    err = error_of(source)
    assert err.message == "'Mine' has no parameters 'groups', 'base_width', 'avg_down', 'dpr'"
    assert "planes, stride, groups, base_width, avg_down, dpr" in err.hint


def test_in_chans_and_img_size_set_the_default_input():
    base = archdsl.check_spec("resnet18")
    gray = archdsl.check_spec("resnet18", in_chans=1, img_size=128)
    assert gray.input_shapes["x"] == [1, 1, 128, 128]
    assert base.totals.params - gray.totals.params == 64 * 2 * 7 * 7  # conv1 sees 1 channel, not 3
    small = archdsl.check_spec(source="from nets.convnext import ConvNeXt\n"
                                      "variant v = ConvNeXt([1, 1], [8, 16], in_chans=1, img_size=32)\n")
    assert small.input_shapes["x"] == [1, 1, 32, 32]


# ---- archdsl args --------------------------------------------------------------------------------

def test_spec_args_reads_types_defaults_the_variants_values_and_docs():
    sig = archdsl.spec_args("resnet50")
    args = {a.name: a for a in sig.arguments}
    assert (sig.name, sig.kind, sig.variant) == ("ResNet", "network", "resnet50")
    assert args["layers"].default is None and args["layers"].value == "[3, 4, 6, 3]"
    assert args["stem"].type == '"" | "deep" | "tiered"' and args["stem"].default == '""'
    assert "block(planes, stride, groups, base_width, avg_down, dpr)" in args["block"].doc
    assert list(args) == ["layers", "block", "groups", "base_width", "stem", "stem_width", "avg_down",
                          "drop_path_rate", "num_classes", "drop_rate", "ceil_pool", "stem_pool", "in_chans",
                          "img_size", "norm", "block_chs"]


def test_param_docs_come_from_comments_beside_or_above_them():
    source = ("# A test network.\nnetwork N(\n    width: int = 8,  # hidden channels\n"
              "    # the output size\n    size: int = 4,\n    act = relu,\n) {\n  in x: [B, 8]\n"
              "  out x -> linear(width) -> act -> linear(size)\n}\nvariant n = N(size=2)\n")
    sig = archdsl.spec_args(source=source)
    docs = {a.name: (a.doc, a.value) for a in sig.arguments}
    assert sig.doc == "A test network."
    assert docs == {"width": ("hidden channels", None), "size": ("the output size", "2"), "act": ("", None)}


def test_args_command_prints_a_family_and_a_topology():
    result = CliRunner().invoke(main, ["args", "convnext"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("network ConvNeXt (") and "dims: list[int] = [96, 192, 384, 768]" in result.output
    result = CliRunner().invoke(main, ["args", "moco_v2"])
    assert result.exit_code == 0, result.output
    assert "version: int = 2    (moco_v2; required)" in result.output and "T: float? = none" in result.output
    data = json.loads(CliRunner().invoke(main, ["args", "moco_v1", "--json"]).output)
    assert data["kind"] == "topology" and {"name": "version", "type": "int", "default": None,
                                           "value": "1", "doc": data["arguments"][0]["doc"]} in data["arguments"]


# ---- MoCo's version ------------------------------------------------------------------------------

def _temperature(ir) -> float:
    (node,) = [n for n in ir.phases["train"].graph.nodes() if n.op == "info_nce"]
    return node.attrs.temperature


SMALL = dict(backbone=archdsl.SpecText("resnet18"), img=32, K=64)


def test_moco_needs_a_version_and_each_version_sets_its_head_and_temperature():
    with pytest.raises(ArchError, match="missing argument 'version'"):
        archdsl.load_topology(source="from ssl.moco import MoCo\nvariant m = MoCo(backbone=resnet18)\n")
    v1 = archdsl.load_topology("moco_v1", **SMALL)
    v2 = archdsl.load_topology(source="variant m = moco_v2(backbone=resnet18, img=32, K=64)\n")
    assert (_temperature(v1), _temperature(v2)) == (0.07, 0.2)
    heads = [sorted(n.id for n in ir.nets["query"].first_graph.nodes() if n.id.startswith("head.")
                    and n.op == "linear") for ir in (v1, v2)]
    assert len(heads[0]) == 1 and len(heads[1]) == 2  # v1: an fc; v2: a 2-layer MLP
    assert _temperature(archdsl.load_topology("moco_v2", T=0.1, **SMALL)) == 0.1


# ---- train refuses a batch its loss cannot learn from --------------------------------------------

def test_train_refuses_a_batch_of_one_for_in_batch_negatives():
    simclr = dict(backbone=archdsl.SpecText("resnet18"), img=32)
    with pytest.raises(ArchError, match="'nt_xent' gets 1 row"):
        check_batch(archdsl.load_topology("simclr_v1", **simclr))
    check_batch(archdsl.load_topology("simclr_v1", input_shape=[(4, 3, 32, 32)] * 2, **simclr))
    with pytest.raises(ArchError, match="batch norm sees 1 value per channel") as info:
        check_batch(archdsl.load_topology("moco_v2", **SMALL))  # layer4 of a 32x32 image is 1x1
    assert "query.backbone.layer4" in info.value.message


def test_train_points_a_network_at_the_supervised_topology():
    result = CliRunner().invoke(main, ["train", "resnet18", "--synthetic"])
    assert result.exit_code == 1
    assert "is a network" in result.output and "train bag_of_tricks_resnet50" in result.output
    assert "--set backbone=resnet18" in result.output


def _families_with(arg: str) -> list[str]:
    out = []
    for e in archdsl.catalog():
        if e.kind == "network" and e.variants:
            if arg in {a.name for a in archdsl.spec_args(e.variants[0].name).arguments}:
                out.append(e.variants[0].name)
    return out


@pytest.mark.parametrize("variant", _families_with("in_chans"))
def test_in_chans_is_the_default_input_and_only_the_layers_reading_it_change(variant):
    rgb = archdsl.check_spec(variant)
    gray = archdsl.check_spec(variant, in_chans=1)
    (name, shape), = gray.input_shapes.items()
    assert shape == [1, 1, *rgb.input_shapes[name][2:]]
    graph = archdsl.load_graph(variant)
    before = {n.path: n.params for n in rgb.nodes}
    changed = [n.path for n in gray.nodes if n.params != before[n.path]]
    assert changed and all(graph.node(p).inputs == [name] for p in changed)
