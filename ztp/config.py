"""The appliance configuration (ztp.yaml) and inventory (inventory.yaml): schema, load and validation.

Every problem is reported as a `Problem` naming the file and line, so `ztp check` can list them all.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ztp.dhcp.options import OptionValueError, encode_value
from ztp.frozen import freeze_mapping
from ztp.yamlsource import SourceList, SourceMap, YamlError, line_of, load_yaml

MAC_RE = re.compile(r"^[0-9a-f]{2}([:-]?[0-9a-f]{2}){5}$", re.IGNORECASE)
HOSTNAME_RE = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with the configuration: where and what."""

    path: Path
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.message}"


class ConfigError(Exception):
    """The configuration cannot be used; `problems` lists every reason."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("\n".join(str(p) for p in problems))
        self.problems = problems


# --- schema (what the files may contain) ------------------------------------------------------------

class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


OptionMap = dict[int, Any]


class SubnetModel(_Strict):
    network: IPv4Network
    pool: str | None = None
    routers: list[IPv4Address] = Field(default_factory=list)
    dns_servers: list[IPv4Address] = Field(default_factory=list)
    domain: str | None = None
    lease_time: int | None = Field(default=None, ge=10)
    options: OptionMap = Field(default_factory=dict)


class DhcpModel(_Strict):
    interfaces: list[str] = Field(default_factory=list)
    lease_time: int = Field(default=3600, ge=10)
    offer_hold: int = Field(default=30, ge=1, le=600)
    authoritative: bool = True
    decline_hold: int = Field(default=600, ge=1, le=86400)
    bootp: Literal["reserved", "dynamic", "off"] = "reserved"
    bootp_lease_time: int = Field(default=86400, ge=60)
    relays: list[IPv4Network] = Field(default_factory=list)
    rate_limit: float = Field(default=20.0, ge=0)
    relay_rate_limit: float = Field(default=20000.0, ge=0)
    ping_check: bool = True
    ping_timeout: float = Field(default=0.5, gt=0, le=5)
    options: OptionMap = Field(default_factory=dict)
    subnets: list[SubnetModel] = Field(default_factory=list)
    port: int = Field(default=67, ge=1, le=65535)


class TftpModel(_Strict):
    root: str | None = None
    port: int = Field(default=69, ge=1, le=65535)
    max_blksize: int = Field(default=65464, ge=512, le=65464)
    private: list[str] = Field(default_factory=list)
    max_sessions: int = Field(default=2000, ge=1, le=100_000)
    max_sessions_per_peer: int = Field(default=8, ge=1, le=100_000)


class ProvisioningModel(_Strict):
    access: Literal["lease-holder", "open"] = "lease-holder"


class DnsModel(_Strict):
    zone: str
    server_name: str = "ztp"
    ttl: int = Field(default=300, ge=0)
    records: dict[str, str | list[str]] = Field(default_factory=dict)
    forwarders: list[IPv4Address] = Field(default_factory=list)
    port: int = Field(default=53, ge=1, le=65535)
    rate_limit: float = Field(default=200.0, ge=0)


class TimelineModel(_Strict):
    retention_days: float = Field(default=14, gt=0, le=3650)
    events_per_device: int = Field(default=500, ge=10, le=1_000_000)
    max_devices: int = Field(default=100_000, ge=1, le=10_000_000)
    offer_timeout: float = Field(default=60, ge=1, le=86400)
    fetch_timeout: float = Field(default=300, ge=1, le=86400)
    confirm_timeout: float = Field(default=600, ge=0, le=86400)  # 0: off (not every device sends syslog)


class SyslogModel(_Strict):
    port: int = Field(default=514, ge=0, le=65535)


class HttpModel(_Strict):
    port: int = Field(default=80, ge=0, le=65535)
    listen: list[IPv4Address] = Field(default_factory=list)
    token: str | None = Field(default=None, min_length=16)


class StateModel(_Strict):
    backend: Literal["sqlite", "postgresql"] = "sqlite"
    dsn: str | None = None
    refresh: float = Field(default=30.0, gt=0, le=3600)


class ConfigModel(_Strict):
    state_dir: str = "./state"
    state: StateModel = Field(default_factory=StateModel)
    templates: str = "./templates"
    inventory: str = "./inventory.yaml"
    log_level: str = "info"
    user: str | None = None
    dhcp: DhcpModel = Field(default_factory=DhcpModel)
    tftp: TftpModel = Field(default_factory=TftpModel)
    dns: DnsModel | None = None
    listen: list[IPv4Address] = Field(default_factory=list)
    provisioning: ProvisioningModel = Field(default_factory=ProvisioningModel)
    http: HttpModel | None = None
    timeline: TimelineModel = Field(default_factory=TimelineModel)
    syslog: SyslogModel | None = None


class DefaultsModel(_Strict):
    template: str | None = None
    vendor: str | None = None
    vars: dict[str, Any] = Field(default_factory=dict)
    options: OptionMap = Field(default_factory=dict)


class DeviceModel(_Strict):
    hostname: str
    mac: str | None = None
    client_id: str | None = None
    circuit_id: str | None = None
    remote_id: str | None = None
    serial: str | None = Field(default=None, min_length=1)
    vendor: str | None = None
    ip: IPv4Address | None = None
    template: str | None = None
    vars: dict[str, Any] = Field(default_factory=dict)
    options: OptionMap = Field(default_factory=dict)

    @field_validator("hostname")
    @classmethod
    def _hostname(cls, value: str) -> str:
        if not HOSTNAME_RE.match(value):
            raise ValueError("hostname must be one DNS label: letters, digits and '-', at most 63")
        return value.lower()

    @field_validator("mac")
    @classmethod
    def _mac(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not MAC_RE.match(value):
            raise ValueError(f"{value!r} is not a MAC address like 02:00:00:00:00:01")
        return normalize_mac(value)


class InventoryModel(_Strict):
    defaults: DefaultsModel = Field(default_factory=DefaultsModel)
    devices: list[DeviceModel] = Field(default_factory=list)


def normalize_mac(value: str) -> str:
    """Any common MAC spelling to lowercase colon-separated."""
    digits = value.replace(":", "").replace("-", "").replace(".", "").lower()
    return ":".join(digits[i : i + 2] for i in range(0, 12, 2))


# --- the loaded, checked configuration --------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Subnet:
    """A served IPv4 subnet with its pool and per-subnet options."""

    network: IPv4Network
    pool_start: IPv4Address | None
    pool_end: IPv4Address | None
    routers: tuple[IPv4Address, ...]
    dns_servers: tuple[IPv4Address, ...]
    domain: str | None
    lease_time: int
    options: dict[int, bytes]
    line: int

    def in_pool(self, ip: IPv4Address) -> bool:
        """Whether `ip` is one of the pool's addresses."""
        return self.pool_start is not None and self.pool_end is not None and \
            self.pool_start <= ip <= self.pool_end


