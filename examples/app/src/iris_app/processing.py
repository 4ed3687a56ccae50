"""Pre- and post-processing: plain numpy functions, kept apart from the model so they are easy to test.

Pre-processing takes what a client sends -- flower measurements in centimetres, one row or many --
and refuses what the model must never see (wrong width, negative or absurd sizes) with a
`ValueError`, which the serving runtime answers as a 400 with the message. Post-processing turns
the model's scores into what a caller wants: a species name and its probability.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

FEATURES = ("sepal_length", "sepal_width", "petal_length", "petal_width")
#: No iris organ is longer than this (cm); larger values are unit mistakes (mm, inches x 10...).
MAX_CM = 50.0


def prepare(inputs: Any) -> np.ndarray[Any, Any]:
    """Measurements (shape (4,) or (n, 4), cm) -> a float64 (n, 4) array; ValueError names the fault."""
    rows = np.asarray(inputs, dtype=np.float64)
    if rows.ndim == 1:
        rows = rows.reshape(1, -1)
    if rows.ndim != 2 or rows.shape[1] != len(FEATURES):
        raise ValueError(
            f"expected rows of {len(FEATURES)} measurements ({', '.join(FEATURES)}), got shape {rows.shape}"
        )
    if rows.shape[0] == 0:
        raise ValueError("expected at least one row of measurements")
    if not np.all(np.isfinite(rows)):
        raise ValueError("measurements must be finite numbers")
    if np.any(rows < 0) or np.any(rows > MAX_CM):
        raise ValueError(f"measurements are centimetres between 0 and {MAX_CM:g}")
    return rows


def standardise(
    rows: np.ndarray[Any, Any], mean: np.ndarray[Any, Any], scale: np.ndarray[Any, Any]
) -> np.ndarray[Any, Any]:
    """The scaling the model was trained with (its file carries mean and scale)."""
    return (rows - mean) / scale


def softmax(scores: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    shifted = scores - scores.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)


def label(probabilities: np.ndarray[Any, Any], classes: Sequence[str]) -> dict[str, np.ndarray[Any, Any]]:
    """Probabilities (n, k) -> {"label": species names, "probability": the winning class's probability}."""
    best = probabilities.argmax(axis=1)
    return {
        "label": np.asarray([classes[index] for index in best], dtype=object),
        "probability": probabilities[np.arange(len(best)), best].astype(np.float32),
    }
