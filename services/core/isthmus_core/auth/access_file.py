"""The access file: who holds which role in which tenant, and each tenant's quotas (TOML).

One file per deployment (``[common] access_file``, default ``<data_dir>/access.toml``); in Kubernetes the
operator renders the Tenant CRDs into the ``isthmus-access`` ConfigMap mounted into every pod, and on
one machine ``isthmus tenant grant|revoke|bindings|quota`` edit it::

    [platform]                      # bindings for every tenant ("*")
    bindings = [{ principal = "ops-admin", role = "platform-admin" }]
    [tenants.acme]
    bindings = [
      { principal = "client-abc", role = "writer" },
      { principal = "group:analysts", role = "reader" },
    ]
    [tenants.acme.quota]            # every key optional; absent = unlimited
    requests_per_s = { ask = 5, search = 50, ingest = 10 }   # per RPC family (MethodRule.family)
    max_documents = 1000
    max_bytes = 100_000_000
    llm_tokens_per_day = 200_000

A principal is a token's subject (for a client-credentials token, the OAuth2 client id) or
``group:<name>`` for everyone whose token lists that group. A missing file means no bindings: with
authentication on, only the process's own service identity may do anything.

:func:`load` validates everything and reports every problem at once (:class:`AccessFileError`);
:func:`save` writes atomically (a temporary file renamed over the old one, mode 0600);
:class:`AccessFileReloader` re-reads the file when it changes (checked at most once a second, so the
hot path is one clock read) and keeps the last good policy when an edit is broken.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Final, Protocol

import structlog
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from isthmus_core.auth.identity import ALL_TENANTS, Role
from isthmus_core.auth.methods import METHOD_RULES
from isthmus_core.contracts.ids import PRINCIPAL_PATTERN, PRINCIPAL_RULE, TENANT_ID_RULE, is_tenant_id
from isthmus_core.errors import ConfigurationError

if TYPE_CHECKING:
    from isthmus_core.settings import CommonSettings

log = structlog.get_logger("isthmus.auth.access")

#: the RPC families a tenant's ``requests_per_s`` may name (``MethodRule.family`` of every method)
FAMILIES: Final = frozenset(rule.family for rule in METHOD_RULES.values())
GROUP_PREFIX: Final = "group:"
_PRINCIPAL: Final = re.compile(PRINCIPAL_PATTERN)


class AccessFileError(ConfigurationError):
    """An access file that cannot be used; ``problems`` lists every one (``where: what``)."""

    def __init__(self, path: Path | str, problems: list[str]) -> None:
        super().__init__(f"access file {path}:\n  " + "\n  ".join(problems))
        self.path = str(path)
        self.problems = problems


def _tenant_key(value: str) -> str:
    if value == ALL_TENANTS:
        raise ValueError("'*' is not a tenant: put bindings for every tenant under [platform]")
    if not is_tenant_id(value):
        raise ValueError(TENANT_ID_RULE)
    return value


def _principal(value: str) -> str:
    name = value.removeprefix(GROUP_PREFIX)
    if _PRINCIPAL.fullmatch(name) is None:
        raise ValueError(f"{PRINCIPAL_RULE} (a group: 'group:<name>', the name following the same rule)")
    return value


def _family(value: str) -> str:
    if value not in FAMILIES:
        raise ValueError(f"unknown RPC family {value!r}; the families are {', '.join(sorted(FAMILIES))}")
    return value


TenantKey = Annotated[str, AfterValidator(_tenant_key)]
PrincipalName = Annotated[str, AfterValidator(_principal)]
Family = Annotated[str, AfterValidator(_family)]
_Count = Annotated[int, Field(strict=True, ge=0)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Binding(_Model):
    principal: PrincipalName
    role: Role


class Quota(_Model):
    """A tenant's quotas; an absent key is unlimited."""

    requests_per_s: dict[Family, Annotated[int, Field(strict=True, ge=1)]] = Field(default_factory=dict)
    max_documents: _Count | None = None
    max_bytes: _Count | None = None
    llm_tokens_per_day: _Count | None = None

    @property
    def empty(self) -> bool:
        limits = (self.max_documents, self.max_bytes, self.llm_tokens_per_day)
        return not self.requests_per_s and all(v is None for v in limits)


class PlatformAccess(_Model):
    bindings: list[Binding] = Field(default_factory=list)


