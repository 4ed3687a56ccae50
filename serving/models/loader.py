"""Choose and build the model for a fetched version folder: the safety rules live here.

`resolve_model` is cheap and synchronous (reads the manifest, checks the pin, imports the user
class) so that `serve` can refuse a bad configuration with a one-line reason before it starts;
the slow `Model.load()` runs later, in the background. The rules:

- `--sha256`, when given, must equal the manifest digest, whatever the format;
- `format: sklearn` is refused without `--sha256` (unpickling runs code);
- `--model-class` (or a `modelapp.models` entry point) selects user code; `format: custom` needs one;
- otherwise `format: onnx` loads through onnxruntime.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from modelapp_serving.card import CardError, read_card
from modelapp_serving.errors import ModelConfigError
from modelapp_serving.manifest import Manifest, ManifestError, read_manifest
from modelapp_serving.models.base import Model

ENTRY_POINT_GROUP = "modelapp.models"


@dataclass(frozen=True, slots=True)
class ModelInfo:
    """What `/version` and the metrics say about the served version; `card` is its version card's bytes as
    published (verified by `fetch` against the manifest), None when the version has none."""

    name: str
    version: str
    digest: str
    format: str
    card: bytes | None = None
    provenance: dict[str, Any] = field(default_factory=dict)


def import_class(reference: str) -> type[Any]:
    """`module:Class` -> the class; a one-line ModelConfigError when it cannot be imported."""
    module_name, _, attribute = reference.partition(":")
    if not module_name or not attribute:
        raise ModelConfigError(f"model class {reference!r} must be written module:Class")
    try:
        target: Any = importlib.import_module(module_name)
        for part in attribute.split("."):
            target = getattr(target, part)
    except (ImportError, AttributeError) as exc:
        raise ModelConfigError(f"cannot import model class {reference!r}: {exc}") from None
    if not isinstance(target, type) or not callable(getattr(target, "predict", None)):
        raise ModelConfigError(f"{reference!r} is not a class with load(path) and predict(inputs)")
    return target


def entry_point_class(name: str) -> type[Any] | None:
    """The class registered under `modelapp.models`: the one named like the model, else the only one."""
    found = {point.name: point for point in entry_points(group=ENTRY_POINT_GROUP)}
    point = found.get(name) or (next(iter(found.values())) if len(found) == 1 else None)
    if point is None:
        if found:
            raise ModelConfigError(
                f"several {ENTRY_POINT_GROUP} entry points ({sorted(found)}) and none named {name!r}"
            )
        return None
    return import_class(point.value)


def _check_pin(manifest: Manifest, digest: str, pinned: str | None) -> None:
    if pinned is not None and pinned.lower() != digest:
        raise ModelConfigError(f"pinned sha256 {pinned} does not match the manifest digest {digest}")
    if manifest.format == "sklearn" and pinned is None:
        raise ModelConfigError(
            "refusing to load a scikit-learn (pickle) model without a pinned digest: unpickling runs code; "
            "pass --sha256 <version digest> (publish printed it)"
        )


def resolve_model(
    model_dir: Path, *, name: str, pinned_sha256: str | None, model_class: str | None
) -> tuple[Model, ModelInfo]:
    """Check the folder and the options and build the (not yet loaded) model."""
    try:
        manifest, digest = read_manifest(model_dir)
    except ManifestError as exc:
        raise ModelConfigError(str(exc)) from None
    _check_pin(manifest, digest, pinned_sha256)
    try:
        card = read_card(model_dir, manifest)
    except (CardError, OSError) as exc:
        raise ModelConfigError(f"the version card: {exc}") from None
    provenance = card[1].provenance.as_json() if card else {}
    info = ModelInfo(name=name, version=manifest.version, digest=digest, format=manifest.format,
                     card=card[0] if card else None, provenance=provenance)  # fmt: skip
    path = model_dir / manifest.entrypoint
    if model_class:
        user_class: type[Any] | None = import_class(model_class)
    else:
        user_class = entry_point_class(name) if manifest.format == "custom" else None
    if user_class is not None:
        from modelapp_serving.models.custom import CustomModel

        return CustomModel(name, path, user_class=user_class), info
    if manifest.format == "custom":
        raise ModelConfigError("format 'custom' needs --model-class module:Class or a modelapp.models entry point")
    if manifest.format == "sklearn":
        from modelapp_serving.models.sklearn import SklearnModel

        entry = next(entry for entry in manifest.files if entry.path == manifest.entrypoint)
        return SklearnModel(name, path, expected_sha256=entry.sha256), info
    from modelapp_serving.models.onnx import OnnxModel

    return OnnxModel(name, path), info
