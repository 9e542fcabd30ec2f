"""Who may fetch what over TFTP: one path normalisation, configs only to the lease or reservation holder,
private static files only to hosts the appliance gave an address, `access: open` for NAT labs."""

from __future__ import annotations

import logging
from ipaddress import IPv4Address
from pathlib import Path

import pytest

from ztp.access import AccessRule, access_warnings
from ztp.config import Config, load_config
from ztp.leases.table import Lease, LeaseState, LeaseTable
from ztp.provision import RenderedConfigs
from ztp.render import DeviceView, Renderer
from ztp.tftp.content import ChainedContent, StaticRoot, TftpRefusal, normalise_path

NOW = 1_000_000.0

ZTP_YAML = """\
templates: ./templates
inventory: ./inventory.yaml
dhcp:
  subnets:
    - network: 10.60.0.0/24
      pool: 10.60.0.100-10.60.0.199
      routers: [10.60.0.1]
tftp:
  root: ./tftpboot
  private: ["secret/*", "*.key"]
"""
INVENTORY_YAML = """\
defaults:
  template: t.j2
devices:
  - hostname: leaf01
    mac: 02:00:00:00:00:01
    ip: 10.60.0.11
    template: t.j2
  - hostname: leaf02
    mac: 02:00:00:00:00:02
    template: t.j2
  - hostname: leaf07
    circuit_id: r1-port7
    template: t.j2
"""


def _config(tmp_path: Path, extra: str = "") -> Config:
    (tmp_path / "templates").mkdir(exist_ok=True)
    (tmp_path / "templates" / "t.j2").write_text("hostname {{ hostname }}\n")
    root = tmp_path / "tftpboot"
    (root / "secret").mkdir(parents=True, exist_ok=True)
    for name in ("public.bin", "secret/creds.txt", "switch.key"):
        (root / name).write_bytes(name.encode())
        (root / name).chmod(0o644)
    (tmp_path / "ztp.yaml").write_text(ZTP_YAML + extra)
    (tmp_path / "inventory.yaml").write_text(INVENTORY_YAML)
    return load_config(tmp_path / "ztp.yaml")


def _lease(ip: str, mac: str, *, state: LeaseState = LeaseState.BOUND, expires: float = NOW + 600,
           hostname: str | None = None, client: str | None = None) -> Lease:
    return Lease(ip=IPv4Address(ip), client=client or mac, mac=mac, state=state, expires=expires,
                 updated=NOW - 10, hostname=hostname)


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return _config(tmp_path)


@pytest.fixture
def table() -> LeaseTable:
    return LeaseTable([
        _lease("10.60.0.100", "02:00:00:00:00:02", hostname="leaf02"),  # leaf02 by MAC
        _lease("10.60.0.101", "02:00:00:00:00:99"),  # an unlisted device
        _lease("10.60.0.102", "02:00:00:00:00:77", hostname="leaf07"),  # leaf07 by option 82
        _lease("10.60.0.103", "02:00:00:00:00:55", expires=NOW - 1),  # expired
        _lease("10.60.0.104", "02:00:00:00:00:56", state=LeaseState.RELEASED),
        _lease("10.60.0.105", "02:00:00:00:00:57", state=LeaseState.OFFERED),
        _lease("10.60.0.106", "02:00:00:00:00:58", hostname="stranger"),
    ])


def _provider(config: Config, table: LeaseTable) -> RenderedConfigs:
    return RenderedConfigs(config, Renderer(config), table, access=AccessRule(config, table, clock=lambda: NOW))


def _refused(provider: RenderedConfigs | StaticRoot | ChainedContent, path: str, ip: str) -> TftpRefusal:
    with pytest.raises(TftpRefusal) as info:
        provider.get(path, (ip, 2000))
    return info.value


# --- one normalisation for every provider ---------------------------------------------------------------

@pytest.mark.parametrize(("path", "expected"), [
    ("leaf01.cfg", "leaf01.cfg"), ("./leaf01.cfg", "leaf01.cfg"), ("cfg//x.bin", "cfg/x.bin"),
    ("cfg/./x", "cfg/x"), (".", "."), ("./", "."), ("a/", "a"),
])
def test_normalise_path(path: str, expected: str) -> None:
    assert normalise_path(path) == expected


