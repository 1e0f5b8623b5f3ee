from archdsl.ir.graph import Graph, Node, Shape

__all__ = ["Graph", "Node", "Shape"]
