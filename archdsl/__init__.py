"""archdsl: a declarative, graph-based compiler for neural-network architectures."""
from archdsl.api import (CatalogEntry, SpecText, VariantInfo, catalog, check_spec, load_graph, load_spec,
                         load_topology, load_weights, read_weights, spec_kind)
from archdsl.errors import ArchError

__all__ = ["ArchError", "CatalogEntry", "SpecText", "VariantInfo", "catalog", "check_spec",
           "load_graph", "load_spec", "load_topology", "load_weights", "read_weights", "spec_kind"]
__version__ = "0.1.0"
