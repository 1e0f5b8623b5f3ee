"""Hypothesis strategies for small, random, VALID `.arch` specs.

`specs()` draws spec text; `spec_cases()` draws a `GeneratedSpec` carrying the text together with
the input shape and the output shapes the generator expects. Every spec is valid by construction:
the generator tracks the shape of every tensor while it writes the text, with its own shape
formulas (independent of `archdsl.ops`), so a spec that archdsl rejects, or whose shapes differ
from the generator's, points at a bug on one side or the other.

A spec has one `network` with an input `in x: [B, C, H, W]` (sizes given in several spellings),
then a random program over 4-d tensors:

- chains `v = x -> stage -> stage` with conv (random out / kernel / stride / dilation / padding,
  groups that divide), bn / gn / ln2d, activations, max / avg pools (ceil mode, padding),
  adaptive pools, dropout, drop path, channel shuffle, transposes, layer scale, `SE()` from the
  prelude, labelled stages `name: op(...)`, bracketed sequences `[conv(..), bn]` (with labelled
  members), `repeat(n) j { ... }` bodies and calls of generated `block`s;
- residual adds, products, gates broadcast from `[B, C, 1, 1]`, `cat` along channels,
  `chunk` / `split` with indexing or unpacking (`a, b = x -> chunk(2)`), chains as arguments
  (`relu(x -> conv(..))`), scalar arithmetic, `param` / `buffer` declarations,
  token mixing through rank 3 (`flatten -> transpose -> ln -> linear -> reshape`), patchify;
- `if` / `elif` / `else` on shape variables and parameters (comparisons, `in`, `not in`), `for` loops with templated labels
  (`layer{i}:`), `let` constants, network parameters and variants that override them, imports,
  comments;
- a head `out y -> mean(dims=[2, 3]) -> head: linear(k)`, sometimes as named outputs.

Integer arguments are written as literals or as expressions over the names in scope (network
parameters, `let` constants, input dims, loop and repeat indices, block parameters), so the same
text is re-evaluated with other values inside loops, repeats and block instances; the generator
re-simulates each such use and shortens loops or drops calls that would be invalid.

    from hypothesis import given
    from archdsl.testing.strategies import spec_cases

    @given(spec_cases())
    def test_compiles(case):
        archdsl.check_spec(source=case.text)
"""
from __future__ import annotations

from hypothesis import strategies as st

from archdsl.testing.strategies.generator import Generator
from archdsl.testing.strategies.model import MAX_CHANNELS, MAX_SPATIAL, GeneratedSpec

__all__ = ["GeneratedSpec", "spec_cases", "specs", "MAX_CHANNELS", "MAX_SPATIAL"]


@st.composite
def spec_cases(draw) -> GeneratedSpec:
    """A random valid spec with its input shape and expected output shapes."""
    return Generator(draw).spec()


def specs() -> st.SearchStrategy[str]:
    """The text of a random valid spec."""
    return spec_cases().map(lambda c: c.text)