class TenantAccess(_Model):
    bindings: list[Binding] = Field(default_factory=list)
    quota: Quota = Field(default_factory=Quota)


class AccessFile(_Model):
    platform: PlatformAccess = Field(default_factory=PlatformAccess)
    tenants: dict[TenantKey, TenantAccess] = Field(default_factory=dict)

    def bindings(self) -> Iterator[tuple[str, Binding]]:
        """Every binding with its tenant (``"*"`` for the platform's)."""
        for b in self.platform.bindings:
            yield ALL_TENANTS, b
        for tenant, access in sorted(self.tenants.items()):
            for b in access.bindings:
                yield tenant, b

    def quota(self, tenant: str) -> Quota | None:
        access = self.tenants.get(tenant)
        return None if access is None else access.quota

    # -- edits (pure: each returns a new file) ------------------------------------------------------

    def granted(self, tenant: str, principal: str, role: Role) -> AccessFile:
        """With ``principal`` holding ``role`` in ``tenant`` (``"*"``: every tenant); idempotent."""
        binding = Binding(principal=principal, role=role)
        if tenant == ALL_TENANTS:
            if binding in self.platform.bindings:
                return self
            return self._with(platform=PlatformAccess(bindings=[*self.platform.bindings, binding]))
        access = self.tenants.get(tenant, TenantAccess())
        if binding in access.bindings:
            return self
        grown = TenantAccess(bindings=[*access.bindings, binding], quota=access.quota)
        return self._with_tenant(tenant, grown)

    def revoked(self, tenant: str, principal: str, role: Role | None = None) -> tuple[AccessFile, int]:
        """Without ``principal``'s binding to ``role`` (None: to any role) in ``tenant``; and how many
        bindings went. A tenant left with no binding and no quota is dropped from the file."""

        def keep(b: Binding) -> bool:
            return not (b.principal == principal and (role is None or b.role == role))

        if tenant == ALL_TENANTS:
            kept = [b for b in self.platform.bindings if keep(b)]
            removed = len(self.platform.bindings) - len(kept)
            return self._with(platform=PlatformAccess(bindings=kept)), removed
        access = self.tenants.get(tenant)
        if access is None:
            return self, 0
        kept = [b for b in access.bindings if keep(b)]
        removed = len(access.bindings) - len(kept)
        return self._with_tenant(tenant, TenantAccess(bindings=kept, quota=access.quota)), removed

    def with_quota(self, tenant: str, quota: Quota) -> AccessFile:
        """With ``tenant``'s quota replaced by ``quota``."""
        access = self.tenants.get(tenant, TenantAccess())
        return self._with_tenant(tenant, TenantAccess(bindings=access.bindings, quota=quota))

    def _with(self, **changes: object) -> AccessFile:
        return AccessFile.model_validate({**self._plain(), **{k: _plain(v) for k, v in changes.items()}})

    def _with_tenant(self, tenant: str, access: TenantAccess) -> AccessFile:
        tenants = {t: a for t, a in self.tenants.items() if t != tenant}
        if access.bindings or not access.quota.empty:
            tenants[tenant] = access
        return self._with(tenants=dict(sorted(tenants.items())))

    def _plain(self) -> dict[str, object]:
        return {"platform": _plain(self.platform), "tenants": _plain(self.tenants)}


def _plain(value: object) -> object:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    return value


# -- reading and writing --------------------------------------------------------------------------------


def access_file_path(common: CommonSettings) -> Path:
    """``[common] access_file``, else ``<data_dir>/access.toml``."""
    return common.access_file or common.data_dir / "access.toml"


def parse(text: str, source: Path | str = "<access file>") -> AccessFile:
    """The access file in ``text``, or :class:`AccessFileError` listing every problem."""
    import tomllib

    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise AccessFileError(source, [f"not valid TOML: {exc}"]) from None
    try:
        return AccessFile.model_validate(data)
    except ValidationError as exc:
        raise AccessFileError(source, validation_problems(exc)) from None


def validation_problems(exc: ValidationError) -> list[str]:
    """Each error of ``exc`` as ``where: what (got value)``."""
    problems = []
    for err in exc.errors(include_url=False):
        where = ".".join(str(p) for p in err["loc"] if p != "[key]") or "(top level)"
        value = err.get("input")
        got = f" (got {value!r})" if isinstance(value, str | int | float) else ""
        problems.append(f"{where}: {err['msg'].removeprefix('Value error, ')}{got}")
    return problems


