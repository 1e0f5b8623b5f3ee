"""Cost passes: computed from shapes alone, with receptive field, stride and activation bytes."""
from __future__ import annotations

import math
import subprocess
import sys

import archdsl

HUGE = """from nets.convnext import ConvNeXt
variant huge = ConvNeXt(depths=[3, 3, 27, 3], dims=[1536, 3072, 6144, 12288])"""


def test_costing_a_ten_billion_parameter_spec_never_imports_torch():
    probe = (f"import sys, archdsl; r = archdsl.check_spec(source={HUGE!r}); "
             "print(r.totals.params, 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", probe], check=True, capture_output=True, text=True)
    params, imported = out.stdout.split()
    assert int(params) > 10_000_000_000
    assert imported == "False"


def test_receptive_field_and_stride_follow_the_conv_path():
    text = """network N() {
  in x: [B, 3, H = 64, W = 64]
  out x -> a: conv(8, 3) -> b: conv(8, 3, stride=2) -> c: conv(8, 3) -> p: maxpool(2) -> d: conv(8, 5, dilation=2, pad=4)
}"""
    rows = {r.path: r for r in archdsl.check_spec(source=text).nodes}
    # rf grows by (k - 1) * dilation * (product of earlier strides)
    assert [(rows[k].receptive_field, rows[k].stride) for k in "abcpd"] == [
        (3, 1), (5, 2), (9, 2), (11, 4), (11 + 4 * 2 * 4, 4)]


def test_activation_bytes_and_totals_add_up():
    report = archdsl.check_spec("resnet18", input_shape=(2, 3, 64, 64), dtype="float16")
    rows = report.nodes
    assert report.batch == 2
    assert report.totals.activation_bytes == sum(r.activation_bytes for r in rows)
    conv1 = next(r for r in rows if r.path == "conv1")
    assert conv1.activation_bytes == math.prod(conv1.shape) * 2
    assert report.totals.flops == sum(r.flops for r in rows) == 2 * report.totals.macs
    assert report.totals.other_flops > 0
    assert report.output_shapes == {"out": [2, 1000]}
    as_json = report.to_dict()
    assert as_json["totals"]["params"] == 11_689_512 and len(as_json["nodes"]) == len(rows)
