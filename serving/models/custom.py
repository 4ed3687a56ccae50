"""User code: a class in the application image with `load(path)` and `predict(inputs)`.

This is the recipe's "application code + model" shape. The class is named by `--model-class
module:Class` (or MODELAPP_MODEL_CLASS), or registered under the entry point group
`modelapp.models` (see `models.loader`). The contract with the user class:

- it is constructed with no arguments; `load(path)` gets the manifest's entrypoint file (its parent
  is the model folder);
- `predict(inputs)` gets one numpy array when the request has one input tensor (the common case,
  and what `/score` and v1 send), else a dict of arrays by input name;
- it returns an array-like (served as output `output-0`) or a dict of array-likes by output name;
- it may raise `ValueError` for bad input (a 400); anything else is a 500;
- calls are serialised by a lock unless the class sets `thread_safe = True`;
- optional `inputs` / `outputs` class attributes (lists of `{name, datatype, shape}`) feed metadata.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from modelapp_serving.errors import InferenceError, InvalidInput
from modelapp_serving.models.base import Model, Tensors, TensorSpec, select_outputs


def _specs(value: Any) -> list[TensorSpec]:
    if not isinstance(value, list):
        return []
    return [TensorSpec(str(item["name"]), str(item["datatype"]), tuple(item["shape"])) for item in value]


class CustomModel(Model):
    platform = "custom"

    def __init__(self, name: str, path: Path, *, user_class: type[Any]) -> None:
        super().__init__(name, path)
        self._user_class = user_class
        self._lock = threading.Lock()
        self.inputs = _specs(getattr(user_class, "inputs", None))
        self.outputs = _specs(getattr(user_class, "outputs", None))

    def load(self) -> None:
        self._user = self._user_class()
        self._user.load(str(self.path))
        self.mark_ready()

    @contextlib.contextmanager
    def _serialised(self) -> Iterator[None]:
        if getattr(self._user, "thread_safe", False) is True:
            yield
            return
        with self._lock:
            yield

    def predict(self, inputs: Tensors, output_names: Sequence[str] | None = None) -> Tensors:
        argument: Any = next(iter(inputs.values())) if len(inputs) == 1 else inputs
        try:
            with self._serialised():
                result = self._user.predict(argument)
        except ValueError as exc:
            raise InvalidInput(f"the model rejected the input: {exc}") from None
        except Exception as exc:
            raise InferenceError(f"the model failed: {type(exc).__name__}: {exc}") from None
        return select_outputs(_as_tensors(result), output_names)

    def framework_version(self) -> str:
        return f"{self._user_class.__module__}:{self._user_class.__qualname__}"


def _as_tensors(result: Any) -> Tensors:
    items = result.items() if isinstance(result, Mapping) else [("output-0", result)]
    tensors: Tensors = {}
    for name, value in items:
        try:
            tensors[str(name)] = np.asarray(value)
        except ValueError as exc:
            raise InferenceError(f"the model returned an irregular output {name!r}: {exc}") from None
    return tensors
