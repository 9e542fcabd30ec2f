"""`ztp check` runs exactly the validation of `ztp serve` (and of a SIGHUP reload): DNS zone and records,
ambiguous device identities, and with `--here` the interfaces; every problem as `file:line: message`."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

import ztp.check
from ztp.check import missing_interfaces, validate
from ztp.cli import main
from ztp.config import load_config

ZTP_YAML = """\
templates: ./templates
inventory: ./inventory.yaml
state_dir: ./state
dhcp:
  interfaces: [lo]
  subnets:
    - network: 10.60.0.0/24
      pool: 10.60.0.100-10.60.0.199
      routers: [10.60.0.1]
"""
DNS = """\
dns:
  zone: lab.test
  server_name: ztp
  records:
    ntp: 10.60.0.5
"""
INVENTORY = """\
defaults:
  template: default.j2
devices:
  - hostname: leaf01
    mac: 02:00:00:00:00:01
    ip: 10.60.0.11
"""


def setup(tmp_path: Path, ztp: str = ZTP_YAML + DNS, devices: str = "") -> Path:
    (tmp_path / "templates").mkdir(exist_ok=True)
    (tmp_path / "templates" / "default.j2").write_text("hostname {{ hostname }}\n")
    (tmp_path / "ztp.yaml").write_text(ztp)
    (tmp_path / "inventory.yaml").write_text(INVENTORY + devices)
    return tmp_path / "ztp.yaml"


def check(path: Path, capsys: pytest.CaptureFixture[str], *flags: str) -> tuple[int, list[str]]:
    rc = main(["check", "--config", str(path), *flags])
    return rc, capsys.readouterr().out.splitlines()


def test_the_base_config_passes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, out = check(setup(tmp_path), capsys)
    assert (rc, out) == (0, ["ok: 1 subnets, 1 devices, every config renders"])


# --- DNS: what `ztp serve` used to find only when building the zone at start (a traceback) ----------------

@pytest.mark.parametrize(("dns", "line", "message"), [
    (DNS.replace("zone: lab.test", "zone: lab test"), 11,
     "dns.zone: zone 'lab test.': only ASCII letters, digits, '-' and '_' are allowed"),
    (DNS.replace("zone: lab.test", "zone: a..test"), 11,
     "dns.zone: zone 'a..test.': each label must be 1-63 characters"),
    (DNS.replace("zone: lab.test", "zone: " + "a" * 64 + ".test"), 11,
     "dns.zone: zone '" + "a" * 64 + ".test.': each label must be 1-63 characters"),
    (DNS.replace("server_name: ztp", "server_name: my ztp"), 12,
     "dns.server_name: server name 'my ztp': only ASCII letters, digits, '-' and '_' are allowed"),
    (DNS.replace("ntp: 10.60.0.5", "ntp server: 10.60.0.5"), 14,
     "dns.records.ntp server: record 'ntp server': only ASCII letters, digits, '-' and '_' are allowed"),
    (DNS.replace("ntp: 10.60.0.5", "ntp.other.test.: 10.60.0.5"), 14,
     "dns.records.ntp.other.test.: record 'ntp.other.test.' is outside the zone lab.test."),
    (DNS.replace("ntp: 10.60.0.5", "ntp: []"), 14, "dns.records.ntp: record 'ntp' has no address"),
    (DNS.replace("ntp: 10.60.0.5", "ntp: 10.60.0.500"), 14,
     "dns.records.ntp: '10.60.0.500' is not an IPv4 address"),
])
def test_dns_problems_are_check_problems_at_their_line(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                       dns: str, line: int, message: str) -> None:
    path = setup(tmp_path, ZTP_YAML + dns)
    rc, out = check(path, capsys)
    assert rc == 1
    assert out == [f"{path}:{line}: {message}", "1 problem(s)"]


def test_a_subnet_too_wide_for_reverse_dns_is_a_problem_at_the_subnet(tmp_path: Path,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    ztp = ZTP_YAML + "    - network: 32.0.0.0/4\n"
    path = setup(tmp_path, ztp + DNS)
    rc, out = check(path, capsys)
    assert out[0].startswith(f"{path}:10: dns (reverse zone of 32.0.0.0/4): subnet '32.0.0.0/4': prefix shorter")
    assert rc == 1 and out[-1] == "1 problem(s)"


def test_serve_refuses_a_bad_zone_with_file_line_and_no_traceback(tmp_path: Path,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    path = setup(tmp_path, ZTP_YAML + DNS.replace("zone: lab.test", "zone: lab test"))
    with caplog.at_level(logging.ERROR):
        assert main(["serve", "--config", str(path)]) == 1  # before any socket: validation refused it
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert errors[0] == f"{path}:11: dns.zone: zone 'lab test.': only ASCII letters, digits, '-' and '_' are allowed"
    assert errors[-1].startswith("ztp: 1 problem(s)")
    assert not any(r.exc_info for r in caplog.records)


# --- identities: two inventory devices that one request could match -------------------------------------

@pytest.mark.parametrize(("devices", "line", "message"), [
    # the same circuit-id/remote-id pair
    ("  - {hostname: a, circuit_id: sw1-p7, remote_id: relay1}\n"
     "  - {hostname: b, circuit_id: sw1-p7, remote_id: relay1}\n", 8,
     "device b: circuit_id/remote_id match is ambiguous with a (line 7)"),
    # a remote-id alone matches every port of that relay, including b's
    ("  - {hostname: a, remote_id: relay1}\n"
     "  - {hostname: b, circuit_id: sw1-p7, remote_id: relay1}\n", 8,
     "device b: circuit_id/remote_id match is ambiguous with a (line 7)"),
    ("  - {hostname: a, circuit_id: sw1-p7, remote_id: relay1}\n"
     "  - {hostname: b, remote_id: relay1}\n", 8,
     "device b: circuit_id/remote_id match is ambiguous with a (line 7)"),
    # a request with circuit-id sw1-p7 from relay1 matches both
    ("  - {hostname: a, circuit_id: sw1-p7}\n"
     "  - {hostname: b, remote_id: relay1}\n", 8,
     "device b: circuit_id/remote_id match is ambiguous with a (line 7)"),
    # client-ids are matched ignoring case, and hex with or without colons
    ("  - {hostname: a, client_id: SN-ABC123}\n"
     "  - {hostname: b, client_id: sn-abc123}\n", 8,
     "duplicate client_id 'sn-abc123' (also a, line 7; client-ids are compared ignoring case and ':')"),
    ("  - {hostname: a, client_id: '01:02:00:00:00:00:AA'}\n"
     "  - {hostname: b, client_id: '010200000000aa'}\n", 8,
     "duplicate client_id '010200000000aa' (also a, line 7; client-ids are compared ignoring case and ':')"),
    # one MAC, spelled three ways
    ("  - {hostname: a, mac: 02-00-00-00-00-01}\n", 7,
     "duplicate MAC 02:00:00:00:00:01 (also leaf01, line 4)"),
    ("  - {hostname: a, mac: '020000000001'}\n", 7, "duplicate MAC 02:00:00:00:00:01 (also leaf01, line 4)"),
    ("  - {hostname: a, mac: '02:00:00:00:00:0A'}\n  - {hostname: b, mac: 02:00:00:00:00:0a}\n", 8,
     "duplicate MAC 02:00:00:00:00:0a (also a, line 7)"),
])
def test_ambiguous_identities_are_problems_at_their_line(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                         devices: str, line: int, message: str) -> None:
    path = setup(tmp_path, devices=devices)
    rc, out = check(path, capsys)
    assert rc == 1
    assert out == [f"{tmp_path / 'inventory.yaml'}:{line}: {message}", "1 problem(s)"]


@pytest.mark.parametrize("devices", [
    "  - {hostname: a, circuit_id: p1, remote_id: relay1}\n  - {hostname: b, circuit_id: p1, remote_id: relay2}\n",
    "  - {hostname: a, circuit_id: p1, remote_id: relay1}\n  - {hostname: b, circuit_id: p2, remote_id: relay1}\n",
    "  - {hostname: a, circuit_id: p1}\n  - {hostname: b, circuit_id: p2, remote_id: relay1}\n",
    "  - {hostname: a, client_id: SN1}\n  - {hostname: b, client_id: SN2}\n",
])
def test_distinct_identities_pass(tmp_path: Path, capsys: pytest.CaptureFixture[str], devices: str) -> None:
    rc, out = check(setup(tmp_path, devices=devices), capsys)
    assert rc == 0, out


# --- interfaces: only for the host that will serve (`--here`) ---------------------------------------------

def test_interfaces_are_checked_only_with_here(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = setup(tmp_path, ZTP_YAML.replace("interfaces: [lo]", "interfaces:\n    - lo\n    - nosuch0"))
    rc, out = check(path, capsys)
    assert rc == 0, out  # checked elsewhere: the interface may exist only on the appliance
    rc, out = check(path, capsys, "--here")
    assert rc == 1
    assert out == [f"{path}:7: dhcp.interfaces: 'nosuch0' does not exist on this host (`ip -br link` lists the "
                   "interfaces)", "1 problem(s)"]


def test_an_interface_without_ipv4_is_a_problem_here(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    path = setup(tmp_path)
    rc, out = check(path, capsys, "--here")
    assert (rc, out) == (0, ["ok: 1 subnets, 1 devices, every config renders, interfaces lo ready here"])
    monkeypatch.setattr(ztp.check, "interface_ipv4", lambda name: None)
    rc, out = check(path, capsys, "--here")
    assert rc == 1 and out[0].startswith(f"{path}:5: dhcp.interfaces: lo has no IPv4 address")


def test_missing_interfaces_is_callable_on_a_loaded_config(tmp_path: Path) -> None:
    config = load_config(setup(tmp_path, ZTP_YAML.replace("interfaces: [lo]", "interfaces: [lo, nosuch0]")))
    assert [(p.path, p.line) for p in missing_interfaces(config)] == [(config.path, 5)]
    assert validate(config.path)[1] == [] and len(validate(config.path, here=True)[1]) == 1
