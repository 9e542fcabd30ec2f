"""The timeline's asyncio shell: queues raw observations, turns them into events in batches, stores them.

The DHCP server, the ledger, the renderer and TFTP call the `Recorder`'s hooks on their hot paths; each
hook appends one tuple to a deque and returns (O(1), no formatting, no I/O). Every `tick` seconds the
recorder drains the deque: classifies (ztp.timeline.sources), feeds the state machine, runs its timers,
hands the new events to the store on one writer thread (never the loop) and to live listeners (the
dashboard's event stream). Memory is bounded: at most `max_devices` devices are tracked (events from
further unknown devices are counted and dropped) and the queue is capped.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ztp.config import Config
from ztp.devices import boot_target
from ztp.dhcp import packet as p
from ztp.dhcp.exchange import Ingress, Proposal
from ztp.dhcp.packet import DhcpPacket
from ztp.leases.ledger import LeaseEvent
from ztp.leases.table import LeaseTable
from ztp.render import DeviceView
from ztp.tftp.server import TransferNote
from ztp.timeline.machine import DeviceStatus, DeviceTimeline, Event, Kind, Timeouts
from ztp.timeline.sources import dhcp_events, lease_event, transfer_reason
from ztp.timeline.store import TimelineStore

log = logging.getLogger("ztp.timeline")

_NAMES: dict[int | None, str] = {code: name.lower() for code, name in p.MESSAGE_TYPE_NAMES.items()}
_MAX_QUEUE = 100_000  # observations waiting for the next tick; beyond: counted and dropped
_SLICE = 32  # observations classified per turn of the event loop (about half a millisecond)
_PRUNE_SECONDS = 3600.0
STORM_RATE = 200.0  # DHCP requests per second above which the history yields to the packets
STORM_SHARE = 0.04  # of each tick spent recording during a storm (the rest catches up after it)
_MTYPE = p.OPT_MESSAGE_TYPE
_ACK = bytes((p.ACK,))
_REQUEST = bytes((p.REQUEST,))
_REQUEST_ACK = ("request", "ack")


def config_revision(config: Config) -> str:
    """A short digest of the configuration and inventory files: which revision a config was rendered from."""
    digest = hashlib.sha256()
    for path in (config.path, config.inventory.path):
        try:
            digest.update(path.read_bytes())
        except OSError:
            digest.update(b"?")
    return digest.hexdigest()[:12]


@dataclass(frozen=True, slots=True)
class Retention:
    """How much history is kept."""

    seconds: float = 14 * 86400.0
    per_device: int = 500
    max_devices: int = 100_000


Listener = Callable[[list[Event]], None]


class Recorder:
    """Device timeline of a running appliance: hooks in, machine + store + listeners out."""

    def __init__(self, config: Config, table: LeaseTable, store: TimelineStore, *,
                 timeouts: Timeouts | None = None, retention: Retention | None = None,
                 revision: str = "", tick: float = 0.25, clock: Callable[[], float] = time.time,
                 activity: Callable[[], int] | None = None) -> None:
        self.config = config  # swapped on reload
        self.revision = revision  # of config + inventory, named in `rendered` events
        self.table = table
        self.store = store
        self.machine = DeviceTimeline(timeouts)
        self.retention = retention or Retention()
        self.tick = tick
        self.clock = clock
        self.listeners: list[Listener] = []
        self.counters: collections.Counter[str] = collections.Counter()
        self.dhcp_messages: collections.Counter[tuple[str, str]] = collections.Counter()  # (type, outcome)
        self.render_seconds: list[float] = []  # drained by the metrics on each scrape
        self._raw: collections.deque[tuple[Any, ...]] = collections.deque()
        self._writer = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="timeline")
        self._task: asyncio.Task[None] | None = None
        self._pruned_at = 0.0
        # How many DHCP requests the server has received so far (ztp serve: its counter): a storm is told by
        # their rate between ticks.
        self.activity = activity
        self._heard = (0, time.monotonic())
        self.storming = False  # as of the last tick

    @classmethod
    def for_config(cls, config: Config, table: LeaseTable, store: TimelineStore, **kwargs: Any) -> Recorder:
        """A recorder with the `timeline:` settings of `config`."""
        recorder = cls(config, table, store, **kwargs)
        recorder.reconfigure(config)
        return recorder

    def reconfigure(self, config: Config) -> None:
        """Take a new configuration (reload): inventory for keys, revision, `timeline:` timeouts and retention.
        Deadlines already armed keep their time; new stages get the new timeouts."""
        tl = config.timeline
        self.config = config
        self.revision = config_revision(config)
        self.machine.timeouts = Timeouts(offered=tl.offer_timeout, bound=tl.fetch_timeout,
                                         fetching=max(tl.fetch_timeout, Timeouts().fetching),
                                         delivered=tl.confirm_timeout)
        self.retention = Retention(tl.retention_days * 86400, tl.events_per_device, tl.max_devices)

    # --- hooks (hot paths: O(1), no formatting) -----------------------------------------------------

    def dhcp(self, pkt: DhcpPacket, ingress: Ingress, proposal: Proposal, now: float) -> None:
        """DhcpServer.observe: a request the chain has decided."""
        reply = proposal.reply
        if reply is not None and reply.options.get(_MTYPE) == _ACK and pkt.options.get(_MTYPE) == _REQUEST:
            # REQUEST -> ACK is the ledger's `bound`/`renewed` event once committed: here it is only counted
            # (half the requests of a storm neither queued nor classified later).
            self.dhcp_messages[_REQUEST_ACK] += 1
            return
        self._put(("dhcp", pkt, proposal, now))

    def lease(self, event: LeaseEvent) -> None:
        """Ledger subscriber: a committed lease change."""
        self._put(("lease", event, self.clock()))

    def transfer(self, note: TransferNote) -> None:
        """TftpServer.on_transfer: a transfer started, ended or was refused."""
        self._put(("tftp", note, self.clock()))

    def rendered(self, view: DeviceView, path: str, template: str | None, data: bytes, seconds: float) -> None:
        """RenderedConfigs.on_render: a config was rendered for a device."""
        self._put(("render", view, path, template, data, seconds, self.clock()))

    def post(self, event: Event) -> None:
        """An event built elsewhere (syslog receiver)."""
        self._put(("event", event))

    def _put(self, item: tuple[Any, ...]) -> None:
        if len(self._raw) >= _MAX_QUEUE:
            self.counters["queue_dropped"] += 1
            if self.counters["queue_dropped"] == 1:
                log.warning("timeline: %d observations wait to be recorded; further ones are dropped until it "
                            "catches up (metric ztp_timeline_dropped_total)", _MAX_QUEUE)
            return
        self._raw.append(item)

    # --- immediate operations (API) -----------------------------------------------------------------

    def confirm(self, key: str, source: str, text: str = "") -> DeviceStatus | None:
        """Mark a known device confirmed now (`POST /api/devices/{key}/confirm`); None if it is unknown."""
        self.drain()
        status = self.machine.status(key)
        if status is None:
            return None
        event = Event(key, self.clock(), Kind.CONFIRMED, text or f"confirmed by {source}", status.mac, status.ip,
                      {"source": source})
        self._record(self.machine.feed(event))
        return self.machine.status(key)

    async def events_of(self, key: str, limit: int) -> list[Event]:
        """A device's stored events, oldest first, after every event recorded so far (the writer thread)."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._writer, self.store.device_events, key, limit)

    # --- batches ------------------------------------------------------------------------------------

    def drain(self, limit: int | None = None) -> list[Event]:
        """Turn queued observations (all, or at most `limit`) into events, run the timers, store and publish;
        the new events."""
        out = self._classify_queued(limit)
        out.extend(self.machine.handle_timer(self.clock()))
        self._record(out)
        return out

    def _classify_queued(self, limit: int | None, out: list[Event] | None = None) -> list[Event]:
        """Classify queued observations (all, or at most `limit`) and feed them to the machine; appended to
        `out` (a new list if None)."""
        if out is None:
            out = []
        raw = self._raw
        config = self.config
        todo = len(raw) if limit is None else min(limit, len(raw))
        for _ in range(todo):
            item = raw.popleft()
            try:
                events = self._classify(config, item)
            except Exception:  # a bug here must not stop the timeline (or the appliance)
                log.exception("timeline: cannot record %s", item[0])
                continue
            for event in events:
                out.extend(self._feed(event))
        return out

    def _feed(self, event: Event) -> list[Event]:
        if event.key not in self.machine.devices and len(self.machine.devices) >= self.retention.max_devices:
            self.counters["devices_dropped"] += 1
            return []
        return self.machine.feed(event)

    def _record(self, events: list[Event]) -> None:
        if not events:
            return
        self.counters["events"] += len(events)
        self._writer.submit(self._append, events)
        for listener in list(self.listeners):
            try:
                listener(events)
            except Exception:
                log.exception("timeline listener failed")

    def _append(self, events: list[Event]) -> None:
        try:
            self.store.append(events)
        except Exception as exc:  # the timeline is history, not state: log, never stop serving
            log.error("timeline: %d event(s) not stored: %s", len(events), exc)

    def _classify(self, config: Config, item: tuple[Any, ...]) -> list[Event]:
        what = item[0]
        if what == "dhcp":
            _, pkt, proposal, now = item
            reply = proposal.reply
            mtype = pkt.message_type
            rtype = reply.message_type if reply is not None else None
            self.dhcp_messages[(_NAMES.get(mtype, "bootp"),
                                _NAMES.get(rtype, "bootreply") if reply is not None else
                                (proposal.counter or "none"))] += 1
            return dhcp_events(config, pkt, proposal, now, mtype, rtype)
        if what == "lease":
            found = lease_event(config, item[1], item[2])
            return [found] if found is not None else []
        if what == "tftp":
            return self._transfer_events(config, item[1], item[2])
        if what == "render":
            _, view, path, template, data, seconds, now = item
            if len(self.render_seconds) < 10_000:  # emptied by each /metrics scrape
                self.render_seconds.append(seconds)
            key = view.device.hostname if view.device is not None else view.mac
            ip = str(view.ip) if view.ip is not None else None
            return [Event(key, now, Kind.RENDERED, f"rendered {path} from {template or '(no template)'}: "
                          f"{len(data)} bytes in {seconds * 1000:.1f} ms", view.mac, ip,
                          {"template": template, "size": len(data), "sha256": hashlib.sha256(data).hexdigest(),
                           "revision": self.revision, "ms": round(seconds * 1000, 3), "path": path})]
        if what == "event":
            return [item[1]]
        return []

    def _transfer_events(self, config: Config, note: TransferNote, now: float) -> list[Event]:
        target = boot_target(config.inventory, note.filename.lstrip("/"))
        if target is None:
            self.counters[f"tftp_{note.kind}_other"] += 1
            return []  # static files (images, scripts): not a device's provisioning step
        if target.device is not None:
            key, mac = target.device.hostname, target.device.mac
        else:
            key, mac = target.mac or note.peer, target.mac
        opts = dict(note.options)
        proto = opts.get("transport", "tftp").upper()  # HTTP boot's notes say so (ztp.http.boot)
        if note.kind == "started":
            extra = " ".join(f"{k}={v}" for k, v in note.options)
            return [Event(key, now, Kind.TRANSFER_STARTED, f"{proto} {note.filename} started ({note.size} bytes"
                          f"{', ' + extra if extra else ''})", mac, note.peer,
                          {"filename": note.filename, "size": note.size, **opts})]
        if note.kind == "finished":
            return [Event(key, now, Kind.TRANSFER_FINISHED, f"{proto} {note.filename} delivered: {note.size} bytes "
                          f"in {note.seconds * 1000:.0f} ms, {note.retransmits} retransmit(s)", mac, note.peer,
                          {"filename": note.filename, "bytes": note.size, "ms": round(note.seconds * 1000, 1),
                           "retransmits": note.retransmits, **opts})]
        if note.kind == "failed":
            return [Event(key, now, Kind.TRANSFER_FAILED, transfer_reason(note.filename, note.reason), mac,
                          note.peer, {"filename": note.filename, "bytes": note.bytes_sent, "size": note.size,
                                      "ms": round(note.seconds * 1000, 1), "retransmits": note.retransmits,
                                      "reason": note.reason, **opts})]
        # Refused: fatal unless it was the access rule turning away a host that is not the device (code 2).
        fatal = note.code != 2
        return [Event(key, now, Kind.REFUSED, f"{proto} {note.filename} refused to {note.peer}: {note.reason}", mac,
                      note.peer, {"filename": note.filename, "code": note.code, "reason": note.reason,
                                  "fatal": fatal})]

    # --- lifecycle ----------------------------------------------------------------------------------

    async def start(self) -> None:
        """Rebuild the states from the stored history, then drain every `tick` seconds."""
        now = self.clock()
        loop = asyncio.get_running_loop()
        events = await loop.run_in_executor(self._writer, self.store.load, now - self.retention.seconds)
        self.machine.replay(events)
        log.info("timeline: %d device(s) from %d stored event(s)", len(self.machine.devices), len(events))
        self._task = asyncio.create_task(self._run())

    def _heard_storm(self) -> bool:
        """Whether DHCP requests arrived faster than STORM_RATE since the last tick (sets `storming`)."""
        if self.activity is None:
            return False
        count, at = self.activity(), time.monotonic()
        before, since = self._heard
        self._heard = (count, at)
        self.storming = count - before > STORM_RATE * max(at - since, 1e-3)
        return self.storming

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.tick)
            # In slices, giving the loop back between them: a storm queues hundreds of observations per tick,
            # and classifying them in one go kept every DHCP reply waiting behind it for milliseconds.
            # During a storm the history yields to the packets: at most STORM_SHARE of each tick goes to it
            # (it costs about a tenth of a DORA's CPU, which was a tenth off the rate and most of the latency
            # under load), and the backlog (bounded by _MAX_QUEUE) is recorded once the storm has passed.
            # One batch per tick for the store and the listeners: a store batch per slice woke the writer
            # thread a few dozen times per tick in a storm, and each of its GIL hand-overs could hold the lease
            # writer (and the ACKs waiting on its fsync) for a switch interval.
            budget = time.perf_counter() + self.tick * STORM_SHARE if self._heard_storm() else None
            out = self._classify_queued(_SLICE)
            while self._raw and (budget is None or time.perf_counter() < budget):
                await asyncio.sleep(0)
                self._classify_queued(_SLICE, out)
            if not self._raw:  # deadlines only once caught up: a queued event may be what meets one
                out.extend(self.machine.handle_timer(self.clock()))
            self._record(out)
            now = self.clock()
            if now - self._pruned_at >= _PRUNE_SECONDS:
                self._pruned_at = now
                self._writer.submit(self._prune, now - self.retention.seconds)

    def _prune(self, before: float) -> None:
        try:
            removed = self.store.prune(before, self.retention.per_device)
        except Exception as exc:
            log.error("timeline: pruning failed: %s", exc)
            return
        if removed:
            log.info("timeline: pruned %d old event(s)", removed)

    async def close(self) -> None:
        """Record what is queued, wait for the store, close it."""
        if self._task is not None:
            self._task.cancel()
            self._task = None
        self.drain()
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self._writer.shutdown, True)
        self.store.close()