def load(path: Path) -> AccessFile:
    """The access file at ``path``; a missing file is an empty one (no bindings, no quotas)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return AccessFile()
    except (OSError, UnicodeDecodeError) as exc:
        raise AccessFileError(path, [f"cannot be read: {exc}"]) from None
    return parse(text, path)


def _string(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)  # a JSON string is a TOML basic string


def _bindings(bindings: list[Binding]) -> list[str]:
    if not bindings:
        return ["bindings = []"]
    lines = ["bindings = ["]
    for b in bindings:
        lines.append(f"  {{ principal = {_string(b.principal)}, role = {_string(b.role.value)} }},")
    return [*lines, "]"]


def dumps(model: AccessFile) -> str:
    """``model`` as TOML (the format above; :func:`parse` reads it back equal)."""
    lines = ["# Isthmus access file: role bindings and quotas per tenant (docs/security.md)", ""]
    lines += ["[platform]", *_bindings(model.platform.bindings)]
    for tenant, access in sorted(model.tenants.items()):
        lines += ["", f"[tenants.{tenant}]", *_bindings(access.bindings)]
        q = access.quota
        if q.empty:
            continue
        lines += ["", f"[tenants.{tenant}.quota]"]
        if q.requests_per_s:
            rates = ", ".join(f"{family} = {n}" for family, n in sorted(q.requests_per_s.items()))
            lines.append(f"requests_per_s = {{ {rates} }}")
        for key in ("max_documents", "max_bytes", "llm_tokens_per_day"):
            value = getattr(q, key)
            if value is not None:
                lines.append(f"{key} = {value}")
    return "\n".join(lines) + "\n"


def save(path: Path, model: AccessFile) -> None:
    """Write ``model`` to ``path`` atomically (a temporary file in the same directory, renamed over it),
    readable by its owner only (0600): a reader sees the old file or the new one, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")  # mode 0600
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(dumps(model))
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# -- reloading ------------------------------------------------------------------------------------------


class AccessSource(Protocol):
    """Where the authorizer and the quota gate get the current access file (cheap: called per RPC)."""

    def current(self) -> AccessFile: ...


class StaticAccess:
    """A fixed access file (tests, tools)."""

    def __init__(self, model: AccessFile | None = None) -> None:
        self.model = model or AccessFile()

    def current(self) -> AccessFile:
        return self.model


_Signature = tuple[int, int, int] | None


def _signature(path: Path) -> _Signature:
    try:
        st = path.stat()  # follows symlinks: a ConfigMap update swaps the ..data link
    except FileNotFoundError:
        return None
    except OSError:
        return (-1, -1, -1)  # unreadable: loading says why
    return (st.st_mtime_ns, st.st_size, st.st_ino)


class AccessFileReloader:
    """The access file at ``path``, re-read when its mtime, size or inode changes.

    :meth:`current` looks at the file at most once per ``check_interval_s`` (one clock read otherwise).
    An edit that does not validate is logged as an error with every problem, and the last good file
    stays in force; a removed file means no bindings. The first load raises :class:`AccessFileError`
    instead: a process does not start on a broken access file."""

    def __init__(
        self,
        path: Path,
        *,
        check_interval_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path = path
        self._interval = check_interval_s
        self._clock = clock
        self._signature = _signature(path)
        self._model = load(path)
        self._next_check = clock() + check_interval_s
        #: incremented on every change taken into account
        self.generation = 0

    def current(self) -> AccessFile:
        now = self._clock()
        if now >= self._next_check:
            self._next_check = now + self._interval
            self.refresh()
        return self._model

    def refresh(self) -> bool:
        """Re-read the file if it changed; True when a new file is in force."""
        signature = _signature(self.path)
        if signature == self._signature:
            return False
        self._signature = signature
        try:
            model = load(self.path)
        except AccessFileError as exc:
            log.error(
                "access file refused: the last good one stays in force until it is fixed",
                path=str(self.path),
                problems=exc.problems,
            )
            return False
        if signature is None:
            log.warning("access file removed: no bindings remain", path=str(self.path))
        else:
            log.info("access file reloaded", path=str(self.path), bindings=sum(1 for _ in model.bindings()))
        self._model = model
        self.generation += 1
        return True
