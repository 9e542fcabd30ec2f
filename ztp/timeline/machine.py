"""The device state machine: events in, a state per device and derived failures out (sans-I/O).

Every event about a device (DHCP, lease, render, TFTP, syslog, API) is fed to `DeviceTimeline.feed()` with
its time; the machine keeps one `DeviceStatus` per device key (inventory hostname, else MAC) and moves it
along

    seen -> offered -> bound -> fetching -> delivered -> confirmed

or to `failed`, naming the stage it failed at and a reason a person can act on. Stages that should end by
themselves (an OFFER is requested within seconds, a bound device fetches its config soon after) get a
deadline; `next_deadline()` / `handle_timer(now)` turn a missed one into a `failed` event (a delivered
config not confirmed within `timeline.confirm_timeout`, when set, too). It never reads
the clock, so every failure reason is a fast unit test with a fake clock. Replaying the stored events
(including the derived `failed` ones) rebuilds the same states after a restart.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from ztp.native import mypyc_attr


class Stage(StrEnum):
    """Where a device is in its provisioning."""

    SEEN = "seen"
    OFFERED = "offered"
    BOUND = "bound"
    FETCHING = "fetching"
    DELIVERED = "delivered"
    CONFIRMED = "confirmed"
    FAILED = "failed"


STAGES: tuple[Stage, ...] = tuple(Stage)


class Kind(StrEnum):
    """What an event says happened."""

    DISCOVER = "discover"  # a DISCOVER we did not answer (detail: reason)
    OFFER = "offer"  # DISCOVER -> OFFER
    REQUEST = "request"  # REQUEST -> ACK, or no reply (detail: outcome, reason)
    NAK = "nak"  # REQUEST -> NAK (detail: reason)
    BOUND = "bound"  # the ledger committed a new binding
    RENEWED = "renewed"
    RELEASED = "released"
    DECLINED = "declined"
    EXPIRED = "expired"
    RENDERED = "rendered"  # template, size, sha256, revision, ms
    TRANSFER_STARTED = "transfer-started"  # filename, blksize, windowsize
    TRANSFER_FINISHED = "transfer-finished"  # bytes, ms, retransmits
    TRANSFER_FAILED = "transfer-failed"  # reason (timeout at block N, peer error)
    REFUSED = "refused"  # a config request refused (why; fatal: the device itself cannot get it)
    MISCABLED = "miscabled"  # expected vs actual relay port
    SYSLOG = "syslog"  # the device's first syslog message after its config was delivered
    CONFIRMED = "confirmed"  # source: syslog or api
    FAILED = "failed"  # derived: stage, reason


# Event and DeviceStatus spell out __init__ (init=False), as the DHCP path's records do: this module is
# compiled (setup.py's HOT build) and one or two Events are made per DORA (tests/unit/test_explicit_init.py).
@dataclass(frozen=True, slots=True, init=False)
class Event:
    """One thing that happened to a device, at `at` (seconds since the epoch)."""

    key: str
    at: float
    kind: Kind
    text: str = ""  # one line for people
    mac: str | None = None
    ip: str | None = None
    detail: Mapping[str, Any] = field(default_factory=dict)

    def __init__(self, key: str, at: float, kind: Kind, text: str = "", mac: str | None = None,
                 ip: str | None = None, detail: Mapping[str, Any] | None = None) -> None:
        object.__setattr__(self, "key", key)
        object.__setattr__(self, "at", at)
        object.__setattr__(self, "kind", kind)
        object.__setattr__(self, "text", text)
        object.__setattr__(self, "mac", mac)
        object.__setattr__(self, "ip", ip)
        object.__setattr__(self, "detail", {} if detail is None else detail)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form (the API and the store)."""
        return {"key": self.key, "at": self.at, "kind": self.kind.value, "text": self.text, "mac": self.mac,
                "ip": self.ip, "detail": dict(self.detail)}


