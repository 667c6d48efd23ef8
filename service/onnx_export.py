"""A trained network as an ONNX model: per layer Gemm (x W^T + b), then its activation.

The graph takes `input` (rows x n_inputs) in the model's float type and answers `output`
(rows x n_outputs), the same numbers as /v1/models/{id}/predict; classifiers also answer
`label` (INT64), as predict's `labels`: argmax for softmax, f > 0.5 for sigmoid outputs.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from engine.activations import LEAKY_SLOPE

OPSET = 17
"""ONNX operator set: Softmax(axis=1) has its single-axis meaning from opset 13 on."""

IR_VERSION = 8
"""The file format version that goes with opset 17, read by onnxruntime 1.13 and later."""

INPUT, OUTPUT, LABEL = "input", "output", "label"
"""Tensor names, shared with the inference protocol (routes/v2.py)."""

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


def onnx_model(meta: dict, params: list[tuple[np.ndarray, np.ndarray]]) -> onnx.ModelProto:
    """The graph of a stored model: meta as the store keeps it, params [(W (out, in), b)]."""
    dtype = meta["dtype"]
    layers = meta["network"]["layers"]
    nodes: list[onnx.NodeProto] = []
    weights: list[onnx.TensorProto] = []
    x = INPUT
    for i, ((W, b), layer) in enumerate(zip(params, layers)):
        z, f = f"z{i}", (OUTPUT if i == len(layers) - 1 else f"a{i}")
        weights += [numpy_helper.from_array(np.asarray(W, dtype=dtype), f"W{i}"),
                    numpy_helper.from_array(np.asarray(b, dtype=dtype), f"b{i}")]
        nodes.append(node("Gemm", [x, f"W{i}", f"b{i}"], [z], transB=1))
        nodes += ACTIVATION_NODES[layer["activation"]](z, f, dtype)
        x = f
    element = ONNX_TYPES[dtype]
    outputs = [helper.make_tensor_value_info(OUTPUT, element, ["rows", meta["n_outputs"]])]
    if meta.get("task") in ("classification", "multilabel"):
        out = layers[-1]["activation"]
        nodes += label_nodes(out, meta["n_outputs"], dtype)
        outputs.append(helper.make_tensor_value_info(
            LABEL, TensorProto.INT64, label_shape(out, meta["n_outputs"])))
    graph = helper.make_graph(
        nodes, f"backprop_{meta['id']}",
        [helper.make_tensor_value_info(INPUT, element, ["rows", meta["n_inputs"]])],
        outputs, initializer=weights)
    model = helper.make_model(graph, producer_name="backprop-service",
                              opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = IR_VERSION
    model.doc_string = (f"model {meta['id']} of job {meta.get('job_id')}: "
                        f"{meta['n_inputs']}-" + "-".join(str(l["units"]) for l in layers))
    onnx.checker.check_model(model)
    return model


def onnx_bytes(meta: dict, params: list[tuple[np.ndarray, np.ndarray]]) -> bytes:
    return onnx_model(meta, params).SerializeToString()