@dataclass(frozen=True, slots=True)
class Device:
    """An inventory device: how it is recognised and what it gets."""

    hostname: str
    mac: str | None
    client_id: str | None
    circuit_id: str | None
    remote_id: str | None
    ip: IPv4Address | None
    template: str | None
    vars: dict[str, Any]
    options: dict[int, bytes]
    line: int
    template_line: int = 0
    serial: str | None = None  # matched against option 61 (POAP), option 60 (Juniper), HTTP serial headers
    vendor: str | None = None  # a ztp.vendors profile name (the device's own `vendor:`; else option 60 decides)

    @property
    def boot_file(self) -> str:
        """The TFTP file name this device is told to fetch."""
        return f"{self.hostname}.cfg"


@dataclass(frozen=True, slots=True)
class Inventory:
    """All inventory devices plus the defaults for unlisted ones."""

    path: Path
    default_template: str | None
    default_vars: dict[str, Any]
    default_options: dict[int, bytes]
    devices: tuple[Device, ...]
    by_mac: dict[str, Device] = field(default_factory=dict)
    by_client_id: dict[str, Device] = field(default_factory=dict)
    by_hostname: dict[str, Device] = field(default_factory=dict)
    # Lookup indexes for ztp.inventory.match_device, derived from `devices` so they cannot disagree with it:
    # a request from an unlisted MAC must not cost a walk over every device. Values carry the device's
    # position so that, when several devices could match, the first listed wins as a walk would find.
    client_id_index: dict[str, tuple[int, Device]] = field(init=False, repr=False, compare=False)
    relay_index: dict[tuple[str | None, str | None], tuple[int, Device]] = field(init=False, repr=False,
                                                                                 compare=False)
    default_vendor: str | None = None  # defaults.vendor: the profile of devices that name none
    by_serial: dict[str, Device] = field(init=False, repr=False, compare=False)  # serial (lowercase) -> device

    def __post_init__(self) -> None:
        client_ids: dict[str, tuple[int, Device]] = {}
        relay_ids: dict[tuple[str | None, str | None], tuple[int, Device]] = {}
        for position, device in enumerate(self.devices):
            if device.client_id:
                # Client-ids are compared case-insensitively (serials and hex spellings alike).
                client_ids.setdefault(device.client_id.lower(), (position, device))
            if device.circuit_id is not None or device.remote_id is not None:
                relay_ids.setdefault((device.circuit_id, device.remote_id), (position, device))
        object.__setattr__(self, "client_id_index", client_ids)  # frozen: set once, here
        object.__setattr__(self, "relay_index", relay_ids)
        serials: dict[str, Device] = {}
        for device in self.devices:
            if device.serial:
                serials.setdefault(device.serial.lower(), device)
        object.__setattr__(self, "by_serial", serials)


