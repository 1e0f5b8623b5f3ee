"""Op property-test cases, one module per op family.

Each module defines any of: `VALID` (op name → strategy of `Case`), `INVALID` (op name →
strategy of cases `infer` must reject with ShapeError), `NO_INVALID` (ops with no invalid
configuration, name → reason), `ZERO_OTHER_FLOPS` (ops whose other_flops is legitimately 0,
name → reason), `MAC_OPS` (ops whose only other_flops is a bias add). tests/test_ops.py
collects them all and runs the same checks against torch for every op.
"""
import importlib
import pkgutil


def family_modules():
    return [importlib.import_module(f"{__name__}.{m.name}") for m in pkgutil.iter_modules(__path__)
            if m.name != "common"]
