"""Authentication and authorization end to end, against a real OAuth2 server: the all-in-one platform
with ``[common] auth = "oidc"`` trusts a real Ory Hydra v2.3.0 (client-credentials grant, RS256 JWT
access tokens, keys from its JWKS), and the access file binds Hydra clients to roles per tenant:

- client A: ``writer`` in ``acme``; client B: ``reader`` in ``acme``; client C: ``writer`` in ``globex``;
  client D: ``writer`` in ``acme``, but Hydra only mints it tokens for the audience ``billing``;
  client E: no binding of its own, but its tokens carry the group ``analysts`` (Hydra's token hook,
  ``ext.groups``; ``auth_groups_claim = "ext.groups"``), and ``group:analysts`` is ``reader`` in ``acme``;
- an admin client: ``platform-admin`` (creates the two tenants); the platform's own client (its service
  token for calls no user made).

It is driven with ``grpcurl`` as an operator would (exit code 64 + the gRPC status code, the status
name on stderr), and with the Python gRPC client where a loop is easier (waiting for indexing). Checks:
no token → UNAUTHENTICATED; health and reflection need no token; A uploads and searches in acme; A is
denied globex; B may search but not upload; D's token (another audience) is refused; after
Hydra's signing key is rotated, a token signed with the new key is accepted (the verifier refetches the
JWKS on an unknown kid), and one with that kid signed by another key is not. The CLI (``ISTHMUS_TOKEN``)
lists only the tenants its token may read, and a role granted with ``isthmus tenant grant`` while the
platform runs takes effect. E reads acme through its group, and sees a document whose ACL names the
group, which A (a writer outside the group) does not see."""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import jwt
import pytest
import pytest_asyncio
from cryptography.hazmat.primitives.asymmetric import rsa

from isthmus.ingestion.v1 import ingestion_pb2, ingestion_pb2_grpc
from isthmus.retrieval.v1 import retrieval_pb2, retrieval_pb2_grpc
from isthmus_core.testing.client import run_cli

from .conftest import platform, upload, wait_indexed

pytestmark = [pytest.mark.slow, pytest.mark.hydra, pytest.mark.asyncio(loop_scope="module")]

ACME, GLOBEX = "acme", "globex"
ANALYSTS = "analysts"
ACME_TEXT = b"The acme glacier observatory measures ice thickness every winter with radar."
GLOBEX_TEXT = b"Globex keeps its quarterly launch plans in the vault under the old harbour."
#: grpcurl exits with 64 + the status code when the RPC fails
GRPCURL_STATUS_OFFSET = 64
SEARCH = "isthmus.retrieval.v1.RetrievalService/Search"
UPLOAD = "isthmus.ingestion.v1.IngestionService/Upload"


class _Bearer:
    """Adds ``authorization: Bearer <token>`` to every call (what a client library does). grpc.aio files
    an interceptor under the first kind it is an instance of, so each kind below is its own class."""

    def __init__(self, token: str) -> None:
        self.header = ("authorization", f"Bearer {token}")

    def _details(self, d: grpc.aio.ClientCallDetails) -> grpc.aio.ClientCallDetails:
        metadata = grpc.aio.Metadata(*(d.metadata or ()), self.header)
        return grpc.aio.ClientCallDetails(d.method, d.timeout, metadata, d.credentials, d.wait_for_ready)


class _BearerUnaryUnary(_Bearer, grpc.aio.UnaryUnaryClientInterceptor):
    async def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return await continuation(self._details(details), request)


class _BearerUnaryStream(_Bearer, grpc.aio.UnaryStreamClientInterceptor):
    async def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        return await continuation(self._details(details), request)


class _BearerStreamUnary(_Bearer, grpc.aio.StreamUnaryClientInterceptor):
    async def intercept_stream_unary(self, continuation: Any, details: Any, requests: Any) -> Any:
        return await continuation(self._details(details), requests)


class _BearerStreamStream(_Bearer, grpc.aio.StreamStreamClientInterceptor):
    async def intercept_stream_stream(self, continuation: Any, details: Any, requests: Any) -> Any:
        return await continuation(self._details(details), requests)


