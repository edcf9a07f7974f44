"""The production :class:`~isthmus_core.store.port.VectorStore`: Weaviate with native multi-tenancy.

One collection per index (``IsthmusChunks`` by default) with multi-tenancy enabled and automatic tenant
creation *off*: an Isthmus tenant is a Weaviate tenant (one shard), created and deleted by the tenant
lifecycle and never by a write. Objects:

* id = the chunk id when it is a UUID (ingestion makes them with
  :func:`~isthmus_core.store.port.chunk_uuid`, uuid5 of tenant, document and chunk index), else uuid5 of
  it — so a replayed chunk event overwrites its object instead of duplicating it;
* the self-provided vector (HNSW, cosine) and the ``model_id`` that made it;
* ``terms``: the chunk's BM25 terms from :class:`~isthmus_retrieval.analyzer.Analyzer` (stopwords removed,
  Snowball-stemmed) with whitespace tokenisation, so BM25 and hybrid rank with the same analysis as the
  embedded store (Weaviate has no stemmer); ``text`` is stored for the hits but not indexed;
* ``document_id`` and ``meta`` (one ``["key","value"]`` JSON string per metadata pair, field
  tokenisation) are filterable, and so is the document ACL (``acl``: its principals, ``acl_public``:
  it has none): filters and ACLs run inside the query, as Weaviate ``where`` filters.

Errors: an unreachable server is :class:`~isthmus_core.errors.Unavailable`, a slow one
:class:`~isthmus_core.errors.DeadlineExceeded` — both after a bounded number of retries (tenacity), and
both transient, so a bus consumer waits the outage out and no chunk event is lost. An unknown tenant is
NotFound; per-object batch errors reject only those objects (:class:`RejectedRecords`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlsplit

import grpc
import httpx
import weaviate
import weaviate.classes as wvc
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, wait_exponential
from weaviate.collections.classes.aggregate import AggregateInteger
from weaviate.collections.classes.filters import _Filters
from weaviate.exceptions import (
    UnexpectedStatusCodeError,
    WeaviateBaseError,
    WeaviateClosedClientError,
    WeaviateConnectionError,
    WeaviateInsertManyAllFailedError,
    WeaviateQueryError,
    WeaviateTimeoutError,
)

from isthmus_core.contracts.ids import is_tenant_id
from isthmus_core.errors import (
    AlreadyExists,
    DeadlineExceeded,
    FailedPrecondition,
    InvalidArgument,
    IsthmusError,
    NotFound,
    Unavailable,
)
from isthmus_core.store.port import ChunkRecord, Hit, RejectedRecords, SearchMode, SearchQuery, acl_of
from isthmus_retrieval.analyzer import Analyzer
from isthmus_retrieval.store_common import (
    IndexShape,
    as_vector,
    check_against,
    check_query,
    check_query_vector,
    validate_record,
    validate_tenant_id,
)

T = TypeVar("T")

#: Weaviate's per-call cap on objects a delete-by-filter removes (QUERY_MAXIMUM_RESULTS default)
_DELETE_ROUNDS_MAX = 1000
#: objects per insert_many call
_INSERT_BATCH = 500
_NS = uuid.UUID("0b8a3f2e-5d41-4f7a-9d8e-3c2a1b0f9e77")
#: Weaviate's BM25 parameters set to the embedded store's (bm25s defaults), so both rank alike
BM25_K1 = 1.5
BM25_B = 0.75
_PROPS = ["chunk_id", "document_id", "chunk_index", "text", "start", "end", "metadata_json"]


@dataclass(frozen=True, slots=True)
class WeaviateConfig:
    #: HTTP endpoint, e.g. http://weaviate.data:8080
    url: str
    #: gRPC port (Weaviate's default 50051); host defaults to the HTTP host
    grpc_port: int = 50051
    grpc_host: str | None = None
    api_key: str | None = None
    collection: str = "IsthmusChunks"
    #: seconds for one query / one insert batch / connecting
    query_timeout_s: float = 10.0
    insert_timeout_s: float = 60.0
    init_timeout_s: float = 5.0
    #: attempts per call when the server is unreachable or slow (then Unavailable / DeadlineExceeded)
    attempts: int = 3
    backoff_s: float = 0.2


def object_uuid(chunk_id: str) -> str:
    """The Weaviate object id of a chunk: its id when that is a UUID, else a uuid5 of it."""
    try:
        return str(uuid.UUID(chunk_id))
    except ValueError:
        return str(uuid.uuid5(_NS, chunk_id))


def meta_term(name: str, value: str) -> str:
    """One metadata pair as a filterable, unambiguous string."""
    return json.dumps([name, value], separators=(",", ":"), ensure_ascii=False)


def translate(exc: BaseException, what: str) -> IsthmusError:
    """A client exception as an Isthmus error (transient ones stay transient)."""
    text = str(exc)
    if isinstance(exc, IsthmusError):
        return exc
    if "tenant not found" in text:
        return NotFound(f"{what}: tenant does not exist ({_short(text)})")
    if isinstance(exc, WeaviateTimeoutError | httpx.TimeoutException | asyncio.TimeoutError):
        return DeadlineExceeded(f"{what}: Weaviate did not answer in time ({_short(text)})")
    if isinstance(exc, grpc.aio.AioRpcError) and exc.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
        return DeadlineExceeded(f"{what}: Weaviate did not answer in time")
    if "DEADLINE_EXCEEDED" in text or "Deadline Exceeded" in text:
        return DeadlineExceeded(f"{what}: Weaviate did not answer in time ({_short(text)})")
    if isinstance(exc, WeaviateConnectionError | httpx.TransportError | WeaviateClosedClientError | OSError):
        return Unavailable(f"{what}: Weaviate is unreachable ({_short(text)})")
    if isinstance(exc, WeaviateQueryError | WeaviateBaseError) and (
        "UNAVAILABLE" in text or "connection" in text.lower()
    ):
        return Unavailable(f"{what}: Weaviate is unreachable ({_short(text)})")
    if isinstance(exc, UnexpectedStatusCodeError) and exc.status_code in (401, 403):
        # a wrong or missing API key: an operator fixes the secret; until then events wait, none is lost
        return Unavailable(
            f"{what}: Weaviate refused the credentials (HTTP {exc.status_code}); check weaviate_api_key"
        )
    if isinstance(exc, UnexpectedStatusCodeError) and exc.status_code in (422, 400):
        return InvalidArgument(f"{what}: Weaviate rejected the request ({_short(text)})")
    if isinstance(exc, UnexpectedStatusCodeError) and exc.status_code >= 500:
        return Unavailable(f"{what}: Weaviate failed ({_short(text)})")
    return IsthmusError(f"{what}: {type(exc).__name__}: {_short(text)}")


def _short(text: str, limit: int = 400) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


class WeaviateStore:
    """VectorStore on a Weaviate server. Connects on first use; :meth:`close` disconnects."""

    def __init__(self, config: WeaviateConfig) -> None:
        logging.getLogger("bm25s").setLevel(max(logging.getLogger().level, logging.WARNING))
        split = urlsplit(config.url)
        if split.scheme not in ("http", "https") or not split.hostname:
            raise InvalidArgument(f"weaviate url must look like http://host:8080, got {config.url!r}")
        self._config = config
        self._http_host = split.hostname
        self._http_port = split.port or (443 if split.scheme == "https" else 80)
        self._secure = split.scheme == "https"
        self._analyzer = Analyzer()
        self._client: weaviate.WeaviateAsyncClient | None = None
        self._connect_lock = asyncio.Lock()
        self._collection_ready = False
        self._shapes: dict[str, IndexShape] = {}
        self._closed = False

    @property
    def config(self) -> WeaviateConfig:
        return self._config

    # -- connection -----------------------------------------------------------------------------------

    async def _connected(self) -> weaviate.WeaviateAsyncClient:
        if self._closed:
            raise FailedPrecondition("the store is closed")
        if self._client is not None and self._collection_ready:
            return self._client
        async with self._connect_lock:
            if self._client is None:
                c = self._config
                auth = wvc.init.Auth.api_key(c.api_key) if c.api_key else None
                client = weaviate.use_async_with_custom(
                    http_host=self._http_host,
                    http_port=self._http_port,
                    http_secure=self._secure,
                    grpc_host=c.grpc_host or self._http_host,
                    grpc_port=c.grpc_port,
                    grpc_secure=self._secure,
                    auth_credentials=auth,
                    additional_config=wvc.init.AdditionalConfig(
                        timeout=wvc.init.Timeout(
                            init=c.init_timeout_s, query=c.query_timeout_s, insert=c.insert_timeout_s
                        )
                    ),
                    skip_init_checks=True,
                )
                try:
                    await client.connect()
                except Exception as exc:
                    with contextlib.suppress(Exception):
                        await client.close()
                    raise translate(exc, f"connecting to Weaviate at {c.url}") from exc
                self._client = client
            if not self._collection_ready:
                await self._ensure_collection(self._client)
                self._collection_ready = True
            return self._client

    async def _ensure_collection(self, client: weaviate.WeaviateAsyncClient) -> None:
        name = self._config.collection
        try:
            if await client.collections.exists(name):
                await self._add_missing_properties(client)
                return
            await client.collections.create(
                name,
                description="Isthmus chunks: one Weaviate tenant per Isthmus tenant",
                multi_tenancy_config=wvc.config.Configure.multi_tenancy(
                    enabled=True, auto_tenant_creation=False, auto_tenant_activation=False
                ),
                vector_config=wvc.config.Configure.Vectors.self_provided(
                    vector_index_config=wvc.config.Configure.VectorIndex.hnsw(
                        distance_metric=wvc.config.VectorDistances.COSINE
                    )
                ),
                inverted_index_config=wvc.config.Configure.inverted_index(
                    bm25_k1=BM25_K1,
                    bm25_b=BM25_B,
                    stopwords_preset=wvc.config.StopwordsPreset.NONE,  # the analyser removed them
                ),
                properties=_properties(),
            )
        except UnexpectedStatusCodeError as exc:
            if "already exists" in str(exc):  # another replica created it first
                return
            raise translate(exc, f"creating collection {name}") from exc
        except Exception as exc:
            raise translate(exc, f"creating collection {name}") from exc

    async def _add_missing_properties(self, client: weaviate.WeaviateAsyncClient) -> None:
        """A collection made by an older Isthmus gains the properties added since (e.g. the ACL ones);
        objects written before hold no value there until they are written again (``isthmus reindex``)."""
        col = client.collections.use(self._config.collection)
        have = {p.name for p in (await col.config.get()).properties}
        for prop in _properties():
            if prop.name not in have:
                await col.config.add_property(prop)

    async def _call(
        self,
        what: str,
        fn: Callable[[weaviate.WeaviateAsyncClient], Awaitable[T]],
        *,
        timeout_s: float | None = None,
    ) -> T:
        """Run one server call with a deadline and bounded retries for outages; translate what escapes.

        The client retries an unreachable gRPC endpoint on its own for about a minute; the deadline cuts
        that short, and a probe of ``/v1/.well-known/ready`` then tells an outage (Unavailable) from a
        slow server (DeadlineExceeded). After an outage the connection is rebuilt, so a restarted server
        is used at once instead of after gRPC's reconnect backoff.
        """
        c = self._config
        deadline = timeout_s if timeout_s is not None else c.query_timeout_s
        retrying = AsyncRetrying(
            stop=stop_after_attempt(max(1, c.attempts)),
            wait=wait_exponential(multiplier=c.backoff_s, max=2.0),
            retry=retry_if_exception_type(Unavailable),
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                try:
                    client = await asyncio.wait_for(self._connected(), deadline)
                    return await asyncio.wait_for(fn(client), deadline)
                except IsthmusError as exc:
                    if isinstance(exc, Unavailable):
                        await self._reset()
                    raise
                except TimeoutError as exc:
                    if await self._server_answers():
                        raise DeadlineExceeded(
                            f"{what}: Weaviate did not answer within {deadline:g}s"
                        ) from exc
                    await self._reset()
                    raise Unavailable(f"{what}: Weaviate at {c.url} is unreachable") from exc
                except Exception as exc:
                    err = translate(exc, what)
                    if type(err) is IsthmusError and not await self._server_answers():
                        # an error we cannot classify while the server is down: the outage is the cause
                        err = Unavailable(f"{what}: Weaviate at {c.url} is unreachable ({_short(str(exc))})")
                    if isinstance(err, Unavailable):
                        await self._reset()
                    raise err from exc
        raise AssertionError("unreachable")  # pragma: no cover

    async def _server_answers(self) -> bool:
        try:
            async with httpx.AsyncClient(timeout=2.0) as http:
                resp = await http.get(self._config.url.rstrip("/") + "/v1/.well-known/ready")
            return resp.status_code == 200
        except httpx.HTTPError:
            return False

    async def _reset(self) -> None:
        """Drop the connection; the next call connects afresh."""
        client, self._client = self._client, None
        self._collection_ready = False
        if client is not None:
            with contextlib.suppress(Exception):
                await client.close()

    def _collection(self, client: weaviate.WeaviateAsyncClient, tenant_id: str | None = None) -> Any:
        col = client.collections.use(self._config.collection)
        return col.with_tenant(tenant_id) if tenant_id is not None else col

    async def ready(self) -> bool:
        """True when the server answers and accepts our credentials (the service's readiness probe)."""
        if self._closed:
            return False
        headers = {"Authorization": f"Bearer {self._config.api_key}"} if self._config.api_key else {}
        try:
            async with httpx.AsyncClient(timeout=2.0) as http:
                resp = await http.get(self._config.url.rstrip("/") + "/v1/meta", headers=headers)
            return resp.status_code == 200
        except httpx.HTTPError:
            return False

    async def close(self) -> None:
        self._closed = True
        if self._client is not None:
            with contextlib.suppress(Exception):
                await self._client.close()
            self._client = None

    # -- tenants --------------------------------------------------------------------------------------

    async def create_tenant(self, tenant_id: str) -> None:
        validate_tenant_id(tenant_id)

        async def run(client: weaviate.WeaviateAsyncClient) -> None:
            col = self._collection(client)
            if await col.tenants.exists(tenant_id):
                raise AlreadyExists(f"tenant {tenant_id!r} already exists")
            try:
                await col.tenants.create([wvc.tenants.Tenant(name=tenant_id)])
            except UnexpectedStatusCodeError as exc:
                if "already exists" in str(exc):
                    raise AlreadyExists(f"tenant {tenant_id!r} already exists") from exc
                raise

        await self._call(f"create tenant {tenant_id!r}", run)
        self._shapes.pop(tenant_id, None)

    async def delete_tenant(self, tenant_id: str) -> None:
        validate_tenant_id(tenant_id)

        async def run(client: weaviate.WeaviateAsyncClient) -> None:
            col = self._collection(client)
            if not await col.tenants.exists(tenant_id):
                raise NotFound(f"tenant {tenant_id!r} does not exist")
            await col.tenants.remove([tenant_id])

        try:
            await self._call(f"delete tenant {tenant_id!r}", run)
        finally:
            self._shapes.pop(tenant_id, None)

    async def list_tenants(self) -> list[str]:
        async def run(client: weaviate.WeaviateAsyncClient) -> list[str]:
            # names outside the platform's rule (Weaviate's is wider) are not Isthmus tenants
            return sorted(t for t in (await self._collection(client).tenants.get()) if is_tenant_id(t))

        return await self._call("list tenants", run)

    async def has_tenant(self, tenant_id: str) -> bool:
        validate_tenant_id(tenant_id)

        async def run(client: weaviate.WeaviateAsyncClient) -> bool:
            return bool(await self._collection(client).tenants.exists(tenant_id))

        return await self._call(f"look up tenant {tenant_id!r}", run)

    async def _require_tenant(self, client: weaviate.WeaviateAsyncClient, tenant_id: str) -> None:
        if not await self._collection(client).tenants.exists(tenant_id):
            raise NotFound(f"tenant {tenant_id!r} does not exist")

    async def _shape(self, client: weaviate.WeaviateAsyncClient, tenant_id: str) -> IndexShape | None:
        """The tenant's vector dimension and model, from any one of its objects (cached); None if empty."""
        shape = self._shapes.get(tenant_id)
        if shape is not None:
            return shape
        res = await self._collection(client, tenant_id).query.fetch_objects(
            limit=1, include_vector=True, return_properties=["model_id"]
        )
        if not res.objects:
            return None
        obj = res.objects[0]
        vector = obj.vector.get("default") if isinstance(obj.vector, dict) else obj.vector
        shape = IndexShape(dimension=len(vector or []), model_id=str(obj.properties.get("model_id", "")))
        self._shapes[tenant_id] = shape
        return shape

    # -- writes ---------------------------------------------------------------------------------------

    async def upsert(self, tenant_id: str, records: Sequence[ChunkRecord]) -> None:
        validate_tenant_id(tenant_id)
        if not records:

            async def exists(client: weaviate.WeaviateAsyncClient) -> None:
                await self._require_tenant(client, tenant_id)

            await self._call(f"upsert into tenant {tenant_id!r}", exists)
            return

        async def run(client: weaviate.WeaviateAsyncClient) -> tuple[int, dict[str, str]]:
            await self._require_tenant(client, tenant_id)
            shape = await self._shape(client, tenant_id)
            origin = f"tenant {tenant_id!r} holds"
            rejected: dict[str, str] = {}
            unique: dict[str, ChunkRecord] = {}
            for r in records:
                key = r.chunk_id if isinstance(r.chunk_id, str) and r.chunk_id else f"#{len(rejected)}"
                try:
                    validate_record(r)
                    if shape is None:
                        shape = IndexShape(len(r.vector), r.model_id)
                        origin = (
                            f"chunk {r.chunk_id!r} (first in this batch, tenant {tenant_id!r} is empty) has"
                        )
                    check_against(r, shape, origin)
                    as_vector(r.vector, f"chunk {r.chunk_id!r}")
                except InvalidArgument as exc:
                    rejected[key] = exc.reason
                    unique.pop(key, None)
                    continue
                unique[r.chunk_id] = r
            good = list(unique.values())
            terms = self._analyzer.terms([r.text for r in good])
            objects = [_data_object(r, t) for r, t in zip(good, terms, strict=True)]
            col = self._collection(client, tenant_id)
            written = 0
            for i in range(0, len(objects), _INSERT_BATCH):
                part = objects[i : i + _INSERT_BATCH]
                try:
                    res = await col.data.insert_many(part)
                except WeaviateInsertManyAllFailedError as exc:
                    if "tenant not found" in str(exc):
                        raise NotFound(f"tenant {tenant_id!r} does not exist") from exc
                    for r in good[i : i + _INSERT_BATCH]:
                        rejected[r.chunk_id] = f"Weaviate rejected the object: {_short(str(exc))}"
                    continue
                for index, err in res.errors.items():
                    rejected[good[i + index].chunk_id] = f"Weaviate rejected the object: {err.message}"
                written += len(part) - len(res.errors)
            if written and tenant_id not in self._shapes and shape is not None:
                self._shapes[tenant_id] = shape
            return written, rejected

        written, rejected = await self._call(
            f"upsert into tenant {tenant_id!r}", run, timeout_s=self._config.insert_timeout_s
        )
        if rejected:
            raise RejectedRecords(rejected, written)

    async def delete_document(self, tenant_id: str, document_id: str) -> int:
        validate_tenant_id(tenant_id)

        async def run(client: weaviate.WeaviateAsyncClient) -> int:
            await self._require_tenant(client, tenant_id)
            col = self._collection(client, tenant_id)
            where = wvc.query.Filter.by_property("document_id").equal(document_id)
            total = 0
            for _ in range(_DELETE_ROUNDS_MAX):  # one call removes at most QUERY_MAXIMUM_RESULTS objects
                res = await col.data.delete_many(where=where)
                total += int(res.successful)
                if res.failed:
                    raise Unavailable(f"Weaviate failed to delete {res.failed} objects of {document_id!r}")
                if res.matches == 0 or res.successful == 0:
                    break
            return total

        return await self._call(f"delete document {document_id!r} of tenant {tenant_id!r}", run)

    async def document_version(self, tenant_id: str, document_id: str) -> int | None:
        validate_tenant_id(tenant_id)

        async def run(client: weaviate.WeaviateAsyncClient) -> int | None:
            await self._require_tenant(client, tenant_id)
            res = await self._collection(client, tenant_id).aggregate.over_all(
                filters=wvc.query.Filter.by_property("document_id").equal(document_id),
                return_metrics=wvc.query.Metrics("version").integer(maximum=True, count=True),
            )
            version = res.properties.get("version")
            if not isinstance(version, AggregateInteger) or not version.count or version.maximum is None:
                return None
            return int(version.maximum)

        return await self._call(f"version of document {document_id!r} of tenant {tenant_id!r}", run)

    async def count(self, tenant_id: str) -> int:
        validate_tenant_id(tenant_id)

        async def run(client: weaviate.WeaviateAsyncClient) -> int:
            await self._require_tenant(client, tenant_id)
            res = await self._collection(client, tenant_id).aggregate.over_all(total_count=True)
            return int(res.total_count or 0)

        return await self._call(f"count tenant {tenant_id!r}", run)

    # -- search ---------------------------------------------------------------------------------------

    async def search(self, tenant_id: str, query: SearchQuery) -> list[Hit]:
        validate_tenant_id(tenant_id)
        mode, fusion = check_query(query)
        vector = as_vector(query.vector, "the query").tolist() if query.vector is not None else None
        terms = " ".join(self._analyzer.query_terms(query.text)) if query.text.strip() else ""

        async def run(client: weaviate.WeaviateAsyncClient) -> list[Hit]:
            shape = self._shapes.get(tenant_id)
            if shape is None:
                await self._require_tenant(client, tenant_id)
                shape = await self._shape(client, tenant_id)
                if shape is None:
                    return []  # empty tenant
            if mode is not SearchMode.BM25:
                check_query_vector(tenant_id, query, shape)
            col = self._collection(client, tenant_id).query
            where = _filters(query.filters, query.principals)
            meta = wvc.query.MetadataQuery(score=True, distance=True)
            if mode is SearchMode.BM25:
                if not terms:
                    return []
                res = await col.bm25(
                    query=terms,
                    query_properties=["terms"],
                    limit=query.top_k,
                    filters=where,
                    return_metadata=meta,
                    return_properties=_PROPS,
                )
                return _hits(res.objects, lambda o: float(o.metadata.score or 0.0))
            if mode is SearchMode.DENSE:
                res = await col.near_vector(
                    near_vector=vector,
                    limit=query.top_k,
                    filters=where,
                    return_metadata=meta,
                    return_properties=_PROPS,
                )
                return _hits(res.objects, lambda o: 1.0 - float(o.metadata.distance or 0.0))
            res = await col.hybrid(
                query=terms,
                vector=vector,
                alpha=query.alpha,
                fusion_type=(
                    wvc.query.HybridFusion.RANKED
                    if fusion.value == "ranked"
                    else wvc.query.HybridFusion.RELATIVE_SCORE
                ),
                query_properties=["terms"],
                limit=query.top_k,
                filters=where,
                return_metadata=meta,
                return_properties=_PROPS,
            )
            return _hits(res.objects, lambda o: float(o.metadata.score or 0.0))

        try:
            return await self._call(f"search tenant {tenant_id!r}", run)
        except NotFound:
            self._shapes.pop(tenant_id, None)
            raise


def _properties() -> list[wvc.config.Property]:
    P, D, Tk = wvc.config.Property, wvc.config.DataType, wvc.config.Tokenization
    return [
        P(name="chunk_id", data_type=D.TEXT, tokenization=Tk.FIELD, index_searchable=False),
        P(name="document_id", data_type=D.TEXT, tokenization=Tk.FIELD, index_searchable=False),
        P(name="chunk_index", data_type=D.INT, index_range_filters=False),
        P(name="text", data_type=D.TEXT, index_filterable=False, index_searchable=False),
        P(name="terms", data_type=D.TEXT, tokenization=Tk.WHITESPACE, index_filterable=False),
        P(name="start", data_type=D.INT, index_filterable=False),
        P(name="end", data_type=D.INT, index_filterable=False),
        P(name="version", data_type=D.INT, index_filterable=False),
        P(name="model_id", data_type=D.TEXT, tokenization=Tk.FIELD, index_searchable=False),
        P(name="meta", data_type=D.TEXT_ARRAY, tokenization=Tk.FIELD, index_searchable=False),
        P(name="acl", data_type=D.TEXT_ARRAY, tokenization=Tk.FIELD, index_searchable=False),
        P(name="acl_public", data_type=D.BOOL),
        P(name="metadata_json", data_type=D.TEXT, index_filterable=False, index_searchable=False),
    ]


def _data_object(r: ChunkRecord, terms: Sequence[str]) -> wvc.data.DataObject[Any, Any]:
    return wvc.data.DataObject(
        uuid=object_uuid(r.chunk_id),
        vector=[float(v) for v in r.vector],
        properties={
            "chunk_id": r.chunk_id,
            "document_id": r.document_id,
            "chunk_index": int(r.chunk_index),
            "text": r.text,
            # an empty TEXT value cannot be stored as a term; a chunk of stopwords only matches nothing
            "terms": " ".join(terms) if terms else "",
            "start": int(r.start),
            "end": int(r.end),
            "version": int(r.version),
            "model_id": r.model_id,
            "meta": [meta_term(k, v) for k, v in sorted(r.metadata.items())],
            "acl": acl_of(r.metadata),
            "acl_public": not acl_of(r.metadata),
            "metadata_json": json.dumps(dict(r.metadata), ensure_ascii=False),
        },
    )


def _filters(filters: Mapping[str, str], principals: Sequence[str]) -> _Filters:
    """The ACL (always: no principals = only chunks without an ACL) and the metadata filters, combined."""
    public = wvc.query.Filter.by_property("acl_public").equal(True)
    wanted = sorted(set(principals))
    parts: list[_Filters] = [
        wvc.query.Filter.any_of([public, wvc.query.Filter.by_property("acl").contains_any(wanted)])
        if wanted
        else public
    ]
    pairs = []
    for name, value in filters.items():
        if name == "document_id":
            parts.append(wvc.query.Filter.by_property("document_id").equal(value))
        else:
            pairs.append(meta_term(name, value))
    if pairs:
        parts.append(wvc.query.Filter.by_property("meta").contains_all(pairs))
    return parts[0] if len(parts) == 1 else wvc.query.Filter.all_of(parts)


def _hits(objects: Sequence[Any], score: Callable[[Any], float]) -> list[Hit]:
    hits = []
    for o in objects:
        p = o.properties
        hits.append(
            Hit(
                chunk_id=str(p["chunk_id"]),
                document_id=str(p["document_id"]),
                chunk_index=int(p["chunk_index"]),
                text=str(p["text"]),
                score=score(o),
                start=int(p.get("start") or 0),
                end=int(p.get("end") or 0),
                metadata=json.loads(p.get("metadata_json") or "{}"),
            )
        )
    # equal scores (to float noise) by chunk id, as the embedded store: deterministic rankings
    return sorted(hits, key=lambda h: (-round(h.score, 6), h.chunk_id))
