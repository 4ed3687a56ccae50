"""An example ModelApp application: an iris classifier served by the ModelApp serving runtime.

The serving image loads `iris_app.model:IrisModel` (the ModelApp's `spec.modelClass`), calls its
`load(path)` once with the model version's entrypoint file, then `predict(inputs)` per request.
"""
