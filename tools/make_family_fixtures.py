"""Whole timm families against the stdlib: the facts of every model timm registers, and the table.

    python tools/make_family_fixtures.py [FAMILY ...]   # in a venv with timm (offline)
    python tools/make_family_fixtures.py --readme       # print the README's family table
    python tools/make_family_fixtures.py --write-readme # rewrite it in README.md

The first form writes tests/fixtures/families/<family>.json.gz: for each name timm registers for
the family (`timm.list_models`, minus the names listed in `other` below: a different
architecture under a family's prefix, each with the reason), its parameter count and the key →
shape of every floating tensor of its state_dict (integer buffers such as BatchNorm's
`num_batches_tracked` are the module type's, not the architecture's), built on the meta device.

The mapping from a timm name to archdsl arguments is a variant of that very name: in
specs/timm/<family>.arch (`variant resnet26d = ResNet(layers=[2, 2, 2, 2], stem="deep", …)`),
else in the stdlib. A name no variant reproduces is listed in `missing` below with the reason.
tests/test_families.py checks both, and that the README table is what `--readme` prints.
"""
from __future__ import annotations

import fnmatch
import gzip
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures" / "families"
TABLES = ROOT / "specs" / "timm"
README = ROOT / "README.md"
BEGIN = "<!-- BEGIN GENERATED: families (python tools/make_family_fixtures.py --write-readme) -->"
END = "<!-- END GENERATED: families -->"

TEST_MODEL = "a timm unit-test configuration (tiny widths), not a released model"


@dataclass(frozen=True)
class Family:
    name: str                    # the fixture's and the table file's stem
    title: str                   # the README's family column
    spec: str                    # the stdlib file of the network
    module: str                  # timm's module (timm.list_models(module=…))
    include: tuple[str, ...] = ("*",)                      # its names of this family
    other: dict[str, str] = field(default_factory=dict)    # pattern → why it is not this family
    missing: dict[str, str] = field(default_factory=dict)  # pattern → why no variant yet


FAMILIES = [
    Family("resnet", "ResNet, ResNet-C/D/S/T/RS, ResNeXt, SE/ECA-ResNe(X)t, Wide ResNet, SENet-154",
           "nets/resnet.arch", "resnet",
           other={"test_resnet": TEST_MODEL}),
    Family("efficientnet", "EfficientNet", "nets/efficientnet.arch", "efficientnet",
           ("efficientnet_*", "tf_efficientnet_*", "tinynet_*", "gc_efficientnetv2*"),
           other={"*efficientnetv2*": "EfficientNetV2 (Fused-MBConv stages): no stdlib spec",
                  "*efficientnet_cc_*": "CondConv experts (a routed mixture of kernels)",
                  "*efficientnet_e[lms]*": "EfficientNet-EdgeTPU (fused conv stages)"},
           missing={"*_pruned": "channel-pruned widths per layer (timm's pruned/*.txt), not a"
                                " scaling rule"}),
    Family("mobilenetv1", "MobileNetV1", "nets/mobilenetv1.arch", "efficientnet", ("mobilenetv1*",)),
    Family("mobilenetv2", "MobileNetV2", "nets/mobilenetv2.arch", "efficientnet", ("mobilenetv2*",)),
    Family("mobilenetv3", "MobileNetV3", "nets/mobilenetv3.arch", "mobilenetv3",
           ("mobilenetv3*", "tf_mobilenetv3*")),
    Family("vit", "ViT", "nets/vit.arch", "vision_transformer", ("vit_*", "flexivit_*")),
    Family("convnext", "ConvNeXt", "nets/convnext.arch", "convnext",
           ("convnext_*", "convnextv2_*")),
    Family("regnet", "RegNet", "nets/regnet.arch", "regnet"),
    Family("hrnet", "HRNet", "nets/hrnet.arch", "hrnet"),
    Family("res2net", "Res2Net", "nets/res2net.arch", "res2net"),
    Family("resnest", "ResNeSt", "nets/resnest.arch", "resnest"),
    Family("sknet", "SKNet", "nets/sknet.arch", "sknet"),
    Family("swin", "Swin", "nets/swin.arch", "swin_transformer"),
    Family("cspnet", "CSPNet", "nets/cspnet.arch", "cspnet"),
    Family("nfnet", "NFNet, NF-ResNet", "nets/nfnet.arch", "nfnet",
           other={"test_nfnet": TEST_MODEL}),
    Family("repvgg", "RepVGG", "nets/repvgg.arch", "byobnet", ("repvgg_*",)),
    Family("xception", "Xception", "nets/xception.arch", "xception"),
    Family("beit", "BEiT", "nets/beit.arch", "beit"),
]


def family(name: str) -> Family:
    return next(f for f in FAMILIES if f.name == name)


