"""archdsl: a declarative, graph-based compiler for neural-network architectures."""
from archdsl._version import __version__  # noqa: F401
from archdsl.api import (CatalogEntry, SpecText, VariantInfo, catalog, check_spec, load_graph, load_spec,
                         load_topology, load_weights, spec_kind)
from archdsl.errors import ArchError

__all__ = ["ArchError", "CatalogEntry", "SpecText", "VariantInfo", "catalog", "check_spec",
           "load_graph", "load_spec", "load_topology", "load_weights", "spec_kind"]
