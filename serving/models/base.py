"""The model interface every loader implements, and the input conforming they share.

A `Model` is created cheaply (no I/O), then `load()` does the slow part once, in the background;
`ready` turns true only after `load()` returned. `predict()` takes input tensors by name and returns
output tensors by name, so the protocols (v2, v1, /score) all meet the model in one shape. The
contract on errors: a client's mistake raises `InvalidInput`, a fault of the model `InferenceError`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from modelapp_serving.codecs import DATATYPES
from modelapp_serving.errors import InvalidInput

Tensors = dict[str, np.ndarray[Any, Any]]


@dataclass(frozen=True, slots=True)
class TensorSpec:
    """A declared input or output: OIP datatype and shape (-1 marks a dimension of any size)."""

    name: str
    datatype: str
    shape: tuple[int, ...]

    def as_metadata(self) -> dict[str, Any]:
        return {"name": self.name, "datatype": self.datatype, "shape": list(self.shape)}


class Model(ABC):
    """A model served under one name. Subclasses set `platform`, `inputs`, `outputs` in `load()`."""

    platform = "unknown"

    def __init__(self, name: str, path: Path) -> None:
        self.name = name
        self.path = path
        self.inputs: list[TensorSpec] = []
        self.outputs: list[TensorSpec] = []
        self._ready = False

    @property
    def ready(self) -> bool:
        return self._ready

    def mark_ready(self) -> None:
        self._ready = True

    @abstractmethod
    def load(self) -> None:
        """Load the model from `self.path`; call `mark_ready()` at the end."""

    @abstractmethod
    def predict(self, inputs: Tensors, output_names: Sequence[str] | None = None) -> Tensors:
        """Run the model; `output_names` restricts (and orders) the outputs, None means the defaults."""

    def framework_version(self) -> str:
        """The version of the library that runs the model (for `GET /version`)."""
        return "unknown"


def match_inputs(inputs: Tensors, specs: Sequence[TensorSpec]) -> list[tuple[TensorSpec, np.ndarray[Any, Any]]]:
    """Pair request tensors with declared inputs by name; a single input matches whatever its name."""
    if len(specs) == 1 and len(inputs) == 1:
        return [(specs[0], next(iter(inputs.values())))]
    unknown = sorted(set(inputs) - {spec.name for spec in specs})
    if unknown:
        raise InvalidInput(f"unknown input(s) {unknown}; the model takes {[spec.name for spec in specs]}")
    missing = [spec.name for spec in specs if spec.name not in inputs]
    if missing:
        raise InvalidInput(f"missing input(s) {missing}")
    return [(spec, inputs[spec.name]) for spec in specs]


def conform(array: np.ndarray[Any, Any], spec: TensorSpec) -> np.ndarray[Any, Any]:
    """Check rank and fixed dimensions, and cast numbers of the same kind (int -> float, fp64 -> fp32)."""
    if len(spec.shape) != array.ndim or any(
        want not in (-1, got) for want, got in zip(spec.shape, array.shape, strict=True)
    ):
        raise InvalidInput(f"input {spec.name!r}: shape {list(array.shape)} does not fit {list(spec.shape)}")
    want = DATATYPES[spec.datatype]
    if array.dtype == want:
        return array
    if want.kind == "O" or array.dtype.kind == "O" or not np.can_cast(array.dtype, want, "same_kind"):
        raise InvalidInput(f"input {spec.name!r}: datatype {array.dtype} cannot be used as {spec.datatype}")
    return array.astype(want)


def select_outputs(produced: Tensors, output_names: Sequence[str] | None) -> Tensors:
    """Keep the requested outputs, in the requested order; an unknown name is the client's mistake."""
    if output_names is None:
        return produced
    unknown = [name for name in output_names if name not in produced]
    if unknown:
        raise InvalidInput(f"unknown output(s) {unknown}; the model produces {list(produced)}")
    return {name: produced[name] for name in output_names}
