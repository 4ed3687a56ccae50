"""The converge engine: one level-based pass per ModelApp, from what the cluster says to children and status.

`Engine.converge` reads the ModelApp, parses its spec, asks `rollout.decide` which (image, model) pair to
apply (the spec's, or the last good one while the spec's is quarantined), runs the smoke test when it is
due, applies the children built from that pair, writes status, then posts Events and counts metrics for
the transitions the new status records. One pass at a time per ModelApp (`turns.Turns`) across kopf's
threads and the child threads; everything it decides from is in the cluster, so a restarted operator (or
another replica taking over) continues a rollback where the last one stopped.

What it reads comes from its `store` (`cache.py`): the objects as the watch streams and our own writes'
responses delivered them, newest first; the API server is read only on a miss. A child is applied only
when it is missing or has drifted from the desired manifest, and status only when it changes, so an
unchanged world costs no API call at all (idle means idle) and events caused by our own writes end there.

The engine knows kopf only for its error types and `kopf.event`; the handlers (handlers.py) create one
Engine at startup, keep it in kopf's memo, and hand it every event.
"""

from __future__ import annotations

import contextvars
import dataclasses
import functools
import random
import threading
import time
from collections.abc import Hashable, Mapping, Sequence
from typing import Any, cast

import kopf

from modelapp_operator import builders, cache, kube, metrics, pacing, rollout, signatures, smoke, status
from modelapp_operator.children import Children, NameTaken
from modelapp_operator.fairness import FairPool
from modelapp_operator.later import Later
from modelapp_operator.names import (
    KIND,
    LABEL_SHARD,
    OUTCOME_AVAILABLE,
    OUTCOME_FAILED,
    OUTCOME_PROGRESSING,
    OUTCOME_ROLLED_BACK,
    ROLLED_BACK,
    now,
)
from modelapp_operator.revisions import Pair, parse_revisions
from modelapp_operator.settings import OperatorConfig
from modelapp_operator.smokepool import Logger, SmokeCheck, SmokePool
from modelapp_operator.spec import InvalidSpec, ModelAppSpec, check_name, parse_spec
from modelapp_operator.turns import Turns

#: Child events (rollout progress, status, drift repair) run in threads of their own, not in kopf's pool:
#: in a burst of creates kopf's FIFO pool holds every ModelApp's reconcile first, and a Deployment that
#: became available would wait for all of them before its ModelApp could say Ready.
CHILD_THREADS = 16
#: How soon a ModelApp blocked by a name conflict is looked at again (the other object may be deleted).
CONFLICT_RETRY_SECONDS = 60
#: While a ModelApp with `auth` rolls out, its pods are looked at again this often for a missing token Secret
#: (the kubelet's CreateContainerConfigError changes no Deployment status, so no event would tell).
TOKEN_RECHECK_SECONDS = 10.0
#: A TLS Secret that spec.ingress names is asked about (a dry-run create, never a read: kube.name_taken) at most
#: this often while it is missing, with a pass of its ModelApp then (no event tells when the tenant creates it),
#: and once it exists, again after TLS_PRESENT_SECONDS.
TLS_RECHECK_SECONDS = 15.0
TLS_PRESENT_SECONDS = 300.0
#: A pass the API server could not serve (`kube.transient`: still throttled after kube's own retries, a 5xx, no
#: answer) is tried again this soon: kopf's handler by a TemporaryError (its default backoff is 60 s, logged as an
#: exception with a traceback), a pass of a child event or a timer by a pass of its own (nothing else would retry it).
#: The wait doubles with each such failure of the same ModelApp in a row, up to BUSY_RETRY_MAX_SECONDS: an API
#: server that is down for minutes gets one pass per ModelApp a minute, not one every 5 s from the whole fleet.
#: Each wait is longer by up to BUSY_RETRY_JITTER of itself, at random: the passes an outage stopped together do
#: not all come back in the same second. A pass the API server refused (a 4xx but Gone: an RBAC rule, an admission
#: policy, a quota, any of which may be lifted) is tried again the same way, logged as an error: nothing else would
#: retry a timer's pass (a held first status's write, pacing.py, would wait for the ModelApp's next event).
BUSY_RETRY_SECONDS = 5.0
BUSY_RETRY_MAX_SECONDS = 60.0
BUSY_RETRY_JITTER = 0.2
#: What one pass (or one drift repair) may sleep in all for the API server's Retry-After (`kube.throttle_budget`):
#: the passes of every namespace share CHILD_THREADS threads and the operator's one identity, which API Priority and
#: Fairness throttles as one; a pass past this ends as transient and is tried again later, its thread given back.
PASS_THROTTLE_SECONDS = 5.0


