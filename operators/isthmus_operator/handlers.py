"""kopf handlers: thin. Each translates kopf's arguments, calls :mod:`.reconcile`, and writes the status.

Nothing registers at import time: :func:`register` puts the handlers into the registry it is given,
closed over the injected :class:`~isthmus_operator.reconcile.Dependencies` (real clients in
``__main__``, a test API server and fakes in the tests).
"""

from __future__ import annotations

import logging
from typing import Any

import kopf

from isthmus_core.errors import IsthmusError
from isthmus_operator.names import FINALIZER, GROUP, KOPF_PREFIX, ROLLOUT_PLURAL, TENANT_PLURAL, VERSION
from isthmus_operator.reconcile import (
    Dependencies,
    Outcome,
    finalize_tenant,
    reconcile_rollout,
    reconcile_tenant,
)

Logger = logging.Logger | logging.LoggerAdapter[Any]


def _write(patch: kopf.Patch, outcome: Outcome, logger: Logger) -> None:
    for key, value in outcome.status.items():
        patch.status[key] = value
    for event in outcome.events:
        logger.info(event)


def configure(settings: kopf.OperatorSettings) -> None:
    """Our finalizer and kopf's bookkeeping in ``isthmus.dev/…`` annotations (the status schema is strict)."""
    settings.persistence.finalizer = FINALIZER
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=KOPF_PREFIX)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=KOPF_PREFIX, key="last-handled-configuration"
    )
    settings.posting.level = logging.INFO


def register(
    registry: kopf.OperatorRegistry,
    deps: Dependencies,
    *,
    rollout_interval_s: float,
    retry_delay_s: float,
) -> None:
    """Register every handler of the operator into ``registry``."""

    @kopf.on.startup(registry=registry)
    def startup(*, settings: kopf.OperatorSettings, **_: Any) -> None:
        configure(settings)

    @kopf.on.cleanup(registry=registry)
    async def cleanup(**_: Any) -> None:
        if deps.tenants is not None:
            await deps.tenants.close()

    @kopf.on.resume(GROUP, VERSION, TENANT_PLURAL, registry=registry)
    @kopf.on.create(GROUP, VERSION, TENANT_PLURAL, registry=registry)
    @kopf.on.update(GROUP, VERSION, TENANT_PLURAL, field="spec", registry=registry)
    async def tenant(
        *,
        name: str,
        namespace: str | None,
        uid: str,
        spec: kopf.Spec,
        status: kopf.Status,
        meta: kopf.Meta,
        patch: kopf.Patch,
        logger: Logger,
        **_: Any,
    ) -> None:
        generation = int(meta.get("generation", 0))
        outcome = await reconcile_tenant(deps, name, namespace or "default", uid, spec, status, generation)
        _write(patch, outcome, logger)
        if outcome.retry is not None:
            raise kopf.TemporaryError(outcome.retry, delay=retry_delay_s)

    @kopf.on.delete(GROUP, VERSION, TENANT_PLURAL, registry=registry)
    async def tenant_deleted(
        *, name: str, namespace: str | None, spec: kopf.Spec, logger: Logger, **_: Any
    ) -> None:
        try:
            notes = await finalize_tenant(deps, name, namespace or "default", spec)
        except IsthmusError as exc:
            message = f"cannot clean up tenant {name!r} yet: {exc.reason}"
            raise kopf.TemporaryError(message, delay=retry_delay_s) from exc
        for note in notes:
            logger.info(note)

    @kopf.timer(GROUP, VERSION, ROLLOUT_PLURAL, interval=rollout_interval_s, registry=registry)
    async def rollout(
        *,
        name: str,
        namespace: str | None,
        spec: kopf.Spec,
        status: kopf.Status,
        meta: kopf.Meta,
        patch: kopf.Patch,
        logger: Logger,
        **_: Any,
    ) -> None:
        generation = int(meta.get("generation", 0))
        outcome = await reconcile_rollout(deps, name, namespace or "default", spec, status, generation)
        _write(patch, outcome, logger)
        if outcome.retry is not None:
            logger.warning(f"rollout step failed, retrying at the next tick: {outcome.retry}")