def bearer(token: str) -> list[Any]:
    kinds = (_BearerUnaryUnary, _BearerUnaryStream, _BearerStreamUnary, _BearerStreamStream)
    return [kind(token) for kind in kinds]


@dataclass
class Env:
    address: str
    grpcurl: Path
    hydra: Any  # conftest.HydraServer
    clients: dict[str, tuple[str, str]]  # name -> (client_id, secret)
    token: Callable[[str], str]  # name -> a fresh Hydra access token for that client
    channels: list[grpc.aio.Channel]
    access_file: Path

    def channel(self, token: str | None) -> grpc.aio.Channel:
        ch = (
            grpc.aio.insecure_channel(self.address, interceptors=bearer(token))
            if token is not None
            else grpc.aio.insecure_channel(self.address)
        )
        self.channels.append(ch)
        return ch


@dataclass
class Called:
    code: int
    out: str
    err: str

    @property
    def status(self) -> grpc.StatusCode | None:
        """The gRPC status grpcurl reported through its exit code (None: it did not run an RPC)."""
        for status in grpc.StatusCode:
            if self.code == GRPCURL_STATUS_OFFSET + status.value[0]:
                return status
        return grpc.StatusCode.OK if self.code == 0 else None


async def grpcurl(env: Env, *args: str, token: str | None = None, data: str | None = None) -> Called:
    """Run grpcurl against the platform without blocking the event loop it is served from."""
    argv = [str(env.grpcurl), "-plaintext", "-max-time", "120"]
    if token is not None:
        argv += ["-H", f"authorization: Bearer {token}"]
    if data is not None:
        argv += ["-d", data]
    proc = await asyncio.create_subprocess_exec(
        *argv, env.address, *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=180)
    return Called(proc.returncode or 0, out.decode(), err.decode())


def upload_json(tenant: str, filename: str, data: bytes, document_id: str) -> str:
    """A client-streaming Upload for grpcurl: the header message, then the bytes (base64 in JSON)."""
    header = {"header": {"tenant_id": tenant, "filename": filename, "document_id": document_id}}
    return json.dumps(header) + "\n" + json.dumps({"data": base64.b64encode(data).decode()})


def search_json(tenant: str, query: str) -> str:
    return json.dumps({"tenant_id": tenant, "query": query, "top_k": 5})


def access_toml(clients: dict[str, tuple[str, str]]) -> str:
    def who(name: str) -> str:
        return json.dumps(clients[name][0])

    return f"""
[platform]
bindings = [{{ principal = {who("admin")}, role = "platform-admin" }}]

[tenants.{ACME}]
bindings = [
  {{ principal = {who("a")}, role = "writer" }},
  {{ principal = {who("b")}, role = "reader" }},
  {{ principal = {who("d")}, role = "writer" }},
  {{ principal = "group:{ANALYSTS}", role = "reader" }},
]

[tenants.{GLOBEX}]
bindings = [{{ principal = {who("c")}, role = "writer" }}]
"""


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def env(tmp_path_factory: pytest.TempPathFactory, hydra: Any, grpcurl: Path) -> AsyncIterator[Env]:
    tmp = tmp_path_factory.mktemp("isthmus-auth")
    clients = {name: hydra.new_client(name=f"isthmus-e2e-{name}") for name in ("svc", "admin", "a", "b", "c")}
    clients["d"] = hydra.new_client(audience="billing", name="isthmus-e2e-d")
    clients["e"] = hydra.new_client(name="isthmus-e2e-e")
    hydra.set_groups(clients["e"][0], [ANALYSTS])  # E's tokens carry ext.groups = ["analysts"]
    (tmp / "access.toml").write_text(access_toml(clients))
    common = {
        "auth": "oidc",
        "auth_issuer": hydra.issuer,
        "auth_jwks_url": hydra.jwks_url,
        "auth_audience": "isthmus",
        "auth_service_token_url": hydra.token_url,
        "auth_service_client_id": clients["svc"][0],
        "auth_service_client_secret": clients["svc"][1],
        "access_file": str(tmp / "access.toml"),
        "auth_groups_claim": "ext.groups",  # Hydra puts the token hook's claims under ext
    }

    def token(name: str) -> str:
        return str(hydra.token(*clients[name]))

    # the console's own login (authorization code) is tested in tests/console; without its client here
    async with platform(tmp / "data", common=common, console={"enabled": False}) as rt:
        e = Env(rt.address, grpcurl, hydra, clients, token, [], tmp / "access.toml")
        admin = retrieval_pb2_grpc.RetrievalServiceStub(e.channel(token("admin")))
        for tenant in (ACME, GLOBEX):
            await admin.CreateTenant(retrieval_pb2.CreateTenantRequest(tenant_id=tenant))
        globex = e.channel(token("c"))
        doc = await upload(globex, GLOBEX, "plans.txt", GLOBEX_TEXT, document_id="plans")
        await wait_indexed(globex, GLOBEX, [doc.document_id])
        try:
            yield e
        finally:
            for ch in e.channels:
                await ch.close()


