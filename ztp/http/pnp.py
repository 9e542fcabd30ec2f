"""The Cisco Plug and Play server side, on the one HTTP listener (issue 12): day-0 config for IOS-XE.

* ``GET /pnp/HELLO``: 200, empty (the agent's "is a PnP server there").
* ``POST /pnp/WORK-REQUEST``: the device is identified by the serial in its UDI against the inventory's
  ``serial:``, else as the holder of a bound lease on the request's source address (an inventory device by
  the lease's MAC or name, an unlisted one by its MAC when there is a default template). A device with a
  config gets a config-upgrade whose copy source is ``http://<appliance>:<port>/configs/<bootfile>``, the
  HTTP boot route (`ztp.http.boot`): the same bytes as ``ztp render``, under the same lease-holder access
  rule (another host fetching that URL gets 403). Unknown devices, and devices whose config-upgrade
  already succeeded, get a bye (no work).
* ``POST /pnp/WORK-RESPONSE``: from an address of the device, success marks it done (logged; the timeline
  confirms it), failure is logged with the device's error (the timeline fails it) and the next
  WORK-REQUEST offers the config again; reports from other addresses are logged and ignored. The answer
  is a bye.

Malformed XML gets 400 and one log line naming the peer and what was wrong. What is done is kept in
memory: a restart of ``ztp serve`` offers the config again to a device that asks (a configured IOS-XE does
not run PnP again, as its startup-config is no longer empty). The XML and what is and is not confirmed from
Cisco's documents: `ztp.vendors.pnp_xml`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from ipaddress import IPv4Address

from aiohttp import web

from ztp.access import ACCESS_OPEN
from ztp.config import Config, Device
from ztp.devices import boot_file_name, device_boot_file
from ztp.leases.table import Lease, LeaseState, LeaseTable
from ztp.timeline.machine import Event, Kind
from ztp.vendors import pnp_xml
from ztp.vendors.pnp_xml import Bye, ConfigUpgrade, PnpXmlError, WorkRequest, WorkResponse

log = logging.getLogger("ztp.http.pnp")

XML = "application/xml"


@dataclass(frozen=True, slots=True)
class PnpDevice:
    """Whom a work request is from: the boot file it gets and how it was recognised."""

    key: str
    """The device's log key: inventory host name, or MAC for an unlisted device."""
    boot_file: str
    how: str  # "serial" or "lease"


@dataclass(frozen=True, slots=True)
class Answer:
    """A decided PnP exchange: the body to send and the log line (format, arguments) about it."""

    body: bytes
    line: tuple[object, ...]
    result: tuple[str, bool, str] | None = None
    """A config-upgrade's outcome for the device timeline: (device key, success, what to say)."""


class PnpService:
    """The PnP decisions, fed parsed messages, the peer address and the base URL (sans-I/O; `clock` is the
    lease clock, wall seconds)."""

    def __init__(self, config: Callable[[], Config], table: LeaseTable, *,
                 clock: Callable[[], float] = time.time, apply_to: str = pnp_xml.APPLY_RUNNING) -> None:
        """`apply_to`: running (the config takes effect at once) or startup (at the next reload)."""
        self.config = config
        self.table = table
        self.clock = clock
        self.apply_to = apply_to
        self.done: dict[str, str] = {}  # boot file -> serial that reported success
        self.offered: dict[str, str] = {}  # correlator -> boot file of the config-upgrade sent with it

    def _lease_of(self, peer: str) -> Lease | None:
        try:
            ip = IPv4Address(peer)
        except ValueError:
            return None
        lease = self.table.at(ip)
        if lease is None or lease.state != LeaseState.BOUND or lease.expires <= self.clock():
            return None
        return lease

    def by_address(self, peer: str) -> PnpDevice | None:
        """The device whose reservation `peer` is, else the holder of the bound lease on it."""
        inventory = self.config().inventory
        device = next((d for d in inventory.devices if d.ip is not None and str(d.ip) == peer), None)
        if device is not None:
            return PnpDevice(device.hostname, device_boot_file(device), "address")
        lease = self._lease_of(peer)
        if lease is None:
            return None
        device = inventory.by_mac.get(lease.mac) or (inventory.by_hostname.get(lease.hostname)
                                                     if lease.hostname else None)
        name = boot_file_name(inventory, device, lease.mac)
        if name is None:
            return None
        return PnpDevice(device.hostname if device is not None else lease.mac, name, "lease")

    def identify(self, serial: str, peer: str) -> PnpDevice | None:
        """The device by its serial in the inventory, else by the address it asks from."""
        device: Device | None = self.config().inventory.by_serial.get(serial.lower())
        if device is not None:
            return PnpDevice(device.hostname, device_boot_file(device), "serial")
        return self.by_address(peer)

    def work_request(self, req: WorkRequest, peer: str, base_url: str) -> Answer:
        """The answer to a WORK-REQUEST: a config-upgrade, or a bye when there is no work."""
        bye = pnp_xml.build_bye(Bye(str(req.udi), req.correlator))
        device = self.identify(req.udi.sn, peer)
        if device is None:
            return Answer(bye, ("pnp work-request from %s (%s): unknown device (serial not in the inventory, "
                                "no bound lease on that address): no work", peer, req.udi))
        if device.boot_file in self.done:
            return Answer(bye, ("%s pnp work-request from %s (%s): config already applied: no work",
                                device.key, peer, req.udi))
        location = f"{base_url}/configs/{device.boot_file}"
        self.offered[req.correlator] = device.boot_file
        body = pnp_xml.build_config_upgrade(ConfigUpgrade(str(req.udi), req.correlator, location, self.apply_to))
        return Answer(body, ("%s pnp work-request from %s (%s, by %s): config-upgrade %s -> %s", device.key,
                             peer, req.udi, device.how, location, self.apply_to))

    def work_response(self, resp: WorkResponse, peer: str) -> Answer:
        """The answer to a WORK-RESPONSE (always a bye), recording success or failure.

        An outcome counts (done, the timeline) only from an address of the device (its reservation or
        lease), as the config itself is served only there; a serial is no secret (it is on the box's label),
        so a report from anywhere else is logged and ignored. With ``provisioning.access: open`` every
        address counts, as for the config route.
        """
        bye = pnp_xml.build_bye(Bye(str(resp.udi), resp.correlator))
        boot_file = self.offered.pop(resp.correlator, None)
        device = self.identify(resp.udi.sn, peer)
        key = device.key if device is not None else str(resp.udi)
        if boot_file is None and device is not None and resp.service == pnp_xml.NS_CONFIG_UPGRADE:
            boot_file = device.boot_file  # a correlator we no longer hold (ztp serve restarted in between)
        if resp.service != pnp_xml.NS_CONFIG_UPGRADE or boot_file is None:
            return Answer(bye, ("%s pnp work-response from %s for %s (correlator %s): nothing ztp asked for",
                                key, peer, resp.service, resp.correlator))
        holder = self.by_address(peer)
        if self.config().provisioning_access != ACCESS_OPEN and (holder is None or holder.boot_file != boot_file):
            return Answer(bye, ("%s pnp work-response for %s from %s (%s) ignored: that address holds neither "
                                "the device's lease nor its reservation", key, boot_file, peer, resp.udi))
        if resp.success:
            self.done[boot_file] = resp.udi.sn
            return Answer(bye, ("%s pnp config-upgrade of %s succeeded on %s (%s)", key, boot_file, peer, resp.udi),
                          (key, True, f"confirmed: PnP config-upgrade of {boot_file} succeeded ({resp.udi})"))
        error = resp.error or "no error given"
        return Answer(bye, ("%s pnp config-upgrade of %s failed on %s (%s): %s; offered again at its next "
                            "work-request", key, boot_file, peer, resp.udi, error),
                      (key, False, f"PnP config-upgrade of {boot_file} failed on the device: {error}"))


