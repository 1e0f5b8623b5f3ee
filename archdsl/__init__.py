"""archdsl: a declarative, graph-based compiler for neural-network architectures."""
from archdsl._version import __version__  # noqa: F401
from archdsl.api import (CatalogEntry, SpecText, VariantInfo, catalog, check_spec, load_graph, load_spec,
                         load_topology, load_weights, read_weights, spec_args, spec_kind)
from archdsl.errors import ArchError, ArchWarning
from archdsl.semantics.budget import limits

__all__ = ["ArchError", "ArchWarning", "CatalogEntry", "SpecText", "VariantInfo", "catalog", "check_spec",
           "limits", "load_graph", "load_spec", "load_topology", "load_weights",
           "read_weights", "spec_args", "spec_kind"]