def _hit_ids(called: Called) -> set[str]:
    return {h["context"]["document_id"] for h in json.loads(called.out).get("hits", [])}


async def _code(call: Any) -> grpc.StatusCode:
    try:
        await call
    except grpc.aio.AioRpcError as err:
        return err.code()
    return grpc.StatusCode.OK


async def test_without_a_token_rpcs_are_refused_but_health_and_reflection_answer(env: Env) -> None:
    called = await grpcurl(env, SEARCH, data=search_json(ACME, "glacier"))
    assert called.status is grpc.StatusCode.UNAUTHENTICATED, called
    assert "Code: Unauthenticated" in called.err
    # a garbage bearer is no better than none
    called = await grpcurl(env, SEARCH, token="not-a-jwt", data=search_json(ACME, "glacier"))
    assert called.status is grpc.StatusCode.UNAUTHENTICATED, called
    anonymous = env.channel(None)
    ingestion = ingestion_pb2_grpc.IngestionServiceStub(anonymous)
    assert (
        await _code(ingestion.ListDocuments(ingestion_pb2.ListDocumentsRequest(tenant_id=ACME)))
        is grpc.StatusCode.UNAUTHENTICATED
    )
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await upload(anonymous, ACME, "x.txt", b"no token, no upload")
    assert refused.value.code() is grpc.StatusCode.UNAUTHENTICATED
    # health and reflection need no token (load balancers, grpcurl list/describe)
    listed = await grpcurl(env, "list")
    assert listed.code == 0, listed
    services = set(listed.out.split())
    assert {"isthmus.retrieval.v1.RetrievalService", "isthmus.ingestion.v1.IngestionService"} <= services
    described = await grpcurl(env, "describe", "isthmus.retrieval.v1.SearchRequest")
    assert described.code == 0 and "tenant_id" in described.out, described
    health = await grpcurl(env, "grpc.health.v1.Health/Check")
    assert health.code == 0, health
    assert json.loads(health.out)["status"] == "SERVING"


async def test_a_writer_uploads_and_searches_in_its_tenant_and_is_denied_another(env: Env) -> None:
    a = env.token("a")
    doc_id = f"observatory-{uuid.uuid4().hex[:6]}"
    up = await grpcurl(env, UPLOAD, token=a, data=upload_json(ACME, "observatory.txt", ACME_TEXT, doc_id))
    assert up.code == 0, up
    assert json.loads(up.out)["document_id"] == doc_id
    await wait_indexed(env.channel(a), ACME, [doc_id])
    found = await grpcurl(env, SEARCH, token=a, data=search_json(ACME, "glacier observatory ice radar"))
    assert found.code == 0, found
    assert doc_id in _hit_ids(found)
    # globex: refused, and the refusal tells nothing of globex's content
    called = await grpcurl(env, SEARCH, token=a, data=search_json(GLOBEX, "launch plans harbour"))
    assert called.status is grpc.StatusCode.PERMISSION_DENIED, called
    assert "Code: PermissionDenied" in called.err
    assert "launch" not in called.out + called.err
    called = await grpcurl(env, UPLOAD, token=a, data=upload_json(GLOBEX, "x.txt", b"intrusion", "x"))
    assert called.status is grpc.StatusCode.PERMISSION_DENIED, called
    ingestion = ingestion_pb2_grpc.IngestionServiceStub(env.channel(a))
    assert (
        await _code(
            ingestion.GetDocument(ingestion_pb2.GetDocumentRequest(tenant_id=GLOBEX, document_id="plans"))
        )
        is grpc.StatusCode.PERMISSION_DENIED
    )
    # globex's own writer still gets at its document; acme's never shows in it
    own = await grpcurl(env, SEARCH, token=env.token("c"), data=search_json(GLOBEX, "launch plans harbour"))
    assert own.code == 0, own
    assert "plans" in _hit_ids(own)
    assert doc_id not in _hit_ids(own)


