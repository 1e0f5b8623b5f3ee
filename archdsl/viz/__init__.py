"""Pictures of IR graphs: graphviz DOT text and rendered SVG / PNG / PDF.

    from archdsl import load_graph
    from archdsl.viz import to_dot, render
    g = load_graph("resnet50")
    render(g, "resnet50.svg", depth=2)                 # stages as boxes, repeats summarised
    render(g, "resnet50_full.png", color="flops")      # every node, filled by FLOPs share
    text = to_dot(g, depth=2, expand=["layer3.2"])     # DOT text, one block forced open

What is drawn:

* every block instance is a cluster (`subgraph cluster_<path>`), labelled with its path and
  block type, nested as the blocks are;
* `depth=N` shows paths of up to N components: a block instance whose path has N or more
  components (its contents are deeper than N levels) is one node with its path, type,
  output shape(s) and summed params/FLOPs. `expand=[...]` forces block instances open
  (a namespace such as `layer3` opens the blocks in it);
* consecutive collapsed sibling blocks of one type with identical shapes and costs that
  form a chain are one node: `layer3.1–5  Bottleneck ×5`;
* nodes show name, op, the attributes that differ from their defaults, params and FLOPs
  (2 per multiply-add, as `archdsl check`); inputs are ellipses, params/buffers notes,
  outputs have a thick border; every edge is labelled with the shape it carries;
* an IR edge u → v is drawn from the node that shows u to the node that shows v; edges
  inside a collapsed node vanish, edges touching a collapsed node are merged per tensor,
  so a fully expanded picture has exactly one arrow per IR edge;
* `color="flops"` or `"params"` fills nodes on a light → dark ramp by their share of the
  total, with the legend in the graph's label.

`archdsl.viz.view` holds the collapsing rules in full.

A topology (`archdsl.load_topology("moco_v2")`) is drawn by `topology_to_dot` (and `render`
takes one too): networks on the right, one cluster each (one node at `depth=1`, their own
graph at network depth N − 1 for `depth=N`), EMA twins joined to their source by a dashed
`ema(m)` edge, state as cylinders, each phase a cluster of its loss graph titled with
`update=[…]`, net calls dotted to the network they call, stop-gradients as red dashed edges
and after-step updates as blue edges into the state they update; see `archdsl.viz.topology`.
"""
from archdsl.viz.dot import human, shape_text, to_dot
from archdsl.viz.render import RenderResult, render
from archdsl.viz.topology import topology_to_dot
from archdsl.viz.view import View, build_view

__all__ = ["RenderResult", "View", "build_view", "human", "render", "shape_text", "to_dot",
           "topology_to_dot"]
