"""The op library: importing this package registers every op family, one module each, found in
the package (in name order, so the registry's order does not depend on the file system)."""
import importlib
import pkgutil

from archdsl.ops.base import REGISTRY, Op, ShapeError

for _family in sorted(m.name for m in pkgutil.iter_modules(__path__)):
    importlib.import_module(f"{__name__}.{_family}")

__all__ = ["REGISTRY", "Op", "ShapeError"]
