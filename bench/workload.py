"""The bench's inputs: a ztp configuration, an inventory of 48-port switches, and the peers' static files.

One work directory holds everything every section needs, so ztp and the peers serve the same bytes:
``ztp.yaml`` (a /16 with a big pool for perfdhcp, reservations for the inventory), ``inventory.yaml``
(N switches by MAC, each with a reserved address), ``templates/switch48.j2`` (renders ~8 KiB), and
``tftpboot/`` holding the 32 MiB file plus every device's config pre-rendered by ztp's own renderer.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from dataclasses import dataclass
from ipaddress import IPv4Address
from pathlib import Path

from ztp.agent.fleet import fleet_macs
from ztp.config import load_config
from ztp.leases.table import LeaseTable
from ztp.provision import device_view
from ztp.render import Renderer

HERE = Path(__file__).resolve().parent
TEMPLATE = HERE / "templates" / "switch48.j2"

SERVER_IP = "10.60.0.1"
CLIENT_IP = "10.60.0.2"
PREFIX = 16
NETWORK = "10.60.0.0/16"
POOL_FIRST, POOL_LAST = "10.60.16.0", "10.60.255.254"  # 61,439 addresses: more than perfdhcp's 50k clients
RESERVED_BASE = IPv4Address("10.60.4.0")  # device i (from 1) is reserved RESERVED_BASE + i
MAC_PREFIX = "02:5a:54"  # the agent's fleet default, so `ztp agent --count N` boots exactly these devices
BIG_FILE = "big32m.bin"
BIG_SIZE = 32 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Switch:
    """One inventory device: how the agent presents itself and what ztp hands it."""

    hostname: str
    mac: str
    ip: IPv4Address

    @property
    def boot_file(self) -> str:
        """The TFTP name ztp (and the peers, from a static file) serve its config under."""
        return f"{self.hostname}.cfg"


@dataclass(frozen=True, slots=True)
class Workload:
    """Paths and facts of a prepared work directory."""

    root: Path
    config: Path
    state_dir: Path
    tftp_root: Path
    switches: tuple[Switch, ...]
    big_sha256: str
    config_bytes: int  # size of one rendered config (they differ by a few bytes between devices)

    def reset_state(self) -> None:
        """Empty ztp's lease database: every DHCP run starts from brand-new devices."""
        shutil.rmtree(self.state_dir, ignore_errors=True)


def switches(count: int) -> tuple[Switch, ...]:
    """`count` switches whose MACs are the agent's fleet MACs, numbered from 1."""
    return tuple(Switch(hostname=f"sw{i:04d}", mac=mac, ip=RESERVED_BASE + i)
                 for i, mac in enumerate(fleet_macs(MAC_PREFIX, count), start=1))


def _inventory(devices: tuple[Switch, ...]) -> str:
    lines = [
        "defaults:",
        "  template: switch48.j2",
        "  vars: {ntp_server: 10.60.0.1, syslog_server: 10.60.0.1, vlans: [10, 20, 30, 40],",
        "         uplink: spine01, uplink_ip: 10.255.1.1, uplink_asn: 65100, rack: R00, asn: 65000,",
        "         loopback: 10.255.255.1}",
        "devices:",
    ]
    for n, sw in enumerate(devices, start=1):
        lines.append(f"  - {{hostname: {sw.hostname}, mac: '{sw.mac}', ip: {sw.ip}, "
                     f"vars: {{asn: {65000 + n}, loopback: 10.255.{n // 250}.{n % 250 + 1}, rack: R{n // 40:02d}}}}}")
    return "\n".join(lines) + "\n"


def _config(root: Path, *, ping_check: bool = False) -> str:
    return f"""state_dir: {root / 'state'}
templates: {root / 'templates'}
inventory: {root / 'inventory.yaml'}
log_level: warning
dhcp:
  interfaces: [s1]
  lease_time: 3600
  # The comparison with Kea and dnsmasq runs without conflict detection (neither probes by default);
  # bench/run.py measures ztp with it on as its own row (ztp-ping.yaml).
  ping_check: {'true' if ping_check else 'false'}
  subnets:
    - network: {NETWORK}
      pool: {POOL_FIRST}-{POOL_LAST}
      routers: [{SERVER_IP}]
      dns_servers: [{SERVER_IP}]
      domain: lab.test
tftp:
  root: {root / 'tftpboot'}
  # The TFTP burst runs 500 fetches of different switches' configs from one client namespace (one
  # address): this measures throughput, so that address may hold them all and need not be each switch's.
  max_sessions_per_peer: 1000
provisioning:
  access: open
"""


def prepare(root: Path, *, devices: int) -> Workload:
    """Write the work directory under `root` (created) for `devices` inventory switches."""
    root.mkdir(parents=True, exist_ok=True)
    os.chmod(root, 0o755)  # tftpd-hpa/dnsmasq may drop privileges; keep everything world-readable
    (root / "templates").mkdir(exist_ok=True)
    shutil.copy(TEMPLATE, root / "templates" / TEMPLATE.name)
    fleet = switches(devices)
    (root / "inventory.yaml").write_text(_inventory(fleet))
    cfg = root / "ztp.yaml"
    cfg.write_text(_config(root))
    (root / "ztp-ping.yaml").write_text(_config(root, ping_check=True))
    tftp_root = root / "tftpboot"
    tftp_root.mkdir(exist_ok=True)
    os.chmod(tftp_root, 0o755)
    big = tftp_root / BIG_FILE
    if not big.exists() or big.stat().st_size != BIG_SIZE:
        big.write_bytes(os.urandom(BIG_SIZE))
    big_sha = hashlib.sha256(big.read_bytes()).hexdigest()
    # The peers serve what ztp would render, byte for byte: render with ztp's own code, no leases needed
    # because every switch has a reservation.
    config = load_config(cfg)
    renderer = Renderer(config)
    table = LeaseTable()
    size = 0
    for sw in fleet:
        device = config.inventory.by_mac[sw.mac]
        data = renderer.render(device_view(config, table, device=device, mac=None))
        (tftp_root / sw.boot_file).write_bytes(data)
        size = size or len(data)
    for path in tftp_root.iterdir():
        os.chmod(path, 0o644)
    return Workload(root=root, config=cfg, state_dir=root / "state", tftp_root=tftp_root, switches=fleet,
                    big_sha256=big_sha, config_bytes=size)
