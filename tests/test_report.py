"""What the CLI prints (archdsl/report/): tables that fit a terminal without cutting a number,
Markdown and CSV, trainable and frozen parameters, the receptive field through global mixing,
and the catalog listing."""
from __future__ import annotations

import csv
import io
import json

import pytest
from click.testing import CliRunner

import archdsl
from archdsl import report
from archdsl.cli import main
from archdsl.viz.dot import human

MAE_LIKE = """\
network Tokens(dim: int = 32) {
  in x: [B, 3, H = 32, W = 32]
  t = x -> patch: conv(dim, 8, stride=8, pad=0) -> flatten(2) -> transpose(1, 2)
  pe = t -> pos: sincos_pos_embed()
  out (t + pe) -> mean(dims=[1]) -> head: linear(10)
}
"""


def run(*args, columns: int | None = None):
    env = {"COLUMNS": str(columns) if columns else None}
    return CliRunner().invoke(main, [str(a) for a in args], env=env)


def _rows(text: str) -> dict[str, str]:
    """Table lines by their first word (the path)."""
    return {line.split()[0]: line for line in text.splitlines() if line.strip()}


@pytest.mark.parametrize("spec, depth", [("resnet50", "1"), ("resnet50", "all"),
                                         ("vit_base_patch16_224", "2"),
                                         ("swin_tiny_patch4_window7_224", "3")])
@pytest.mark.parametrize("columns", [80, 100])
def test_tables_fit_the_terminal_and_keep_every_number_whole(spec, depth, columns):
    result = run("cost", spec, "--depth", depth, columns=columns)
    assert result.exit_code == 0, result.output
    table = result.stdout.split("\n\n")[0]
    assert all(len(line) <= columns for line in table.splitlines())
    assert "…" not in table
    data = json.loads(run("cost", spec, "--json", "--depth", "100" if depth == "all" else depth).stdout)
    lines = _rows(table)
    for g in data["groups"]:
        if g["params"] and g["path"] in lines:        # a path that fits on one line
            assert human(g["params"]) in lines[g["path"]].split()
            assert human(g["macs"]) in lines[g["path"]].split() or not g["macs"]
    # what the table leaves out, it names
    header = table.splitlines()[0].split()
    if "FLOPs" not in header:
        note = " ".join(table[table.rindex("\n("):].split())
        assert "FLOPs" in note and f"left out at {columns} columns" in note


def test_piped_output_is_never_narrowed():
    result = run("cost", "resnet50")
    header = result.stdout.splitlines()[0].split()
    assert header == ["path", "op", "/", "block", "output", "shape", "params", "MACs", "FLOPs",
                      "activations", "rf"]


def test_markdown_and_csv_hold_the_same_rows_as_json():
    data = json.loads(run("cost", "resnet18", "--json", "--depth", "1").stdout)
    rows = list(csv.DictReader(io.StringIO(run("cost", "resnet18", "--format", "csv").stdout)))
    assert [r["path"] for r in rows] == [g["path"] for g in data["groups"]]
    for r, g in zip(rows, data["groups"]):
        for key in ("params", "flops", "macs", "activation_bytes", "receptive_field", "stride"):
            assert int(r[key]) == g[key]
    full = list(csv.DictReader(io.StringIO(run("cost", "resnet18", "--format", "csv", "--full").stdout)))
    assert len(full) == len(data_nodes := json.loads(run("cost", "resnet18", "--json").stdout)["nodes"])
    assert sum(int(r["flops"]) for r in full) == sum(n["flops"] for n in data_nodes)

    md = run("cost", "resnet18", "--format", "md").stdout
    table = [line for line in md.splitlines() if line.startswith("| ")]
    assert table[0].startswith("| path | op / block | output shape | params | MACs | FLOPs")
    layer4 = next(line for line in table if line.startswith("| layer4 |"))
    assert f"| {human(data['groups'][-3]['params'])} |" in layer4     # layer4, mean, fc
    assert "| params | 11,689,512 |" in md