@pytest.mark.parametrize(("path", "code", "fragment"), [
    ("/leaf01.cfg", 2, "absolute"), ("//leaf01.cfg", 2, "absolute"), ("/", 2, "absolute"),
    ("../leaf01.cfg", 2, "'..'"), ("x/../leaf01.cfg", 2, "'..'"), ("..", 2, "'..'"),
    ("leaf01.cfg\0", 2, "NUL"), ("", 1, "empty"),
])
def test_normalise_refusals(path: str, code: int, fragment: str) -> None:
    with pytest.raises(TftpRefusal) as info:
        normalise_path(path)
    assert info.value.code == code and fragment in info.value.message


@pytest.mark.parametrize("path", ["/leaf01.cfg", "//leaf01.cfg", "../leaf01.cfg", "/public.bin"])
def test_absolute_and_dotdot_refused_for_rendered_and_static_alike(config: Config, table: LeaseTable,
                                                                  path: str) -> None:
    assert config.tftp_root is not None
    chain = ChainedContent(_provider(config, table), StaticRoot(config.tftp_root))
    # Even for the device that holds the reservation: the spelling alone is refused.
    assert _refused(chain, path, "10.60.0.11").code == 2
    assert _refused(_provider(config, table), path, "10.60.0.11").code == 2


# --- rendered configs: the lease or reservation holder only --------------------------------------------

def test_reservation_holder_gets_its_config(config: Config, table: LeaseTable) -> None:
    assert _provider(config, table).get("leaf01.cfg", ("10.60.0.11", 2000)) == b"hostname leaf01\n"
    assert _provider(config, table).get("./LEAF01.cfg", ("10.60.0.11", 2000)) == b"hostname leaf01\n"


def test_lease_holder_gets_its_config_by_mac_or_by_name(config: Config, table: LeaseTable) -> None:
    provider = _provider(config, table)
    assert provider.get("leaf02.cfg", ("10.60.0.100", 2000)) == b"hostname leaf02\n"
    assert provider.get("leaf07.cfg", ("10.60.0.102", 2000)) == b"hostname leaf07\n"  # option-82 device
    assert provider.get("020000000099.cfg", ("10.60.0.101", 2000)) == b"hostname device-020000000099\n"


@pytest.mark.parametrize(("path", "ip"), [
    ("leaf01.cfg", "10.60.0.100"),  # another device's lease
    ("leaf01.cfg", "10.60.0.50"),  # no lease at all
    ("leaf02.cfg", "10.60.0.11"),  # another device's reservation
    ("leaf02.cfg", "10.60.0.101"),
    ("leaf07.cfg", "10.60.0.106"),
    ("020000000099.cfg", "10.60.0.100"),
    ("020000000055.cfg", "10.60.0.103"),  # its own lease, but expired
    ("020000000056.cfg", "10.60.0.104"),  # released
    ("020000000057.cfg", "10.60.0.105"),  # only offered, never bound
    ("leaf01.cfg", "fe80::1"),  # IPv6 peers hold no DHCPv4 lease
])
def test_anyone_else_gets_access_violation(config: Config, table: LeaseTable, path: str, ip: str,
                                           caplog: pytest.LogCaptureFixture) -> None:
    rendered: list[object] = []
    provider = _provider(config, table)
    render = provider.renderer.render

    def spy(view: DeviceView) -> bytes:
        rendered.append(view)
        return render(view)

    provider.renderer.render = spy  # type: ignore[method-assign]
    with caplog.at_level(logging.WARNING, logger="ztp.provision"):
        refusal = _refused(provider, path, ip)
    if refusal.code == 1:  # expired/released/offered unlisted devices have no config to refuse
        assert path.startswith("0200000000")
        return
    assert refusal.code == 2 and "only the device holding its address" in refusal.message
    assert rendered == []  # refused before rendering: a stranger costs a lookup, not a render
    line = caplog.records[-1].getMessage()
    assert ip in line and path in line and "refused" in line


