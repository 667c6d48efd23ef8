"""A date column in the ONNX graph: its input (float64 days since 1970-01-01, NaN for missing)
becomes its calendar features by engine.calendar's own formula, run on symbols that append
ONNX nodes (Floor, Round, Add, Sub, Mul, Div) instead of computing, so that the graph and
/predict derive the features with the same lines. Each feature is then imputed and
standardized in float64, as engine.preparation.standardize does, and cast to the model's type.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from engine.calendar import calendar_features
from engine.preparation import DateColumn


class Nodes:
    """The nodes one date column adds, named `{tag}_...`."""

    def __init__(self, tag: str):
        self.tag, self.nodes, self.constants = tag, [], {}

    def name(self) -> str:
        return f"{self.tag}_{len(self.nodes)}"

    def constant(self, value: float) -> "Symbol":
        if value not in self.constants:
            name = f"{self.tag}_c{len(self.constants)}"
            tensor = numpy_helper.from_array(np.array(value, dtype=np.float64), name)
            self.nodes.append(helper.make_node("Constant", [], [name], value=tensor))
            self.constants[value] = Symbol(self, name)
        return self.constants[value]

    def op(self, op_type: str, *inputs: "Symbol") -> "Symbol":
        out = self.name()
        self.nodes.append(helper.make_node(op_type, [x.name for x in inputs], [out]))
        return Symbol(self, out)

    def floor(self, x: "Symbol") -> "Symbol":
        return self.op("Floor", x)

    def round(self, x: "Symbol") -> "Symbol":
        return self.op("Round", x)     # halves to even, as NumPy's round


class Symbol:
    """A float64 tensor of the graph: arithmetic with it (or with Python numbers) adds nodes."""

    def __init__(self, graph: Nodes, name: str):
        self.graph, self.name = graph, name

    def _with(self, op_type: str, other, swapped: bool = False) -> "Symbol":
        other = other if isinstance(other, Symbol) else self.graph.constant(float(other))
        return self.graph.op(op_type, *((other, self) if swapped else (self, other)))

    def __add__(self, other): return self._with("Add", other)
    def __radd__(self, other): return self._with("Add", other, True)
    def __sub__(self, other): return self._with("Sub", other)
    def __rsub__(self, other): return self._with("Sub", other, True)
    def __mul__(self, other): return self._with("Mul", other)
    def __rmul__(self, other): return self._with("Mul", other, True)
    def __truediv__(self, other): return self._with("Div", other)
    def __rtruediv__(self, other): return self._with("Div", other, True)


def date_nodes(column: DateColumn, source: str, tag: str, element: int
               ) -> tuple[list[onnx.NodeProto], list[str]]:
    """(nodes, the standardized features' names, each (rows, 1) of `element`) for the date
    column whose days since 1970 are the graph input `source`."""
    graph = Nodes(tag)
    values = calendar_features(Symbol(graph, source), graph.floor, graph.round)
    outputs = []
    for feature, mean, scale in zip(column.features, column.mean, column.scale):
        x = values[feature]
        missing = graph.op("IsNaN", x)
        filled = graph.op("Where", missing, graph.constant(mean), x)
        standardized = (filled - mean) / scale
        out = f"{tag}_{feature}"
        graph.nodes.append(helper.make_node("Cast", [standardized.name], [out], to=element))
        outputs.append(out)
    return graph.nodes, outputs
