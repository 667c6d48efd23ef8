"""A trained model as an ONNX model: its preparation (if any), then per layer Gemm
(x W^T + b) and its activation.

The graph takes `input` (rows x n_inputs) in the model's float type, or, for a model whose
preparation has text (categorical) or date columns, one input per raw column: numeric columns
as floats, text columns as strings (read as predict reads them: "2007.0" is the category
2007, with up to cells.SPELLED_ZEROS trailing zeros, "TRUE" is true, "" and "NA" are missing),
and date columns as float64 days since 1970-01-01 (NaN for
missing; service/onnx_dates.py derives their calendar features in the graph), each of shape
(rows, 1). It answers `output` (rows x n_outputs),
the same numbers as /v1/models/{id}/predict (a regression target in its own units); classifiers
also answer `label`, as predict's `labels`: argmax for softmax (the class names, as strings,
when the preparation mapped classes), f > 0.5 for sigmoid outputs.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from core.records import ModelRecord
from engine.activations import LEAKY_SLOPE
from engine.preparation import (CategoricalColumn, ClassTarget, DateColumn, Preparation,
                                ScaledTarget)
from service import cells
from service.onnx_dates import date_nodes
from service.tables import NULL_VALUES
from service.tensor_names import INPUT, LABEL, OUTPUT

OPSET = 17
"""ONNX operator set: Softmax(axis=1) has its single-axis meaning from opset 13 on."""
ML_OPSET = 2
"""ai.onnx.ml operator set for text columns: LabelEncoder with string keys and int64 values
from 2 on."""

IR_VERSION = 8
"""The file format version that goes with opset 17, read by onnxruntime 1.13 and later."""


ONNX_TYPES = {"float32": TensorProto.FLOAT, "float64": TensorProto.DOUBLE}

Emit = Callable[[str, str, str], list[onnx.NodeProto]]
"""(input name, output name, float dtype) -> the nodes computing phi."""


node = helper.make_node


def softplus(x: str, y: str, dtype: str) -> list[onnx.NodeProto]:
    """Softplus; for float64, whose Softplus kernel onnxruntime lacks, the stable form
    relu(z) + log(1 + e^-|z|), which is the engine's logaddexp(z, 0)."""
    if dtype == "float32":
        return [node("Softplus", [x], [y])]
    one = numpy_helper.from_array(np.array(1.0, dtype=dtype), f"{y}_one")
    return [node("Constant", [], [one.name], value=one),
            node("Abs", [x], [f"{y}_abs"]), node("Neg", [f"{y}_abs"], [f"{y}_neg"]),
            node("Exp", [f"{y}_neg"], [f"{y}_exp"]),
            node("Add", [f"{y}_exp", one.name], [f"{y}_sum"]),
            node("Log", [f"{y}_sum"], [f"{y}_log"]), node("Relu", [x], [f"{y}_relu"]),
            node("Add", [f"{y}_relu", f"{y}_log"], [y])]


ACTIVATION_NODES: dict[str, Emit] = {
    "identity": lambda x, y, dtype: [node("Identity", [x], [y])],
    "relu": lambda x, y, dtype: [node("Relu", [x], [y])],
    "sigmoid": lambda x, y, dtype: [node("Sigmoid", [x], [y])],
    "tanh": lambda x, y, dtype: [node("Tanh", [x], [y])],
    "leaky_relu": lambda x, y, dtype: [node("LeakyRelu", [x], [y], alpha=LEAKY_SLOPE)],
    "softplus": softplus,
    "softmax": lambda x, y, dtype: [node("Softmax", [x], [y], axis=1)],
}
"""Every engine activation (engine.activations.ACTIVATIONS) as ONNX operators."""


def label_nodes(output_activation: str, n_outputs: int, dtype: str) -> list[onnx.NodeProto]:
    """`label` from `output`, as Network.predict_labels computes it."""
    if output_activation == "softmax":
        return [node("ArgMax", [OUTPUT], [LABEL], axis=1, keepdims=0)]
    half = numpy_helper.from_array(np.array(0.5, dtype=dtype), "half")
    nodes = [node("Constant", [], ["half"], value=half),
             node("Greater", [OUTPUT, "half"], ["above"])]
    if n_outputs > 1:
        return nodes + [node("Cast", ["above"], [LABEL], to=TensorProto.INT64)]
    column = numpy_helper.from_array(np.array([1], dtype=np.int64), "column")
    return nodes + [node("Cast", ["above"], ["label_column"], to=TensorProto.INT64),
                    node("Constant", [], ["column"], value=column),
                    node("Squeeze", ["label_column", "column"], [LABEL])]


