from archdsl.syntax.parser import parse, parse_expr
from archdsl.syntax.fmt import fmt

__all__ = ["parse", "parse_expr", "fmt"]
