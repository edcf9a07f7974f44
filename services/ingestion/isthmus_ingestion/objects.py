"""Documents by reference (claim check): a ``documents.submitted`` event may carry ``content_uri``, a
reference to an object in the object store ingestion reads, instead of the bytes themselves.

A reference is never a path. It is a *key* ``<tenant>/<name>[/<name>...]`` — whose first segment must be
the event's own tenant, so a producer of one tenant cannot make ingestion read another tenant's objects —
given either bare (store-relative) or as a URI of the configured store:

* ``local`` (the default): a directory (``[ingestion] object_store_dir``, default
  ``<data_dir>/ingestion/objects``); URIs ``file:///<that directory>/<key>`` (percent-encoded; no host
  but ``localhost``). The key is checked lexically (no empty, ``.`` or ``..`` segment, no backslash, no
  control character, not absolute) and then opened one segment at a time below the root with
  ``O_NOFOLLOW`` (``openat``), so a symbolic link anywhere on the way — pointing out of the root or into
  another tenant's folder — is refused, without a window between a check and the open.
* ``s3``: an S3-compatible bucket (AWS S3, MinIO, Ceph, ...) through boto3; URIs
  ``s3://<bucket>/<prefix><key>``: only the configured bucket and prefix. Credentials come from the AWS
  default chain (environment, profile, instance/pod role), never from settings.

Limits: the object's size is checked before it is read (``fstat`` / ``HeadObject``) and the read itself
never takes more than the limit plus one byte (the object may grow in between). Inline content has its
own limit, below what one Kafka message carries (:data:`MAX_INLINE_BYTES_CEILING`).

Failures: a bad reference (malformed, another scheme, another tenant's key, traversal, a symbolic link,
no such object, unreadable, not a regular file, too large) is :class:`InvalidArgument` — permanent, the
bus dead-letters the event at once with the reason. The store being unreachable or failing
(connection refused, time-out, 5xx, an I/O error) is :class:`ObjectStoreUnavailable`: retried with the
subscription's backoff, then dead-lettered with the reason (the document is recorded ``failed``); it is
deliberately *not* an :class:`~isthmus_core.errors.Unavailable`, which the bus waits out forever, so an
object store outage does not hold every other document of the partition back.

Ingestion only reads objects: it neither deletes nor changes them (their lifecycle is the producer's).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import re
import stat
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal, Protocol
from urllib.parse import unquote, urlsplit

from isthmus_core.bus.delivery import MAX_MESSAGE_BYTES
from isthmus_core.contracts.events import DocumentSubmitted
from isthmus_core.contracts.ids import TenantId
from isthmus_core.errors import ConfigurationError, ErrorCode, InvalidArgument, IsthmusError

#: the largest inline ``content`` the settings may allow: base64 makes it 4/3 larger in the event's JSON,
#: which must stay below the bus's message limit with room for the other fields
MAX_INLINE_BYTES_CEILING = MAX_MESSAGE_BYTES * 3 // 4 - 256 * 1024
#: the default inline limit (4 MiB: about 5.3 MiB of base64 in an 8 MiB message)
DEFAULT_MAX_INLINE_BYTES = 4 * 1024 * 1024
#: the longest key, in UTF-8 bytes (S3's own limit)
MAX_KEY_BYTES = 1024

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):")
_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


class ObjectStoreUnavailable(IsthmusError):
    """The object store could not be read (unreachable, timed out, failing): transient, so the bus
    retries it — a bounded number of times (it is not an ``Unavailable``, which is waited out), then
    dead-letters the event with this reason."""

    code = ErrorCode.UNAVAILABLE


class ObjectStore(Protocol):
    """Where documents sent by reference are read from (and written to, by ``isthmus submit``)."""

    #: the URI scheme of this store's references (``file`` or ``s3``)
    scheme: str

    def describe(self) -> str: ...

    async def read(self, tenant: TenantId, reference: str, *, max_bytes: int) -> bytes:
        """The bytes of the object ``reference`` names (a key of ``tenant`` or a URI of this store);
        :class:`InvalidArgument` for a bad reference or an object over ``max_bytes``,
        :class:`ObjectStoreUnavailable` when the store fails."""
        ...

    async def write(self, tenant: TenantId, filename: str, data: bytes) -> str:
        """Store ``data`` under a new key of ``tenant`` and return its URI (for ``content_uri``)."""
        ...


def _shown(reference: str) -> str:
    return repr(reference if len(reference) <= 200 else reference[:200] + "…")


def check_key(key: str, tenant: TenantId, reference: str) -> list[str]:
    """The segments of ``key`` if it is a safe key of ``tenant``; :class:`InvalidArgument` otherwise."""
    where = f"content_uri {_shown(reference)}"
    if not key:
        raise InvalidArgument(f"{where}: no object key")
    if len(key.encode("utf-8", "surrogatepass")) > MAX_KEY_BYTES:
        raise InvalidArgument(f"{where}: the key is longer than {MAX_KEY_BYTES} bytes")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in key):
        raise InvalidArgument(f"{where}: control characters are not allowed in a key")
    if "\\" in key:
        raise InvalidArgument(f"{where}: backslashes are not allowed in a key")
    if key.startswith("/"):
        raise InvalidArgument(f"{where}: an absolute path is not an object key")
    segments = key.split("/")
    if any(s in ("", ".", "..") for s in segments):
        raise InvalidArgument(f"{where}: empty, '.' and '..' segments are not allowed in a key")
    if len(segments) < 2 or segments[0] != tenant:
        raise InvalidArgument(
            f"{where}: the key must be in the event's tenant's space, '{tenant}/<name>' "
            f"(got a first segment {segments[0]!r})"
        )
    return segments


def reference_key(
    reference: str,
    tenant: TenantId,
    *,
    scheme: Literal["file", "s3"],
    roots: Sequence[str] = (),
    bucket: str = "",
    prefix: str = "",
) -> list[str]:
    """The key segments a reference names in a store of ``scheme`` (``roots``: the local directory as
    absolute paths, as configured and without links; ``bucket``/``prefix``: the S3 location).
    Pure: it reads nothing."""
    match = _SCHEME.match(reference)
    if match is None:  # a bare, store-relative key (tenant ids hold no ':', so a colon means a scheme)
        return check_key(reference, tenant, reference)
    given = match.group(1).lower()
    where = f"content_uri {_shown(reference)}"
    if given != scheme:
        raise InvalidArgument(
            f"{where}: the scheme {given!r} is not read here; this ingestion reads {scheme}:// URIs of its "
            f"object store or store-relative keys '{tenant}/<name>'"
        )
    try:
        parts = urlsplit(reference)
    except ValueError as exc:
        raise InvalidArgument(f"{where}: not a URI ({exc})") from None
    if parts.query or parts.fragment:
        raise InvalidArgument(f"{where}: a query or fragment is not allowed")
    if scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise InvalidArgument(f"{where}: a file URI names no host (got {parts.netloc!r})")
        try:
            path = unquote(parts.path, errors="strict")
        except UnicodeDecodeError:
            raise InvalidArgument(f"{where}: the path is not UTF-8 once percent-decoded") from None
        for root in roots:
            base = root.rstrip("/") + "/"
            if path.startswith(base):
                return check_key(path[len(base) :], tenant, reference)
        shown = roots[0] if roots else "(none)"
        raise InvalidArgument(f"{where}: outside the object store directory {shown}")
    if parts.netloc != bucket:
        raise InvalidArgument(f"{where}: only the bucket {bucket!r} is read here")
    key = parts.path.removeprefix("/")
    if not key.startswith(prefix):
        raise InvalidArgument(f"{where}: outside the object store prefix {prefix!r}")
    return check_key(key[len(prefix) :], tenant, reference)


def object_name(tenant: TenantId, filename: str) -> str:
    """A new key for an upload of ``filename``: ``<tenant>/<random>/<filename made safe>``."""
    base = _UNSAFE_NAME.sub("_", filename.replace("\\", "/").rsplit("/", 1)[-1]).strip("._") or "document"
    return f"{tenant}/{uuid.uuid4().hex}/{base[:200]}"


def _too_large(reference: str, size: int, max_bytes: int) -> InvalidArgument:
    return InvalidArgument(
        f"content_uri {_shown(reference)}: the object is {size} bytes, over the limit of {max_bytes} "
        "bytes ([ingestion] max_upload_bytes)"
    )


class LocalObjectStore:
    """Objects as files below one directory (see the module docstring for what a key may be)."""

    scheme = "file"

    def __init__(self, root: Path) -> None:
        self._root = root
        self._base: Path | None = None

    def base(self) -> Path:
        """The store's directory, created on first use, as an absolute path without symbolic links."""
        if self._base is None:
            try:
                self._root.mkdir(parents=True, exist_ok=True)
                self._base = self._root.resolve(strict=True)
            except OSError as exc:
                raise ConfigurationError(f"object store directory {self._root}: {exc}") from exc
        return self._base

    def describe(self) -> str:
        return f"local directory {self._root}"

    async def read(self, tenant: TenantId, reference: str, *, max_bytes: int) -> bytes:
        roots = (str(self.base()), str(self._root.absolute()))  # as configured, and without links
        segments = reference_key(reference, tenant, scheme="file", roots=roots)
        return await asyncio.to_thread(self._read, segments, reference, max_bytes)

    def _read(self, segments: list[str], reference: str, max_bytes: int) -> bytes:
        where = f"content_uri {_shown(reference)}"
        fds: list[int] = []
        try:
            fds.append(os.open(self.base(), os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC))
            folder = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
            for segment in segments[:-1]:  # each folder opened below the previous one, never through a link
                fds.append(_open_below(fds[-1], segment, folder, where))
            # O_NONBLOCK: a FIFO planted under the root does not block the open (it is then refused)
            flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
            fd = _open_below(fds[-1], segments[-1], flags, where)
            fds.append(fd)
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                raise InvalidArgument(f"{where}: not a regular file")
            if info.st_size > max_bytes:
                raise _too_large(reference, info.st_size, max_bytes)
            chunks: list[bytes] = []
            remaining = max_bytes + 1  # one byte more tells an object that grew past the limit
            while remaining > 0:
                chunk = os.read(fd, min(remaining, 1 << 20))
                if not chunk:
                    break
                chunks.append(chunk)
                remaining -= len(chunk)
            data = b"".join(chunks)
            if len(data) > max_bytes:
                raise _too_large(reference, len(data), max_bytes)
            return data
        except OSError as exc:
            raise _local_error(where, exc) from None
        finally:
            for fd in reversed(fds):
                os.close(fd)

    async def write(self, tenant: TenantId, filename: str, data: bytes) -> str:
        key = object_name(tenant, filename)
        return await asyncio.to_thread(self._write, key, data)

    def _write(self, key: str, data: bytes) -> str:
        path = self.base().joinpath(*key.split("/"))
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(path.name + ".partial")
        partial.write_bytes(data)
        partial.replace(path)  # readers never see half an object
        return path.as_uri()


