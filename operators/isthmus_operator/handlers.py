"""kopf handlers: thin. Each translates kopf's arguments, calls :mod:`.reconcile`, and writes the status.

Nothing registers at import time: :func:`register` puts the handlers into the registry it is given,
closed over the injected :class:`~isthmus_operator.reconcile.Dependencies` (real clients in
``__main__``, a test API server and fakes in the tests).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import kopf
from kubernetes import client

from isthmus_core.errors import IsthmusError
from isthmus_operator import drill
from isthmus_operator.names import (
    DRILL_PLURAL,
    FINALIZER,
    GROUP,
    KOPF_PREFIX,
    ROLLOUT_PLURAL,
    TENANT_PLURAL,
    VERSION,
)
from isthmus_operator.reconcile import (
    Dependencies,
    Outcome,
    finalize_tenant,
    heal_drill,
    reconcile_drill,
    reconcile_rollout,
    reconcile_tenant,
    render_access,
)
from isthmus_operator.rollout import TERMINAL_PHASES as ROLLOUT_TERMINAL_PHASES
from isthmus_operator.specs import parse_drill

Logger = logging.Logger | logging.LoggerAdapter[Any]


def unfinished(terminal: tuple[str, ...]) -> Callable[..., bool]:
    """kopf ``when=`` filter: the object's phase is not final.

    kopf puts its finalizer on every object a timer or a deletion handler matches, and takes it off once
    none matches: a finished EdgeRollout or FailoverDrill (nothing left to step, scale back or heal) then
    holds no finalizer, so it — and its namespace — can be deleted even after the operator is uninstalled.
    Only a running one keeps the operator's finalizer."""

    def when(*, status: kopf.Status, **_: Any) -> bool:
        return status.get("phase") not in terminal

    return when


def _write(body: kopf.Body, patch: kopf.Patch, outcome: Outcome, logger: Logger) -> None:
    for key, value in outcome.status.items():
        patch.status[key] = value
    for event in outcome.events:
        logger.info(f"{event.reason}: {event.message}")
        kopf.event(body, type=event.type, reason=event.reason, message=event.message)


def connection_info(cfg: client.Configuration) -> kopf.ConnectionInfo:
    """kopf's credentials from the official client's configuration (kubeconfig or service account)."""
    # the token getter runs the client's refresh hook (rotated service-account tokens)
    header = cfg.get_api_key_with_prefix("BearerToken") or cfg.get_api_key_with_prefix("authorization")
    scheme, _, token = (header or "").rpartition(" ")
    return kopf.ConnectionInfo(
        server=cfg.host,
        ca_path=cfg.ssl_ca_cert,
        insecure=not cfg.verify_ssl,
        scheme=scheme or ("Bearer" if token else None),
        token=token or None,
        certificate_path=cfg.cert_file,
        private_key_path=cfg.key_file,
    )


def configure(settings: kopf.OperatorSettings) -> None:
    """Our finalizer and kopf's bookkeeping in ``isthmus.dev/…`` annotations (the status schema is strict)."""
    settings.persistence.finalizer = FINALIZER
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=KOPF_PREFIX)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=KOPF_PREFIX, key="last-handled-configuration"
    )
    # no dynamic discovery of CRDs/namespaces: needs no cluster-wide list/watch on CRDs (least privilege);
    # the CRDs must exist when the operator starts (Helm installs crds/ before the Deployment)
    settings.scanning.disabled = True