def _base_url(request: web.Request) -> str:
    transport = request.transport
    sockname = transport.get_extra_info("sockname") if transport is not None else None
    if not sockname:
        host = request.host
        return f"http://{host}"
    return f"http://{sockname[0]}:{sockname[1]}"


class PnpRoutes:
    """The aiohttp shell over `PnpService`: read the body, parse, decide, log, answer."""

    def __init__(self, service: PnpService, *, post: Callable[[Event], None] | None = None) -> None:
        """Routes for `service`; `post` hears a config-upgrade's outcome as a timeline event (the recorder):
        success confirms the device (as its first syslog line would), failure fails it at delivered."""
        self.service = service
        self.post = post

    def routes(self) -> list[web.RouteDef]:
        """The routes to add to the HTTP listener."""
        return [web.get("/pnp/HELLO", self.hello),
                web.post("/pnp/WORK-REQUEST", self.work_request),
                web.post("/pnp/WORK-RESPONSE", self.work_response)]

    async def hello(self, request: web.Request) -> web.Response:
        """200: a PnP server is here."""
        return web.Response(status=200)

    async def _body(self, request: web.Request, what: str) -> bytes:
        body = await request.content.read(pnp_xml.MAX_BODY + 1)
        if len(body) > pnp_xml.MAX_BODY:
            log.warning("pnp %s from %s refused: body larger than %d bytes", what, request.remote,
                        pnp_xml.MAX_BODY)
            raise web.HTTPRequestEntityTooLarge(max_size=pnp_xml.MAX_BODY, actual_size=len(body))
        return body

    def _bad(self, request: web.Request, what: str, exc: PnpXmlError) -> web.HTTPBadRequest:
        log.warning("pnp %s from %s refused (400): %s", what, request.remote, exc)
        return web.HTTPBadRequest(text=f"{what}: {exc}\n")

    async def work_request(self, request: web.Request) -> web.Response:
        """A device asks for work."""
        body = await self._body(request, "work-request")
        try:
            req = pnp_xml.parse_work_request(body)
        except PnpXmlError as exc:
            raise self._bad(request, "work-request", exc) from None
        answer = self.service.work_request(req, request.remote or "", _base_url(request))
        log.info(str(answer.line[0]), *answer.line[1:])
        return web.Response(body=answer.body, content_type=XML)

    async def work_response(self, request: web.Request) -> web.Response:
        """A device reports on the work it was given."""
        body = await self._body(request, "work-response")
        try:
            resp = pnp_xml.parse_work_response(body)
        except PnpXmlError as exc:
            raise self._bad(request, "work-response", exc) from None
        peer = request.remote or ""
        answer = self.service.work_response(resp, peer)
        (log.info if resp.success else log.warning)(str(answer.line[0]), *answer.line[1:])
        if answer.result is not None and self.post is not None:
            key, ok, text = answer.result
            self.post(Event(key, time.time(), Kind.CONFIRMED if ok else Kind.FAILED, text, None, peer,
                            {"source": "pnp"} if ok else {"stage": "delivered", "source": "pnp"}))
        return web.Response(body=answer.body, content_type=XML)