class SmokeKeyUnavailable(Exception):
    """The operator cannot read or create its smoke-test key Secret; the message says why and what to do."""


class Engine:
    """The operator's state for one process: what it knows (`store`), whose turn it is, its child threads."""

    def __init__(self, config: OperatorConfig, *, smoke_check: SmokeCheck = smoke.check_pods) -> None:
        self.config = config
        self.store = cache.Store()
        self.names = cache.Names()
        self.turns = Turns()
        #: Child events and the passes asked for later, a namespace at a time (fairness.py)
        self.child_pool = FairPool(CHILD_THREADS, name="modelapp-child")
        self.smokes = SmokePool(transport=smoke.TRANSPORTS[config.smoke_transport], check=smoke_check,
                                again=self._converge_soon, later=self._look_again_in)  # fmt: skip
        self._lock = threading.Lock()  # the smoke key, the TLS Secrets seen
        self._smoke_key: bytes | None = None  # read (or created) on first need: only auth + smoke test need it
        # passes asked for later (`_look_again`, a repair's retry), one pending per key (its first item: the namespace)
        self._later = Later(lambda key, fn: self.child_pool.submit(cast(tuple[str, ...], key)[0], fn))
        self.pacer = pacing.StatusPacer()  # which status writes wait a moment (pacing.py)
        self._tls_seen: dict[tuple[str, str], tuple[bool, float]] = {}  # (namespace, Secret) -> (missing, until)
        #: (namespace, name) of a ModelApp, or (namespace, kind, name) of a child being repaired -> tries in a row that
        #: the API server could not take (`kube.transient`) or refused
        self._busy: dict[Hashable, int] = {}
        self._ctx = builders.BuildContext(serving_image=config.serving_image,
                                          revision_history_limit=config.revision_history)  # fmt: skip
        self.children = Children(config, self.store, self.names, context=self._build_context,
                                 forget=self.forget)  # fmt: skip

    # -- what the operator knows ---------------------------------------------------------------------

    def remember(self, kind: str, obj: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
        """Keep `obj` in the store (newest wins); a ModelApp of another shard is returned, never kept."""
        if obj is None:
            return None
        if kind == KIND and not self.owns(obj):
            return cache.trim(obj)
        return self.store.put(kind, obj)

    def forget(self, kind: str, namespace: str, name: str, *, version: object = None) -> None:
        """Drop an object from the store; `version`: the resourceVersion it left at (cache.Store.drop)."""
        self.store.drop(kind, namespace, name, version=version)
        if kind == KIND:
            self.pacer.forget((namespace, name))
            self._busy.pop((namespace, name), None)
        else:
            self._busy.pop((namespace, kind, name), None)

    def owns(self, app: Mapping[str, Any]) -> bool:
        """The ModelApp belongs to this replica's shard (settings.OperatorConfig.owns)."""
        labels = (app.get("metadata") or {}).get("labels") or {}
        return self.config.owns(labels.get(LABEL_SHARD))

    def _read_app(self, name: str, namespace: str) -> Mapping[str, Any] | None:
        """The ModelApp from the store; on a miss from the API server, remembered."""
        known = self.store.get(KIND, namespace, name)
        return known if known is not None else self.remember(KIND, kube.get(KIND, name, namespace))

    # -- one pass ------------------------------------------------------------------------------------

    def converge(self, *, name: str, namespace: str, logger: Logger, everything: bool, reason: str = "") -> None:
        """One level-based pass for a ModelApp, one at a time per ModelApp (`Turns`).

        `everything`: ensure every child (spec or annotation change, resume), else only a missing or drifted
        Deployment (child events). `reason` is kopf's cause: on "create" none of our children can exist yet,
        so the Deployment is not read back before the decision; every child the store does not know is still
        read once before it is applied, to see who holds its name (`NameTaken`)."""
        key = (namespace, name)
        if not self.turns.enter(key, wait=everything):
            return
        try:
            with kube.throttle_budget(PASS_THROTTLE_SECONDS):
                self._pass(name=name, namespace=namespace, logger=logger, everything=everything, reason=reason)
            self._busy.pop(key, None)  # in its turn: no other pass of this ModelApp counts meanwhile
            while self.turns.more(key):
                with kube.throttle_budget(PASS_THROTTLE_SECONDS):
                    self._pass(name=name, namespace=namespace, logger=logger, everything=False, reason="")
        except kube.Gone:  # a create in a namespace gone or being deleted: the ModelApp goes with it, nothing to do
            self.turns.leave(key)
        except kube.ApiError as exc:
            delay = self._busy_delay(key)  # still this pass's turn: no other pass of this ModelApp counts
            self.turns.leave(key)
            busy = kube.transient(exc)
            if busy:
                message = f"the API server could not take a request ({exc}); trying again in {delay:g} s"
            else:  # a refusal (RBAC, an admission policy, a quota): it may be lifted; nothing else would retry
                message = (f"the API server refused a request ({exc}); trying again in {delay:g} s (the wait doubles "
                           f"while it refuses, up to {BUSY_RETRY_MAX_SECONDS:g} s)")  # fmt: skip
            if everything:  # kopf's handler: one line, no traceback, and soon
                raise kopf.TemporaryError(message, delay=delay) from None
            log = logger.warning if busy else logger.error
            log(f"A pass of ModelApp {namespace}/{name} stopped: {message}.")
            self._look_again(name, namespace, logger, delay=delay)
        except BaseException:
            self.turns.leave(key)
            raise

    def _busy_delay(self, key: Hashable) -> float:
        """One more failure in a row for `key` (`kube.transient`): how long to wait before the next try."""
        failures = self._busy[key] = self._busy.get(key, 0) + 1
        delay = min(BUSY_RETRY_SECONDS * float(2 ** min(failures - 1, 8)), BUSY_RETRY_MAX_SECONDS)
        return round(delay * (1.0 + BUSY_RETRY_JITTER * random.random()), 1)  # noqa: S311 (spreading, not secrecy)

    def _pass(self, *, name: str, namespace: str, logger: Logger, everything: bool, reason: str) -> None:
        app = self._read_app(name, namespace)
        if app is None or app["metadata"].get("deletionTimestamp") or not self.owns(app):
            self.pacer.forget((namespace, name))
            return  # gone, going, or moved to another shard (which converges it from now on)
        app = self.pacer.overlay((namespace, name), app)  # its first status, while held, as if written
        spec = self._parse(app, strict=everything)
        if spec is None:
            return
        facts = signatures.parse_facts((app["metadata"].get("annotations") or {}).get(signatures.ANN_PAIR_FACTS))
        mismatch = signatures.mismatch(facts, image=spec.image, uri=spec.model.uri, version=spec.model.version,
                                       sha256=spec.model.sha256)  # fmt: skip
        if mismatch:  # never applied: no pod of this pair starts, what runs keeps running
            self._blocked(app, "SignatureMismatch", f"{mismatch}. Nothing is rolled out and what runs keeps running; "
                          "name an image and a model version that fit (modelapp bump proposes only such pairs)",
                          retry=None, everything=everything)  # fmt: skip
            return
        try:
            observed = self.children.get(app, "Deployment", miss=reason != "create")
            decision = self._decide(app, spec, observed, logger)
            _record_provenance(decision, spec, facts)
            applied_spec = decision.effective.apply_to(spec)
            refused = self.children.ingress_refusal(app, applied_spec)
            stored = self.children.apply(app, applied_spec, everything=everything, resumed=reason == "resume",
                                         refused=refused is not None)  # fmt: skip
            deployment = stored.get("Deployment", observed)
            service = stored.get("Service") or self.children.get(app, "Service", miss=reason != "create")
            ingress = None if refused or applied_spec.ingress is None else (
                stored.get("Ingress") or self.children.get(app, "Ingress", miss=False))
            tls_missing = ingress is not None and self._tls_secret_missing(app, applied_spec, logger)
        except SmokeKeyUnavailable as exc:
            self._blocked(app, "SmokeKeyUnavailable", str(exc), retry=30, everything=everything)
            return
        except NameTaken as exc:
            self._blocked(app, "NameTaken", str(exc), retry=5 if exc.earlier_self else CONFLICT_RETRY_SECONDS,
                          everything=everything)  # fmt: skip
            return
        except kube.ApiError as exc:
            if exc.status not in (400, 422):
                raise  # the API server is busy, gone or refused the request: `converge` tries again
            message = (f"the API server refused a child built from this spec: {exc}. Fix the spec; what runs "
                       f"keeps running.")  # fmt: skip
            self._blocked(app, "ChildRejected", message, retry=None, everything=everything)
            return
        news = self._write_status(app, applied_spec, decision, deployment, service, ingress=ingress,
                                  refused=refused, tls_missing=tls_missing, logger=logger)  # fmt: skip
        if news is not None:
            _announce(app, news)
            if decision.rolled_back:
                _rolled_back(app, decision, logger)
            metrics.record(namespace, decision.transitions, rolled_back=decision.rolled_back)
            metrics.record_bump(namespace, decision.transitions, app=app)
        if decision.spent:
            spent = {"metadata": {"annotations": dict.fromkeys(decision.spent)}}
            self.remember(KIND, kube.patch(KIND, name, namespace, spent))

    def _blocked(self, app: Mapping[str, Any], reason: str, message: str, *, retry: float | None,
                 everything: bool) -> None:  # fmt: skip
        """Say why nothing is rolled out. `retry`: a ModelApp event tries again after that many seconds (the
        other object may go away); None: only a change of the spec can help (kopf stops retrying)."""
        meta, old = app["metadata"], app.get("status") or {}
        new = status.blocked_status(generation=meta.get("generation", 0), reason=reason, message=message,
                                    old=old, now=now())  # fmt: skip
        key = (meta["namespace"], meta["name"])
        patch = self.pacer.patch_for(key, old, new)
        if patch:
            self._write_unplanned(app, key, patch)
        if everything:
            if retry is None:
                raise kopf.PermanentError(message)
            raise kopf.TemporaryError(message, delay=retry)

    def _write_unplanned(self, app: Mapping[str, Any], key: tuple[str, str], patch: Mapping[str, Any]) -> None:
        """A status write `pacing` did not plan (blocked, invalid spec). A held first status goes with it
        (`patch_for`), and so do its news: its rollout had started. Read before the write, as the event loop may
        `forget` the key meanwhile."""
        news = self.pacer.news(key)
        written = self.remember(KIND, kube.patch_status(key[1], key[0], patch))
        self.pacer.wrote(key)
        if news and written is not None:
            _announce(app, news)

    def _parse(self, app: Mapping[str, Any], *, strict: bool) -> ModelAppSpec | None:
        """The spec; or None (child events leave invalid specs alone); or, when `strict`, a written
        InvalidSpec status and PermanentError (kopf does not retry until the spec changes)."""
        meta = app["metadata"]
        try:
            check_name(meta["name"])
            return parse_spec(app.get("spec") or {})
        except InvalidSpec as exc:
            if not strict:
                return None
            old, key = app.get("status") or {}, (meta["namespace"], meta["name"])
            new = status.invalid_status(generation=meta.get("generation", 0), message=str(exc), old=old, now=now())
            self._write_unplanned(app, key, self.pacer.patch_for(key, old, new) or new)
            raise kopf.PermanentError(f"invalid spec: {exc}") from None

    def _decide(self, app: Mapping[str, Any], spec: ModelAppSpec, deployment: Mapping[str, Any] | None,
                logger: Logger) -> rollout.Decision:  # fmt: skip
        meta = app["metadata"]
        # A missing token Secret (or key) is not the pair's fault: the Deployment's failure it causes (its progress
        # deadline) is kept from the decision, so the revision is not quarantined, and conditions say what to do.
        waiting = self._token_secret_problem(app, spec, deployment, logger)
        observed = _without_failure(deployment) if waiting else deployment
        examples = _version_examples(meta.get("annotations") or {}, spec)
        seen = rollout.Observation(spec=spec, revisions=parse_revisions(app.get("status")), deployment=observed,
                                   annotations=meta.get("annotations") or {}, now=now(),
                                   version_examples=examples is not None)  # fmt: skip
        decision = rollout.decide(seen)
        test = spec.rollout.smoke_test or examples
        if decision.smoke_due and test is not None:
            verdict = self.smokes.verdict(meta["name"], meta["namespace"], test, decision.effective, logger,
                                          token=self._smoke_token(app, spec, decision.effective))  # fmt: skip
            decision = rollout.decide(seen.with_smoke(verdict)) if verdict else decision
        if waiting and spec.auth is not None:
            found = status.token_secret_conditions(secret=spec.auth.secret_name, key=spec.auth.key,
                                                   namespace=meta["namespace"], kubelet=waiting)  # fmt: skip
            decision = dataclasses.replace(decision, conditions=[*decision.conditions, *found])
        return decision

    # -- endpoint authentication (spec.auth; docs/security.md) -------------------------------------------

    def smoke_key(self) -> bytes:
        """The operator's smoke-test key, from its own Secret (created once when missing); SmokeKeyUnavailable
        when there is no namespace to keep it in or the API server refuses."""
        with self._lock:
            if self._smoke_key is not None:
                return self._smoke_key
        namespace = self.config.operator_namespace or (
            kube.SA_NAMESPACE.read_text().strip() if kube.SA_NAMESPACE.is_file() else "")
        where = f"Secret {namespace or '<no namespace>'}/{self.config.smoke_key_secret}"
        if not namespace:
            raise SmokeKeyUnavailable(
                f"the operator has no namespace for its smoke-test key ({where}): set MODELAPP_OPERATOR_NAMESPACE "
                "(the chart does). A ModelApp with auth waits for it; what runs keeps running")
        try:
            key = kube.ensure_secret_key(self.config.smoke_key_secret, namespace)
        except kube.ApiError as exc:
            raise SmokeKeyUnavailable(
                f"the operator cannot read or create its smoke-test key, {where}: {exc}. The chart's Role grants "
                "get and create on it; a ModelApp with auth waits for it, what runs keeps running"
            ) from None
        with self._lock:
            self._smoke_key = self._smoke_key or key
            return self._smoke_key

    def _build_context(self, spec: ModelAppSpec) -> builders.BuildContext:
        """The build context, with the smoke key when this spec's pods must accept a smoke token (spec.auth)."""
        if spec.auth is None:
            return self._ctx
        return dataclasses.replace(self._ctx, smoke_key=self.smoke_key())

    def _smoke_token(self, app: Mapping[str, Any], spec: ModelAppSpec, pair: Pair) -> str | None:
        """The smoke token of this app's revision `pair` (None without auth): what its pods hold the digest of."""
        if spec.auth is None:
            return None
        return builders.smoke_token(self.smoke_key(), uid=str(app["metadata"]["uid"]), image=pair.image,
                                    uri=pair.uri, version=pair.version, sha256=pair.sha256)  # fmt: skip

    def _token_secret_problem(self, app: Mapping[str, Any], spec: ModelAppSpec,
                              deployment: Mapping[str, Any] | None, logger: Logger) -> str | None:  # fmt: skip
        """The kubelet's complaint about the token Secret while a ModelApp with auth rolls out (its pods are
        listed only then); until one is seen, and before the progress deadline, a pass again in a while."""
        if spec.auth is None or deployment is None:
            return None
        seen = status.read_rollout(deployment, spec)
        if seen.complete:
            return None
        meta = app["metadata"]
        pods = kube.list_objects("Pod", meta["namespace"], selector=builders.selector(meta["name"]))
        problem = status.token_secret_problem(pods, secret=spec.auth.secret_name)
        if problem is None and seen.failure is None:
            self._look_again(meta["name"], meta["namespace"], logger)
        return problem

    def _converge_soon(self, name: str, namespace: str, logger: Logger) -> None:
        """A pass of this ModelApp now, in the caller's thread (a smoke test's verdict is in; the smoke pool's
        future is read by no one either)."""
        self._timed_pass(name, namespace, logger)

    def _look_again_in(self, name: str, namespace: str, logger: Logger, delay: float) -> None:
        self._look_again(name, namespace, logger, delay=delay)

    def _look_again(self, name: str, namespace: str, logger: Logger, *, delay: float = TOKEN_RECHECK_SECONDS) -> None:
        """One pass of this ModelApp in `delay` seconds, in a child thread (`later.Later`: at most one pending per
        ModelApp, at the earliest time asked; whatever still needs a look asks again in that pass)."""
        again = functools.partial(self._timed_pass, name, namespace, logger)
        # kopf.event() and kopf's loggers read context variables: carry them into the pass, as kopf does.
        self._later.call((namespace, name), delay, functools.partial(contextvars.copy_context().run, again))

    def _timed_pass(self, name: str, namespace: str, logger: Logger) -> None:
        """A pass `_look_again` (or a smoke verdict) asked for. Its thread's future is read by no one: what it raises
        is logged here and tried again after kopf's own backoff for a handler that failed (an API error is handled
        in `converge`)."""
        try:
            self.converge(name=name, namespace=namespace, logger=logger, everything=False)
        except Exception:
            logger.exception(f"A pass of ModelApp {namespace}/{name} failed; trying again in "
                             f"{BUSY_RETRY_MAX_SECONDS:g} s.")  # fmt: skip
            self._look_again(name, namespace, logger, delay=BUSY_RETRY_MAX_SECONDS)

    @staticmethod
    def _logged(what: str, logger: Logger, work: functools.partial[None]) -> None:
        """`work` in a thread whose future is read by no one: what it raises is at least logged."""
        try:
            work()
        except Exception:
            logger.exception(f"{what} failed.")

    def _tls_secret_missing(self, app: Mapping[str, Any], spec: ModelAppSpec, logger: Logger) -> bool:
        """True when the TLS Secret of spec.ingress does not exist (docs/security.md, "Host names"): asked by a
        dry-run create, which reads nothing, at most every TLS_RECHECK_SECONDS while missing (then a pass is
        due, to see it appear) and every TLS_PRESENT_SECONDS once present. An answer the API server refuses
        (RBAC without the chart's rule, a webhook refusing dry runs) says nothing: not missing, and a warning."""
        secret = spec.ingress.tls_secret if spec.ingress is not None else None
        if not secret:
            return False
        meta, at = app["metadata"], time.monotonic()
        key = (meta["namespace"], secret)
        with self._lock:
            known = self._tls_seen.get(key)
        if known is not None and at < known[1]:
            missing = known[0]
        else:
            try:
                missing = not kube.name_taken("Secret", secret, meta["namespace"])
            except kube.ApiError as exc:
                logger.warning(f"Cannot tell whether the TLS Secret {meta['namespace']}/{secret} exists: {exc}")
                missing = False
            with self._lock:
                self._tls_seen[key] = (missing, at + (TLS_RECHECK_SECONDS if missing else TLS_PRESENT_SECONDS))
        if missing:
            self._look_again(meta["name"], meta["namespace"], logger, delay=TLS_RECHECK_SECONDS)
        return missing

    def _write_status(self, app: Mapping[str, Any], spec: ModelAppSpec, decision: rollout.Decision,
                      deployment: Mapping[str, Any] | None, service: Mapping[str, Any] | None, *,
                      ingress: Mapping[str, Any] | None = None, refused: tuple[str, str] | None = None,
                      tls_missing: bool = False, logger: Logger) -> tuple[rollout.Transition, ...] | None:  # fmt: skip
        """Write the status for this decision, when it changes and `pacing` says now (a change that only counts
        progress, or a new ModelApp's first status that only says "under way", may wait a moment). The
        transitions to announce now (those of a held first status wait for its write), or None when the
        ModelApp is gone: the revision history the next pass decides from is what the decision says unless None."""
        meta, old = app["metadata"], app.get("status") or {}
        new = status.compute_status(
            name=meta["name"], namespace=meta["namespace"], generation=meta.get("generation", 0), spec=spec,
            deployment=deployment, service=service, ingress=ingress, ingress_refused=refused, old=old, now=now(),
            tls_missing=tls_missing,
            overrides=decision.conditions,
            extra={"revisions": [r.to_status() for r in decision.revisions],
                   "effective": rollout.effective_status(decision)},
        )  # fmt: skip
        key = (meta["namespace"], meta["name"])
        plan = self.pacer.plan(key, str(meta.get("uid", "")), old=old, new=new, news=decision.transitions)
        if plan.wait is not None:  # a pass at the end of the interval writes what is true then
            self._look_again(meta["name"], meta["namespace"], logger, delay=plan.wait)
            return plan.news  # counts only (history unchanged), or held: the next passes decide from it
        if plan.patch is None:
            return plan.news
        written = self.remember(KIND, kube.patch_status(meta["name"], meta["namespace"], plan.patch))
        self.pacer.wrote(key)
        return plan.news if written is not None else None

    # -- children --------------------------------------------------------------------------------------

    def on_child(self, *, kind: str, event: str, body: Mapping[str, Any], owner: str, namespace: str,
                 logger: Logger) -> None:  # fmt: skip
        """A child's event, in a child thread: drift repair, then rollout progress and status."""
        with metrics.timed("child_event"):
            if self.store.deleting(KIND, namespace, owner) is None:
                return
            if kind != "Deployment":
                app = self.store.get(KIND, namespace, owner)
                if app is None:
                    return
                busy = (namespace, kind, body["metadata"]["name"])
                try:
                    with kube.throttle_budget(PASS_THROTTLE_SECONDS):
                        self.children.repair(kind=kind, event=event, body=body, app=app, logger=logger)
                    self._busy.pop(busy, None)
                except kube.Gone:
                    return  # the namespace is being deleted: its children go, and the ModelApp with them
                except kube.ApiError as exc:
                    child = f"{kind} {namespace}/{body['metadata']['name']}"
                    what = f"Cannot repair {child}: the API server"
                    if exc.status in (400, 422):  # as a pass's ChildRejected: the spec must change, not the time
                        self._busy.pop(busy, None)
                        logger.error(f"{what} refused the {kind} this ModelApp's spec builds ({exc}).")
                        return
                    delay = self._busy_delay(busy)  # one child's events are handled in order: no other counter
                    if kube.transient(exc):
                        logger.warning(f"{what} could not take a request ({exc}); trying again in {delay:g} s.")
                    else:  # a refusal (a quota on LoadBalancers, an admission policy) may be lifted
                        logger.error(f"{what} refused a request ({exc}); trying again in {delay:g} s.")
                    retry = functools.partial(self.on_child, kind=kind, event=event, body=body, owner=owner,
                                              namespace=namespace, logger=logger)  # fmt: skip
                    again = functools.partial(self._logged, f"A repair of {child}", logger, retry)
                    self._later.call(busy, delay, functools.partial(contextvars.copy_context().run, again))
                    return
            if kind in ("Deployment", "Service", "Ingress"):
                self.converge(name=owner, namespace=namespace, logger=logger, everything=False)


def _without_failure(deployment: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
    """The Deployment without the conditions that would fail its revision (progress deadline, replica failure)."""
    if deployment is None:
        return None
    kept = [c for c in (deployment.get("status") or {}).get("conditions") or []
            if not (c.get("reason") == "ProgressDeadlineExceeded" or c.get("type") == "ReplicaFailure")]  # fmt: skip
    return {**deployment, "status": {**(deployment.get("status") or {}), "conditions": kept}}


def _record_provenance(decision: rollout.Decision, spec: ModelAppSpec, facts: signatures.PairFacts) -> None:
    """Entries of the spec's model version carry its provenance (status.revisions), as the bump read it in
    the version's card: any answer traces back to the run that made its model."""
    model = facts.model_for(spec.model.uri, spec.model.version, spec.model.sha256)
    if model is None or model.provenance is None:
        return
    for entry in decision.revisions:
        if (entry.uri, entry.model, entry.sha256) == (model.uri, model.version, model.sha256) and not entry.provenance:
            entry.provenance = model.provenance.as_json()


def _version_examples(annotations: Mapping[str, str], spec: ModelAppSpec) -> smoke.VersionExamples | None:
    """The spec's version's own acceptance examples, when the bump recorded that it has some (its card's
    sha256, as the manifest pins it, in modelapp.io/pair-facts) for exactly this version."""
    facts = signatures.parse_facts(annotations.get(signatures.ANN_PAIR_FACTS))
    model = facts.model_for(spec.model.uri, spec.model.version, spec.model.sha256)
    return smoke.VersionExamples(model.card) if model is not None and model.examples and model.card else None


def _announce(raw: Mapping[str, Any], news: Sequence[rollout.Transition]) -> None:
    """Events for what the new status records (posted once: transitions come from the persisted history).
    `news`: the transitions of this write, oldest first; with a held first status's, a rollout that started and
    ended before the write posts its outcome alone (pacing.py)."""
    app = kopf.Body(cast(kopf.RawBody, dict(raw)))
    for i, t in enumerate(news):
        what = t.pair.describe()
        if t.after == OUTCOME_PROGRESSING and t.reason != "RollingBack":
            if any(u.pair == t.pair and u.before == OUTCOME_PROGRESSING for u in news[i + 1:]):
                continue  # its outcome, posted below, is the news: the status never said it was under way
            kopf.event(app, type="Normal", reason="RolloutStarted", message=f"rolling out {what}")
        elif t.after == OUTCOME_AVAILABLE and t.before == OUTCOME_PROGRESSING:
            kopf.event(app, type="Normal", reason="RolloutSucceeded", message=f"{what} is available")
        elif t.after == OUTCOME_FAILED:
            kopf.event(app, type="Warning", reason="RolloutFailed", message=f"{what}: {t.reason}: {t.message}"[:1024])
        elif t.after == OUTCOME_ROLLED_BACK:
            kopf.event(app, type="Normal", reason="ManualRollback", message=f"left {what}: {t.message}"[:1024])


def _rolled_back(raw: Mapping[str, Any], decision: rollout.Decision, logger: Logger) -> None:
    message = next((c.message for c in decision.conditions if c.type == ROLLED_BACK), "")
    logger.warning(f"Rolled back: {message}")
    kopf.event(kopf.Body(cast(kopf.RawBody, dict(raw))), type="Warning", reason="RolledBack", message=message[:1024])


__all__ = ["CHILD_THREADS", "Engine"]
