"""The Isthmus operator: ``Tenant``, ``EdgeRollout`` and ``FailoverDrill`` custom resources (group
``isthmus.dev``).

Layout (pure logic first, edges last):

- :mod:`.specs`     — the CRD specs as pydantic models; semantic checks the schema cannot make
- :mod:`.builders`  — pure ``build_*() -> dict`` for every object or patch the operator writes, and the
  per-region plan of a Tenant
- :mod:`.rollout`   — pure wave planning, gate evaluation and the rollout state machine
- :mod:`.drill`     — pure step → API-call planning, patches and status transitions of a FailoverDrill
- :mod:`.measure`   — pure replication measurements (documents behind, RPO seconds, timestamps)
- :mod:`.retrieval` — the retrieval tenant registry port (gRPC adapter + in-memory fake)
- :mod:`.regional`  — a region's clients: tenant registry, documents and health ports (gRPC + fakes)
- :mod:`.kube`      — the few Kubernetes API calls, and the ConfigMap metrics source
- :mod:`.reconcile` — what the handlers do, without kopf (read, decide with the pure modules, write)
- :mod:`.handlers`  — thin kopf handlers, registered into a registry with injected dependencies
- :mod:`.__main__`  — the composition root (``isthmus-operator``)
"""
