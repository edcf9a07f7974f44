"""Identity and access: who calls (:mod:`.identity`, :mod:`.tokens`), what each RPC needs
(:mod:`.methods`), who may do what in which tenant (:mod:`.policy`, bindings from :mod:`.access_file`),
per-tenant quotas (:mod:`.quotas`), the audit trail (:mod:`.audit`), and the gRPC edge that applies them
all (:mod:`.interceptor`). The pure parts (identity, methods) import no I/O library."""
