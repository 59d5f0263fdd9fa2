"""Traits: what an op promises, so that passes and analyses can rely on it without naming ops.

An op lists its traits once (`traits = (Decomposable(),)`); `op.has_trait(Decomposable)` asks.
The scope traits say how a circuit op's scope (the variables it depends on) follows from its
operands', which is what the verifier checks and what structural properties (smoothness,
decomposability) are computed from:

- `ReadsData`: an input op; fold f depends on variable `variables[f]` alone;
- `Unscoped`: depends on no variable (constants, evidence);
- `Smooth`: a sum over its operands, which must all have the same scope;
- `Decomposable`: a product of its operands (possibly followed by a sum, as in the fused
  tucker, cp and cp-t ops), whose scopes must be pairwise disjoint.

A circuit op with operands and none of these has the union of its operands' scopes and no
constraint. `Elementwise` marks parameter ops that map each entry on its own (exp, softmax
is not), whose result has their operand's shape.
"""

from __future__ import annotations

import attrs


@attrs.frozen
class Trait:
    """Base of every trait. Traits are values: `Smooth() == Smooth()`."""


@attrs.frozen
class ReadsData(Trait):
    """An input op: fold f is a function of variable `variables[f]` of the data."""


@attrs.frozen
class Unscoped(Trait):
    """A circuit op that depends on no variable of the data."""


@attrs.frozen
class Smooth(Trait):
    """A sum over operands that must share one scope."""


@attrs.frozen
class Decomposable(Trait):
    """A product of operands with pairwise disjoint scopes (then, for fused ops, a sum)."""


@attrs.frozen
class Elementwise(Trait):
    """A parameter op computing each entry from the same entry of its operand."""