@dataclass(frozen=True, slots=True)
class DnsSettings:
    """The DNS section."""

    zone: str
    server_name: str
    ttl: int
    records: dict[str, list[str]]
    forwarders: tuple[IPv4Address, ...]
    port: int
    rate_limit: float = 200.0
    """Queries/s per source address (bursts of twice that); 0 = no limit."""


@dataclass(frozen=True, slots=True)
class TimelineSettings:
    """The `timeline:` section: how long device history is kept and when a stalled stage counts as failed."""

    retention_days: float = 14
    events_per_device: int = 500
    max_devices: int = 100_000
    offer_timeout: float = 60
    fetch_timeout: float = 300
    confirm_timeout: float = 600  # delivered, never confirmed (syslog or the API) -> failed; 0: off


@dataclass(frozen=True, slots=True)
class SyslogSettings:
    """The `syslog:` section: the receiver that confirms devices run their config (udp `port`)."""

    port: int = 514


@dataclass(frozen=True, slots=True)
class HttpSettings:
    """The `http:` section: the one HTTP listener (API, dashboard, metrics, HTTP boot)."""

    port: int = 80
    listen: tuple[IPv4Address, ...] = ()
    """Addresses to bind instead of those of dhcp.interfaces + listen (ztp.net.listen)."""
    token: str | None = None
    """Bearer token for write endpoints (confirm, reload); None refuses every write."""


@dataclass(frozen=True, slots=True)
class StateSettings:
    """Where leases are kept (`state:`): ztp.leases.store."""

    backend: str = "sqlite"  # sqlite (under state_dir) or postgresql (shared by several appliances)
    dsn: str | None = None  # libpq connection string or URI (postgresql only)
    refresh: float = 30.0  # seconds between re-reads of rows other appliances wrote (besides LISTEN/NOTIFY)


