"""`ztp explain`: why a device gets what it gets, from the configuration and the lease database alone.

A DISCOVER as the device would send it (its MAC, client-id, and option 82 when its inventory entry names a
relay port) is run through the real DHCP chain (`ztp.dhcp.chain.Chain`) over a read-only copy of the
lease table; nothing is sent and nothing is written. Each handler's effect on the reply is watched, so the
report names the inventory entry and the key it matched by, the subnet and what chose it, the address and
the allocation rule, every option with the layer it came from, the boot file and template, and the
reply's bytes decoded.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, fields, replace
from ipaddress import IPv4Address
from typing import Any

from ztp.config import Config, Device, Subnet, normalize_mac
from ztp.dhcp import options as o
from ztp.dhcp import packet as p
from ztp.dhcp.chain import Chain, default_handlers
from ztp.dhcp.exchange import Handler, Ingress, Proposal, Reply, Request, client_key
from ztp.dhcp.handlers.subnet import select_subnet
from ztp.dhcp.packet import DhcpPacket
from ztp.dhcp.relayinfo import RelayInfo, build_relay_info, parse_relay_info
from ztp.leases.ledger import Ledger
from ztp.leases.store import StoreError, read_leases
from ztp.leases.table import Lease, LeaseState, LeaseTable
from ztp.net.sockets import interface_ipv4
from ztp.render import DeviceView, Renderer
from ztp.vendors.boot import describe_option

_XID = 0x5A7E_0001


class ExplainError(ValueError):
    """The device cannot be explained (not in the inventory, no subnet); the message says what to fix."""


@dataclass(slots=True)
class Explanation:
    """Everything `ztp explain` reports about one device."""

    mac: str
    key: str
    device: str | None = None
    matched_by: str = ""
    simulated: str = ""
    subnet: str | None = None
    subnet_reason: str = ""
    address: str | None = None
    address_rule: str = ""
    options: list[dict[str, Any]] = field(default_factory=list)
    boot_file: str | None = None
    template: str | None = None
    outcome: str = ""
    reply_hex: str = ""
    reply: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form (`--json`, `/api/explain`)."""
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def _matched_by(device: Device, mac: str) -> str:
    if device.mac == mac:
        return f"mac {mac}"
    if device.client_id:
        return f"client_id {device.client_id!r}"
    if device.circuit_id is not None or device.remote_id is not None:
        return f"relay circuit_id {device.circuit_id!r} remote_id {device.remote_id!r}"
    return "serial"


def _ingress(config: Config, subnet: Subnet | None, relayed: bool) -> tuple[Ingress, IPv4Address, str]:
    """Where the simulated DISCOVER arrives: (ingress, giaddr, description)."""
    local = [a for a in map(interface_ipv4, config.interfaces) if a is not None]
    if subnet is None:
        on_link = [s for s in config.subnets if any(a in s.network for a in local)] or \
            ([config.subnets[0]] if config.subnets and config.interfaces else [])
        if relayed:  # a device named by a relay port sits behind a relay: the first subnet not on a link
            subnet = next((s for s in config.subnets if s not in on_link), None)
        subnet = subnet or (on_link[0] if on_link else (config.subnets[0] if config.subnets else None))
    if subnet is None:
        raise ExplainError(f"{config.path}: no dhcp.subnets configured")
    own = next((a for a in local if a in subnet.network), None)
    # Off the appliance (no interface here), the first subnet stands for the dhcp.interfaces segment.
    direct = own is not None or (not local and bool(config.interfaces) and subnet is config.subnets[0])
    if not relayed and direct:
        server = own or (subnet.routers[0] if subnet.routers else subnet.network.network_address + 1)
        ifname = config.interfaces[0] if config.interfaces else "(any)"
        return (Ingress(1, ifname, server, frozenset({server}), broadcast=True),
                p.ZERO_IP, f"broadcast on {ifname} ({server})")
    giaddr = subnet.routers[0] if subnet.routers else subnet.network.network_address + 1
    server = config.listen[0] if config.listen else (local[0] if local else giaddr)
    return (Ingress(1, None, server, frozenset({server}), broadcast=False, peer=giaddr),
            giaddr, f"relayed by {giaddr} to {server}")


