"""Costs need no torch (README "Costs"): in a process where importing torch fails, every stdlib
variant and topology is checked and costed, and `archdsl check` / `cost` run."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap

BLOCK_TORCH = textwrap.dedent("""
    import sys
    class _NoTorch:
        def find_spec(self, name, path=None, target=None):
            if name == "torch" or name.startswith("torch."):
                raise ImportError("torch is blocked in this test: " + name)
    sys.meta_path.insert(0, _NoTorch())
""")


def _run(body: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", BLOCK_TORCH + textwrap.dedent(body)],
                          capture_output=True, text=True, timeout=900)


def test_every_stdlib_variant_and_topology_checks_without_torch():
    run = _run("""
        import json
        from archdsl.api import check_tree
        results = check_tree(jobs=1)
        print(json.dumps([[r.file, r.variant, r.kind, r.error] for r in results]))
        assert "torch" not in sys.modules
    """)
    assert run.returncode == 0, run.stderr[-3000:]
    results = json.loads(run.stdout)
    assert [r for r in results if r[3]] == []
    kinds = {r[2] for r in results}
    assert kinds == {"network", "topology"} and len(results) > 200


def test_the_cli_checks_and_costs_without_torch():
    run = _run("""
        from archdsl.cli import main
        for args in (["check", "resnet50"], ["cost", "convnext_tiny", "--depth", "1"],
                     ["check", "moco_v2"], ["cost", "dino", "--json"]):
            try:
                main(args, standalone_mode=False)
            except SystemExit as e:
                assert not e.code, (args, e.code)
        assert "torch" not in sys.modules
    """)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "OK" in run.stdout and "25,557,032" in run.stdout  # resnet50's parameters