@dataclass(frozen=True, slots=True)
class Config:
    """The whole appliance configuration, paths resolved."""

    path: Path
    state_dir: Path
    templates: Path
    inventory: Inventory
    log_level: str
    interfaces: tuple[str, ...]
    lease_time: int
    offer_hold: int
    authoritative: bool
    dhcp_port: int
    global_options: dict[int, bytes]
    subnets: tuple[Subnet, ...]
    tftp_root: Path | None
    tftp_port: int
    tftp_max_blksize: int
    dns: DnsSettings | None
    # Where each key of `path` is ({("dhcp", "interfaces", 0): 7, ...}), for problems found after loading.
    source_lines: dict[tuple[int | str, ...], int] = field(default_factory=dict, compare=False, repr=False)
    # TFTP and DNS listen on the addresses of `interfaces` plus these (relayed subnets): ztp.net.listen.
    listen: tuple[IPv4Address, ...] = ()
    provisioning_access: str = "lease-holder"  # who may fetch a device's config: ztp.access
    tftp_private: tuple[str, ...] = ()  # globs under tftp_root served only to lease/reservation holders
    tftp_max_sessions: int = 2000
    tftp_max_sessions_per_peer: int = 8
    # DHCP policy settings added after the first release: defaulted so that a Config built in code keeps working.
    decline_hold: int = 600
    bootp: str = "reserved"
    bootp_lease_time: int = 86400
    relays: tuple[IPv4Network, ...] = ()  # who may relay (datagram source and giaddr); () = giaddr in a subnet
    rate_limit: float = 20.0  # DHCP messages/s per client key (bursts of twice that); 0 = no limit
    relay_rate_limit: float = 20000.0  # DHCP messages/s per relay (giaddr and source address); 0 = no limit
    ping_check: bool = True  # ICMP echo before offering an address with no current binding
    ping_timeout: float = 0.5
    user: str | None = None  # ztp serve switches to this user once its ports are bound
    state: StateSettings = StateSettings()  # the lease store (state_dir holds the SQLite one)
    http: HttpSettings | None = None  # None: no HTTP listener
    timeline: TimelineSettings = field(default_factory=TimelineSettings)
    syslog: SyslogSettings | None = None  # None: no syslog receiver

    def line(self, *loc: int | str) -> int:
        """The line in `path` of the deepest key along `loc` (e.g. `"dns", "zone"`) that the file has."""
        for end in range(len(loc), 0, -1):
            line = self.source_lines.get(loc[:end])
            if line:
                return line
        return 1

    def subnet_for(self, ip: IPv4Address) -> Subnet | None:
        """The subnet containing `ip` (an interface address or a relay's giaddr)."""
        for subnet in self.subnets:
            if ip in subnet.network:
                return subnet
        return None


# --- loading ----------------------------------------------------------------------------------------

