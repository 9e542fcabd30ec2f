"""What DHCP, the ledger, rendering and TFTP report, turned into timeline events (pure).

The servers hand over raw observations (a decided DHCP request, a lease event, a finished transfer)
without formatting anything on their hot paths; the recorder calls these functions later, in batches.
Each names the device by its key: the inventory hostname when the request matches an inventory entry,
else the MAC (`device_key`). The cabling check lives here too: a device recognised by MAC or client-id
that arrives through a relay port other than the one its inventory entry names is `miscabled`.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

from ztp.config import Config, Device
from ztp.dhcp import options as o
from ztp.dhcp import packet as p
from ztp.dhcp.exchange import Proposal
from ztp.dhcp.packet import DhcpPacket
from ztp.dhcp.relayinfo import RelayInfo, printable
from ztp.inventory import Identity, match_device
from ztp.ipkey import dotted, is_zero
from ztp.leases.ledger import EventKind, LeaseEvent
from ztp.leases.table import Lease
from ztp.relay.policy import relay_info_of
from ztp.timeline.machine import Event, Kind


def device_key(device: Device | None, mac: str) -> str:
    """A device's timeline key: its inventory hostname, else its MAC."""
    return device.hostname if device is not None else mac


def identify(config: Config, pkt: DhcpPacket) -> tuple[Device | None, RelayInfo | None]:
    """The inventory device a request is from (the DHCP chain's rule, ztp.inventory) and its option 82."""
    relay = relay_info_of(pkt)
    device = match_device(config.inventory, Identity(pkt.mac, pkt.options.get(o.CLIENT_ID), relay))
    return device, relay


@dataclass(frozen=True, slots=True)
class Miscabled:
    """A device on another port than its inventory entry names."""

    expected: str
    actual: str

    @property
    def text(self) -> str:
        """One line for people."""
        return f"miscabled: inventory expects {self.expected}, the device is on {self.actual}"


def _ports(circuit: str | None, remote: str | None) -> str:
    parts = [f"circuit-id {circuit!r}" if circuit is not None else "", f"remote-id {remote!r}" if remote is not None
             else ""]
    return " ".join(x for x in parts if x) or "no relay port (direct segment)"


def cabling(device: Device | None, relay: RelayInfo | None, *, mac: str) -> Miscabled | None:
    """Whether a device identified by MAC or client-id came in on another relay port than its entry names.

    Devices listed only by circuit-id/remote-id are recognised *by* their port, so they cannot be miscabled;
    entries that name no port are never checked.
    """
    if device is None or (device.circuit_id is None and device.remote_id is None):
        return None
    if device.mac != mac and device.client_id is None:
        return None  # matched by its relay ids: on the expected port by definition
    circuit = printable(relay.circuit_id) if relay is not None and relay.circuit_id is not None else None
    remote = printable(relay.remote_id) if relay is not None and relay.remote_id is not None else None
    if (device.circuit_id is None or device.circuit_id == circuit) and \
            (device.remote_id is None or device.remote_id == remote):
        return None
    return Miscabled(expected=_ports(device.circuit_id, device.remote_id), actual=_ports(circuit, remote))


def dhcp_events(config: Config, pkt: DhcpPacket, proposal: Proposal, now: float,
                mtype: int | None = None, rtype: int | None = None) -> list[Event]:
    """Timeline events for one decided DHCP request: DISCOVER -> OFFER or why not, REQUEST -> NAK or none,
    and a cabling problem. An ACK is the ledger's `bound` / `renewed` (recorded once, after the commit).
    `mtype` and `rtype` (request and reply message types) save decoding them again."""
    mtype = pkt.message_type if mtype is None else mtype
    if mtype not in (p.DISCOVER, p.REQUEST):
        return []
    reply = proposal.reply
    if rtype is None and reply is not None:
        rtype = reply.message_type
    if mtype == p.REQUEST and rtype == p.ACK:
        return []
    # The chain's own match when it got that far (the OFFER of a storm; also devices known by serial, which
    # `identify` cannot see), else the inventory's rule again (refusals, NAKs).
    device, relay = (proposal.device, proposal.relay) if proposal.identified else identify(config, pkt)
    key = device_key(device, pkt.mac)
    mac = pkt.mac
    out: list[Event] = []
    miscabled = cabling(device, relay, mac=mac)
    if miscabled is not None and mtype == p.DISCOVER:
        out.append(Event(key, now, Kind.MISCABLED, miscabled.text, mac, None,
                         {"expected": miscabled.expected, "actual": miscabled.actual}))
    via = {"giaddr": dotted(pkt.giaddr)} if not is_zero(pkt.giaddr) else {}
    if mtype == p.DISCOVER:
        if rtype == p.OFFER and reply is not None:
            ip = dotted(reply.yiaddr)
            out.append(Event(key, now, Kind.OFFER, f"DISCOVER -> OFFER {ip}", mac, ip, via))
        elif proposal.level >= logging.WARNING and not proposal.counter.startswith("rate_limited"):
            why = proposal.log
            out.append(Event(key, now, Kind.DISCOVER, f"DISCOVER not answered: {why}", mac, None,
                             {**via, "reason": why}))
        return out
    if rtype == p.NAK:
        why = proposal.log.removesuffix(" -> NAK")
        out.append(Event(key, now, Kind.NAK, f"REQUEST -> NAK: {why}", mac, None, {**via, "reason": why}))
    elif proposal.log and proposal.level >= logging.INFO and not proposal.counter.startswith("rate_limited"):
        out.append(Event(key, now, Kind.REQUEST, f"REQUEST not answered: {proposal.log}", mac, None,
                         {**via, "outcome": "none", "reason": proposal.log}))
    return out


def lease_key(config: Config, lease: Lease) -> str:
    """The key of the device holding `lease`: by its MAC, else its inventory name (client-id, option 82)."""
    device = config.inventory.by_mac.get(lease.mac)
    if device is None and lease.hostname and lease.hostname in config.inventory.by_hostname:
        device = config.inventory.by_hostname[lease.hostname]
    return device_key(device, lease.mac)


_LEASE_KINDS = {EventKind.BOUND: Kind.BOUND, EventKind.RENEWED: Kind.RENEWED, EventKind.RELEASED: Kind.RELEASED,
                EventKind.DECLINED: Kind.DECLINED, EventKind.EXPIRED: Kind.EXPIRED}


def lease_event(config: Config, event: LeaseEvent, now: float) -> Event | None:
    """A ledger event as a timeline event (None for kinds the timeline does not track)."""
    kind = _LEASE_KINDS.get(event.kind)
    if kind is None:
        return None
    lease = event.lease
    key = lease_key(config, lease)
    ip = dotted(lease.ip)
    if kind == Kind.DECLINED:
        text = f"declined {ip}: another host answers ARP for it (address conflict)"
    else:
        text = f"lease {ip} {kind.value}"
    at = lease.updated if kind != Kind.EXPIRED else now
    return Event(key, at, kind, text, lease.mac, ip, {"expires": lease.expires})


_TIMEOUT = re.compile(r"timeout waiting for ACK of block (\d+) after (\d+) retransmission")


def transfer_reason(filename: str, failed: str) -> str:
    """A failed transfer's reason as people say it ("TFTP timed out at block 37")."""
    m = _TIMEOUT.search(failed)
    if m:
        return f"TFTP {filename} timed out at block {m.group(1)} (no ACK after {m.group(2)} retransmissions)"
    if "ACK of OACK" in failed:
        return f"TFTP {filename} timed out before the first block (no ACK of the option acknowledgement)"
    return f"TFTP {filename} failed: {failed}"
