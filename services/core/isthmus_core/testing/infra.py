"""The one rule for tests that need a real external component (Kafka, an API server, helm, checkov…)."""

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