def reason(table: dict[str, str], name: str) -> str | None:
    """The reason of the first pattern that matches (the table's order), else None."""
    return next((why for pattern, why in table.items() if fnmatch.fnmatchcase(name, pattern)), None)


# ---- the fixtures (timm) -------------------------------------------------------------------------

def registered(fam: Family) -> tuple[list[str], dict[str, str]]:
    """(the family's timm names, {other name: why}) — every name the patterns list, split."""
    import timm
    names = sorted({n for p in fam.include for n in timm.list_models(p, module=fam.module)})
    other = {n: why for n in names if (why := reason(fam.other, n))}
    return [n for n in names if n not in other], other


def facts(name: str) -> dict:
    import timm
    import torch
    with torch.device("meta"):
        model = timm.create_model(name, pretrained=False)
    return {"params": sum(p.numel() for p in model.parameters()),
            "state": [[k, list(v.shape)] for k, v in model.state_dict().items()
                      if v.is_floating_point()]}


def write_fixture(fam: Family) -> Path:
    import timm
    names, other = registered(fam)
    data = {"family": fam.name, "library": f"timm {timm.__version__}", "other": other,
            "models": {n: facts(n) for n in names}}
    FIXTURES.mkdir(parents=True, exist_ok=True)
    path = FIXTURES / f"{fam.name}.json.gz"
    # mtime=0: the same facts give the same bytes
    path.write_bytes(gzip.compress(json.dumps(data, separators=(",", ":")).encode(), mtime=0))
    return path


def load_fixture(name: str) -> dict:
    return json.loads(gzip.decompress((FIXTURES / f"{name}.json.gz").read_bytes()))


# ---- the mapping and the table (archdsl) ---------------------------------------------------------

def table_file(fam: Family) -> Path:
    return TABLES / f"{fam.name}.arch"


def mapped(fam: Family, models: dict) -> dict[str, tuple[str | None, str]]:
    """timm name → (spec path or None for the stdlib, variant) of each name a variant declares."""
    import archdsl
    from archdsl.syntax import ast, parse
    out: dict[str, tuple[str | None, str]] = {}
    path = table_file(fam)
    if path.exists():
        local = {i.name for i in parse(path.read_text()).items if isinstance(i, ast.Variant)}
        out.update({n: (str(path), n) for n in models if n in local})
    stdlib = {v.name for e in archdsl.catalog() for v in e.variants}
    out.update({n: (None, n) for n in models if n in stdlib and n not in out})
    return out


def summary(fam: Family) -> dict:
    data = load_fixture(fam.name)
    models = data["models"]
    done = mapped(fam, models)
    missing = {n: reason(fam.missing, n) or "no variant yet" for n in models if n not in done}
    return {"family": fam, "names": len(models), "reproduced": len(done), "missing": missing,
            "other": data["other"], "library": data["library"]}


def _grouped(reasons: dict[str, str]) -> str:
    """'name, name (why); name (why)' — names that share a reason together."""
    by_reason: dict[str, list[str]] = {}
    for name, why in reasons.items():
        by_reason.setdefault(why, []).append(name)
    return "; ".join(f"{', '.join(f'`{n}`' for n in names)} ({why})" for why, names in by_reason.items())


def readme_table() -> str:
    rows = [summary(f) for f in FAMILIES]
    total = sum(r["names"] for r in rows)
    done = sum(r["reproduced"] for r in rows)
    lines = ["| family | spec | timm names | reproduced | missing (why) | not this family (why) |",
             "|---|---|---:|---:|---|---|"]
    for r in rows:
        fam = r["family"]
        lines.append(f"| {fam.title} | `stdlib/{fam.spec}` | {r['names']} | {r['reproduced']} | "
                     f"{_grouped(r['missing']) or '—'} | {_grouped(r['other']) or '—'} |")
    lines.append(f"| **all** | | {total} | {done} ({100 * done / max(total, 1):.1f} %) | | |")
    library = rows[0]["library"] if rows else "timm"
    return "\n".join([f"Counted against {library}'s registry.", "", *lines])


def readme_section(text: str) -> tuple[int, int]:
    start, end = text.index(BEGIN) + len(BEGIN), text.index(END)
    return start, end


def write_readme() -> None:
    text = README.read_text(encoding="utf-8")
    start, end = readme_section(text)
    README.write_text(text[:start] + "\n" + readme_table() + "\n" + text[end:], encoding="utf-8")


def main(args: list[str]) -> None:
    if args == ["--readme"]:
        print(readme_table())
    elif args == ["--write-readme"]:
        write_readme()
    else:
        for fam in FAMILIES if not args else [family(a) for a in args]:
            print("wrote", write_fixture(fam))


if __name__ == "__main__":
    main(sys.argv[1:])
