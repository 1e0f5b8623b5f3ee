"""The fuzzer (archdsl.testing.fuzz): a short seeded run finds no internal error, and the
machinery it relies on (reproducible cases, the CPU-time limit, shrinking) works."""
from __future__ import annotations

import pytest
import torch

import archdsl
from archdsl.testing import fuzz as F


def test_short_seeded_run_has_no_internal_error():
    # 2,000 cases, mostly snippets (fast to parse), some mutated stdlib files; a tenth of the
    # cases that pass are also built and run
    report = F.fuzz(2000, seed=0, snippets=0.8, build_fraction=0.1, timeout=5.0, shrink_budget=10.0)
    assert report.cases == 2000
    assert report.kinds["ok"] + report.kinds["error"] > 1900
    assert not report.internal, F.render(report, 1.0)
    assert not report.timeouts, F.render(report, 1.0)


def test_a_case_depends_only_on_seed_and_index():
    corpus = F.Corpus()
    assert F.make_case(3, 17, corpus, 0.1) == F.make_case(3, 17, corpus, 0.1)
    assert F.make_case(3, 17, corpus, 0.1) != F.make_case(3, 18, corpus, 0.1)


def test_a_case_over_its_cpu_limit_is_stopped_and_the_worker_goes_on():
    # elaborating a 130-block ResNet takes far more than 10 ms of CPU on any machine
    slow = F.Case("from nets.resnet import ResNet\nvariant v = ResNet(layers=[3, 24, 100, 3])\n", "", "test")
    quick = F.Case("network N() {\n  in x: [B, 4]\n  out x -> fc: linear(2)\n}\n", "", "test")
    worker = F.Worker(memory_limit=4 << 30, build=False)
    try:
        assert worker.run(slow, timeout=0.01).kind == "timeout"
        assert worker.run(quick, timeout=5.0).kind == "ok"
    finally:
        worker.stop()


def test_delta_debugging_keeps_what_the_property_needs():
    items = list("abcdefghij")
    kept = F.ddmin(items, lambda rest: "c" in rest and "h" in rest, deadline=float("inf"))
    assert kept == ["c", "h"]


# ---- what the fuzzer found beyond issue 13's list -------------------------------------------

def test_a_whole_float_beyond_int64_reaches_torch_as_a_float():
    model = archdsl.load_spec(source="network N() {\n  in x: [2, 8]\n  out x - 1e308\n}\n")
    y = model(torch.zeros(2, 8))  # float32: -1e308 rounds to -inf (it raised OverflowError)
    assert torch.equal(y, torch.full((2, 8), -torch.inf))
    ints = archdsl.load_spec(source="network N() {\n  in x: [2, 8]\n  out x + 3.0\n}\n")
    assert ints(torch.zeros(2, 8, dtype=torch.int64)).dtype == torch.int64  # a whole number stays an int


def test_a_net_that_no_phase_calls_is_an_error_at_its_declaration():
    src = ("block Tiny() {\n  in x: [B, C]\n  out x -> fc: linear(4)\n}\n"
           "topology T() {\n  in x: [B = 2, 3]\n  net a = Tiny()\n  net b = Tiny()\n"
           "  phase train(update=[a]) {\n    loss = mean(x -> a, dims=[0, 1])\n  }\n}\n")
    with pytest.raises(archdsl.ArchError) as err:
        archdsl.load_topology(source=src)
    assert err.value.message == "net 'b' is never called in a phase"
    assert (err.value.span.line, err.value.span.col) == (8, 3)
