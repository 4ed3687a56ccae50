"""Make the demo model at run time: scikit-learn's iris LogisticRegression, converted to ONNX.

    python hack/demo_model.py OUT_DIR [--pad-mib N] [--seed S]

Writes `OUT_DIR/model.onnx` (probabilities as a plain tensor: `zipmap=False`), and with
`--pad-mib N` also `OUT_DIR/padding.bin` (N MiB of random bytes) so that a version of a given size
can be published for the cold-start figures (the fetch verifies every byte of it). Prints the file
names, to be passed to `modelapp-serving publish`. `--seed` changes the training (a different but
equally valid model, for "version N+1"). The demo, the end-to-end tests and the benchmark use it.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any


def train(seed: int = 0) -> tuple[Any, bytes]:
    """(the fitted scikit-learn estimator, its ONNX bytes); deterministic for a seed."""
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    features, labels = load_iris(return_X_y=True)
    estimator = LogisticRegression(max_iter=200 + seed, C=1.0 / (1 + seed)).fit(features, labels)
    model = convert_sklearn(estimator, initial_types=[("input", FloatTensorType([None, 4]))],
                            options={id(estimator): {"zipmap": False}}, target_opset=17)
    return estimator, bytes(model.SerializeToString())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--pad-mib", type=int, default=0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "model.onnx").write_bytes(train(args.seed)[1])
    files = [args.out / "model.onnx"]
    if args.pad_mib:
        (args.out / "padding.bin").write_bytes(os.urandom(args.pad_mib * 1024 * 1024))
        files.append(args.out / "padding.bin")
    print(" ".join(str(f) for f in files))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