@dataclass(slots=True, init=False)
class DeviceStatus:
    """A device's current state and what led to it."""

    key: str
    state: Stage
    since: float
    mac: str | None = None
    ip: str | None = None
    failed_stage: Stage | None = None
    reason: str = ""
    miscabled: dict[str, str] | None = None
    last_kind: Kind | None = None
    last_at: float = 0.0
    last_text: str = ""
    events: int = 0

    def __init__(self, key: str, state: Stage, since: float, mac: str | None = None, ip: str | None = None,
                 failed_stage: Stage | None = None, reason: str = "", miscabled: dict[str, str] | None = None,
                 last_kind: Kind | None = None, last_at: float = 0.0, last_text: str = "", events: int = 0) -> None:
        self.key = key
        self.state = state
        self.since = since
        self.mac = mac
        self.ip = ip
        self.failed_stage = failed_stage
        self.reason = reason
        self.miscabled = miscabled
        self.last_kind = last_kind
        self.last_at = last_at
        self.last_text = last_text
        self.events = events

    @property
    def awaits_confirmation(self) -> bool:
        """Its config was delivered and it has not confirmed: delivered, or failed for want of confirmation
        (a late first syslog line still confirms it)."""
        return self.state == Stage.DELIVERED or \
            (self.state == Stage.FAILED and self.failed_stage == Stage.DELIVERED)

    def as_dict(self, now: float | None = None) -> dict[str, Any]:
        """JSON-ready form; with `now`, also the seconds spent in the current state."""
        out: dict[str, Any] = {
            "key": self.key, "state": self.state.value, "since": self.since, "mac": self.mac, "ip": self.ip,
            "failed_stage": self.failed_stage.value if self.failed_stage else None, "reason": self.reason,
            "miscabled": self.miscabled, "last_event": self.last_kind.value if self.last_kind else None,
            "last_at": self.last_at, "last_text": self.last_text, "events": self.events,
        }
        if now is not None:
            out["in_state_seconds"] = max(0.0, now - self.since)
        return out


@dataclass(frozen=True, slots=True)
class Timeouts:
    """How long a stage may last before the device is marked failed (seconds)."""

    offered: float = 60.0  # RFC 2131 clients REQUEST within seconds of an OFFER
    bound: float = 300.0  # devices fetch their config right after the ACK
    fetching: float = 600.0  # a stalled transfer ends sooner (TFTP's own 60 s ceiling): a safety net
    delivered: float = 0.0  # confirmation by syslog; 0: off (not every device sends syslog)


_REASONS = {
    Stage.OFFERED: "offered {ip}, never requested: another DHCP server on the segment answered first, or the "
                   "client cannot hear our OFFER (relay, VLAN, firewall)?",
    Stage.BOUND: "bound {ip}, never fetched the config: check option 66/67 (TFTP server, boot file) for this "
                 "vendor",
    Stage.FETCHING: "the config transfer started but never finished",
    Stage.DELIVERED: "delivered, never confirmed: is `logging host` in its config and udp/514 open?",
}
# States a device in which an event of this kind moves it to the stage named; others record it only.
_MOVES: dict[Kind, tuple[Stage, frozenset[Stage | None]]] = {
    Kind.DISCOVER: (Stage.SEEN, frozenset({None, Stage.SEEN, Stage.FAILED})),
    Kind.OFFER: (Stage.OFFERED, frozenset({None, Stage.SEEN, Stage.OFFERED, Stage.FAILED, Stage.BOUND})),
    Kind.BOUND: (Stage.BOUND, frozenset({None, Stage.SEEN, Stage.OFFERED, Stage.FAILED})),
    Kind.TRANSFER_STARTED: (Stage.FETCHING, frozenset({None, *STAGES})),
    Kind.TRANSFER_FINISHED: (Stage.DELIVERED, frozenset({None, *STAGES})),
    Kind.CONFIRMED: (Stage.CONFIRMED, frozenset({None, *STAGES})),
}


