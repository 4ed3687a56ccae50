"""Train the example's model and write it as the JSON file `IrisModel.load` reads.

This runs where the data scientist works (it needs scikit-learn, which the app image does not):

    python tools/export_model.py --out build/model
    modelapp-serving publish --uri azureblob://models/iris --version 8 --format custom build/model/model.json

The file holds plain numbers (scaler mean and scale, logistic-regression coefficients), so serving it
never unpickles anything. `publish` prints the version digest: the ModelApp may pin it.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
FORMAT = "iris-app/logistic-regression/v1"


def export(out: Path) -> Path:
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    data = load_iris()
    scaler = StandardScaler().fit(data.data)
    estimator = LogisticRegression(max_iter=1000).fit(scaler.transform(data.data), data.target)
    spec = {
        "format": FORMAT,
        "features": FEATURES,
        "classes": [str(name) for name in data.target_names],
        "mean": scaler.mean_.tolist(),
        "scale": scaler.scale_.tolist(),
        "coef": estimator.coef_.tolist(),
        "intercept": estimator.intercept_.tolist(),
    }
    out.mkdir(parents=True, exist_ok=True)
    target = out / "model.json"
    target.write_text(json.dumps(spec, indent=2, sort_keys=True) + "\n")
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("build/model"), help="folder for model.json")
    print(export(parser.parse_args().out))


if __name__ == "__main__":
    main()