def test_lease_expiry_ends_access(config: Config, table: LeaseTable) -> None:
    now = [NOW]
    provider = RenderedConfigs(config, Renderer(config), table,
                               access=AccessRule(config, table, clock=lambda: now[0]))
    assert provider.get("leaf02.cfg", ("10.60.0.100", 1)) == b"hostname leaf02\n"
    now[0] = NOW + 600  # the lease ends exactly now
    assert _refused(provider, "leaf02.cfg", "10.60.0.100").code == 2


def test_open_access_serves_everyone_and_is_warned_about(tmp_path: Path, table: LeaseTable) -> None:
    config = _config(tmp_path, "provisioning:\n  access: open\n")
    provider = _provider(config, table)
    assert provider.get("leaf01.cfg", ("192.0.2.7", 1)) == b"hostname leaf01\n"
    assert config.tftp_root is not None
    static = StaticRoot(config.tftp_root, private=config.tftp_private,
                        may_read_private=AccessRule(config, table, clock=lambda: NOW).known)
    assert static.get("secret/creds.txt", ("192.0.2.7", 1)) == b"secret/creds.txt"
    warnings = access_warnings(config)
    assert len(warnings) == 1 and "provisioning.access is 'open'" in warnings[0]


def test_default_is_lease_holder_without_warning(config: Config) -> None:
    assert config.provisioning_access == "lease-holder"
    assert access_warnings(config) == []


def test_unknown_access_mode_is_a_config_error(tmp_path: Path) -> None:
    from ztp.config import ConfigError

    with pytest.raises(ConfigError) as info:
        _config(tmp_path, "provisioning:\n  access: everyone\n")
    assert "provisioning.access" in str(info.value)


# --- static files: public unless private ---------------------------------------------------------------

def test_private_static_files_only_for_lease_or_reservation_holders(config: Config, table: LeaseTable) -> None:
    assert config.tftp_root is not None and config.tftp_private == ("secret/*", "*.key")
    rule = AccessRule(config, table, clock=lambda: NOW)
    static = StaticRoot(config.tftp_root, private=config.tftp_private, may_read_private=rule.known)
    for ip in ("10.60.0.11", "10.60.0.100", "10.60.0.106"):  # a reservation, leases (any device)
        assert static.get("secret/creds.txt", (ip, 1)) == b"secret/creds.txt"
        assert static.get("switch.key", (ip, 1)) == b"switch.key"
    for ip in ("10.60.0.50", "10.60.0.103", "10.60.0.104", "10.60.0.105", "fe80::1"):
        for path in ("secret/creds.txt", "./secret//creds.txt", "switch.key", "secret/missing"):
            refusal = _refused(static, path, ip)
            assert refusal.code == 2 and "private" in refusal.message, (ip, path)
        assert static.get("public.bin", (ip, 1)) == b"public.bin"  # everything else stays public


def test_private_without_a_rule_is_refused_to_all(config: Config) -> None:
    assert config.tftp_root is not None
    static = StaticRoot(config.tftp_root, private=["*.key"])
    assert _refused(static, "switch.key", "10.60.0.11").code == 2


def test_static_file_not_world_readable_is_refused(config: Config) -> None:
    assert config.tftp_root is not None
    (config.tftp_root / "public.bin").chmod(0o640)
    refusal = _refused(StaticRoot(config.tftp_root), "public.bin", "10.60.0.11")
    assert refusal.code == 2 and "world-readable" in refusal.message


def test_a_flood_of_refused_requests_logs_one_line(config: Config, table: LeaseTable,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    provider = _provider(config, table)
    with caplog.at_level(logging.WARNING, logger="ztp.provision"):
        for port in range(1000):
            with pytest.raises(TftpRefusal):
                provider.get("leaf01.cfg", ("10.60.0.50", port))
    lines = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    assert len(lines) == 1 and lines[0].startswith("02:00:00:00:00:01 tftp leaf01.cfg refused to 10.60.0.50")
