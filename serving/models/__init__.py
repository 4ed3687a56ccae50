"""Model loaders: ONNX (default, safe), scikit-learn (pinned digest only) and user code.

`loader.resolve_model` picks one from the version's manifest and the serve options.
"""

from modelapp_serving.models.base import Model, Tensors, TensorSpec
from modelapp_serving.models.loader import ModelInfo, resolve_model

__all__ = ["Model", "ModelInfo", "TensorSpec", "Tensors", "resolve_model"]
