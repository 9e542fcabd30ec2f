"""Boot attempts: when an emulated switch goes back to DHCP after a failed boot, and how long it waits first.

A real switch's ZTP loop does not give up after one failed fetch: Arista EOS ZTP, Cisco POAP, SONiC ZTP and
ONIE's discovery all restart from DHCP DISCOVER (forgetting the address) and try again until an operator
stops them. The agent bounds that loop (``--boot-attempts``, within ``--timeout``) so that runs end. This
module is the pure decision: which failures restart the boot, and the backoff before the next attempt
(exponential, bounded, jittered so that a fleet that failed together does not DISCOVER again in lock-step).
The I/O shell is :meth:`ztp.agent.device.Device.run`.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

#: Stages whose failure a switch answers by booting again: the exchange with the appliance (no ACK after an
#: OFFER, NAKs) or what came after the lease (no boot file in the ACK, name resolution, TFTP/HTTP fetch, the
#: vendor's check of what was fetched). Not retried: "discover" (no offer until --timeout: the DISCOVER loop
#: already is the retry), "arp_probe" (conflicts until --timeout), and the agent's own host errors
#: ("configure", "write"), which another DHCP exchange cannot fix.
RETRYABLE_STAGES = frozenset({"request", "boot", "resolve", "tftp", "http", "fetch", "verify"})


@dataclass(frozen=True, slots=True)
class AttemptFailure:
    """Why one earlier boot attempt failed, and how long the device waited before the next one."""

    attempt: int
    stage: str
    reason: str
    exit_code: int
    backoff: float

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict (backoff in seconds, rounded to the millisecond)."""
        return {"attempt": self.attempt, "stage": self.stage, "reason": self.reason, "exit_code": self.exit_code,
                "backoff": round(self.backoff, 3)}


@dataclass(frozen=True, slots=True)
class BootRetry:
    """How many boot attempts a device makes and the backoff between them (seconds).

    Attempt n failed -> wait uniform(b/2, b) with b = min(`backoff` * 2**(n-1), `backoff_max`) ("equal
    jitter"): never less than half the step, so retries stay spaced, never more than `backoff_max`.
    """

    attempts: int = 3
    backoff: float = 2.0
    backoff_max: float = 16.0

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError(f"boot attempts must be at least 1, not {self.attempts}")
        if self.backoff < 0 or self.backoff_max < self.backoff:
            raise ValueError(f"backoff {self.backoff} / max {self.backoff_max}: need 0 <= backoff <= max")

    def is_last(self, attempt: int) -> bool:
        """True when `attempt` (1-based) is the last one allowed."""
        return attempt >= self.attempts

    def delay(self, attempt: int, rng: random.Random) -> float:
        """The jittered wait after failed attempt `attempt` (1-based)."""
        step = min(self.backoff * 2.0 ** max(attempt - 1, 0), self.backoff_max)
        return float(rng.uniform(step / 2, step))

    def next_attempt(self, attempt: int, stage: str, now: float, deadline: float,
                     rng: random.Random) -> float | None:
        """After attempt `attempt` failed at `stage` at `now`: the backoff before booting again, or None when
        the device gives up (last attempt, a stage no new DHCP exchange can fix, or no time left before
        `deadline` for the wait and a DHCP exchange after it)."""
        if self.is_last(attempt) or stage not in RETRYABLE_STAGES:
            return None
        wait = self.delay(attempt, rng)
        if now + wait >= deadline:
            return None
        return wait