async def test_a_reader_searches_but_cannot_upload(env: Env) -> None:
    b = env.token("b")
    called = await grpcurl(env, UPLOAD, token=b, data=upload_json(ACME, "r.txt", b"reader writes", "r"))
    assert called.status is grpc.StatusCode.PERMISSION_DENIED, called
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await upload(env.channel(b), ACME, "r.txt", b"reader writes", document_id="r")
    assert refused.value.code() is grpc.StatusCode.PERMISSION_DENIED
    found = await grpcurl(env, SEARCH, token=b, data=search_json(ACME, "glacier"))
    assert found.code == 0, found
    # and B is a reader of acme only
    called = await grpcurl(env, SEARCH, token=b, data=search_json(GLOBEX, "launch"))
    assert called.status is grpc.StatusCode.PERMISSION_DENIED, called


async def test_a_group_from_the_token_grants_a_role_and_opens_document_acls(env: Env) -> None:
    a, e = env.token("a"), env.token("e")
    assert jwt.decode(e, options={"verify_signature": False})["ext"]["groups"] == [ANALYSTS]
    memo = b"The analysts' memo: the observatory radar budget doubles next winter."
    doc_id = f"memo-{uuid.uuid4().hex[:6]}"
    ch = env.channel(a)
    await upload(ch, ACME, "memo.txt", memo, document_id=doc_id, metadata={"acl": ANALYSTS})
    await wait_indexed(ch, ACME, [doc_id])
    query = search_json(ACME, "analysts memo observatory radar budget")
    seen = await grpcurl(env, SEARCH, token=e, data=query)
    assert seen.code == 0, seen
    assert doc_id in _hit_ids(seen)  # E reads acme through group:analysts, and the ACL names its group
    unseen = await grpcurl(env, SEARCH, token=a, data=query)
    assert unseen.code == 0, unseen
    assert doc_id not in _hit_ids(unseen)  # A may search acme, but is not an analyst
    # naming the group in the request does not make A one
    named = json.dumps({"tenant_id": ACME, "query": "analysts memo", "access": {"principals": [ANALYSTS]}})
    called = await grpcurl(env, SEARCH, token=a, data=named)
    assert called.status is grpc.StatusCode.PERMISSION_DENIED, called
    # the group's role is reader: no upload, and nothing in globex
    called = await grpcurl(env, UPLOAD, token=e, data=upload_json(ACME, "e.txt", b"analyst writes", "e"))
    assert called.status is grpc.StatusCode.PERMISSION_DENIED, called
    called = await grpcurl(env, SEARCH, token=e, data=search_json(GLOBEX, "launch"))
    assert called.status is grpc.StatusCode.PERMISSION_DENIED, called


async def test_the_cli_lists_only_the_tenants_its_token_may_read(env: Env) -> None:
    async def listed(name: str) -> set[str]:
        code, out, err = await run_cli(
            "tenant", "list", "--json", endpoint=env.address, env={"ISTHMUS_TOKEN": env.token(name)}
        )
        assert code == 0, err
        return {row["tenant_id"] for row in json.loads(out)}

    assert await listed("b") == {ACME}
    assert await listed("c") == {GLOBEX}
    assert {ACME, GLOBEX} <= await listed("admin")
    code, _, err = await run_cli("tenant", "list", endpoint=env.address, env={"ISTHMUS_TOKEN": ""})
    assert code != 0
    assert "UNAUTHENTICATED" in err.upper()