@mypyc_attr(allow_interpreted_subclasses=True)  # a test counts handle_timer's calls in a subclass
class DeviceTimeline:
    """All devices' states, fed events in time order; failures on missed deadlines."""

    def __init__(self, timeouts: Timeouts | None = None) -> None:
        self.timeouts = timeouts or Timeouts()
        self.devices: dict[str, DeviceStatus] = {}
        self._deadlines: list[tuple[float, int, str, Stage, float]] = []  # (when, seq, key, state, since)
        self._seq = 0

    def status(self, key: str) -> DeviceStatus | None:
        """A device's status, or None if nothing was heard from it."""
        return self.devices.get(key)

    def counts(self) -> dict[str, int]:
        """Devices per state (every state listed, zeros included)."""
        out = dict.fromkeys((s.value for s in STAGES), 0)
        for device in self.devices.values():
            out[device.state.value] += 1
        return out

    def feed(self, event: Event) -> list[Event]:
        """Apply `event`; the events to record: `event` itself (unless it changes nothing worth keeping)
        and any it implies (the first syslog line after delivery confirms the device)."""
        device = self.devices.get(event.key)
        if event.kind == Kind.SYSLOG:
            if device is None or not device.awaits_confirmation:
                return []  # ordinary chatter: not a timeline event
            confirmed = Event(event.key, event.at, Kind.CONFIRMED, "confirmed: first syslog message after the "
                              "config was delivered", event.mac, event.ip, {"source": "syslog"})
            return [*self._apply(event), *self._apply(confirmed)]
        return self._apply(event)

    def _apply(self, event: Event) -> list[Event]:
        device = self.devices.get(event.key)
        if device is None:
            device = DeviceStatus(event.key, Stage.SEEN, event.at)
            self.devices[event.key] = device
            previous: Stage | None = None
        else:
            previous = device.state
        device.events += 1
        device.last_kind, device.last_at, device.last_text = event.kind, event.at, event.text
        if event.mac:
            device.mac = event.mac
        if event.ip:
            device.ip = event.ip
        kind = event.kind
        if kind == Kind.MISCABLED:
            device.miscabled = {k: str(v) for k, v in event.detail.items()}
            device.reason = event.text
        elif kind == Kind.FAILED:
            stage = event.detail.get("stage")
            self._enter(device, Stage.FAILED, event.at)
            device.failed_stage = Stage(str(stage)) if stage in set(Stage) else previous
            device.reason = event.text
        elif kind in (Kind.TRANSFER_FAILED, Kind.DECLINED) or \
                (kind == Kind.REFUSED and event.detail.get("fatal")) or \
                (kind == Kind.DISCOVER and event.detail.get("reason")):
            self._enter(device, Stage.FAILED, event.at)
            device.failed_stage = Stage.FETCHING if kind == Kind.TRANSFER_FAILED else (previous or Stage.SEEN)
            device.reason = event.text
        else:
            move = _MOVES.get(kind)
            if move is not None and previous in move[1]:
                self._enter(device, move[0], event.at)
        return [event]

    def _enter(self, device: DeviceStatus, stage: Stage, at: float) -> None:
        if device.state != stage or stage in (Stage.OFFERED, Stage.BOUND, Stage.FETCHING):
            device.since = at  # a repeated OFFER or a new binding restarts that stage's clock
        device.state = stage
        if stage != Stage.FAILED:
            device.failed_stage = None
            if device.miscabled is None:
                device.reason = ""
        limit = {Stage.OFFERED: self.timeouts.offered, Stage.BOUND: self.timeouts.bound,
                 Stage.FETCHING: self.timeouts.fetching, Stage.DELIVERED: self.timeouts.delivered}.get(stage)
        if limit:  # None: the stage ends by itself or not at all; 0: that deadline is off
            self._seq += 1
            heapq.heappush(self._deadlines, (at + limit, self._seq, device.key, stage, device.since))

    def next_deadline(self) -> float | None:
        """When `handle_timer` should next run (None: no device is waiting on a deadline)."""
        heap = self._deadlines
        while heap:
            _, _, key, stage, since = heap[0]
            device = self.devices.get(key)
            if device is not None and device.state == stage and device.since == since:
                return heap[0][0]
            heapq.heappop(heap)  # the device moved on: that deadline no longer applies
        return None

    def handle_timer(self, now: float) -> list[Event]:
        """`failed` events for every device whose stage outlived its deadline by `now` (already applied)."""
        out: list[Event] = []
        heap = self._deadlines
        while heap and heap[0][0] <= now:
            when, _, key, stage, since = heapq.heappop(heap)
            device = self.devices.get(key)
            if device is None or device.state != stage or device.since != since:
                continue
            text = _REASONS[stage].format(ip=device.ip or "an address")
            if stage == Stage.BOUND:
                text = text.replace("the config:", f"the config within {self.timeouts.bound:.0f} s:")
            elif stage == Stage.DELIVERED:
                text = text.replace("never confirmed:", f"never confirmed within {when - since:.0f} s:")
            event = Event(key, when, Kind.FAILED, text, device.mac, device.ip, {"stage": stage.value})
            out.extend(self._apply(event))
        return out

    def replay(self, events: Iterable[Event]) -> None:
        """Rebuild the states from stored events (oldest first). Failures derived before are among them; the
        deadlines of stages still current are re-armed, so `handle_timer(now)` fires those missed while down."""
        for event in events:
            self._apply(event)