def register(
    registry: kopf.OperatorRegistry,
    deps: Dependencies,
    *,
    rollout_interval_s: float,
    retry_delay_s: float,
    regions_interval_s: float = 30.0,
    drill_interval_s: float = 1.0,
) -> None:
    """Register every handler of the operator into ``registry``."""

    @kopf.on.startup(id="configure", registry=registry)
    def startup(*, settings: kopf.OperatorSettings, **_: Any) -> None:
        configure(settings)

    @kopf.on.login(id="login", registry=registry)
    def login(**_: Any) -> kopf.ConnectionInfo:
        # kopf watches with the same credentials as our client (a fresh registry has no default login)
        return connection_info(deps.kube.configuration)

    @kopf.on.cleanup(id="close-clients", registry=registry)
    async def cleanup(**_: Any) -> None:
        if deps.tenants is not None:
            await deps.tenants.close()
        if deps.policies is not None:
            await deps.policies.close()
        for clients in deps.regions.values():
            await clients.close()

    @kopf.on.resume(GROUP, VERSION, TENANT_PLURAL, id="tenant", registry=registry)
    @kopf.on.create(GROUP, VERSION, TENANT_PLURAL, id="tenant", registry=registry)
    @kopf.on.update(GROUP, VERSION, TENANT_PLURAL, id="tenant", field="spec", registry=registry)
    async def tenant(
        *,
        name: str,
        namespace: str | None,
        uid: str,
        spec: kopf.Spec,
        status: kopf.Status,
        meta: kopf.Meta,
        body: kopf.Body,
        patch: kopf.Patch,
        logger: Logger,
        **_: Any,
    ) -> None:
        generation = int(meta.get("generation", 0))
        outcome = await reconcile_tenant(deps, name, namespace or "default", uid, spec, status, generation)
        _write(body, patch, outcome, logger)
        if outcome.retry is not None:
            kopf.event(body, type="Warning", reason="Retrying", message=outcome.retry)
            raise kopf.TemporaryError(outcome.retry, delay=retry_delay_s)

    if deps.regions:

        @kopf.timer(
            GROUP,
            VERSION,
            TENANT_PLURAL,
            id="tenant-regions",
            interval=regions_interval_s,
            initial_delay=regions_interval_s,
            registry=registry,
        )
        async def tenant_regions(
            *,
            name: str,
            namespace: str | None,
            uid: str,
            spec: kopf.Spec,
            status: kopf.Status,
            meta: kopf.Meta,
            body: kopf.Body,
            patch: kopf.Patch,
            logger: Logger,
            **_: Any,
        ) -> None:
            """Re-ensure the tenant in its regions and refresh status.regions (readiness, lag)."""
            generation = int(meta.get("generation", 0))
            outcome = await reconcile_tenant(
                deps, name, namespace or "default", uid, spec, status, generation
            )
            _write(body, patch, outcome, logger)
            if outcome.retry is not None:
                logger.warning(
                    f"tenant regions not all reachable, retrying at the next tick: {outcome.retry}"
                )

    if deps.access is not None:

        @kopf.on.resume(GROUP, VERSION, TENANT_PLURAL, id="access", registry=registry)
        @kopf.on.create(GROUP, VERSION, TENANT_PLURAL, id="access", registry=registry)
        @kopf.on.update(GROUP, VERSION, TENANT_PLURAL, id="access", field="spec", registry=registry)
        @kopf.on.delete(GROUP, VERSION, TENANT_PLURAL, id="access-cleanup", registry=registry)
        async def tenant_access(*, namespace: str | None, body: kopf.Body, logger: Logger, **_: Any) -> None:
            """The namespace's access file (every Tenant's bindings and quota) re-rendered."""
            try:
                note = await render_access(deps, namespace or "default")
            except IsthmusError as exc:
                message = f"cannot write the access file yet: {exc.reason}"
                kopf.event(body, type="Warning", reason="AccessRetrying", message=message)
                raise kopf.TemporaryError(message, delay=retry_delay_s) from exc
            logger.info(note)

    @kopf.on.delete(GROUP, VERSION, TENANT_PLURAL, id="tenant-cleanup", registry=registry)
    async def tenant_deleted(
        *, name: str, namespace: str | None, spec: kopf.Spec, body: kopf.Body, logger: Logger, **_: Any
    ) -> None:
        try:
            notes = await finalize_tenant(deps, name, namespace or "default", spec)
        except IsthmusError as exc:
            message = f"cannot clean up tenant {name!r} yet: {exc.reason}"
            kopf.event(body, type="Warning", reason="CleanupRetrying", message=message)
            raise kopf.TemporaryError(message, delay=retry_delay_s) from exc
        for note in notes:
            logger.info(note)
            kopf.event(body, type="Normal", reason="CleanedUp", message=note)

    @kopf.timer(
        GROUP,
        VERSION,
        ROLLOUT_PLURAL,
        id="rollout",
        interval=rollout_interval_s,
        when=unfinished(ROLLOUT_TERMINAL_PHASES),
        registry=registry,
    )
    async def rollout(
        *,
        name: str,
        namespace: str | None,
        spec: kopf.Spec,
        status: kopf.Status,
        meta: kopf.Meta,
        body: kopf.Body,
        patch: kopf.Patch,
        logger: Logger,
        **_: Any,
    ) -> None:
        generation = int(meta.get("generation", 0))
        outcome = await reconcile_rollout(deps, name, namespace or "default", spec, status, generation)
        _write(body, patch, outcome, logger)
        if outcome.retry is not None:
            logger.warning(f"rollout step failed, retrying at the next tick: {outcome.retry}")

    @kopf.timer(
        GROUP,
        VERSION,
        DRILL_PLURAL,
        id="drill",
        interval=drill_interval_s,
        when=unfinished(drill.TERMINAL_PHASES),
        registry=registry,
    )
    async def failover_drill(
        *,
        name: str,
        namespace: str | None,
        spec: kopf.Spec,
        status: kopf.Status,
        meta: kopf.Meta,
        body: kopf.Body,
        patch: kopf.Patch,
        logger: Logger,
        **_: Any,
    ) -> None:
        generation = int(meta.get("generation", 0))
        outcome = await reconcile_drill(deps, name, namespace or "default", spec, status, generation)
        _write(body, patch, outcome, logger)
        if outcome.retry is not None:
            logger.warning(f"drill step failed, replayed at the next tick: {outcome.retry}")

    @kopf.on.delete(
        GROUP,
        VERSION,
        DRILL_PLURAL,
        id="drill-cleanup",
        when=unfinished(drill.TERMINAL_PHASES),
        registry=registry,
    )
    async def failover_drill_deleted(
        *, name: str, namespace: str | None, spec: kopf.Spec, body: kopf.Body, logger: Logger, **_: Any
    ) -> None:
        """A drill deleted mid-run leaves no region scaled down."""
        try:
            parsed = parse_drill(name, spec)
        except IsthmusError:
            return  # an invalid drill never touched anything
        try:
            healed = await heal_drill(deps, name, namespace or "default", parsed)
        except IsthmusError as exc:
            message = f"cannot scale back what drill {name!r} scaled down yet: {exc.reason}"
            kopf.event(body, type="Warning", reason="CleanupRetrying", message=message)
            raise kopf.TemporaryError(message, delay=retry_delay_s) from exc
        for note in healed:
            logger.info(f"scaled back: {note}")