class _Watch:
    """Wraps a handler: remembers which options it added (for the layer of each option)."""

    def __init__(self, handler: Handler, log: dict[int, str]) -> None:
        self.handler = handler
        self.name = type(handler).__name__
        self.log = log

    def __call__(self, req: Request, reply: Reply) -> Reply | Proposal:
        before = set(reply.options)
        out = self.handler(req, reply)
        if isinstance(out, Reply):
            for code in set(out.options) - before:
                self.log.setdefault(code, self.name)
            self.last = out
        return out


def _layer(config: Config, device: Device | None, subnet: Subnet | None, code: int, value: bytes,
           added_by: str) -> str:
    if device is not None and device.options.get(code) == value:
        return "device"
    if subnet is not None and subnet.options.get(code) == value:
        return "subnet"
    if config.inventory.default_options.get(code) == value:
        return "defaults"
    if config.global_options.get(code) == value:
        return "global"
    return {"LayeredOptions": "subnet (network)", "BootFile": "boot file", "LeaseTime": "lease time",
            "ServerId": "server id", "HostName": "inventory hostname", "Assemble": "message",
            "VendorOptions": "vendor profile"}.get(added_by,
                                                                                                  added_by)


def explain(config: Config, leases: Sequence[Lease], *, mac: str | None = None, hostname: str | None = None,
            now: float = 0.0, giaddr: str | None = None, profile: str | None = None) -> Explanation:
    """Run a DISCOVER for the device through the chain and say why each part of the reply is what it is.

    `profile` (``ztp explain --profile eos``): the DISCOVER carries that vendor's fingerprint (options 55,
    60, 61, 77, as `ztp agent --profile` sends them, with the device's inventory serial), so the reply shows
    the options that family gets on the wire.
    """
    inv = config.inventory
    device: Device | None = None
    if hostname is not None:
        device = inv.by_hostname.get(hostname.lower())
        if device is None:
            raise ExplainError(f"{inv.path}: no device named {hostname!r}")
        if device.mac is None:
            mac = "02:00:00:00:00:00" if mac is None else mac
    if mac is None:
        assert device is not None
        mac = device.mac or "02:00:00:00:00:00"
    mac = normalize_mac(mac)
    device = device or inv.by_mac.get(mac)
    opts: dict[int, bytes] = {o.MESSAGE_TYPE: bytes((p.DISCOVER,))}
    if device is not None and device.client_id and device.mac != mac:
        opts[o.CLIENT_ID] = b"\x00" + device.client_id.encode()
    if profile is not None:
        from ztp.agent.profiles import default_serial, fingerprint_options, resolve

        try:
            vendor = resolve(profile)
        except ValueError as exc:
            raise ExplainError(str(exc)) from None
        serial = device.serial if device is not None and device.serial else default_serial(mac)
        vendor_class, client_id, user_class, prl = fingerprint_options(vendor, serial=serial, mac=mac)
        opts[o.PARAMETER_LIST] = bytes(prl)
        for code, raw in ((o.VENDOR_CLASS, vendor_class.encode() if vendor_class else None),
                          (o.CLIENT_ID, client_id), (77, user_class)):
            if raw is not None:
                opts[code] = raw
    relayed = giaddr is not None or (device is not None and
                                     (device.circuit_id is not None or device.remote_id is not None))
    if device is not None and (device.circuit_id is not None or device.remote_id is not None):
        subs = [(1, device.circuit_id.encode())] if device.circuit_id is not None else []
        subs += [(2, device.remote_id.encode())] if device.remote_id is not None else []
        opts[o.RELAY_AGENT_INFO] = build_relay_info(RelayInfo(tuple(subs)))
    reserved_subnet = config.subnet_for(device.ip) if device is not None and device.ip is not None else None
    if giaddr is not None:
        reserved_subnet = config.subnet_for(IPv4Address(giaddr))
    ingress, relay_ip, simulated = _ingress(config, reserved_subnet, relayed)
    if giaddr is not None:
        relay_ip = IPv4Address(giaddr)
        simulated = f"relayed by {relay_ip}"
    pkt = DhcpPacket(op=p.BOOTREQUEST, xid=_XID, chaddr=p.mac_to_chaddr(mac), giaddr=relay_ip, options=opts,
                     flags=0x8000 if relay_ip == p.ZERO_IP else 0)
    if "ping_check" in {f.name for f in fields(Config)}:
        config = replace(config, ping_check=False)  # nothing is sent: no ICMP probe before the OFFER
    table = LeaseTable(list(leases))
    ledger = Ledger(table, None)
    added: dict[int, str] = {}
    watched = [_Watch(h, added) for h in default_handlers(config, ledger)]
    proposal = Chain(config, ledger, watched).handle(pkt, ingress, now)
    last: Reply | None = None
    for w in watched:
        if hasattr(w, "last"):
            last = w.last
    req = Request(pkt=pkt, ingress=ingress, now=now, mtype=p.DISCOVER, client=client_key(pkt),
                  relay=parse_relay_info(opts[o.RELAY_AGENT_INFO]) if o.RELAY_AGENT_INFO in opts else None, mac=mac)
    subnet, why = select_subnet(config, req)
    dev = last.device if last is not None else device
    out = Explanation(mac=mac, key=dev.hostname if dev is not None else mac, simulated=simulated,
                      device=dev.hostname if dev is not None else None,
                      matched_by=_matched_by(dev, mac) if dev is not None else "not in the inventory: defaults",
                      subnet=str(subnet.network) if subnet is not None else None, subnet_reason=why,
                      outcome=proposal.log)
    reply = proposal.reply
    if reply is None:
        return out
    ip = reply.yiaddr
    out.address = str(ip)
    held = table.lease_of(req.client)
    if dev is not None and dev.ip == ip:
        out.address_rule = "reservation (inventory ip)"
    elif held is not None and held.ip == ip and held.state != LeaseState.DECLINED:
        out.address_rule = f"the client's {held.state_at(now)} lease"
    elif subnet is not None and subnet.in_pool(ip):
        out.address_rule = f"first free address of the pool {subnet.pool_start}-{subnet.pool_end}"
    else:
        out.address_rule = "chosen by the address handler"
    for code, value in reply.options.items():
        try:
            shown = describe_option(code, value) or o.decode_value(code, value)
        except Exception:  # noqa: BLE001 - an odd value is still shown, as hex
            shown = value.hex()
        out.options.append({"code": code, "name": o.OPTION_NAMES.get(code, f"option-{code}"),
                            "value": shown if isinstance(shown, str | int | float | list) else str(shown),
                            "layer": _layer(config, dev, subnet, code, value, added.get(code, "?"))})
    bootfile = reply.options.get(o.BOOTFILE_NAME)
    out.boot_file = bootfile.decode(errors="replace") if bootfile else None
    if dev is not None or config.inventory.default_template:
        out.template = Renderer(config).template_for(DeviceView(mac=mac, device=dev, ip=ip, subnet=subnet))
    out.reply_hex = p.build(reply).hex()
    out.reply = {"op": reply.op, "xid": f"{reply.xid:#x}", "yiaddr": str(reply.yiaddr),
                 "siaddr": str(reply.siaddr), "giaddr": str(reply.giaddr), "flags": f"{reply.flags:#06x}",
                 "chaddr": reply.mac, "file": reply.file.rstrip(b"\0").decode(errors="replace"),
                 "sname": reply.sname.rstrip(b"\0").decode(errors="replace"),
                 "options": {str(c): v.hex() for c, v in reply.options.items()}}
    return out


