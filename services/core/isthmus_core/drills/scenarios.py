"""Failover drill scenarios: one definition, run by the local runner (``isthmus drill run``) and by the
operator (a ``FailoverDrill`` object). Pure data: a scenario is a list of :class:`Step` on two roles,
``primary`` (the region that fails) and ``secondary`` (the survivor), bound to real regions by the caller.

An executor maps each :class:`Action` to a fault or a wait: the local runner runs the region's shell
hooks (:class:`isthmus_core.regions.RegionHooks`), the operator scales the region's workloads through the
Kubernetes API and patches Tenants. While steps run, a writer and a reader keep a steady load and every
step lands on the drill's timeline.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Final, Literal

from isthmus_core.errors import InvalidArgument

Role = Literal["primary", "secondary"]


class Action(StrEnum):
    KILL_REGION = "kill-region"  # every process of the region, brokers included (kill -9 / scale to 0)
    RESTORE_REGION = "restore-region"  # the region starts again on its data
    KILL_BROKER = "kill-broker"  # one broker of the region's (three-node) cluster
    RESTORE_BROKER = "restore-broker"
    STOP_LINK = "stop-link"  # replication into the region stops (its MirrorMaker 2)
    START_LINK = "start-link"
    MOVE_PRIMARY = "move-primary"  # the drill's tenants write to the region from now on
    OBSERVE = "observe"  # traffic runs on for ``seconds``
    AWAIT_RECOVERY = "await-recovery"  # until the tenant is answered again (≤ ``seconds``): RTO
    AWAIT_CATCH_UP = "await-catch-up"  # until both regions hold the same documents (≤ ``seconds``)


#: actions that inject or heal a fault (the rest wait or move traffic)
FAULTS: Final = frozenset({Action.KILL_REGION, Action.KILL_BROKER, Action.STOP_LINK})
HEALS: Final = frozenset({Action.RESTORE_REGION, Action.RESTORE_BROKER, Action.START_LINK})


@dataclass(frozen=True, slots=True)
class Step:
    action: Action
    region: Role = "primary"
    seconds: float = 0.0  # OBSERVE: how long; AWAIT_*: the bound (the drill fails past it)


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    summary: str
    steps: tuple[Step, ...]
    #: the drill measures loss and duplicates after these steps (both regions up and caught up)
    checks_convergence: bool = True


def _s(action: Action, region: Role = "primary", seconds: float = 0.0) -> Step:
    return Step(action, region, seconds)


_LOSS = (
    _s(Action.OBSERVE, seconds=5),
    _s(Action.KILL_REGION),
    _s(Action.MOVE_PRIMARY, "secondary"),
    _s(Action.AWAIT_RECOVERY, "secondary", 60),
    _s(Action.OBSERVE, seconds=5),
)
_BACK = (
    _s(Action.RESTORE_REGION),
    _s(Action.AWAIT_CATCH_UP, seconds=120),
    _s(Action.MOVE_PRIMARY, "primary"),
    _s(Action.OBSERVE, seconds=5),
)

SCENARIOS: Final[dict[str, Scenario]] = {
    s.name: s
    for s in (
        Scenario(
            "region-loss",
            "kill -9 every process of the primary region; clients fail over to the secondary; "
            "the primary comes back at the end so the regions can be compared",
            (*_LOSS, _s(Action.RESTORE_REGION), _s(Action.AWAIT_CATCH_UP, seconds=120)),
        ),
        Scenario(
            "failback",
            "region-loss, then the primary returns, catches up, and traffic moves back to it",
            (*_LOSS, *_BACK),
        ),
        Scenario(
            "broker-loss",
            "one broker of the primary's three-node cluster dies and returns; traffic stays put",
            (
                _s(Action.OBSERVE, seconds=5),
                _s(Action.KILL_BROKER),
                _s(Action.OBSERVE, seconds=15),
                _s(Action.RESTORE_BROKER),
                _s(Action.AWAIT_CATCH_UP, seconds=120),
            ),
        ),
        Scenario(
            "link-loss",
            "replication into the secondary stops while writes go on, then resumes and catches up",
            (
                _s(Action.OBSERVE, seconds=5),
                _s(Action.STOP_LINK, "secondary"),
                _s(Action.OBSERVE, seconds=20),
                _s(Action.START_LINK, "secondary"),
                _s(Action.AWAIT_CATCH_UP, seconds=120),
            ),
        ),
        Scenario(
            "tenant-move",
            "the drill's tenant changes primary to the secondary while other tenants are untouched",
            (
                _s(Action.OBSERVE, seconds=5),
                _s(Action.MOVE_PRIMARY, "secondary"),
                _s(Action.OBSERVE, seconds=10),
                _s(Action.AWAIT_CATCH_UP, seconds=120),
            ),
        ),
    )
}


def scenario(name: str) -> Scenario:
    """The scenario called ``name``; InvalidArgument lists the known ones."""
    try:
        return SCENARIOS[name]
    except KeyError:
        raise InvalidArgument(
            f"unknown drill scenario {name!r}; the scenarios are: {', '.join(sorted(SCENARIOS))}"
        ) from None


def bind(step: Step, primary: str, secondary: str) -> str:
    """The real region a step acts on."""
    return primary if step.region == "primary" else secondary
