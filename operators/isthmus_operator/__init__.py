"""The Isthmus operator: ``Tenant`` and ``EdgeRollout`` custom resources (group ``isthmus.dev``).

Layout (pure logic first, edges last):

- :mod:`.specs`     — the CRD specs as pydantic models; semantic checks the schema cannot make
- :mod:`.builders`  — pure ``build_*() -> dict`` for every object or patch the operator writes
- :mod:`.rollout`   — pure wave planning, gate evaluation and the rollout state machine
- :mod:`.retrieval` — the retrieval tenant registry port (gRPC adapter + in-memory fake)
- :mod:`.kube`      — the few Kubernetes API calls, and the ConfigMap metrics source
- :mod:`.handlers`  — thin kopf handlers, registered into a registry with injected dependencies
- :mod:`.__main__`  — the composition root (``isthmus-operator``)
"""
