"""DHCP server policy (RFC 2131 §4.3): a decoded request and where it came from -> the reply and the
lease change to persist. No sockets, no clock: `now` is passed in.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from functools import lru_cache
from ipaddress import IPv4Address

from ztp.config import Config, Device, Subnet
from ztp.dhcp import options as o
from ztp.dhcp import packet as p
from ztp.dhcp.packet import DhcpPacket
from ztp.dhcp.relayinfo import RelayInfo, parse_relay_info
from ztp.dns.zone import sanitize_hostname
from ztp.inventory import Identity, match_device, unknown_boot_file
from ztp.leases.table import Lease, LeaseTable

BOOTP_LEASE = 0xFFFFFFFF  # RFC 2132 §9.2: infinite
BOOTP_HOLD_SECONDS = 10 * 365 * 24 * 3600
DECLINE_QUARANTINE = 600.0
_FIRST = (o.MESSAGE_TYPE, o.SERVER_ID)


@dataclass(slots=True)  # not frozen only because one is built per datagram (see DhcpPacket); never mutated
class Ingress:
    """Where a request arrived: the receiving interface and the appliance address the client reached."""

    ifindex: int
    ifname: str | None
    server_ip: IPv4Address
    local_ips: frozenset[IPv4Address] = frozenset()
    broadcast: bool = False  # sent to 255.255.255.255 rather than to one of our addresses


@dataclass(slots=True)
class Decision:
    """What to do for one request: a reply (maybe none), and a lease to persist first."""

    reply: DhcpPacket | None = None
    durable: Lease | None = None  # must be on disk before `reply` leaves (ACK)
    background: Lease | None = None  # persisted without waiting (release, decline)
    # The log line is formatted only when it is emitted (`log`): building it costs more than deciding
    # a routine OFFER or ACK, and the server logs those at INFO, usually off.
    log_format: str = ""
    level: int = logging.INFO
    bound: Lease | None = None
    released: Lease | None = None
    extra: dict[str, str] = field(default_factory=dict)
    log_args: tuple[object, ...] = ()  # %-style arguments of `log_format`, if any

    @property
    def log(self) -> str:
        """What happened, as one line for the log (empty: nothing worth logging)."""
        return self.log_format % self.log_args if self.log_args else self.log_format


def client_key(pkt: DhcpPacket) -> str:
    """RFC 2131 §4.2: a client is identified by option 61 when present, else by chaddr."""
    cid = pkt.options.get(o.CLIENT_ID)
    return "id:" + cid.hex() if cid else pkt.mac


class Responder:
    """Decides replies. One instance per server; it owns the in-memory lease table."""

    def __init__(self, config: Config, table: LeaseTable) -> None:
        self.config = config
        self.table = table
        self._fixed: dict[tuple[int | None, IPv4Address, int, int, bool], dict[int, bytes]] = {}
        self._server_names: dict[IPv4Address, bytes] = {}

    def reconfigure(self, config: Config) -> None:
        """Answer from `config` from now on (SIGHUP reload); the lease table is kept as it is."""
        self.config = config
        # The cache is keyed by id() of the old config's Subnet and Device objects: once they are freed
        # their ids can be reused by the new ones, so a stale entry could answer for another device.
        self._fixed = {}

    # --- identification -------------------------------------------------------------------------

    def _relay_info(self, pkt: DhcpPacket) -> RelayInfo | None:
        raw = pkt.options.get(o.RELAY_AGENT_INFO)
        if raw is None:
            return None
        return parse_relay_info(raw)  # MalformedPacket propagates: the request is dropped and counted

    def subnet_for(self, pkt: DhcpPacket, ingress: Ingress, relay: RelayInfo | None) -> Subnet | None:
        """Relayed: the subnet of giaddr (or RFC 3527 link-selection); direct: the receiving interface's."""
        if relay is not None:
            link = relay.get(5)
            if link is not None and len(link) == 4:
                return self.config.subnet_for(IPv4Address(link))
        if pkt.giaddr != p.ZERO_IP:
            return self.config.subnet_for(pkt.giaddr)
        return self.config.subnet_for(ingress.server_ip)

    def device_for(self, pkt: DhcpPacket, relay: RelayInfo | None) -> Device | None:
        """The inventory device this request belongs to."""
        ident = Identity(mac=pkt.mac, client_id=pkt.options.get(o.CLIENT_ID), relay=relay)
        return match_device(self.config.inventory, ident)

    # --- the RFC 2131 §4.3 cases ----------------------------------------------------------------

    def handle(self, pkt: DhcpPacket, ingress: Ingress, now: float) -> Decision:
        """Turn one BOOTREQUEST into a decision."""
        if pkt.op != p.BOOTREQUEST:
            return Decision(log_format="not a BOOTREQUEST; ignored", level=logging.DEBUG)
        relay = self._relay_info(pkt)
        subnet = self.subnet_for(pkt, ingress, relay)
        device = self.device_for(pkt, relay)
        mtype = pkt.message_type
        if mtype is None:
            return self._bootp(pkt, ingress, subnet, device, now)
        if subnet is None and mtype not in (p.RELEASE, p.DECLINE, p.INFORM):
            where = f"giaddr {pkt.giaddr}" if pkt.giaddr != p.ZERO_IP else f"interface {ingress.ifname}"
            return Decision(log_format=f"{p.MESSAGE_TYPE_NAMES.get(mtype, mtype)} from {where}: no subnet "
                                       "is configured there; ignored", level=logging.WARNING)
        if mtype == p.DISCOVER:
            assert subnet is not None
            return self._discover(pkt, ingress, subnet, device, now)
        if mtype == p.REQUEST:
            assert subnet is not None
            return self._request(pkt, ingress, subnet, device, now)
        if mtype == p.RELEASE:
            return self._release(pkt, now)
        if mtype == p.DECLINE:
            return self._decline(pkt, ingress, now)
        if mtype == p.INFORM:
            return self._inform(pkt, ingress, subnet, device)
        return Decision(log_format=f"message type {mtype} is not for a server; ignored", level=logging.DEBUG)

    def _reservation(self, device: Device | None, subnet: Subnet) -> IPv4Address | None:
        if device is not None and device.ip is not None and device.ip in subnet.network:
            return device.ip
        return None

    def _hostname(self, pkt: DhcpPacket, device: Device | None) -> str | None:
        if device is not None:
            return device.hostname
        raw = pkt.options.get(o.HOST_NAME)
        if not raw:
            return None
        name = sanitize_hostname(raw)
        if name is None or name in self.config.inventory.by_hostname:
            return None  # never let a device claim an inventory device's name
        return name

    def _discover(self, pkt: DhcpPacket, ingress: Ingress, subnet: Subnet, device: Device | None,
                  now: float) -> Decision:
        client = client_key(pkt)
        ip = self.table.choose(subnet, client, reserved=self._reservation(device, subnet),
                               requested=pkt.option_ip(o.REQUESTED_IP), now=now)
        if ip is None:
            return Decision(log_format=f"DISCOVER: no free address in {subnet.network}",
                            level=logging.WARNING)
        self.table.offer(ip, client, pkt.mac, hold=self.config.offer_hold, now=now,
                         hostname=self._hostname(pkt, device))
        reply = self._reply(pkt, p.OFFER, ingress, subnet, device, yiaddr=ip)
        return Decision(reply=reply, log_format="DISCOVER -> OFFER %s%s", log_args=(ip, _who(device)))

    def _request(self, pkt: DhcpPacket, ingress: Ingress, subnet: Subnet, device: Device | None,
                 now: float) -> Decision:
        client = client_key(pkt)
        server_id = pkt.option_ip(o.SERVER_ID)
        requested = pkt.option_ip(o.REQUESTED_IP)
        reserved = self._reservation(device, subnet)
        if server_id is not None:
            # SELECTING (RFC 2131 §4.3.2): the client answers one OFFER.
            if server_id != ingress.server_ip and server_id not in ingress.local_ips:
                self.table.forget_offer(client)
                return Decision(log_format=f"REQUEST for server {server_id}: not us; offer withdrawn",
                                level=logging.DEBUG)
            if pkt.ciaddr != p.ZERO_IP and requested is None:
                requested = pkt.ciaddr
            held = self.table.lease_of(client)
            if requested is None or held is None or held.ip != requested or not held.active(now):
                return self._nak(pkt, ingress, f"REQUEST (selecting) for {requested}: no matching offer")
            return self._ack(pkt, ingress, subnet, device, requested, now, "selecting")
        if pkt.ciaddr == p.ZERO_IP:
            # INIT-REBOOT (RFC 2131 §4.3.2): verify the remembered address.
            if requested is None:
                return self._nak(pkt, ingress, "REQUEST (init-reboot) without option 50")
            if requested not in subnet.network:
                return self._nak(pkt, ingress, f"REQUEST (init-reboot) for {requested}: wrong network "
                                               f"{subnet.network}")
            held = self.table.lease_of(client_key(pkt))
            if not self.config.authoritative and reserved is None and (held is None or held.ip != requested):
                # RFC 2131 §4.3.2: with no record of the client a server MUST stay silent, so that servers
                # that do not share state can coexist; an authoritative one (the default) answers.
                return Decision(log_format="REQUEST (init-reboot) for %s: no record of this client; silent "
                                           "(dhcp.authoritative is false)", log_args=(requested,),
                                level=logging.DEBUG)
            return self._verify(pkt, ingress, subnet, device, requested, reserved, now, "init-reboot")
        # RENEWING (unicast) or REBINDING (broadcast): ciaddr carries the address (RFC 2131 §4.3.2).
        state = "rebinding" if ingress.broadcast else "renewing"
        if pkt.ciaddr not in subnet.network:
            return self._nak(pkt, ingress, f"REQUEST ({state}) for {pkt.ciaddr}: wrong network")
        return self._verify(pkt, ingress, subnet, device, pkt.ciaddr, reserved, now, state)

    def _verify(self, pkt: DhcpPacket, ingress: Ingress, subnet: Subnet, device: Device | None,
                ip: IPv4Address, reserved: IPv4Address | None, now: float, state: str) -> Decision:
        client = client_key(pkt)
        if reserved is not None and ip != reserved:
            return self._nak(pkt, ingress, f"REQUEST ({state}) for {ip}: this device is reserved {reserved}")
        if reserved is None and not subnet.in_pool(ip):
            return self._nak(pkt, ingress, f"REQUEST ({state}) for {ip}: not in the pool")
        if not self.table.available(ip, client, now):
            return self._nak(pkt, ingress, f"REQUEST ({state}) for {ip}: leased to another client")
        return self._ack(pkt, ingress, subnet, device, ip, now, state)

    def _ack(self, pkt: DhcpPacket, ingress: Ingress, subnet: Subnet, device: Device | None,
             ip: IPv4Address, now: float, state: str) -> Decision:
        lease = self.table.bind(ip, client_key(pkt), pkt.mac, lease_time=subnet.lease_time, now=now,
                                hostname=self._hostname(pkt, device))
        reply = self._reply(pkt, p.ACK, ingress, subnet, device, yiaddr=ip)
        return Decision(reply=reply, durable=lease, bound=lease,
                        log_format="REQUEST (%s) -> ACK %s for %ss%s",
                        log_args=(state, ip, subnet.lease_time, _who(device)))

    def _nak(self, pkt: DhcpPacket, ingress: Ingress, why: str) -> Decision:
        opts = {o.MESSAGE_TYPE: bytes((p.NAK,)), o.SERVER_ID: ingress.server_ip.packed,
                o.MESSAGE: why.encode()[:255]}
        relay82 = pkt.options.get(o.RELAY_AGENT_INFO)
        if relay82 is not None:
            opts[o.RELAY_AGENT_INFO] = relay82
        flags = pkt.flags | (p.BROADCAST_FLAG if pkt.giaddr != p.ZERO_IP else 0)  # RFC 2131 §4.3.2
        reply = DhcpPacket(op=p.BOOTREPLY, xid=pkt.xid, chaddr=pkt.chaddr, htype=pkt.htype, hlen=pkt.hlen,
                           flags=flags, giaddr=pkt.giaddr, options=opts)
        return Decision(reply=reply, log_format=f"{why} -> NAK", level=logging.WARNING)

    def _release(self, pkt: DhcpPacket, now: float) -> Decision:
        lease = self.table.release(client_key(pkt), pkt.ciaddr, now)
        if lease is None:
            return Decision(log_format=f"RELEASE of {pkt.ciaddr}: no such lease for this client; ignored",
                            level=logging.WARNING)
        return Decision(background=lease, released=lease, log_format=f"RELEASE {pkt.ciaddr}")

    def _decline(self, pkt: DhcpPacket, ingress: Ingress, now: float) -> Decision:
        server_id = pkt.option_ip(o.SERVER_ID)
        if server_id is not None and server_id != ingress.server_ip and server_id not in ingress.local_ips:
            return Decision(log_format="DECLINE for another server; ignored", level=logging.DEBUG)
        ip = pkt.option_ip(o.REQUESTED_IP)
        if ip is None:
            return Decision(log_format="DECLINE without option 50; ignored", level=logging.WARNING)
        lease = self.table.decline(ip, client_key(pkt), pkt.mac, quarantine=DECLINE_QUARANTINE, now=now)
        return Decision(background=lease, released=lease,
                        log_format=f"DECLINE {ip}: address in use on the network, quarantined "
                                   f"{int(DECLINE_QUARANTINE)}s", level=logging.WARNING)

    def _inform(self, pkt: DhcpPacket, ingress: Ingress, subnet: Subnet | None,
                device: Device | None) -> Decision:
        if subnet is None:
            subnet = self.config.subnet_for(pkt.ciaddr)
        if subnet is None:
            return Decision(log_format=f"INFORM from {pkt.ciaddr}: no subnet configured there",
                            level=logging.WARNING)
        reply = self._reply(pkt, p.ACK, ingress, subnet, device, yiaddr=p.ZERO_IP, lease=False)
        return Decision(reply=reply, log_format=f"INFORM from {pkt.ciaddr} -> ACK{_who(device)}")

    def _bootp(self, pkt: DhcpPacket, ingress: Ingress, subnet: Subnet | None, device: Device | None,
               now: float) -> Decision:
        if subnet is None:
            return Decision(log_format="BOOTREQUEST: no subnet configured there; ignored",
                            level=logging.WARNING)
        client = client_key(pkt)
        reserved = self._reservation(device, subnet)
        ip = self.table.choose(subnet, client, reserved=reserved, requested=None, now=now)
        if ip is None:
            return Decision(log_format=f"BOOTREQUEST: no free address in {subnet.network}",
                            level=logging.WARNING)
        lease = self.table.bind(ip, client, pkt.mac, lease_time=BOOTP_HOLD_SECONDS, now=now,
                                hostname=self._hostname(pkt, device))
        reply = self._reply(pkt, None, ingress, subnet, device, yiaddr=ip, lease=False)
        return Decision(reply=reply, durable=lease, bound=lease,
                        log_format=f"BOOTREQUEST -> BOOTREPLY {ip} (fixed){_who(device)}")

    # --- building replies -----------------------------------------------------------------------

    def boot_file(self, pkt: DhcpPacket, device: Device | None) -> str | None:
        """`<hostname>.cfg` for inventory devices; a MAC-named file for others when a default template exists."""
        if device is not None:
            return device.boot_file
        if self.config.inventory.default_template:
            return unknown_boot_file(pkt.mac)
        return None

    def _reply(self, pkt: DhcpPacket, mtype: int | None, ingress: Ingress, subnet: Subnet,
               device: Device | None, *, yiaddr: IPv4Address, lease: bool = True) -> DhcpPacket:
        server = ingress.server_ip
        opts = self._fixed_options(mtype, server, subnet, device, lease)
        boot = self.boot_file(pkt, device)
        if boot is not None and device is None:
            # The only option that differs per unlisted device; configured layers still override it.
            opts = {o.BOOTFILE_NAME: boot.encode(), **opts}
        codes = _order(tuple(opts), pkt.options.get(o.PARAMETER_LIST, b""))
        ordered = {code: opts[code] for code in codes}
        # Option 82 belongs to the relay (RFC 3046 §2.2): never one of ours, only the relay's echoed, last.
        ordered.pop(o.RELAY_AGENT_INFO, None)
        relay82 = pkt.options.get(o.RELAY_AGENT_INFO)
        if relay82 is not None:
            ordered[o.RELAY_AGENT_INFO] = relay82
        return DhcpPacket(
            op=p.BOOTREPLY, xid=pkt.xid, chaddr=pkt.chaddr, htype=pkt.htype, hlen=pkt.hlen, flags=pkt.flags,
            ciaddr=pkt.ciaddr if mtype in (p.ACK, None) and yiaddr == p.ZERO_IP else p.ZERO_IP,
            yiaddr=yiaddr, siaddr=server if boot is not None else p.ZERO_IP, giaddr=pkt.giaddr,
            sname=self._server_name(server) if boot is not None else b"",
            file=boot.encode()[:127] if boot is not None else b"",
            options=ordered, bootp=pkt.bootp,
        )

    def _server_name(self, server: IPv4Address) -> bytes:
        name = self._server_names.get(server)
        if name is None:
            name = self._server_names[server] = str(server).encode()
        return name

    def _fixed_options(self, mtype: int | None, server: IPv4Address, subnet: Subnet, device: Device | None,
                       lease: bool) -> dict[int, bytes]:
        """The reply options that depend only on the configuration and on who asks (all but an unlisted
        device's boot file name), computed once per combination: most of a reply is the same every time.
        Callers must not modify the returned dict."""
        # Subnet and Device hold dicts, so they are not hashable; they live as long as self.config, which
        # makes their ids stable keys. The key space is bounded by the configuration.
        key = (mtype, server, id(subnet), id(device), lease)
        cached = self._fixed.get(key)
        if cached is not None:
            return cached
        opts: dict[int, bytes] = {}
        if mtype is not None:
            opts[o.MESSAGE_TYPE] = bytes((mtype,))
            opts[o.SERVER_ID] = server.packed
        if lease and mtype is not None:
            opts[o.LEASE_TIME] = o.u32(subnet.lease_time)
            opts[o.RENEWAL_TIME] = o.u32(subnet.lease_time // 2)
            opts[o.REBINDING_TIME] = o.u32(subnet.lease_time * 7 // 8)
        opts[o.SUBNET_MASK] = subnet.network.netmask.packed
        if subnet.routers:
            opts[o.ROUTERS] = b"".join(r.packed for r in subnet.routers)
        dns = subnet.dns_servers or ((server,) if self.config.dns else ())
        if dns:
            opts[o.DNS_SERVERS] = b"".join(d.packed for d in dns)
        domain = subnet.domain or (self.config.dns.zone if self.config.dns else None)
        if domain:
            opts[o.DOMAIN_NAME] = domain.encode()
        if device is not None:
            opts[o.HOST_NAME] = device.hostname.encode()
        opts[o.BROADCAST_ADDRESS] = subnet.network.broadcast_address.packed
        if device is not None or self.config.inventory.default_template:  # a boot file is given (boot_file)
            opts[o.TFTP_SERVER_NAME] = self._server_name(server)
            if device is not None:
                opts[o.BOOTFILE_NAME] = device.boot_file.encode()
        # Configured options: global < inventory defaults < subnet < device (most specific wins).
        for layer in (self.config.global_options, self.config.inventory.default_options, subnet.options,
                      device.options if device is not None else {}):
            opts.update(layer)
        self._fixed[key] = opts
        return opts


@lru_cache(maxsize=1024)  # clients send a handful of distinct option 55 lists; bounded against odd ones
def _order(codes: tuple[int, ...], requested: bytes) -> tuple[int, ...]:
    """53 and 54 first, then what option 55 lists in its order, then the rest by code."""
    present = set(codes)
    out: dict[int, None] = {code: None for code in _FIRST if code in present}
    for code in requested:
        if code in present and code not in out:
            out[code] = None
    for code in sorted(codes):
        if code not in out:
            out[code] = None
    return tuple(out)


def _who(device: Device | None) -> str:
    return f" ({device.hostname})" if device is not None else ""