def label_shape(output_activation: str, n_outputs: int) -> list:
    """(rows,) for one class label per row, (rows, k) for k independent sigmoid labels."""
    return ["rows"] if output_activation == "softmax" or n_outputs == 1 else ["rows", n_outputs]


def constant(name: str, value) -> tuple[onnx.NodeProto, str]:
    tensor = numpy_helper.from_array(np.asarray(value), name)
    return node("Constant", [], [name], value=tensor), name


def standardize_nodes(source: str, mean: np.ndarray, scale: np.ndarray, tag: str
                      ) -> tuple[list[onnx.NodeProto], str]:
    """(nodes, output): x -> (x - mean) / scale, a NaN taken as the mean."""
    nodes = [constant(f"{tag}_mean", mean)[0], constant(f"{tag}_scale", scale)[0],
             node("IsNaN", [source], [f"{tag}_nan"]),
             node("Where", [f"{tag}_nan", f"{tag}_mean", source], [f"{tag}_filled"]),
             node("Sub", [f"{tag}_filled", f"{tag}_mean"], [f"{tag}_centred"]),
             node("Div", [f"{tag}_centred", f"{tag}_scale"], [f"{tag}_std"])]
    return nodes, f"{tag}_std"


def preparation_nodes(prep: Preparation, dtype: str
                      ) -> tuple[list[onnx.ValueInfoProto], list[onnx.NodeProto], str]:
    """(graph inputs, nodes, name of X): the preparation as ONNX, as transform() computes it:
    numbers imputed and standardized, dates as their calendar features imputed and
    standardized, then each text column one-hot encoded."""
    element = ONNX_TYPES[dtype]
    if not prep.per_column:
        inputs = [helper.make_tensor_value_info(INPUT, element, ["rows", len(prep.columns)])]
        nodes, x = standardize_nodes(INPUT, np.array([c.mean for c in prep.numeric], dtype=dtype),
                                     np.array([c.scale for c in prep.numeric], dtype=dtype),
                                     "num")
        return inputs, nodes, x
    types = {"numeric": element, "date": TensorProto.DOUBLE, "categorical": TensorProto.STRING}
    inputs = [helper.make_tensor_value_info(c.name, types[c.kind], ["rows", 1])
              for c in prep.columns]
    nodes: list[onnx.NodeProto] = []
    standardized: list[str] = []
    for i, c in enumerate(prep.numbers):
        if isinstance(c, DateColumn):
            made, features = date_nodes(c, c.name, f"date{i}", element)
        else:
            made, x = standardize_nodes(c.name, np.array([c.mean], dtype=dtype),
                                        np.array([c.scale], dtype=dtype), f"num{i}")
            features = [x]
        nodes += made
        standardized += features
    for i, c in enumerate(prep.categorical):
        if c.width:
            made, hot = category_nodes(c, f"cat{i}", dtype)
            nodes += made
            standardized.append(hot)
    nodes.append(node("Concat", standardized, ["prepared"], axis=1))
    return inputs, nodes, "prepared"


def category_nodes(column: CategoricalColumn, tag: str, dtype: str
                   ) -> tuple[list[onnx.NodeProto], str]:
    """(nodes, output): a text column's one-hot units, as predict reads the text
    (service/cells.py): each spelling of a category ("2007.0" and "2007.00" for 2007, "TRUE"
    for true) looked up to its unit, the missing words to the missing unit (when the column
    has one), any other text (unseen) to no unit, so all zeros."""
    keys, units = [], []
    for unit, category in enumerate(column.categories):
        for text in cells.spellings(category):
            keys.append(text)
            units.append(unit)
    if column.missing_level:
        words = [w for w in NULL_VALUES if w not in column.categories]
        keys += words
        units += [len(column.categories)] * len(words)
    shape = constant(f"{tag}_flat", np.array([-1], dtype=np.int64))
    depth = constant(f"{tag}_depth", np.array(column.width, dtype=np.int64))
    off_on = constant(f"{tag}_off_on", np.array([0, 1], dtype=dtype))
    # OneHot leaves a row all zeros for an index outside [-depth, depth): the default.
    return [shape[0], depth[0], off_on[0],
            node("Reshape", [column.name, shape[1]], [f"{tag}_rows"]),
            node("LabelEncoder", [f"{tag}_rows"], [f"{tag}_unit"], domain="ai.onnx.ml",
                 keys_strings=keys, values_int64s=units, default_int64=column.width),
            node("OneHot", [f"{tag}_unit", depth[1], off_on[1]], [f"{tag}_hot"], axis=-1)
            ], f"{tag}_hot"


