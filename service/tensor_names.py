"""Tensor names shared by the ONNX export and the inference protocol (/v2), kept apart from
both so that serving never imports onnx."""

INPUT, OUTPUT, LABEL = "input", "output", "label"