async def test_a_role_granted_while_running_takes_effect(env: Env) -> None:
    # C (globex only) is refused in acme, then `isthmus tenant grant` edits the access file the
    # platform reads, and C's next calls in acme are allowed (the file is re-read when it changes)
    c_id = env.clients["c"][0]
    c = env.token("c")
    called = await grpcurl(env, SEARCH, token=c, data=search_json(ACME, "glacier"))
    assert called.status is grpc.StatusCode.PERMISSION_DENIED, called
    code, _, err = await run_cli(
        "tenant",
        "grant",
        ACME,
        "--principal",
        c_id,
        "--role",
        "reader",
        "--access-file",
        str(env.access_file),
    )
    assert code == 0, err
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 30
    while (called := await grpcurl(env, SEARCH, token=c, data=search_json(ACME, "glacier"))).code != 0:
        assert called.status is grpc.StatusCode.PERMISSION_DENIED, called
        assert loop.time() < deadline, f"the grant did not take effect within 30 s: {called}"
        await asyncio.sleep(0.5)
    # a reader still may not write
    called = await grpcurl(env, UPLOAD, token=c, data=upload_json(ACME, "c.txt", b"reader writes", "c"))
    assert called.status is grpc.StatusCode.PERMISSION_DENIED, called


async def test_a_token_for_another_audience_is_refused(env: Env) -> None:
    # D is a writer in acme, but Hydra may only mint it tokens for "billing": never for Isthmus
    d_id, d_secret = env.clients["d"]
    billing = env.hydra.token(d_id, d_secret, audience="billing")
    assert jwt.decode(billing, options={"verify_signature": False})["aud"] == ["billing"]
    called = await grpcurl(env, SEARCH, token=billing, data=search_json(ACME, "glacier"))
    assert called.status is grpc.StatusCode.UNAUTHENTICATED, called
    called = await grpcurl(
        env, UPLOAD, token=billing, data=upload_json(ACME, "d.txt", b"aimed elsewhere", "d")
    )
    assert called.status is grpc.StatusCode.UNAUTHENTICATED, called


async def test_a_token_signed_with_a_rotated_key_is_accepted_but_only_with_hydras_key(env: Env) -> None:
    a = env.token("a")
    assert (await grpcurl(env, SEARCH, token=a, data=search_json(ACME, "glacier"))).code == 0
    old_kid = jwt.get_unverified_header(a)["kid"]
    new_kid = env.hydra.rotate_keys()
    rotated = env.token("a")
    assert jwt.get_unverified_header(rotated)["kid"] == new_kid != old_kid
    # the verifier has never seen new_kid: it refetches the JWKS (at most once per few seconds, so
    # poll within a deadline far below its cache lifetime, auth_jwks_cache_s = 300 s)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 30
    while True:
        called = await grpcurl(env, SEARCH, token=rotated, data=search_json(ACME, "glacier"))
        if called.code == 0 or loop.time() > deadline:
            break
        assert called.status is grpc.StatusCode.UNAUTHENTICATED, called
        await asyncio.sleep(0.5)
    assert called.code == 0, called
    # a token signed with the previous key stays valid until it expires (the key is still published)
    assert (await grpcurl(env, SEARCH, token=a, data=search_json(ACME, "glacier"))).code == 0
    # the same claims and kid, signed with a key that is not Hydra's: refused
    forged = jwt.encode(
        jwt.decode(rotated, options={"verify_signature": False}),
        rsa.generate_private_key(public_exponent=65537, key_size=2048),
        algorithm="RS256",
        headers={"kid": new_kid},
    )
    called = await grpcurl(env, SEARCH, token=forged, data=search_json(ACME, "glacier"))
    assert called.status is grpc.StatusCode.UNAUTHENTICATED, called
