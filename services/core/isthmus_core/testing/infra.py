"""The one rule for tests that need a real external component (Kafka, an API server, helm, checkov…) or
data kept outside the repository (the shared datasets in ``../shared/datasets``)."""

from __future__ import annotations

import os
import random
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import pytest


def missing_tool(reason: str) -> NoReturn:
    """Skip locally with the reason; under CI=true a missing real component is a failure, never a skip."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true but {reason}", pytrace=False)
    pytest.skip(reason)


def missing_data(path: Path, why: str) -> NoReturn:
    """A test needs data at ``path`` that is not there: skip locally, fail under CI=true (as missing_tool)."""
    missing_tool(f"{path} is missing: {why}")


def repository_root() -> Path | None:
    """The checkout this package is installed from (the folder holding uv.lock), or None if not found."""
    for parent in Path(__file__).resolve().parents:
        if (parent / "uv.lock").is_file():
            return parent
    return None


def shared_datasets(*parts: str, why: str = "the shared retrieval datasets") -> Path:
    """``<datasets>/<parts>``, where ``<datasets>`` is ``$ISTHMUS_SHARED_DATASETS`` if set, else
    ``../shared/datasets`` beside the repository root; :func:`missing_data` when the path is absent (a
    fresh clone on its own has no ``../shared``). Call it inside a test or fixture, never at import."""
    override = os.environ.get("ISTHMUS_SHARED_DATASETS")
    if override:
        base = Path(override)
    else:
        root = repository_root()
        base = (root.parent if root is not None else Path.cwd().parent) / "shared" / "datasets"
    path = base.joinpath(*parts)
    if not path.exists():
        hint = "check out the project's shared data beside the repository, or set ISTHMUS_SHARED_DATASETS"
        missing_data(path, f"{why} ({hint})")
    return path


def _ephemeral_low() -> int:
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port_run(n: int = 1) -> int:
    """A loopback port p with p..p+n-1 all free, below the kernel's ephemeral range: a server started on
    them a moment later cannot lose one to a client's outgoing connection (ports handed out by
    ``bind(0)`` come from that range, and so do every client socket's)."""
    low, high = 10000, _ephemeral_low() - n
    for _ in range(200):
        port = random.randint(low, max(low, high))
        sockets: list[socket.socket] = []
        try:
            for p in range(port, port + n):
                s = socket.socket()
                sockets.append(s)
                s.bind(("127.0.0.1", p))
            return port
        except OSError:
            continue
        finally:
            for s in sockets:
                s.close()
    raise RuntimeError(f"no run of {n} free ports on 127.0.0.1 between {low} and {high}")


@dataclass(frozen=True)
class SecureKafka:
    """A broker whose clients must use TLS + SASL (``tests/infra/kafka.sh up --secure``): ``bootstrap`` is its
    SASL_SSL listener, ``cafile`` the throwaway CA that signed its certificate, ``username``/``password``
    a SCRAM-SHA-256/512 and PLAIN user; ``plaintext_bootstrap`` is its internal listener."""

    bootstrap: str
    cafile: Path
    username: str
    password: str
    plaintext_bootstrap: str
