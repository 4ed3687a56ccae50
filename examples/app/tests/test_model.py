"""The app's unit tests. They run inside the image that is about to be pushed (`app-ci.sh` mounts this
folder into it), so they test the code with the exact numpy and serving runtime it will serve with;
they use only the standard library's unittest, since the image carries no test runner.
"""

from __future__ import annotations

import json
import tempfile
import unittest
from pathlib import Path

import numpy as np

from iris_app.model import FORMAT, IrisModel
from iris_app.processing import FEATURES, prepare, softmax

SETOSA = [5.1, 3.5, 1.4, 0.2]
VERSICOLOR = [5.9, 3.0, 4.2, 1.5]
VIRGINICA = [6.3, 3.3, 6.0, 2.5]


def write_model(folder: Path, **overrides: object) -> Path:
    """A small hand-made model: petal length alone decides (short: setosa, long: virginica)."""
    spec: dict[str, object] = {
        "format": FORMAT,
        "features": list(FEATURES),
        "classes": ["setosa", "versicolor", "virginica"],
        "mean": [5.84, 3.06, 3.76, 1.2],
        "scale": [0.83, 0.43, 1.76, 0.76],
        "coef": [[0, 0, -5, 0], [0, 0, 0, 0], [0, 0, 5, 0]],
        "intercept": [0, 2, 0],
    }
    spec.update(overrides)
    path = folder / "model.json"
    path.write_text(json.dumps(spec))
    return path


class ModelTest(unittest.TestCase):
    def setUp(self) -> None:
        self.folder = Path(tempfile.mkdtemp())
        self.model = IrisModel()
        self.model.load(str(write_model(self.folder)))

    def test_predicts_species_with_probabilities(self) -> None:
        out = self.model.predict(np.array([SETOSA, VERSICOLOR, VIRGINICA], dtype=np.float32))
        self.assertEqual(list(out["label"]), ["setosa", "versicolor", "virginica"])
        self.assertEqual(out["probability"].dtype, np.float32)
        self.assertTrue(np.all((out["probability"] > 0.5) & (out["probability"] <= 1.0)))

    def test_one_row_as_a_flat_list(self) -> None:
        self.assertEqual(list(self.model.predict(np.array(SETOSA))["label"]), ["setosa"])

    def test_refuses_bad_measurements_with_a_reason(self) -> None:
        cases = {
            "shape": np.array([[1.0, 2.0, 3.0]]),
            "finite": np.array([[1.0, np.nan, 3.0, 4.0]]),
            "centimetres": np.array([[51.0, 35.0, 14.0, 2.0]]),
            "at least one row": np.zeros((0, 4)),
        }
        for reason, rows in cases.items():
            with self.subTest(reason), self.assertRaisesRegex(ValueError, reason):
                self.model.predict(rows)
        with self.assertRaisesRegex(ValueError, "one input tensor"):
            self.model.predict({"a": np.zeros(4), "b": np.zeros(4)})

    def test_load_refuses_a_file_of_another_shape(self) -> None:
        for overrides, reason in (
            ({"format": "pickle"}, "not an"),
            ({"features": ["a", "b", "c", "d"]}, "trained on features"),
            ({"intercept": [0, 0]}, "do not match"),
        ):
            with self.subTest(reason), self.assertRaisesRegex(RuntimeError, reason):
                IrisModel().load(str(write_model(Path(tempfile.mkdtemp()), **overrides)))


class ProcessingTest(unittest.TestCase):
    def test_prepare_makes_float_rows(self) -> None:
        rows = prepare([SETOSA])
        self.assertEqual((rows.shape, rows.dtype), ((1, 4), np.float64))

    def test_softmax_rows_sum_to_one(self) -> None:
        probabilities = softmax(np.array([[1000.0, 0.0, -1000.0], [1.0, 2.0, 3.0]]))
        np.testing.assert_allclose(probabilities.sum(axis=1), [1.0, 1.0])
        self.assertAlmostEqual(float(probabilities[0, 0]), 1.0)


class RuntimeContractTest(unittest.TestCase):
    """The class as the serving runtime drives it: its adapter, its error mapping, its output names."""

    def test_served_through_the_runtime_adapter(self) -> None:
        from modelapp_serving.errors import InvalidInput
        from modelapp_serving.models.custom import CustomModel

        served = CustomModel("iris", write_model(Path(tempfile.mkdtemp())), user_class=IrisModel)
        served.load()
        out = served.predict({"measurements": np.array([VIRGINICA], dtype=np.float32)})
        self.assertEqual(sorted(out), ["label", "probability"])
        self.assertEqual(list(out["label"]), ["virginica"])
        self.assertEqual([spec.name for spec in served.inputs], ["measurements"])
        with self.assertRaises(InvalidInput):  # a 400 for the caller, never a 500
            served.predict({"measurements": np.array([[-1.0, 0.0, 0.0, 0.0]])})


if __name__ == "__main__":
    unittest.main()
