"""What the command line prints: cost tables (text, Markdown, CSV, JSON), totals, topologies,
built modules, the catalog, check results and arguments, and the spinner and training bar on
stderr. Plain functions of the API's results; `archdsl.cli` only picks which to call.

Text tables fit the terminal without cutting a number: when a table is wider than the terminal,
long paths wrap at dots, then the least needed columns are left out (and the table says which).
Piped output is never narrowed.
"""
from archdsl.report.catalog import catalog_data, catalog_facts, catalog_text, matching, status
from archdsl.report.checks import check_data, check_result, check_summary, signature_text
from archdsl.report.module import compiled_output
from archdsl.report.network import FORMATS, groups, network_data, network_output, network_text
from archdsl.report.tables import Column, markdown_table, rf, shape, size, text_table
from archdsl.report.terminal import Spinner, console, terminal_width, training_bar
from archdsl.report.topology import topology_data, topology_output, topology_text

__all__ = ["FORMATS", "Column", "Spinner", "catalog_data", "catalog_facts", "catalog_text", "check_data",
           "check_result", "check_summary", "compiled_output", "console", "groups", "markdown_table",
           "matching", "network_data", "network_output", "network_text", "rf", "shape", "signature_text",
           "size", "status", "terminal_width", "text_table", "topology_data", "topology_output",
           "topology_text", "training_bar"]
