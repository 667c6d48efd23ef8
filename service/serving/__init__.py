"""Serving: the data plane (plane.DataPlane) that /v1 predict and /v2 infer share, the one
predict function (predict.py), and each protocol's codec (v1_codec.py, v2_codec.py)."""

from service.serving.plane import DataPlane

__all__ = ["DataPlane"]