def render_text(x: Explanation) -> str:
    """The explanation as people read it."""
    lines = [f"device       {x.key}  ({x.matched_by})",
             f"simulated    DISCOVER from {x.mac}, {x.simulated}",
             f"subnet       {x.subnet or '-'}  (chosen by {x.subnet_reason})"]
    if x.address is None:
        lines.append(f"no reply     {x.outcome}")
        return "\n".join(lines) + "\n"
    lines.append(f"address      {x.address}  ({x.address_rule})")
    lines.append(f"boot file    {x.boot_file or '-'}  (template {x.template or '-'})")
    lines.append("options")
    for opt in x.options:
        lines.append(f"  {opt['code']:>3} {opt['name']:<22} {str(opt['value']):<34} [{opt['layer']}]")
    lines.append(f"reply        {len(x.reply_hex) // 2} bytes: op {x.reply['op']} xid {x.reply['xid']} yiaddr "
                 f"{x.reply['yiaddr']} siaddr {x.reply['siaddr']} giaddr {x.reply['giaddr']} flags "
                 f"{x.reply['flags']}")
    hexed = x.reply_hex
    for i in range(0, len(hexed), 64):
        lines.append(f"  {i // 2:04x}  {hexed[i:i + 64]}")
    return "\n".join(lines) + "\n"


def stored_leases(config: Config) -> list[Lease]:
    """The configured store's lease rows, read-only (SQLite or PostgreSQL); ExplainError when unreadable."""
    try:
        return read_leases(config)
    except StoreError as exc:
        raise ExplainError(str(exc)) from None
