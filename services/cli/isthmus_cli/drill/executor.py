"""Fault injection for the local drill runner: a scenario step runs one of the regions file's shell hooks
(:class:`isthmus_core.regions.RegionHooks`) with ``/bin/sh -c``, bounded in time."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import tempfile
from typing import Final, Protocol

from isthmus_core.drills.scenarios import Action, Scenario, bind
from isthmus_core.regions import RegionsConfig

#: the hook (a RegionHooks field) each fault or heal action runs
HOOKS: Final[dict[Action, str]] = {
    Action.KILL_REGION: "kill",
    Action.RESTORE_REGION: "restore",
    Action.KILL_BROKER: "kill_broker",
    Action.RESTORE_BROKER: "restore_broker",
    Action.STOP_LINK: "stop_link",
    Action.START_LINK: "start_link",
}


class DrillFailed(Exception):
    """A step could not be carried out (a hook failed or is missing, a bounded wait ran out)."""


class Executor(Protocol):
    async def run(self, action: Action, region: str) -> None:
        """Inject or heal the fault ``action`` in ``region``; DrillFailed when it cannot."""
        ...


def hook_name(region: str, action: Action) -> str:
    return f"regions.{region}.hooks.{HOOKS[action]}"


def missing_hooks(config: RegionsConfig, scenario: Scenario, primary: str, secondary: str) -> list[str]:
    """The hooks (``regions.<r>.hooks.<name>``) the scenario needs and the regions file leaves empty."""
    missing: list[str] = []
    for step in scenario.steps:
        if step.action not in HOOKS:
            continue
        region = bind(step, primary, secondary)
        if not getattr(config.region(region).hooks, HOOKS[step.action]).strip():
            name = hook_name(region, step.action)
            if name not in missing:
                missing.append(name)
    return missing


class LocalExecutor:
    """Runs the regions file's hooks on this machine. The hook's output goes to a file, not a pipe, so a
    hook that starts daemons (``restore``) returns as soon as its shell does."""

    def __init__(self, config: RegionsConfig, timeout_s: float = 300.0) -> None:
        self.config = config
        self.timeout_s = timeout_s

    async def run(self, action: Action, region: str) -> None:
        if action not in HOOKS:
            raise DrillFailed(f"step {action} is not a fault the local executor injects")
        name = hook_name(region, action)
        command = getattr(self.config.region(region).hooks, HOOKS[action]).strip()
        if not command:
            raise DrillFailed(f"step {action} on region {region!r} needs the hook {name}: it is empty")
        with tempfile.TemporaryFile() as out:
            proc = await asyncio.create_subprocess_exec(
                "/bin/sh", "-c", command, stdout=out, stderr=out, start_new_session=True
            )
            try:
                code = await asyncio.wait_for(proc.wait(), self.timeout_s)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                await proc.wait()
                raise DrillFailed(f"hook {name} did not finish within {self.timeout_s:g} s") from None
            if code != 0:
                out.seek(0)
                tail = out.read().decode(errors="replace").strip().splitlines()[-5:]
                raise DrillFailed(f"hook {name} exited with {code}: {' | '.join(tail) or 'no output'}")
