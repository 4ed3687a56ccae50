"""Version discovery for one bump run: image tags from registries, model versions from stores.

The contract is about cost: however many ModelApps share an image repository or a model
location, a run lists the repository's tags ONCE and the location's versions ONCE. Listings
are memoised per catalog (a catalog lives for one run), and so are failures, so a registry
that is down costs one timeout per run rather than one per ModelApp.

Model versions: the listing names every folder under the prefix; a folder counts only when
its manifest exists, parses and names its own version (docs/contracts.md). Manifests are read
lazily, best candidate first, and only until one is complete: usually one GET per prefix and
policy. The manifest's digest is what bump writes to `spec.model.sha256`.

Image tags: one `tags/list` sequence per repository; the chosen tag's digest is resolved once
(`HEAD` manifest) so that a revision records it and a tag that moved is noticed.

Facts for signature checks (docs/contracts.md): a version's card is read once per (location, version),
checked against the sha256 its manifest pins; an image's accepted signatures (label
`io.modelapp.signatures`) once per (repository, digest). Both are the tenant's, so both are read with
the stores' and the registry client's bounds, and a bad one fails only the rows that need it.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from modelapp_operator.policies import Policy, choose
from modelapp_operator.registry import ImageRef, RegistryClient, RegistryError, parse_image
from modelapp_operator.signatures import (
    LABEL,
    ImageFacts,
    ModelFacts,
    PairFacts,
    SignatureError,
    fit,
    parse_accepts,
)
from modelapp_operator.spec import ModelAppSpec
from modelapp_serving.card import CARD_NAME, MAX_CARD_BYTES, Card, CardError, card_entry_sha256, parse_card
from modelapp_serving.manifest import Manifest, ManifestError, digest, parse_manifest
from modelapp_serving.stores import NotFoundError, Store, StoreError


class DiscoveryError(Exception):
    """A listing or a lookup failed; the message is one credential-free line for the plan."""


def _located(where: str, exc: Exception) -> DiscoveryError:
    """The store's error, prefixed with the location unless the store's message already starts with it."""
    text = str(exc)
    return DiscoveryError(text if text.startswith(where) else f"{where}: {text}")


@dataclass(frozen=True)
class Found:
    """A chosen version: the new value and its digest (image `sha256:...`, model manifest hex)."""

    value: str
    digest: str


@dataclass(frozen=True)
class Decision:
    """What a policy decided for one field; `found` is None when the field stays as it is."""

    found: Found | None
    reason: str


@dataclass(frozen=True)
class StoreKey:
    """A model location as bump sees it: the same URI read with different credentials is a different
    listing (a namespace's secret may see what another's cannot)."""

    uri: str
    namespace: str = ""
    secret: str = ""


StoreOpener = Callable[[StoreKey], Store]


@dataclass
class ModelCatalog:
    """Model versions per location, listed once per run; manifests read on demand and remembered."""

    opener: StoreOpener
    _stores: dict[StoreKey, Store] = field(default_factory=dict)
    _listings: dict[StoreKey, list[str] | DiscoveryError] = field(default_factory=dict)
    _digests: dict[tuple[StoreKey, str], str | None] = field(default_factory=dict)
    _manifests: dict[tuple[StoreKey, str], Manifest] = field(default_factory=dict)
    _facts: dict[tuple[StoreKey, str], ModelFacts | DiscoveryError] = field(default_factory=dict)

    def versions(self, key: StoreKey) -> list[str]:
        """Every version-shaped name under the location (complete or not); one listing per key."""
        if key not in self._listings:
            self._listings[key] = self._list(key)
        result = self._listings[key]
        if isinstance(result, DiscoveryError):
            raise result
        return result

    def _list(self, key: StoreKey) -> list[str] | DiscoveryError:
        listed: list[str] = []

        def capture(names: Sequence[str]) -> Sequence[str]:
            listed.extend(names)  # the store hands us its one listing; completeness is checked lazily
            return []

        try:
            self._store(key).list_versions(rank=capture)
        except StoreError as exc:
            return _located(key.uri, exc)
        return listed

    def manifest_digest(self, key: StoreKey, version: str) -> str | None:
        """The version digest when the version is complete, else None (missing or invalid manifest)."""
        if (key, version) not in self._digests:
            self._digests[(key, version)] = self._read_digest(key, version)
        return self._digests[(key, version)]

    def _read_digest(self, key: StoreKey, version: str) -> str | None:
        try:
            data = self._store(key).read_manifest(version)
            manifest = parse_manifest(data)
        except (ManifestError, NotFoundError):
            return None
        except StoreError as exc:
            raise _located(f"{key.uri}/{version}", exc) from None
        if manifest.version != version:
            return None
        self._manifests[(key, version)] = manifest
        return digest(data)

    def facts(self, key: StoreKey, version: str) -> ModelFacts:
        """What the version's card says (signature, whether it has examples, provenance), read once and
        checked against the sha256 the manifest pins; a version without a card has facts with none of it.
        DiscoveryError when the version is incomplete or its card unreadable."""
        if (key, version) not in self._facts:
            self._facts[(key, version)] = self._read_facts(key, version)
        result = self._facts[(key, version)]
        if isinstance(result, DiscoveryError):
            raise result
        return result

    def _read_facts(self, key: StoreKey, version: str) -> ModelFacts | DiscoveryError:
        try:
            version_digest = self.manifest_digest(key, version)
            if version_digest is None:
                raise DiscoveryError(f"{key.uri}/{version}: no valid manifest, so no card to read")
            facts = ModelFacts(uri=key.uri, version=version, sha256=version_digest)
            pinned = card_entry_sha256(self._manifests[(key, version)])
            if pinned is None:
                return facts
            card = self._read_card(key, version, pinned)
        except DiscoveryError as exc:
            return exc
        provenance = None if card.provenance.empty else card.provenance
        return facts.model_copy(update={"card": pinned, "signature": card.signature,
                                        "examples": card.examples is not None, "provenance": provenance})  # fmt: skip

    def _read_card(self, key: StoreKey, version: str, pinned: str) -> Card:
        where = f"{key.uri}/{version}/{CARD_NAME}"
        try:
            data = self._store(key).read_small_file(version, CARD_NAME, limit=MAX_CARD_BYTES)
        except StoreError as exc:
            raise _located(where, exc) from None
        if hashlib.sha256(data).hexdigest() != pinned:
            raise DiscoveryError(f"{where}: sha256 differs from the manifest's; the version is damaged")
        try:
            return parse_card(data)
        except CardError as exc:
            raise DiscoveryError(f"{where}: {exc}") from None

    def _store(self, key: StoreKey) -> Store:
        if key not in self._stores:
            try:
                self._stores[key] = self.opener(key)
            except StoreError as exc:
                raise _located(key.uri, exc) from None
        return self._stores[key]

    def request_count(self) -> int:
        """Requests the stores report having made (listing pages and reads), for the benchmark."""
        return sum(store.stats.requests for store in self._stores.values())

    def decide(self, key: StoreKey, policy: Policy, *, current: str, excluded: Iterable[str] = ()) -> Decision:
        """The newest complete version the policy allows, skipping incomplete and excluded ones."""
        if not policy.follows:
            return Decision(None, "pinned")
        listed = self.versions(key)
        skipped = set(excluded)
        incomplete: list[str] = []
        while True:
            candidates = [version for version in listed if version not in incomplete]
            choice = choose(policy, current=current, candidates=candidates, excluded=skipped)
            if choice.target is None:
                return Decision(None, _note(choice.reason, incomplete))
            version_digest = self.manifest_digest(key, choice.target)
            if version_digest is not None:
                return Decision(Found(choice.target, version_digest), _note(choice.reason, incomplete))
            incomplete.append(choice.target)


def _note(reason: str, incomplete: Sequence[str]) -> str:
    if not incomplete:
        return reason
    return f"{reason}; ignored incomplete {', '.join(incomplete)} (no valid manifest yet)"


@dataclass
class TagCatalog:
    """Image tags per repository, listed once per run; digests resolved once per (repository, tag)."""

    client: RegistryClient
    _tags: dict[str, list[str] | DiscoveryError] = field(default_factory=dict)
    _digests: dict[tuple[str, str], str | DiscoveryError] = field(default_factory=dict)
    _accepts: dict[tuple[str, str], ImageFacts | DiscoveryError] = field(default_factory=dict)

    def facts(self, ref: ImageRef, image: str, digest: str) -> ImageFacts:
        """The signatures the image `digest` accepts (its label `io.modelapp.signatures`; None without one),
        read once per (repository, digest); `image` is the reference as the spec will name it."""
        if (ref.key, digest) not in self._accepts:
            try:
                labels = self.client.image_labels(ref, digest)
                text = labels.get(LABEL)
                accepts = None if text is None else parse_accepts(text)
                self._accepts[(ref.key, digest)] = ImageFacts(image="", digest=digest, accepts=accepts)
            except (RegistryError, SignatureError) as exc:
                self._accepts[(ref.key, digest)] = DiscoveryError(f"{ref.key}@{digest[:19]}: {exc}")
        result = self._accepts[(ref.key, digest)]
        if isinstance(result, DiscoveryError):
            raise result
        return result.model_copy(update={"image": image})

    def tags(self, ref: ImageRef) -> list[str]:
        if ref.key not in self._tags:
            try:
                self._tags[ref.key] = self.client.list_tags(ref)
            except RegistryError as exc:
                self._tags[ref.key] = DiscoveryError(str(exc))
        result = self._tags[ref.key]
        if isinstance(result, DiscoveryError):
            raise result
        return result

    def digest(self, ref: ImageRef, tag: str) -> str:
        if (ref.key, tag) not in self._digests:
            try:
                self._digests[(ref.key, tag)] = self.client.resolve_digest(ref, tag)
            except RegistryError as exc:
                self._digests[(ref.key, tag)] = DiscoveryError(str(exc))
        result = self._digests[(ref.key, tag)]
        if isinstance(result, DiscoveryError):
            raise result
        return result

    def decide(self, ref: ImageRef, policy: Policy, *, excluded: Iterable[str] = ()) -> Decision:
        """The newest allowed tag and its digest. A current `tag@digest` whose tag now points at a
        different digest counts as a change too: the tag moved (a rebuild under the same name)."""
        if not policy.follows or ref.tag is None:
            return Decision(None, "pinned" if not policy.follows else "image has no tag to follow")
        choice = choose(policy, current=ref.tag, candidates=self.tags(ref), excluded=excluded)
        if choice.target is not None:
            return Decision(Found(choice.target, self.digest(ref, choice.target)), choice.reason)
        if ref.digest is not None and ref.tag in self.tags(ref):
            now = self.digest(ref, ref.tag)
            if now != ref.digest:
                return Decision(Found(ref.tag, now), f"tag {ref.tag} moved from {ref.digest[:19]} to {now[:19]}")
        return Decision(None, choice.reason)


# -- does the proposed pair fit? (issue 14.2) ------------------------------------------------------------


@dataclass(frozen=True)
class PairCheck:
    """What the signatures say about a proposed change: which half may move, why the other is held, and
    the facts to record for the pair proposed (`signatures.PairFacts`, the operator's only source)."""

    image_held: str = ""  # why the image change must wait ("" when it may go ahead, or there is none)
    model_held: str = ""
    failure: str = ""  # a card or label that could not be read: the changing rows fail with this
    facts: PairFacts | None = None


def check_pair(
    spec: ModelAppSpec, *, image: tuple[str, str], version: str, tags: TagCatalog, models: ModelCatalog,
    key: StoreKey,
) -> PairCheck:  # fmt: skip
    """Never propose a pair whose signatures do not fit: `image` is the planned (new image, its digest) and
    `version` the planned model version, empty when that field stays. The whole proposal first; when both
    move and they do not fit, each half alone (the image with the current version, the current image with
    the new version); else both wait. What cannot be read about a half that changes fails the rows; about
    the half that stays (e.g. a pinned image in a registry the bump has no login for), it counts as unknown,
    as images and versions without signatures do."""
    (new_image, image_digest), new_version = image, version
    if not new_image and not new_version:
        return PairCheck()
    try:
        img_new = tags.facts(parse_image(new_image), new_image, image_digest) if new_image else None
        mod_new = models.facts(key, new_version) if new_version else None
    except DiscoveryError as exc:
        return PairCheck(failure=f"cannot check signatures: {exc}")

    @functools.cache
    def img_cur() -> ImageFacts:  # read only when a check needs it
        return _current_image(spec.image, tags)

    @functools.cache
    def mod_cur() -> ModelFacts:
        return _current_model(spec, models, key)

    both = img_new is not None and mod_new is not None
    why = ""
    for take_new_image, take_new_model in [(True, True), *([(True, False), (False, True)] if both else [])]:
        img = img_new if take_new_image and img_new is not None else img_cur()
        mod = mod_new if take_new_model and mod_new is not None else mod_cur()
        problem = fit(mod.signature, img.accepts)
        if problem is None:
            held = f"held: {why}" if why else ""
            known = img.accepts is not None or mod.card is not None
            return PairCheck(image_held=held if img is not img_new else "",
                             model_held=held if mod is not mod_new else "",
                             facts=PairFacts(image=img, model=mod) if known else None)  # fmt: skip
        why = why or f"signatures do not fit: image {img.image} with model version {mod.version}: {problem}"
    return PairCheck(image_held=f"held: {why}" if new_image else "", model_held=f"held: {why}" if new_version else "")


def _current_image(image: str, tags: TagCatalog) -> ImageFacts:
    """What the spec's image accepts, or unknown when it cannot be read."""
    try:
        ref = parse_image(image)
        digest_ = ref.digest or (tags.digest(ref, ref.tag) if ref.tag else "")
        return tags.facts(ref, image, digest_) if digest_ else ImageFacts(image=image)
    except (DiscoveryError, ValueError):
        return ImageFacts(image=image)


def _current_model(spec: ModelAppSpec, models: ModelCatalog, key: StoreKey) -> ModelFacts:
    """The spec's version's facts, or unknown when they cannot be read."""
    try:
        return models.facts(key, spec.model.version)
    except DiscoveryError:
        return ModelFacts(uri=spec.model.uri, version=spec.model.version, sha256=spec.model.sha256 or "")
