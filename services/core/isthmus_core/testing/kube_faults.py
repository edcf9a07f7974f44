"""Pod-level faults on the cluster tier's node (``tests/infra/cluster.sh``), shared by tests/cluster and the
cluster benchmark (``python -m isthmus_bench.cluster``): crash a pod's process the way an OOM kill or a
segfault would (SIGKILL from the node), delete a pod, and drive steady traffic through a Service while
recording the outcome of every call. No pytest here; nothing happens at import time."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

from isthmus_core.testing.kube_node import KubeError, KubeNode

#: what a client may retry: the server was unreachable or refused the call before doing it
RETRYABLE = frozenset({grpc.StatusCode.UNAVAILABLE})


def container_processes(container_id: str, proc: Path = Path("/proc")) -> list[int]:
    """The node's process ids running in one container (its cgroup path names the container's id; the
    node is this machine). Only that container: the pod's sandbox (pause) process lives on, as it does
    when a container crashes."""
    found: list[int] = []
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cgroup = (entry / "cgroup").read_text()
        except OSError:
            continue  # exited meanwhile, or a kernel thread
        if container_id in cgroup:
            found.append(int(entry.name))
    return sorted(found)


def crash_pod(node: KubeNode, namespace: str, pod: str) -> int:
    """SIGKILL every process of a pod's (first) container, as an OOM kill or a segfault would: the pod
    object and its sandbox stay, the kubelet restarts the container. Returns the container's restart count
    before the crash."""
    obj = node.get(namespace, "pod", pod)
    status = obj["status"]["containerStatuses"][0]
    restarts = int(status["restartCount"])
    container_id = str(status["containerID"]).partition("://")[2]
    pids = container_processes(container_id)
    if not container_id or not pids:
        raise KubeError(f"no process of pod {pod}'s container {container_id!r} found on this node")
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return restarts


def wait_restarted(node: KubeNode, namespace: str, pod: str, after: int, *, within_s: float = 300) -> None:
    """Until the pod's container restarted (restart count past ``after``) and the pod is Ready again."""
    deadline = time.monotonic() + within_s
    while True:
        obj = node.get(namespace, "pod", pod)
        status = obj["status"]
        ready = any(c["type"] == "Ready" and c["status"] == "True" for c in status.get("conditions", []))
        if ready and int(status["containerStatuses"][0]["restartCount"]) > after:
            return
        if time.monotonic() > deadline:
            raise KubeError(f"pod {pod} not restarted and Ready within {within_s}s: {status}")
        time.sleep(0.5)


def wait_ready_replaced(
    node: KubeNode, namespace: str, selector: str, gone: str, *, within_s: float = 300
) -> str:
    """Until a pod matching ``selector`` other than ``gone`` is Ready (a deleted pod's replacement); its
    name."""
    deadline = time.monotonic() + within_s
    while True:
        for pod in node.pods(namespace, selector):
            name = pod["metadata"]["name"]
            conditions = pod["status"].get("conditions", [])
            ready = any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)
            if name != gone and ready and not pod["metadata"].get("deletionTimestamp"):
                return str(name)
        if time.monotonic() > deadline:
            raise KubeError(f"no Ready replacement of {gone} ({selector}) within {within_s}s")
        time.sleep(0.5)


@dataclass(frozen=True)
class Call:
    """One call of a traffic loop: when it started and ended (monotonic s), and its status code."""

    started: float
    ended: float
    code: grpc.StatusCode
    detail: str = ""


@dataclass
class Traffic:
    """Steady traffic: ``workers`` loops each calling ``call()`` back to back (pausing ``pause_s`` between
    calls) until stopped; every outcome recorded. ``call`` raises ``grpc.aio.AioRpcError`` on failure."""

    call: Callable[[], Awaitable[Any]]
    workers: int = 2
    pause_s: float = 0.05
    calls: list[Call] = field(default_factory=list)
    #: set at the first successful call
    answered: asyncio.Event = field(default_factory=asyncio.Event)
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while not self._stop.is_set():
            started = loop.time()
            try:
                await self.call()
                self.calls.append(Call(started, loop.time(), grpc.StatusCode.OK))
                self.answered.set()
            except grpc.aio.AioRpcError as exc:
                self.calls.append(Call(started, loop.time(), exc.code(), exc.details() or ""))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), self.pause_s)

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._loop()) for _ in range(self.workers)]

    async def stop(self) -> list[Call]:
        self._stop.set()
        await asyncio.gather(*self._tasks)
        return sorted(self.calls, key=lambda c: c.started)


def failures(calls: list[Call]) -> list[Call]:
    return [c for c in calls if c.code != grpc.StatusCode.OK]


def outage_s(calls: list[Call], since: float) -> float:
    """Seconds from ``since`` (a fault, monotonic) to the end of the first successful call that started
    after it: how long a client retrying back to back waited for service again."""
    ok = [c.ended for c in calls if c.code == grpc.StatusCode.OK and c.started >= since]
    if not ok:
        raise AssertionError("no successful call after the fault")
    return min(ok) - since