def target_nodes(target, dtype: str, network_output: str) -> list[onnx.NodeProto]:
    """A regression target back in its units: output = f * scale + mean."""
    if not isinstance(target, ScaledTarget):
        return [node("Identity", [network_output], [OUTPUT])]
    scale = constant("target_scale", np.array(target.scale, dtype=dtype))
    mean = constant("target_mean", np.array(target.mean, dtype=dtype))
    return [scale[0], mean[0], node("Mul", [network_output, scale[1]], ["target_scaled"]),
            node("Add", ["target_scaled", mean[1]], [OUTPUT])]


def class_label_nodes(target: ClassTarget) -> tuple[list[onnx.NodeProto], int]:
    """`label` as the class values: argmax, then a lookup in the classes."""
    classes = np.array(target.classes, dtype=object if isinstance(target.classes[0], str)
                       else None)
    table = numpy_helper.from_array(classes, "classes")
    element = table.data_type
    return [node("ArgMax", [OUTPUT], ["label_index"], axis=1, keepdims=0),
            node("Constant", [], ["classes"], value=table),
            node("Gather", ["classes", "label_index"], [LABEL], axis=0)], element


def onnx_model(meta: ModelRecord, params: list[tuple[np.ndarray, np.ndarray]],
               preparation: Preparation | None = None) -> onnx.ModelProto:
    """The graph of a stored model: its record, params [(W (out, in), b)], and
    the model's preparation, if it has one."""
    dtype = meta.dtype
    layers = meta.network["layers"]
    element = ONNX_TYPES[dtype]
    if preparation is not None:
        inputs, nodes, x = preparation_nodes(preparation, dtype)
    else:
        inputs = [helper.make_tensor_value_info(INPUT, element, ["rows", meta.n_inputs])]
        nodes, x = [], INPUT
    target = preparation.target if preparation is not None else None
    weights: list[onnx.TensorProto] = []
    for i, ((W, b), layer) in enumerate(zip(params, layers)):
        z, f = f"z{i}", (f"a{i}" if i < len(layers) - 1 else "network_output")
        weights += [numpy_helper.from_array(np.asarray(W, dtype=dtype), f"W{i}"),
                    numpy_helper.from_array(np.asarray(b, dtype=dtype), f"b{i}")]
        nodes.append(node("Gemm", [x, f"W{i}", f"b{i}"], [z], transB=1))
        nodes += ACTIVATION_NODES[layer["activation"]](z, f, dtype)
        x = f
    nodes += target_nodes(target, dtype, x)
    outputs = [helper.make_tensor_value_info(OUTPUT, element, ["rows", meta.n_outputs])]
    if meta.task in ("classification", "multilabel"):
        out = layers[-1]["activation"]
        if isinstance(target, ClassTarget):
            label, label_type = class_label_nodes(target)
            nodes += label
            outputs.append(helper.make_tensor_value_info(LABEL, label_type, ["rows"]))
        else:
            nodes += label_nodes(out, meta.n_outputs, dtype)
            outputs.append(helper.make_tensor_value_info(
                LABEL, TensorProto.INT64, label_shape(out, meta.n_outputs)))
    graph = helper.make_graph(nodes, f"backprop_{meta.id}", inputs, outputs,
                              initializer=weights)
    opsets = [helper.make_opsetid("", OPSET)]
    if preparation is not None and not preparation.all_numeric:
        opsets.append(helper.make_opsetid("ai.onnx.ml", ML_OPSET))
    model = helper.make_model(graph, producer_name="backprop-service", opset_imports=opsets)
    model.ir_version = IR_VERSION
    model.doc_string = (f"model {meta.id} of job {meta.job_id}: "
                        f"{meta.n_inputs}-" + "-".join(str(l["units"]) for l in layers))
    onnx.checker.check_model(model)
    return model


def onnx_bytes(meta: ModelRecord, params: list[tuple[np.ndarray, np.ndarray]],
               preparation: Preparation | None = None) -> bytes:
    return onnx_model(meta, params, preparation).SerializeToString()