def test_trainable_and_frozen_params(tmp_path):
    spec = tmp_path / "tokens.arch"
    spec.write_text(MAE_LIKE)
    rep = archdsl.check_spec(spec)
    assert rep.totals.frozen_params == 1 * 16 * 32          # the sine-cosine table, 16 tokens × 32
    module = archdsl.load_spec(spec)
    assert sum(p.numel() for p in module.parameters() if not p.requires_grad) == rep.totals.frozen_params
    assert sum(p.numel() for p in module.parameters()) == rep.totals.params
    result = run("compile", spec)
    assert result.exit_code == 0 and "warning" not in result.output
    lines = _rows(result.stdout)
    trainable = rep.totals.params - rep.totals.frozen_params
    assert lines["trainable"].split()[1] == f"{trainable:,}"
    assert lines["frozen"].split()[1] == "512"
    assert lines["weights"].split()[1] == f"{rep.totals.params * 4:,}"   # no buffers; float32
    half = _rows(run("cost", spec, "--dtype", "float16").stdout)
    assert half["weights"].split()[1] == f"{rep.totals.params * 2:,}"
    assert json.loads(run("compile", spec, "--json").stdout)["module"]["trainable_params"] == trainable


def _fields(spec: str) -> dict[str, tuple[int, int]]:
    return {n.path: (n.receptive_field, n.stride) for n in archdsl.check_spec(spec).nodes}


def test_receptive_field_is_the_whole_input_after_global_attention():
    rf = _fields("vit_tiny_patch16_224")
    assert rf["patch_embed.proj"] == (16, 16)
    assert rf["blocks.0.attn.qkv"] == (16, 16)          # before attention: one patch
    assert rf["blocks.0.attn.sdpa"] == (224, 16)        # every token sees every patch
    assert rf["head"] == (224, 16)
    # window attention widens the field by one window (7 tokens of stride 4), not to the input
    swin = _fields("swin_tiny_patch4_window7_224")
    assert swin["patch_embed.proj"] == (4, 4)
    assert swin["layers.0.blocks.0.attn.sdpa"] == (4 + 6 * 4, 4)
    assert swin["layers.0.blocks.1.attn.sdpa"] == (4 + 2 * 6 * 4, 4)
    # a convnet's field is unchanged by everything but its convs and pools until the global mean
    r50 = _fields("resnet50")
    assert r50["layer4.2.relu_2"] == (427, 32) and r50["mean"] == (427, 32)
    assert _fields("mobilenetv2_100")["conv_stem"] == (3, 2)


def test_list_is_fast_compact_and_filters_by_glob(monkeypatch):
    monkeypatch.setattr(report, "terminal_width", lambda: None)
    monkeypatch.setattr("archdsl.cli.check_tree", lambda *a, **k: pytest.fail("list costed variants"))
    result = run("list")  # a catalog read: costing a variant would fail the test (check_tree above)
    assert result.exit_code == 0, result.output
    assert max(len(line) for line in result.stdout.splitlines()) <= 100
    result = run("list", "resnet*", "*_tiny")
    names = [line.split()[0] for line in result.stdout.splitlines()[2:-1]]
    assert names and all(n.startswith("resnet") or n.endswith("_tiny") for n in names)
    assert {"resnet50", "convnext_tiny", "segnext_tiny"} <= set(names) and "seresnet50" not in names
    assert run("list", "nothing_like_this*").exit_code == 1


def test_list_names_the_network_each_variant_builds():
    data = json.loads(run("list", "--json", "biggan128_d", "patchgan_70", "dy_resnet18").stdout)
    networks = {v["name"]: v["network"] for f in data["families"] for v in f["variants"]}
    assert networks == {"biggan128_d": "BigGANDiscriminator", "patchgan_70": "NLayerDiscriminator",
                        "dy_resnet18": "ResNet"}
    text = _rows(run("list", "biggan128_d", "dy_resnet18").stdout)
    assert text["biggan128_d"].split()[1] == "BigGANDiscriminator"


def test_paper_titles_end_with_their_authors_and_venue():
    papers = {e.file: e.paper for e in archdsl.catalog()}
    assert papers["gan/biggan.arch"] == ("Large Scale GAN Training for High Fidelity Natural Image "
                                         "Synthesis (BigGAN; Brock, Donahue, Simonyan, ICLR 2019)")
    assert papers["nets/vit.arch"].endswith("Gelly, Uszkoreit, Houlsby; ICLR 2021)")
    assert papers["nets/resnet.arch"] == ("Deep Residual Learning for Image Recognition "
                                          "(He, Zhang, Ren, Sun; CVPR 2016)")
    for paper in papers.values():
        assert paper.count("(") == paper.count(")"), paper