def _open_below(dir_fd: int, name: str, flags: int, where: str) -> int:
    """``openat(dir_fd, name, flags)``; a symbolic link (which O_NOFOLLOW refuses, as ELOOP or, for a
    folder, ENOTDIR) is reported as such."""
    try:
        return os.open(name, flags, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            with contextlib.suppress(OSError):
                if stat.S_ISLNK(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode):
                    raise InvalidArgument(
                        f"{where}: a symbolic link is not followed in the object store"
                    ) from None
        raise


def _local_error(where: str, exc: OSError) -> IsthmusError:
    if exc.errno == errno.ELOOP:
        return InvalidArgument(f"{where}: a symbolic link is not followed in the object store")
    if exc.errno in (errno.ENOENT, errno.ENOTDIR):
        return InvalidArgument(f"{where}: no such object in the object store")
    if exc.errno in (errno.EACCES, errno.EPERM):
        return InvalidArgument(f"{where}: the object is not readable ({exc.strerror})")
    if exc.errno == errno.ENAMETOOLONG:
        return InvalidArgument(f"{where}: a name in the key is too long for the object store")
    if exc.errno == errno.EISDIR:
        return InvalidArgument(f"{where}: not a regular file")
    return ObjectStoreUnavailable(f"{where}: the object store failed: {exc.strerror or exc}")


class S3ObjectStore:
    """Objects in one bucket (under an optional prefix) of an S3-compatible service, through boto3.

    boto3 blocks, so each call runs in a worker thread; botocore retries (standard mode, 3 attempts)
    with the connect/read time-out of ``timeout_s``; what still fails is :class:`ObjectStoreUnavailable`
    (the bus retries it in turn) or, for a missing or refused object, :class:`InvalidArgument`."""

    scheme = "s3"

    def __init__(
        self,
        bucket: str,
        *,
        prefix: str = "",
        endpoint_url: str = "",
        region: str = "",
        timeout_s: float = 30.0,
        client_factory: Callable[[], Any] | None = None,
    ) -> None:
        if not bucket:
            raise ConfigurationError("[ingestion] object_store = 's3' needs object_store_s3_bucket")
        self.bucket = bucket
        self.prefix = prefix
        self._endpoint_url = endpoint_url
        self._region = region
        self._timeout_s = timeout_s
        self._factory = client_factory or self._make_client
        self._client: Any = None

    def _make_client(self) -> Any:
        import boto3
        from botocore.config import Config

        config = Config(
            retries={"total_max_attempts": 3, "mode": "standard"},
            connect_timeout=self._timeout_s,
            read_timeout=self._timeout_s,
            s3={"addressing_style": "path"} if self._endpoint_url else None,
        )
        return boto3.session.Session().client(
            "s3", region_name=self._region or None, endpoint_url=self._endpoint_url or None, config=config
        )

    def client(self) -> Any:
        if self._client is None:
            self._client = self._factory()
        return self._client

    def describe(self) -> str:
        at = f" at {self._endpoint_url}" if self._endpoint_url else ""
        return f"S3 bucket {self.bucket!r}{at}, prefix {self.prefix!r}"

    async def read(self, tenant: TenantId, reference: str, *, max_bytes: int) -> bytes:
        segments = reference_key(reference, tenant, scheme="s3", bucket=self.bucket, prefix=self.prefix)
        return await asyncio.to_thread(self._read, self.prefix + "/".join(segments), reference, max_bytes)

    def _read(self, key: str, reference: str, max_bytes: int) -> bytes:
        where = f"content_uri {_shown(reference)}"
        try:
            head = self.client().head_object(Bucket=self.bucket, Key=key)
            size = int(head.get("ContentLength", 0))
            if size > max_bytes:
                raise _too_large(reference, size, max_bytes)
            if size == 0:
                return b""
            # the range bounds the read even if the object was replaced by a larger one since the HEAD
            got = self.client().get_object(Bucket=self.bucket, Key=key, Range=f"bytes=0-{max_bytes}")
            body = got["Body"]
            try:
                data: bytes = body.read(max_bytes + 1)
            finally:
                body.close()
        except IsthmusError:
            raise
        except Exception as exc:  # botocore's errors, translated below
            raise _s3_error(where, exc) from None
        if len(data) > max_bytes:
            raise _too_large(reference, len(data), max_bytes)
        return data

    async def write(self, tenant: TenantId, filename: str, data: bytes) -> str:
        key = self.prefix + object_name(tenant, filename)
        try:
            await asyncio.to_thread(self.client().put_object, Bucket=self.bucket, Key=key, Body=data)
        except Exception as exc:
            raise _s3_error(f"s3://{self.bucket}/{key}", exc) from None
        return f"s3://{self.bucket}/{key}"


def _s3_error(where: str, exc: Exception) -> IsthmusError:
    from botocore.exceptions import ClientError

    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        if code in ("NoSuchKey", "NotFound", "404", "NoSuchBucket") or status == 404:
            return InvalidArgument(f"{where}: no such object in the object store")
        if code in ("AccessDenied", "403", "Forbidden") or status == 403:
            return InvalidArgument(
                f"{where}: the object store refused access to the object ({code or status})"
            )
        return ObjectStoreUnavailable(
            f"{where}: the object store failed: {code or status} {error.get('Message', '')}"
        )
    return ObjectStoreUnavailable(f"{where}: the object store failed: {type(exc).__name__}: {exc}")


def build_object_store(
    kind: str,
    *,
    directory: Path,
    bucket: str = "",
    prefix: str = "",
    endpoint_url: str = "",
    region: str = "",
    timeout_s: float = 30.0,
) -> ObjectStore:
    """The store ``[ingestion] object_store`` names (``local``: ``directory``)."""
    if kind == "s3":
        return S3ObjectStore(
            bucket, prefix=prefix, endpoint_url=endpoint_url, region=region, timeout_s=timeout_s
        )
    if kind == "local":
        return LocalObjectStore(directory)
    raise ConfigurationError(f"unknown object store {kind!r}: local or s3")


async def submitted_content(
    ev: DocumentSubmitted,
    tenant: TenantId | None,
    store: ObjectStore | None,
    *,
    max_inline_bytes: int,
    max_reference_bytes: int,
) -> bytes:
    """The document bytes of a submitted event: its inline ``content`` (at most ``max_inline_bytes``) or
    the object its ``content_uri`` names (at most ``max_reference_bytes``; ``tenant`` is the event's
    tenant, already checked). Exactly one of the two must be set."""
    if ev.content and ev.content_uri:
        raise InvalidArgument(
            "a documents.submitted event carries exactly one of content and content_uri; this one has both"
        )
    if ev.content_uri:
        if store is None or tenant is None:
            raise InvalidArgument("content_uri is not accepted here: no object store is configured")
        return await store.read(tenant, ev.content_uri, max_bytes=max_reference_bytes)
    if not ev.content:
        raise InvalidArgument(
            "a documents.submitted event carries exactly one of content and content_uri; this one has neither"
        )
    if len(ev.content) > max_inline_bytes:
        raise InvalidArgument(
            f"inline content is {len(ev.content)} bytes, over the limit of {max_inline_bytes} bytes "
            "([ingestion] max_inline_bytes): put the document in the object store and send content_uri"
        )
    return ev.content
