"""`modelapp-serving publish`: how a data scientist publishes a model version.

Each FILE is published under its base name; a folder is published as its tree (paths relative
to the folder). The manifest lists every file's size and sha256 and is uploaded LAST and
create-only, so a version is invisible until complete and can never be overwritten: an
existing version (a manifest already there) is refused with exit 1 before any upload. The
version digest (sha256 of the manifest bytes) is printed as the last line on stdout; pin it in
`spec.model.sha256`. See docs/model-versions.md.

The version card (`modelapp_serving.card`) is published with the files when there is anything to say:
the model's signature (derived from an ONNX graph or a scikit-learn estimator by loading it here, on the
publisher's machine; declared with `--signature FILE` for a user class, or to override), the acceptance
examples (`--examples FILE`), which the model itself must pass here before anything is uploaded when it
can be loaded (ONNX, scikit-learn), and the provenance (`--training-run`, `--source-commit`,
`--dataset-digest`, `--meta KEY=VALUE`). The card is a file of the version, so the digest covers it.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import tempfile
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from modelapp_serving.card import (
    CARD_NAME,
    CardError,
    Examples,
    Provenance,
    Signature,
    TensorSig,
    build_card,
    parse_examples,
    parse_signature,
)
from modelapp_serving.errors import ServingError
from modelapp_serving.manifest import FileEntry, ManifestError, ModelFormat, build_manifest, digest
from modelapp_serving.stores import ConflictError, Store, StoreError, open_store, scrub
from modelapp_serving.stores.base import check_version


class PublishError(Exception):
    """The local files cannot be published as given."""


def collect(sources: list[Path]) -> list[tuple[str, Path]]:
    """(path in the version, local file) for every FILE argument; folders contribute their tree."""
    found: list[tuple[str, Path]] = []
    for source in sources:
        if source.is_dir():
            found += [(p.relative_to(source).as_posix(), p) for p in sorted(source.rglob("*")) if p.is_file()]
        elif source.is_file():
            found.append((source.name, source))
        else:
            raise PublishError(f"{source}: no such file or folder")
    names = [name for name, _ in found]
    if CARD_NAME in names:
        raise PublishError(f"{CARD_NAME} is the version card's name, written by publish itself: rename that file")
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise PublishError(f"two files would be published as {duplicates[0]!r}")
    if not found:
        raise PublishError("nothing to publish: the folders given are empty")
    return found


def hash_file(name: str, path: Path) -> FileEntry:
    """The manifest entry of a local file published as `name`: size and sha256, read in 1 MiB steps."""
    hasher = hashlib.sha256()
    size = 0
    with path.open("rb") as stream:
        while block := stream.read(1024 * 1024):
            hasher.update(block)
            size += len(block)
    try:
        return FileEntry(path=name, size=size, sha256=hasher.hexdigest())
    except ValidationError as exc:
        raise PublishError(f"{path}: cannot be published as {name!r}: {exc.errors()[0]['msg']}") from None


def _loaded(model_format: ModelFormat, path: Path, sha256: str) -> tuple[Any, str]:
    """(the model loaded as `serve` would load it, "") for ONNX and scikit-learn; (None, why not) when it
    cannot be loaded here (a user class, no onnxruntime or scikit-learn installed, a file that is no model)."""
    if model_format == "custom":
        return None, "a user class's signature is declared, not derived: pass --signature FILE"
    try:
        if model_format == "onnx":
            from modelapp_serving.models.onnx import OnnxModel

            model: Any = OnnxModel("publish", path)
        else:
            from modelapp_serving.models.sklearn import SklearnModel

            model = SklearnModel("publish", path, expected_sha256=sha256)
        model.load()
    except ImportError as exc:
        return None, f"cannot load the {model_format} model here ({exc}): install modelapp[serving]"
    except Exception as exc:
        return None, f"{path.name} cannot be loaded as a {model_format} model ({type(exc).__name__}: {exc})"
    return model, ""


def derive_signature(model: Any) -> Signature:
    """The signature of a loaded model, from what its loader read (the ONNX graph, the estimator)."""
    tensors = {side: tuple(TensorSig(name=t.name, datatype=t.datatype, shape=t.shape) for t in getattr(model, side))
               for side in ("inputs", "outputs")}  # fmt: skip
    return Signature(inputs=tensors["inputs"], outputs=tensors["outputs"])


def check_examples(model: Any, examples: Examples) -> None:
    """Run the examples through the loaded model: a version whose own examples fail is never published."""
    import numpy as np

    from modelapp_serving.codecs import DATATYPES

    feed = {t.name: np.asarray(t.data, dtype=DATATYPES[t.datatype]).reshape(t.shape) for t in examples.inputs}
    try:
        produced = model.predict(feed)
    except (ServingError, ValueError) as exc:
        raise PublishError(f"the model refuses its own examples: {exc}") from None
    first = next(iter(produced.values()), None)
    for want in examples.expected:
        got = produced.get(want.name) if want.name else first
        label = want.name or "the first output"
        if got is None:
            raise PublishError(f"the examples expect output {label!r}, which the model does not produce "
                               f"(it produces {list(produced)})")  # fmt: skip
        flat = np.asarray(got).reshape(-1)
        if flat.dtype.kind not in "biuf" or len(flat) != len(want.data):
            raise PublishError(f"examples: {label}: the model gives {len(flat)} values of {flat.dtype}, "
                               f"the examples expect {len(want.data)} numbers")  # fmt: skip
        for i, (g, w) in enumerate(zip(flat.tolist(), want.data, strict=True)):
            if abs(g - w) > examples.tolerance:
                raise PublishError(
                    f"examples: {label}: element {i} is {g!r}, expected {w!r} (tolerance "
                    f"{examples.tolerance:g}); the model fails its own examples, nothing was published"
                )


def make_card(
    *, model_format: ModelFormat, main: Path | None, main_sha256: str, signature: Signature | None,
    examples: Examples | None, provenance: Provenance,
) -> bytes | None:  # fmt: skip
    """The card bytes, or None when there is nothing to say (a user class, nothing declared)."""
    model, why = _loaded(model_format, main, main_sha256) if main is not None else (None, "no main file")
    if model is not None:
        signature = signature or derive_signature(model)
        if examples is not None:
            check_examples(model, examples)
    elif examples is not None and model_format != "custom":
        raise PublishError(f"the examples cannot be checked against the model: {why}")
    elif signature is None:
        print(f"publish: no signature recorded: {why}", file=sys.stderr)
    if signature is None and examples is None and provenance.empty:
        return None
    return build_card(signature=signature, examples=examples, provenance=provenance)


def publish_version(
    store: Store, *, version: str, sources: list[Path], model_format: ModelFormat, entrypoint: str | None,
    signature: Signature | None = None, examples: Examples | None = None, provenance: Provenance | None = None,
    work: Path | None = None,
) -> str:  # fmt: skip
    """Upload the files and the card, then the manifest; return the version digest. `work` is a folder for
    the card file (default: a temporary one)."""
    check_version(version)
    files = collect(sources)
    entries = [hash_file(name, local) for name, local in files]
    if sum(entry.size for entry in entries) == 0:
        raise PublishError("every file is empty; refusing to publish a model with no bytes")
    main_file = entrypoint or (files[0][0] if sources[0].is_file() else None)
    if main_file is None:
        raise PublishError("the first FILE is a folder: name the main file with --entrypoint")
    if store.exists(version):  # before the model is loaded for its card: nothing to do for a taken version
        raise ConflictError(f"version {version} already exists at {store.uri}; versions are immutable")
    found = next(((local, entry.sha256) for (name, local), entry in zip(files, entries, strict=True)
                  if name == main_file), None)  # fmt: skip
    card = make_card(model_format=model_format, main=found[0] if found else None,
                     main_sha256=found[1] if found else "",
                     signature=signature, examples=examples, provenance=provenance or Provenance())  # fmt: skip
    with tempfile.TemporaryDirectory(dir=work) as folder:
        if card is not None:
            card_path = Path(folder) / CARD_NAME
            card_path.write_bytes(card)
            files.append((CARD_NAME, card_path))
            entries.append(hash_file(CARD_NAME, card_path))
        data = build_manifest(version=version, model_format=model_format, entrypoint=main_file, files=entries)
        for name, local in files:
            store.upload(version, name, local)
        store.publish_manifest(version, data)
    return digest(data)


def parse_meta(items: list[str]) -> dict[str, str]:
    """`--meta KEY=VALUE` pairs (repeatable)."""
    meta: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise PublishError(f"--meta {item!r} is not KEY=VALUE")
        if key in meta:
            raise PublishError(f"--meta {key} is given twice")
        meta[key] = value
    return meta


def _card_inputs(args: argparse.Namespace) -> tuple[Signature | None, Examples | None, Provenance]:
    signature = examples = None
    if args.signature:
        signature = parse_signature(Path(args.signature).read_bytes(), f"--signature {args.signature}")
    if args.examples:
        examples = parse_examples(Path(args.examples).read_bytes(), f"--examples {args.examples}")
    try:
        provenance = Provenance.model_validate({
            "trainingRun": args.training_run, "sourceCommit": args.source_commit,
            "datasetDigest": args.dataset_digest, "meta": parse_meta(args.meta or []),
        })  # fmt: skip
    except ValidationError as exc:
        first = exc.errors()[0]
        raise CardError(f"provenance: {'.'.join(str(p) for p in first['loc'])}: {first['msg']}") from None
    return signature, examples, provenance


def main(args: argparse.Namespace) -> int:
    """CLI adapter: progress on stderr, the digest as the last stdout line, exit 1 on any refusal."""
    try:
        signature, examples, provenance = _card_inputs(args)
        store = open_store(args.uri)
        result = publish_version(
            store,
            version=args.version,
            sources=[Path(name) for name in args.files],
            model_format=args.format,
            entrypoint=args.entrypoint,
            signature=signature,
            examples=examples,
            provenance=provenance,
        )
    except (StoreError, ManifestError, PublishError, CardError, OSError) as exc:
        print(f"publish failed: {scrub(str(exc))}", file=sys.stderr)
        return 1
    print(f"published {args.version} to {store.uri}", file=sys.stderr)
    print(result)
    return 0
