"""The auth interceptor on a real grpc.aio server (GrpcServer): authentication, the RPC table, tenants
(client streams too), ACL scopes and impersonation, quotas, audit records, exempt methods, auth off.

Tokens come from a local issuer with a real key; the servicers are tiny fakes of the real services
(generated base classes, so the methods are the real full names the access table lists)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_status import rpc_status

from isthmus.common.v1 import common_pb2
from isthmus.embedding.v1 import embedding_pb2, embedding_pb2_grpc
from isthmus.evaluation.v1 import evaluation_pb2, evaluation_pb2_grpc
from isthmus.guardrail.v1 import guardrail_pb2, guardrail_pb2_grpc
from isthmus.ingestion.v1 import ingestion_pb2, ingestion_pb2_grpc
from isthmus.retrieval.v1 import retrieval_pb2, retrieval_pb2_grpc
from isthmus_core.auth.context import current_principal
from isthmus_core.auth.identity import ROLE_PERMISSIONS, Permission, Principal, Role
from isthmus_core.auth.local_issuer import ISSUER, LocalIssuer
from isthmus_core.auth.stack import AuthStack, ListAudit, NoQuotas
from isthmus_core.auth.tokens import JwtVerifier, StaticJwks
from isthmus_core.errors import AlreadyExists, QuotaExceeded
from isthmus_core.grpc.server import GrpcServer

R = retrieval_pb2
SERVICES = [
    "isthmus.retrieval.v1.RetrievalService",
    "isthmus.ingestion.v1.IngestionService",
    "isthmus.embedding.v1.EmbeddingService",
    "isthmus.evaluation.v1.EvaluationService",
    "isthmus.guardrail.v1.GuardrailService",
    "test.Echo",
]
ECHO = "/test.Echo/Ping"

BINDINGS: dict[tuple[str, str], frozenset[Permission]] = {
    ("alice", "acme"): ROLE_PERMISSIONS[Role.READER],
    ("alice", "busy"): ROLE_PERMISSIONS[Role.READER],
    ("bob", "acme"): ROLE_PERMISSIONS[Role.WRITER],
    ("carol", "acme"): ROLE_PERMISSIONS[Role.TENANT_ADMIN],
    ("root", "*"): ROLE_PERMISSIONS[Role.PLATFORM_ADMIN],
    ("group:auditors", "acme"): ROLE_PERMISSIONS[Role.AUDITOR],
}


class Bindings:
    def allowed(self, principal: Principal, tenant: str | None, permission: Permission) -> bool:
        return any(
            permission in BINDINGS.get((n, "*"), frozenset())
            or (tenant is not None and permission in BINDINGS.get((n, tenant), frozenset()))
            for n in principal.names
        )

    def allowed_anywhere(self, principal: Principal, permission: Permission) -> bool:
        return any(n in principal.names and permission in p for (n, _), p in BINDINGS.items())

    def tenants(self, principal: Principal, permission: Permission) -> frozenset[str] | None:
        return None


class BusyQuotas(NoQuotas):
    def check_rate(self, tenant: str, family: str) -> None:
        if tenant == "busy":
            raise QuotaExceeded(
                f"tenant {tenant!r} is past its {family} rate", [(f"{tenant}/{family}", "5 per second")], 0.2
            )


# --- tiny servicers: what the handler saw -----------------------------------------------------------------


class Seen:
    def __init__(self) -> None:
        self.principals: list[Principal | None] = []
        self.scopes: list[list[str]] = []
        self.headers: list[str] = []


class Retrieval(retrieval_pb2_grpc.RetrievalServiceServicer):
    def __init__(self, seen: Seen) -> None:
        self.seen = seen

    async def Search(self, request: Any, context: Any) -> Any:
        self.seen.principals.append(current_principal())
        self.seen.scopes.append(list(request.access.principals))
        return R.SearchResponse(model_id="m")

    async def CreateTenant(self, request: Any, context: Any) -> Any:
        if request.tenant_id == "taken":
            raise AlreadyExists(f"tenant {request.tenant_id!r} exists")
        return R.Tenant(tenant_id=request.tenant_id)


class Ingestion(ingestion_pb2_grpc.IngestionServiceServicer):
    def __init__(self, seen: Seen) -> None:
        self.seen = seen

    async def Upload(self, requests: Any, context: Any) -> Any:
        size = 0
        async for r in requests:
            if r.HasField("header"):
                self.seen.headers.append(r.header.tenant_id)
            size += len(r.data)
        return ingestion_pb2.UploadResponse(document_id="doc-1", chunk_count=size)

    async def WatchDocuments(self, request: Any, context: Any) -> AsyncIterator[Any]:
        self.seen.principals.append(current_principal())
        for _ in range(2):
            yield ingestion_pb2.DocumentEvent(document=ingestion_pb2.Document(tenant_id=request.tenant_id))


class Embedding(embedding_pb2_grpc.EmbeddingServiceServicer):
    async def Embed(self, request: Any, context: Any) -> Any:
        p = current_principal()
        return embedding_pb2.EmbedResponse(model_id=p.subject if p else "")


class Evaluation(evaluation_pb2_grpc.EvaluationServiceServicer):
    async def RunEval(self, request: Any, context: Any) -> AsyncIterator[Any]:
        yield evaluation_pb2.EvalEvent(progress=evaluation_pb2.EvalProgress(phase="ingest"))


class Guardrail(guardrail_pb2_grpc.GuardrailServiceServicer):
    async def CheckOutputStream(self, requests: Any, context: Any) -> AsyncIterator[Any]:
        async for r in requests:
            if r.HasField("sentence"):
                yield common_pb2.Verdict(text=r.sentence.text)


def _ping(request: bytes, context: grpc.aio.ServicerContext) -> Any:
    async def run() -> bytes:
        return b"pong"

    return run()


def _identity(b: bytes) -> bytes:
    return b


def register(seen: Seen) -> Any:
    def add(server: grpc.aio.Server) -> None:
        retrieval_pb2_grpc.add_RetrievalServiceServicer_to_server(Retrieval(seen), server)
        ingestion_pb2_grpc.add_IngestionServiceServicer_to_server(Ingestion(seen), server)
        embedding_pb2_grpc.add_EmbeddingServiceServicer_to_server(Embedding(), server)
        evaluation_pb2_grpc.add_EvaluationServiceServicer_to_server(Evaluation(), server)
        guardrail_pb2_grpc.add_GuardrailServiceServicer_to_server(Guardrail(), server)
        handlers = {"Ping": grpc.unary_unary_rpc_method_handler(_ping, _identity, _identity)}
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("test.Echo", handlers),))

    return add


# --- fixtures --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def issuer(tmp_path_factory: pytest.TempPathFactory) -> LocalIssuer:
    return LocalIssuer(tmp_path_factory.mktemp("auth") / "local-issuer.pem")


def stack_for(issuer: LocalIssuer, **kw: Any) -> AuthStack:
    verifier = JwtVerifier(
        issuer=ISSUER, audience="isthmus", algorithms=["ES256"], keys=StaticJwks(issuer.jwks()), via="local"
    )
    return AuthStack(verifier, Bindings(), BusyQuotas(), ListAudit(), region="eu", **kw)


class Platform:
    def __init__(self, server: GrpcServer, seen: Seen, audit: ListAudit, issuer: LocalIssuer) -> None:
        self.server, self.seen, self.audit, self.issuer = server, seen, audit, issuer
        self.channel = grpc.aio.insecure_channel(server.address)

    def md(self, subject: str, groups: Sequence[str] = ()) -> list[tuple[str, str]]:
        return [("authorization", f"Bearer {self.issuer.mint(subject, groups)}")]

    @property
    def retrieval(self) -> Any:
        return retrieval_pb2_grpc.RetrievalServiceStub(self.channel)

    @property
    def ingestion(self) -> Any:
        return ingestion_pb2_grpc.IngestionServiceStub(self.channel)

    def kinds(self) -> list[tuple[str, str, str, str]]:
        return [(r.kind, r.principal, r.tenant_id, r.outcome) for r in self.audit.records]


async def _platform(stack: AuthStack, issuer: LocalIssuer) -> AsyncIterator[Platform]:
    seen = Seen()
    server = GrpcServer("127.0.0.1", 0, auth=stack)
    server.add([register(seen)], SERVICES)
    await server.start()
    await server.set_serving()
    assert isinstance(stack.audit, ListAudit)
    p = Platform(server, seen, stack.audit, issuer)
    try:
        yield p
    finally:
        await p.channel.close()
        await server.stop(0)


@pytest.fixture
async def platform(issuer: LocalIssuer) -> AsyncIterator[Platform]:
    async for p in _platform(stack_for(issuer, exempt_methods=frozenset({ECHO})), issuer):
        yield p


@pytest.fixture
async def strict(issuer: LocalIssuer) -> AsyncIterator[Platform]:
    """No exempt methods."""
    async for p in _platform(stack_for(issuer), issuer):
        yield p


async def status_of(call: Any) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call
    return info.value.code(), info.value.details() or ""


def search(tenant: str = "acme", principals: Sequence[str] = ()) -> Any:
    return R.SearchRequest(tenant_id=tenant, query="q", access=common_pb2.AccessScope(principals=principals))


# --- authentication --------------------------------------------------------------------------------------


async def test_no_token_is_unauthenticated_and_audited(platform: Platform) -> None:
    code, details = await status_of(platform.retrieval.Search(search()))
    assert code == grpc.StatusCode.UNAUTHENTICATED
    assert "no bearer token" in details
    assert platform.seen.principals == []
    [record] = platform.audit.records
    assert (record.kind, record.outcome, record.principal, record.tenant_id) == (
        "authentication_failed",
        "denied",
        "",
        "",
    )
    assert record.method == "/isthmus.retrieval.v1.RetrievalService/Search"
    assert record.peer and record.region == "eu" and record.reason == details


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("Basic YWxpY2U6cHc=", "not 'Bearer <token>'"),
        ("Bearer ", "the bearer token is empty"),
        ("Bearer not-a-jwt", "malformed token"),
        ("Bearer a.b.c", "malformed token"),
    ],
)
async def test_bad_credentials_are_unauthenticated(platform: Platform, value: str, reason: str) -> None:
    code, details = await status_of(platform.retrieval.Search(search(), metadata=[("authorization", value)]))
    assert code == grpc.StatusCode.UNAUTHENTICATED
    assert reason in details


async def test_expired_and_foreign_tokens(platform: Platform, tmp_path: Path) -> None:
    expired = platform.issuer.mint("alice", ttl_s=60, now=1_000_000)
    code, details = await status_of(
        platform.retrieval.Search(search(), metadata=[("authorization", f"Bearer {expired}")])
    )
    assert (code, details) == (grpc.StatusCode.UNAUTHENTICATED, "expired token")
    foreign = LocalIssuer(tmp_path / "other.pem").mint("alice")
    code, details = await status_of(
        platform.retrieval.Search(search(), metadata=[("authorization", f"Bearer {foreign}")])
    )
    assert code == grpc.StatusCode.UNAUTHENTICATED and details.startswith("unknown key")
    assert expired not in details and foreign not in details


async def test_a_verified_caller_runs_as_itself(platform: Platform) -> None:
    token = platform.issuer.mint("alice", ["analysts"])
    await platform.retrieval.Search(search(), metadata=[("authorization", f"bearer {token}")])  # any case
    [p] = platform.seen.principals
    assert p is not None and (p.subject, p.groups, p.via, p.token) == ("alice", ("analysts",), "local", token)
    assert platform.audit.records == []


async def test_health_reflection_and_exempt_methods_need_no_token(
    platform: Platform, strict: Platform
) -> None:
    health = health_pb2_grpc.HealthStub(platform.channel)
    ok = await health.Check(health_pb2.HealthCheckRequest(service=""))
    assert ok.status == health_pb2.HealthCheckResponse.SERVING
    ping = platform.channel.unary_unary(ECHO, request_serializer=_identity, response_deserializer=_identity)
    assert await ping(b"") == b"pong"
    # without the exemption, a method missing from the access table is refused, token or not
    strict_ping = strict.channel.unary_unary(
        ECHO, request_serializer=_identity, response_deserializer=_identity
    )
    code, _ = await status_of(strict_ping(b""))
    assert code == grpc.StatusCode.UNAUTHENTICATED
    code, details = await status_of(strict_ping(b"", metadata=strict.md("root")))
    assert code == grpc.StatusCode.PERMISSION_DENIED and "no access rule" in details


# --- authorization ---------------------------------------------------------------------------------------


async def test_wrong_tenant_is_denied_without_saying_whether_it_exists(platform: Platform) -> None:
    code, globex = await status_of(platform.retrieval.Search(search("globex"), metadata=platform.md("alice")))
    assert code == grpc.StatusCode.PERMISSION_DENIED
    _, nowhere = await status_of(platform.retrieval.Search(search("nowhere"), metadata=platform.md("alice")))
    assert globex.replace("globex", "T") == nowhere.replace("nowhere", "T")
    assert "exist" not in globex
    assert platform.seen.principals == []
    assert platform.kinds() == [
        ("permission_denied", "alice", "globex", "denied"),
        ("permission_denied", "alice", "nowhere", "denied"),
    ]


async def test_wrong_role_is_denied_admin_actions_are_audited(platform: Platform) -> None:
    code, details = await status_of(
        platform.retrieval.CreateTenant(R.CreateTenantRequest(tenant_id="new"), metadata=platform.md("alice"))
    )
    assert code == grpc.StatusCode.PERMISSION_DENIED and "tenants.admin" in details
    await platform.retrieval.CreateTenant(
        R.CreateTenantRequest(tenant_id="new"), metadata=platform.md("root")
    )
    code, _ = await status_of(
        platform.retrieval.CreateTenant(
            R.CreateTenantRequest(tenant_id="taken"), metadata=platform.md("root")
        )
    )
    assert code == grpc.StatusCode.ALREADY_EXISTS
    assert platform.kinds() == [
        ("permission_denied", "alice", "new", "denied"),
        ("admin_action", "root", "new", "ok"),
        ("admin_action", "root", "taken", "failed"),
    ]
    assert "exists" in platform.audit.records[-1].reason


async def test_groups_grant_roles(platform: Platform) -> None:
    md = platform.md("dave", ["auditors"])  # auditors may read acme's tenant, not search it
    code, _ = await status_of(platform.retrieval.Search(search(), metadata=md))
    assert code == grpc.StatusCode.PERMISSION_DENIED


async def test_tenantless_methods_follow_when_empty(platform: Platform) -> None:
    embedding = embedding_pb2_grpc.EmbeddingServiceStub(platform.channel)
    # Embed: the permission in any tenant
    r = await embedding.Embed(embedding_pb2.EmbedRequest(texts=["x"]), metadata=platform.md("alice"))
    assert r.model_id == "alice"
    code, details = await status_of(
        embedding.Embed(embedding_pb2.EmbedRequest(texts=["x"]), metadata=platform.md("dave"))
    )
    assert code == grpc.StatusCode.PERMISSION_DENIED and "in any tenant" in details
    # RunEval: the permission for every tenant
    evaluation = evaluation_pb2_grpc.EvaluationServiceStub(platform.channel)
    request = evaluation_pb2.RunEvalRequest(dataset_path="d")
    events = [e async for e in evaluation.RunEval(request, metadata=platform.md("root"))]
    assert len(events) == 1
    code, details = await status_of(_drain(evaluation.RunEval(request, metadata=platform.md("carol"))))
    assert code == grpc.StatusCode.PERMISSION_DENIED and "for every tenant" in details


async def _drain(call: Any) -> list[Any]:
    return [item async for item in call]


async def test_server_streams_are_authorized_before_they_start(platform: Platform) -> None:
    request = ingestion_pb2.WatchDocumentsRequest(tenant_id="acme")
    events = await _drain(platform.ingestion.WatchDocuments(request, metadata=platform.md("alice")))
    assert [e.document.tenant_id for e in events] == ["acme", "acme"]
    other = ingestion_pb2.WatchDocumentsRequest(tenant_id="globex")
    code, _ = await status_of(_drain(platform.ingestion.WatchDocuments(other, metadata=platform.md("alice"))))
    assert code == grpc.StatusCode.PERMISSION_DENIED
    assert [p.subject for p in platform.seen.principals if p] == ["alice"]


# --- client streams --------------------------------------------------------------------------------------


def upload(*tenants: str, data: bytes = b"hello") -> Iterator[Any]:
    for tenant in tenants:
        yield ingestion_pb2.UploadRequest(
            header=ingestion_pb2.UploadHeader(tenant_id=tenant, filename="a.txt")
        )
        yield ingestion_pb2.UploadRequest(data=data)


async def test_client_streams_take_the_tenant_from_the_first_message(platform: Platform) -> None:
    r = await platform.ingestion.Upload(upload("acme"), metadata=platform.md("bob"))
    assert r.chunk_count == 5 and platform.seen.headers == ["acme"]
    code, _ = await status_of(platform.ingestion.Upload(upload("globex"), metadata=platform.md("bob")))
    assert code == grpc.StatusCode.PERMISSION_DENIED
    code, _ = await status_of(platform.ingestion.Upload(upload("acme"), metadata=platform.md("alice")))
    assert code == grpc.StatusCode.PERMISSION_DENIED  # a reader may not upload
    assert platform.seen.headers == ["acme"]


async def test_a_client_stream_without_a_token_is_unauthenticated(platform: Platform) -> None:
    code, _ = await status_of(platform.ingestion.Upload(upload("acme", data=b"x" * 100_000)))
    assert code == grpc.StatusCode.UNAUTHENTICATED
    assert platform.seen.headers == []


async def test_a_later_message_naming_another_tenant_is_refused(platform: Platform) -> None:
    code, details = await status_of(
        platform.ingestion.Upload(upload("acme", "globex"), metadata=platform.md("bob"))
    )
    assert code == grpc.StatusCode.PERMISSION_DENIED
    assert "names tenant 'globex'" in details
    assert platform.seen.headers == ["acme"]  # the handler never saw the second header
    assert platform.kinds()[-1] == ("permission_denied", "bob", "acme", "denied")
    # the same tenant twice is fine
    await platform.ingestion.Upload(upload("acme", "acme"), metadata=platform.md("bob"))


async def test_bidi_streams(platform: Platform) -> None:
    guardrail = guardrail_pb2_grpc.GuardrailServiceStub(platform.channel)

    def messages(tenant: str) -> Iterator[Any]:
        yield guardrail_pb2.CheckOutputStreamRequest(header=guardrail_pb2.CheckOutputHeader(tenant_id=tenant))
        yield guardrail_pb2.CheckOutputStreamRequest(sentence=common_pb2.AnswerSentence(text="s1"))

    verdicts = await _drain(guardrail.CheckOutputStream(messages("acme"), metadata=platform.md("alice")))
    assert [v.text for v in verdicts] == ["s1"]
    code, _ = await status_of(
        _drain(guardrail.CheckOutputStream(messages("globex"), metadata=platform.md("alice")))
    )
    assert code == grpc.StatusCode.PERMISSION_DENIED


# --- document ACLs ---------------------------------------------------------------------------------------


async def test_acl_scope_is_the_callers_own(platform: Platform) -> None:
    md = platform.md("alice", ["analysts"])
    await platform.retrieval.Search(search(), metadata=md)  # empty: the caller's subject and groups
    await platform.retrieval.Search(search(principals=["analysts"]), metadata=md)  # a subset: kept
    assert platform.seen.scopes == [["alice", "analysts"], ["analysts"]]
    code, details = await status_of(
        platform.retrieval.Search(search(principals=["alice", "bob"]), metadata=md)
    )
    assert code == grpc.StatusCode.PERMISSION_DENIED and "other principals" in details
    assert len(platform.seen.scopes) == 2
    [record] = platform.audit.records
    assert (record.kind, record.outcome, record.principal, record.details) == (
        "impersonation",
        "denied",
        "alice",
        {"principals": "bob"},
    )


async def test_impersonation_needs_the_permission_and_is_audited(platform: Platform) -> None:
    await platform.retrieval.Search(search(principals=["bob", "group-x"]), metadata=platform.md("carol"))
    assert platform.seen.scopes == [["bob", "group-x"]]
    [record] = platform.audit.records
    assert (record.kind, record.outcome, record.principal, record.tenant_id) == (
        "impersonation",
        "ok",
        "carol",
        "acme",
    )
    assert record.details == {"principals": "bob,group-x"}


# --- quotas ----------------------------------------------------------------------------------------------


async def test_a_tenant_past_its_rate_is_resource_exhausted_with_details(platform: Platform) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await platform.retrieval.Search(search("busy"), metadata=platform.md("alice"))
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    status = rpc_status.from_call(info.value)
    assert status is not None
    names = [d.type_url.rsplit("/", 1)[-1] for d in status.details]
    assert names == ["google.rpc.RetryInfo", "google.rpc.QuotaFailure"]
    assert platform.seen.principals == []
    assert platform.kinds() == [("quota_exceeded", "alice", "busy", "denied")]
    assert platform.audit.records[0].details == {"family": "search"}


# --- authentication off ----------------------------------------------------------------------------------


async def test_auth_off_runs_everything_as_anonymous(issuer: LocalIssuer) -> None:
    async for p in _platform(AuthStack(), issuer):
        await p.retrieval.Search(search("any", ["bob"]))  # no token; the request's scope is trusted
        await p.retrieval.CreateTenant(R.CreateTenantRequest(tenant_id="x"))
        [principal] = p.seen.principals
        assert principal is not None and principal.via == "anonymous"
        assert p.seen.scopes == [["bob"]]
        assert p.audit.records == []


# --- pieces --------------------------------------------------------------------------------------------


def test_tenant_of_reads_dotted_paths_and_fails_closed() -> None:
    from isthmus_core.auth.interceptor import tenant_of
    from isthmus_core.errors import InvalidArgument

    header = ingestion_pb2.UploadRequest(header=ingestion_pb2.UploadHeader(tenant_id="acme"))
    assert tenant_of(header, "header.tenant_id") == "acme"
    assert tenant_of(ingestion_pb2.UploadRequest(data=b"x"), "header.tenant_id") is None
    assert tenant_of(R.SearchRequest(tenant_id="acme"), "tenant_id") == "acme"
    assert tenant_of(R.SearchRequest(), "tenant_id") is None
    assert tenant_of(R.SearchRequest(tenant_id="acme"), "no.such_field") is None
    assert tenant_of(R.SearchRequest(tenant_id="acme"), "tenant") is None
    with pytest.raises(InvalidArgument):
        tenant_of(R.SearchRequest(tenant_id="../etc"), "tenant_id")


async def test_unreachable_issuer_keys_are_unavailable_and_audited(issuer: LocalIssuer) -> None:
    from isthmus_core.auth.tokens import RemoteJwks
    from isthmus_core.testing.auth import IdpServer

    with IdpServer() as gone:
        url = gone.url + "/jwks"
    verifier = JwtVerifier(
        issuer=ISSUER, audience="isthmus", algorithms=["ES256"], keys=RemoteJwks(url, timeout_s=2)
    )
    async for p in _platform(AuthStack(verifier, Bindings(), audit=ListAudit()), issuer):
        code, details = await status_of(p.retrieval.Search(search(), metadata=p.md("alice")))
        assert code == grpc.StatusCode.UNAVAILABLE and "could not be fetched" in details
        assert p.kinds() == [("authentication_failed", "", "", "failed")]