def _pydantic_problems(path: Path, tree: Any, exc: ValidationError) -> list[Problem]:
    problems = []
    for err in exc.errors():
        loc = [p for p in err["loc"] if isinstance(p, int | str)]
        where = ".".join(str(p) for p in loc) or "(top level)"
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key (check its spelling against the README's reference)"
        problems.append(Problem(path, line_of(tree, loc), f"{where}: {msg}"))
    return problems


def _encode_options(path: Path, tree: Any, loc: list[int | str], options: dict[int, Any],
                    problems: list[Problem]) -> dict[int, bytes]:
    out: dict[int, bytes] = {}
    for code, value in options.items():
        try:
            out[code] = encode_value(code, value)
        except OptionValueError as exc:
            message = str(exc) if str(exc).startswith(f"option {code}") else f"option {code}: {exc}"
            problems.append(Problem(path, line_of(tree, [*loc, code]), message))
    return out


def _parse_pool(text: str) -> tuple[IPv4Address, IPv4Address]:
    first, sep, last = text.partition("-")
    if not sep:
        raise ValueError(f"pool {text!r} must be FIRST-LAST, e.g. 10.60.0.100-10.60.0.199")
    start, end = IPv4Address(first.strip()), IPv4Address(last.strip())
    if end < start:
        raise ValueError(f"pool {text!r} ends before it starts")
    return start, end


def _source_lines(tree: Any, prefix: tuple[int | str, ...] = ()) -> dict[tuple[int | str, ...], int]:
    """Every key path of a loaded YAML tree with its line."""
    lines: dict[tuple[int | str, ...], int] = {}
    if isinstance(tree, SourceMap):
        items: list[tuple[int | str, int, Any]] = [(k, tree.key_lines.get(k, 0), v) for k, v in tree.items()
                                                   if isinstance(k, int | str)]
    elif isinstance(tree, SourceList):
        items = [(i, tree.item_lines[i], v) for i, v in enumerate(tree)]
    else:
        return lines
    for key, line, value in items:
        lines[(*prefix, key)] = line
        lines.update(_source_lines(value, (*prefix, key)))
    return lines


def _load_tree(path: Path, what: str) -> tuple[Any, list[Problem]]:
    try:
        tree = load_yaml(path)
    except YamlError as exc:
        return None, [Problem(exc.path, exc.line, exc.message)]
    except OSError as exc:
        return None, [Problem(path, 0, f"cannot read the {what}: {exc.strerror}")]
    if tree is None:
        tree = SourceMap()
    if not isinstance(tree, dict):
        return None, [Problem(path, getattr(tree, "line", 1), f"the {what} must be a YAML mapping")]
    return tree, []


def load_config(path: Path) -> Config:
    """Load and check ztp.yaml and the inventory it names. Raises ConfigError listing every problem."""
    config, problems = check_config(path)
    if problems or config is None:
        raise ConfigError(problems)
    return config


def check_config(path: Path) -> tuple[Config | None, list[Problem]]:
    """Load what can be loaded and list every problem; the Config is None only when the file's own schema
    is broken. `ztp check` uses the partial Config to go on and render templates."""
    path = path.resolve()
    tree, problems = _load_tree(path, "configuration")
    if tree is None:
        return None, problems
    try:
        model = ConfigModel.model_validate(tree)
    except ValidationError as exc:
        return None, _pydantic_problems(path, tree, exc)
    base = path.parent
    subnets = _build_subnets(path, tree, model, problems)
    global_options = _encode_options(path, tree, ["dhcp", "options"], model.dhcp.options, problems)
    inventory_path = (base / model.inventory).resolve()
    if inventory_path.is_file():
        inventory = _load_inventory(inventory_path, subnets, problems)
    else:
        problems.append(Problem(path, line_of(tree, ["inventory"]),
                                f"inventory file {inventory_path} does not exist"))
        inventory = Inventory(path=inventory_path, default_template=None, default_vars={}, default_options={},
                              devices=())
    dns = None
    if model.dns is not None:
        records: dict[str, list[str]] = {}
        for name, value in model.dns.records.items():
            addrs = value if isinstance(value, list) else [value]
            for addr in addrs:
                try:
                    IPv4Address(addr)
                except ValueError:
                    problems.append(Problem(path, line_of(tree, ["dns", "records", name]),
                                            f"dns.records.{name}: {addr!r} is not an IPv4 address"))
            records[name] = [str(a) for a in addrs]
        dns = DnsSettings(zone=model.dns.zone.rstrip(".").lower(), server_name=model.dns.server_name,
                          ttl=model.dns.ttl, records=records, forwarders=tuple(model.dns.forwarders),
                          port=model.dns.port, rate_limit=model.dns.rate_limit)
    templates = (base / model.templates).resolve()
    if not templates.is_dir():
        problems.append(Problem(path, line_of(tree, ["templates"]),
                                f"templates directory {templates} does not exist"))
    tftp_root = (base / model.tftp.root).resolve() if model.tftp.root else None
    if tftp_root is not None and not tftp_root.is_dir():
        problems.append(Problem(path, line_of(tree, ["tftp", "root"]),
                                f"tftp.root {tftp_root} does not exist or is not a directory"))
    return Config(
        path=path, state_dir=(base / model.state_dir).resolve(), templates=templates, inventory=inventory,
        log_level=model.log_level, interfaces=tuple(model.dhcp.interfaces), lease_time=model.dhcp.lease_time,
        offer_hold=model.dhcp.offer_hold, authoritative=model.dhcp.authoritative, dhcp_port=model.dhcp.port,
        global_options=global_options,
        subnets=tuple(subnets), tftp_root=tftp_root, tftp_port=model.tftp.port,
        tftp_max_blksize=model.tftp.max_blksize, dns=dns, source_lines=_source_lines(tree),
        listen=tuple(model.listen), provisioning_access=model.provisioning.access,
        tftp_private=tuple(model.tftp.private), tftp_max_sessions=model.tftp.max_sessions,
        tftp_max_sessions_per_peer=model.tftp.max_sessions_per_peer,
        decline_hold=model.dhcp.decline_hold, bootp=model.dhcp.bootp, bootp_lease_time=model.dhcp.bootp_lease_time,
        http=None if model.http is None else HttpSettings(port=model.http.port, listen=tuple(model.http.listen),
                                                          token=model.http.token),
        timeline=TimelineSettings(**model.timeline.model_dump()),
        syslog=None if model.syslog is None else SyslogSettings(port=model.syslog.port),
        relays=tuple(model.dhcp.relays), rate_limit=model.dhcp.rate_limit,
        relay_rate_limit=model.dhcp.relay_rate_limit, ping_check=model.dhcp.ping_check,
        ping_timeout=model.dhcp.ping_timeout, user=model.user,
        state=_state(path, tree, model, problems),
    ), problems


def _state(path: Path, tree: Any, model: ConfigModel, problems: list[Problem]) -> StateSettings:
    state = model.state
    if state.backend == "postgresql" and not state.dsn:
        problems.append(Problem(path, line_of(tree, ["state", "backend"]),
                                'state.backend: postgresql needs state.dsn (e.g. dsn: "postgresql://ztp@db/ztp"; '
                                "the password can come from PGPASSWORD or ~/.pgpass)"))
    if state.backend == "sqlite" and state.dsn:
        problems.append(Problem(path, line_of(tree, ["state", "dsn"]),
                                "state.dsn is only used with state.backend: postgresql (SQLite lives in state_dir); "
                                "set the backend or remove the dsn"))
    return StateSettings(backend=state.backend, dsn=state.dsn, refresh=state.refresh)


def _build_subnets(path: Path, tree: Any, model: ConfigModel, problems: list[Problem]) -> list[Subnet]:
    subnets: list[Subnet] = []
    for i, sm in enumerate(model.dhcp.subnets):
        loc: list[int | str] = ["dhcp", "subnets", i]
        line = line_of(tree, loc)
        net = sm.network
        start = end = None
        if sm.pool:
            try:
                start, end = _parse_pool(sm.pool)
            except ValueError as exc:
                problems.append(Problem(path, line_of(tree, [*loc, "pool"]), str(exc)))
            else:
                pline = line_of(tree, [*loc, "pool"])
                if start not in net or end not in net:
                    problems.append(Problem(path, pline, f"pool {sm.pool} is not inside {net}"))
                elif net.prefixlen < 31 and (start == net.network_address or end == net.broadcast_address):
                    problems.append(Problem(path, pline, f"pool {sm.pool} contains the network or broadcast "
                                                         f"address of {net}"))
        for j, router in enumerate(sm.routers):
            if router not in net:
                problems.append(Problem(path, line_of(tree, [*loc, "routers", j]),
                                        f"router {router} is outside {net}"))
            elif start and end and start <= router <= end:
                problems.append(Problem(path, line_of(tree, [*loc, "routers", j]),
                                        f"router {router} is inside the pool {sm.pool}"))
        for other in subnets:
            if net.overlaps(other.network):
                problems.append(Problem(path, line, f"subnet {net} overlaps {other.network} "
                                                    f"(line {other.line})"))
        options = _encode_options(path, tree, [*loc, "options"], sm.options, problems)
        subnets.append(Subnet(network=net, pool_start=start, pool_end=end, routers=tuple(sm.routers),
                              dns_servers=tuple(sm.dns_servers), domain=sm.domain,
                              lease_time=sm.lease_time or model.dhcp.lease_time, options=options, line=line))
    return subnets


def _client_id_key(text: str) -> str:
    """The spelling of an inventory client-id that requests are matched by: lowercase, hex without colons."""
    key = text.lower()
    if re.fullmatch(r"[0-9a-f]{2}(:[0-9a-f]{2})+", key):
        key = key.replace(":", "")
    return key


def _load_inventory(path: Path, subnets: list[Subnet], problems: list[Problem]) -> Inventory:
    empty = Inventory(path=path, default_template=None, default_vars={}, default_options={}, devices=())
    tree, load_problems = _load_tree(path, "inventory")
    if tree is None:
        problems.extend(load_problems)
        return empty
    try:
        model = InventoryModel.model_validate(tree)
    except ValidationError as exc:
        problems.extend(_pydantic_problems(path, tree, exc))
        return empty
    default_options = _encode_options(path, tree, ["defaults", "options"], model.defaults.options, problems)
    default_vendor = _vendor_name(path, tree, ["defaults", "vendor"], model.defaults.vendor, problems)
    serials: dict[str, Device] = {}
    devices: list[Device] = []
    by_mac: dict[str, Device] = {}
    by_client_id: dict[str, Device] = {}
    client_id_spellings: dict[str, Device] = {}
    by_hostname: dict[str, Device] = {}
    by_ip: dict[IPv4Address, Device] = {}
    by_relay: dict[tuple[str | None, str | None], Device] = {}
    by_circuit: dict[str, Device] = {}  # first device listing each circuit-id / remote-id, whatever the other
    by_remote: dict[str, Device] = {}
    circuit_only: Device | None = None  # first device listing a circuit-id and no remote-id, and vice versa
    remote_only: Device | None = None
    for i, dm in enumerate(model.devices):
        loc: list[int | str] = ["devices", i]
        line = line_of(tree, loc)
        options = _encode_options(path, tree, [*loc, "options"], dm.options, problems)
        vendor = _vendor_name(path, tree, [*loc, "vendor"], dm.vendor, problems)
        device = Device(hostname=dm.hostname, mac=dm.mac, client_id=dm.client_id, circuit_id=dm.circuit_id,
                        remote_id=dm.remote_id, ip=dm.ip, template=dm.template,
                        vars=freeze_mapping(dm.vars),
                        options=options, line=line, template_line=line_of(tree, [*loc, "template"]),
                        serial=dm.serial, vendor=vendor)
        if not (dm.mac or dm.client_id or dm.circuit_id or dm.remote_id or dm.serial):
            problems.append(Problem(path, line, f"device {dm.hostname}: give at least one of mac, client_id, "
                                                "circuit_id or remote_id, or a serial, to recognise it"))
        if dm.serial:
            _check_serial(path, tree, loc, device, serials, client_id_spellings, problems)
        if dm.hostname in by_hostname:
            problems.append(Problem(path, line, f"duplicate hostname {dm.hostname} "
                                                f"(also line {by_hostname[dm.hostname].line})"))
        by_hostname.setdefault(dm.hostname, device)
        if dm.mac:
            if dm.mac in by_mac:
                problems.append(Problem(path, line_of(tree, [*loc, "mac"]),
                                        f"duplicate MAC {dm.mac} (also {by_mac[dm.mac].hostname}, "
                                        f"line {by_mac[dm.mac].line})"))
            by_mac.setdefault(dm.mac, device)
        if dm.client_id:
            # Requests are matched ignoring case and hex colons (ztp.inventory): so are duplicates.
            spelling = _client_id_key(dm.client_id)
            twin = client_id_spellings.get(spelling)
            if twin is not None:
                problems.append(Problem(path, line_of(tree, [*loc, "client_id"]),
                                        f"duplicate client_id {dm.client_id!r} (also {twin.hostname}, line "
                                        f"{twin.line}; client-ids are compared ignoring case and ':')"))
            client_id_spellings.setdefault(spelling, device)
            by_client_id.setdefault(dm.client_id, device)
            twin = serials.get(spelling.lstrip("\0"))
            if twin is not None and twin is not device:
                problems.append(Problem(path, line_of(tree, [*loc, "client_id"]),
                                        f"client_id {dm.client_id!r} is the serial of {twin.hostname} (line "
                                        f"{twin.line}): a POAP request (type 0 + serial) would match both"))
        if dm.circuit_id or dm.remote_id:
            key = (dm.circuit_id, dm.remote_id)
            # An id a device leaves out matches anything, so two devices are ambiguous when each id either is
            # the same in both or is left out by one of them: some request would match both.
            cid, rid = dm.circuit_id, dm.remote_id
            if cid is not None and rid is not None:
                clash = by_relay.get(key) or by_relay.get((cid, None)) or by_relay.get((None, rid))
            elif cid is not None:
                clash = by_circuit.get(cid) or remote_only
            else:
                clash = by_remote.get(rid or "") or circuit_only
            if cid is not None:
                by_circuit.setdefault(cid, device)
                if rid is None:
                    circuit_only = circuit_only or device
            if rid is not None:
                by_remote.setdefault(rid, device)
                if cid is None:
                    remote_only = remote_only or device
            if clash is not None:
                problems.append(Problem(path, line, f"device {dm.hostname}: circuit_id/remote_id match is "
                                                    f"ambiguous with {clash.hostname} (line {clash.line})"))
            by_relay.setdefault(key, device)
        if dm.ip is not None:
            iline = line_of(tree, [*loc, "ip"])
            owner = next((s for s in subnets if dm.ip in s.network), None)
            if owner is None:
                problems.append(Problem(path, iline, f"{dm.hostname}: address {dm.ip} is outside every "
                                                     "configured subnet"))
            elif dm.ip in (owner.network.network_address, owner.network.broadcast_address):
                problems.append(Problem(path, iline, f"{dm.hostname}: address {dm.ip} is the network or "
                                                     f"broadcast address of {owner.network}"))
            elif owner.in_pool(dm.ip):
                problems.append(Problem(path, iline, f"{dm.hostname}: reservation {dm.ip} is inside the "
                                                     f"pool of {owner.network}; pick one outside it"))
            elif dm.ip in owner.routers:
                problems.append(Problem(path, iline, f"{dm.hostname}: reservation {dm.ip} is a router"))
            if dm.ip in by_ip:
                problems.append(Problem(path, iline, f"{dm.hostname}: reservation {dm.ip} duplicates "
                                                     f"{by_ip[dm.ip].hostname} (line {by_ip[dm.ip].line})"))
            by_ip.setdefault(dm.ip, device)
        devices.append(device)
    return Inventory(path=path, default_template=model.defaults.template,
                     default_vars=freeze_mapping(model.defaults.vars),
                     default_options=default_options, devices=tuple(devices), by_mac=by_mac,
                     by_client_id=by_client_id, by_hostname=by_hostname, default_vendor=default_vendor)


def _vendor_name(path: Path, tree: Any, loc: list[int | str], name: str | None,
                 problems: list[Problem]) -> str | None:
    """A `vendor:` value as its profile's canonical name; an unknown one is a problem naming the choices."""
    if name is None:
        return None
    from ztp.vendors import NAMES, profile_named  # here: the profiles import the DHCP codec, not config

    profile = profile_named(name)
    if profile is None:
        problems.append(Problem(path, line_of(tree, loc), f"vendor {name!r} is not a profile ztp knows; "
                                                          f"use one of {', '.join(NAMES)}"))
        return None
    return profile.name


def _check_serial(path: Path, tree: Any, loc: list[int | str], device: Device, serials: dict[str, Device],
                  client_id_spellings: dict[str, Device], problems: list[Problem]) -> None:
    """A serial must name one device: not another's serial, nor another's client-id (POAP sends 0 + serial)."""
    assert device.serial is not None
    key = device.serial.lower()
    twin = serials.get(key)
    if twin is not None:
        problems.append(Problem(path, line_of(tree, [*loc, "serial"]),
                                f"duplicate serial {device.serial!r} (also {twin.hostname}, line {twin.line}; "
                                "serials are compared ignoring case)"))
    else:
        serials[key] = device
    other = client_id_spellings.get(key)
    if other is not None and other is not device:
        problems.append(Problem(path, line_of(tree, [*loc, "serial"]),
                                f"serial {device.serial!r} is the client_id of {other.hostname} (line {other.line}): "
                                "a request carrying it would match both; the identity is ambiguous"))
