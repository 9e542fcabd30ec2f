"""`ztp check`, `ztp render` and `ztp leases`: every problem as `file:line: message`, exact lines."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from ipaddress import IPv4Address
from pathlib import Path

import pytest

from ztp.cli import main
from ztp.config import load_config
from ztp.devices import boot_file_name, boot_target
from ztp.leases.store import LeaseWriter, database_path
from ztp.leases.table import Lease, LeaseState, LeaseTable
from ztp.provision import device_view
from ztp.render import Renderer

REPO = Path(__file__).resolve().parents[2]
CONFIGS = REPO / "tests" / "data" / "configs"


def check(config: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, list[str]]:
    rc = main(["check", "--config", str(config)])
    return rc, capsys.readouterr().out.splitlines()


def test_example_config_passes(capsys: pytest.CaptureFixture[str]) -> None:
    rc, out = check(REPO / "ztp.yaml", capsys)
    assert rc == 0, out
    assert out == ["ok: 2 subnets, 5 devices, every config renders"]


def test_every_semantic_problem_is_listed_with_its_line(capsys: pytest.CaptureFixture[str]) -> None:
    ztp = CONFIGS / "problems" / "ztp.yaml"
    inv = CONFIGS / "problems" / "inventory.yaml"
    rc, out = check(ztp, capsys)
    assert rc == 1
    expected = [
        # overlapping subnets: at the second subnet, naming the first one's line
        f"{ztp}:11: subnet 10.60.0.128/25 overlaps 10.60.0.0/24 (line 8)",
        # pool containing the network / the broadcast address
        f"{ztp}:14: pool 10.80.0.0-10.80.0.50 contains the network or broadcast address of 10.80.0.0/24",
        f"{ztp}:16: pool 10.81.0.200-10.81.0.255 contains the network or broadcast address of 10.81.0.0/24",
        # bad option values, at the option's own line
        f"{ztp}:20: option 3: 'not-an-address' is not an IPv4 address",
        f"{ztp}:21: option 51 takes an integer, not '1h'",
        # address outside its subnet
        f"{inv}:6: outside: address 10.99.0.5 is outside every configured subnet",
        # reservation inside a pool
        f"{inv}:9: inpool: reservation 10.60.0.150 is inside the pool of 10.60.0.0/24; pick one outside it",
        # duplicated reservation
        f"{inv}:15: second: reservation 10.60.0.20 duplicates first (line 10)",
        # duplicate MAC (whatever the spelling)
        f"{inv}:17: duplicate MAC 02:00:00:00:00:03 (also first, line 10)",
        # duplicate hostname
        f"{inv}:18: duplicate hostname first (also line 10)",
        # ambiguous circuit_id
        f"{inv}:22: device port7b: circuit_id/remote_id match is ambiguous with port7a (line 20)",
        f"{inv}:28: option 66 takes a string, not [1, 2]",
    ]
    # Config and inventory problems come first; the templates are still rendered for every device that
    # loaded (this fixture's inventory has no vars, so base.j2 misses ntp_server), all in one run.
    assert out[: len(expected)] == expected
    rendered = out[len(expected) : -1]
    assert rendered and all(line.startswith(f"{CONFIGS / 'templates' / 'base.j2'}:2: ") and
                            line.endswith("'ntp_server' is undefined") for line in rendered), rendered
    assert out[-1] == f"{len(out) - 1} problem(s)"


def test_template_problems_name_the_template_file_and_line(capsys: pytest.CaptureFixture[str]) -> None:
    inv = CONFIGS / "render" / "inventory.yaml"
    rc, out = check(CONFIGS / "render" / "ztp.yaml", capsys)
    assert rc == 1
    assert out == [
        # unknown template: at the device entry in the inventory
        f"{inv}:7: leaf01: template 'nosuch.j2' not found in {CONFIGS / 'templates'}",
        # undefined variable: the template file and the line using it
        f"{CONFIGS / 'templates' / 'undefined.j2'}:3: leaf02: "
        "'snmp_community' is undefined",
        "2 problem(s)",
    ]


def test_unknown_keys(capsys: pytest.CaptureFixture[str]) -> None:
    ztp = CONFIGS / "unknown_key" / "ztp.yaml"
    rc, out = check(ztp, capsys)
    assert rc == 1
    hint = "unknown key (check its spelling against the README's reference)"
    assert sorted(out[:-1]) == sorted([f"{ztp}:5: dhcp.lease_tme: {hint}",
                                       f"{ztp}:9: dhcp.subnets.0.gateway: {hint}"])
    assert out[-1] == "2 problem(s)"


def test_bad_yaml(capsys: pytest.CaptureFixture[str]) -> None:
    rc, out = check(CONFIGS / "bad_yaml" / "ztp.yaml", capsys)
    assert rc == 1
    assert out == [f"{CONFIGS / 'bad_yaml' / 'inventory.yaml'}:6: expected <block end>, but found "
                   "'<block mapping start>'", "1 problem(s)"]


def test_console_script_exits_1(tmp_path: Path) -> None:
    script = Path(sys.executable).parent / "ztp"
    argv = [str(script)] if script.exists() else [sys.executable, "-m", "ztp"]
    res = subprocess.run([*argv, "check", "--config", str(CONFIGS / "problems" / "ztp.yaml")],
                         capture_output=True, text=True, timeout=60, check=False)
    assert res.returncode == 1
    assert res.stdout.strip().endswith(" problem(s)")
    assert "option 51 takes an integer" in res.stdout and "'ntp_server' is undefined" in res.stdout
    ok = subprocess.run([*argv, "check", "--config", str(REPO / "ztp.yaml")], capture_output=True, text=True,
                        timeout=60, check=False)
    assert ok.returncode == 0, ok.stdout + ok.stderr


def test_check_does_not_create_the_state_dir() -> None:
    assert not (CONFIGS / "problems" / "state").exists()
    assert not (CONFIGS / "render" / "state").exists()


# --- ztp render --------------------------------------------------------------------------------------

def test_render_by_hostname_and_by_mac_print_the_same_bytes(
        capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    config = load_config(REPO / "ztp.yaml")
    device = config.inventory.by_hostname["leaf01"]
    expected = Renderer(config).render(device_view(config, LeaseTable(), device=device, mac=None))
    assert main(["render", "--config", str(REPO / "ztp.yaml"), "--hostname", "leaf01"]) == 0
    by_name = capsysbinary.readouterr().out
    assert main(["render", "--config", str(REPO / "ztp.yaml"), "--mac", "02-00-00-00-00-01"]) == 0
    by_mac = capsysbinary.readouterr().out
    assert main(["render", "--config", str(REPO / "ztp.yaml"), "--file", "LEAF01.cfg"]) == 0
    by_file = capsysbinary.readouterr().out  # the name a device fetches, resolved as TFTP resolves it
    assert by_name == by_mac == by_file == expected
    assert b"hostname leaf01\n" in expected and b"ip address 10.60.0.11/24" in expected
    assert expected.endswith(b"end\n")


def test_render_file_that_names_no_device(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["render", "--config", str(REPO / "ztp.yaml"), "--file", "nosuch.bin"]) == 2
    assert "no device's boot file" in capsys.readouterr().err


def test_boot_file_names_round_trip_through_the_registry() -> None:
    config = load_config(REPO / "ztp.yaml")
    inv = config.inventory
    for device in inv.devices:
        name = boot_file_name(inv, device, "02:99:00:00:00:01")
        assert name is not None
        target = boot_target(inv, name)
        assert target is not None and target.device is device
    unknown = boot_file_name(inv, None, "02:99:00:00:00:01")
    assert unknown == "029900000001.cfg"
    target = boot_target(inv, unknown)
    assert target is not None and target.device is None and target.mac == "02:99:00:00:00:01"


def test_render_unknown_hostname(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["render", "--config", str(REPO / "ztp.yaml"), "--hostname", "nosuch"]) == 2
    assert "no device named nosuch" in capsys.readouterr().err


def test_render_error_is_file_line_on_stderr_only(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["render", "--config", str(CONFIGS / "render" / "ztp.yaml"), "--hostname", "leaf02"]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith(f"{CONFIGS / 'templates' / 'undefined.j2'}:3: ")


def test_render_of_a_broken_config_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["render", "--config", str(CONFIGS / "problems" / "ztp.yaml"), "--hostname", "first"])
    assert info.value.code == 1
    assert "12 problem(s) in the configuration" in capsys.readouterr().err


# --- ztp leases --------------------------------------------------------------------------------------

def _config_with_leases(tmp_path: Path) -> Path:
    for name in ("ztp.yaml", "inventory.yaml"):
        shutil.copy(REPO / name, tmp_path / name)
    shutil.copytree(REPO / "templates", tmp_path / "templates")
    (tmp_path / "tftpboot").mkdir()
    writer = LeaseWriter(database_path(tmp_path / "state"))
    try:
        writer.write_all([
            Lease(IPv4Address("10.60.0.100"), "02:00:00:00:00:02", "02:00:00:00:00:02", LeaseState.BOUND,
                  expires=4e9, updated=1e9, hostname="leaf02"),
            Lease(IPv4Address("10.60.0.101"), "id:01020000000099", "02:00:00:00:00:99", LeaseState.BOUND,
                  expires=1.0, updated=0.5, hostname=None),
        ])
    finally:
        writer.close()
    return tmp_path / "ztp.yaml"


def test_leases_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = _config_with_leases(tmp_path)
    assert main(["leases", "--config", str(config), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["ip"], r["mac"], r["state"], r["hostname"]) for r in rows] == [
        ("10.60.0.100", "02:00:00:00:00:02", "bound", "leaf02"),
        ("10.60.0.101", "02:00:00:00:00:99", "expired", None),
    ]
    assert rows[0]["remaining"] > 0 and rows[1]["remaining"] == 0
    assert rows[1]["client"] == "id:01020000000099"


def test_leases_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = _config_with_leases(tmp_path)
    assert main(["leases", "--config", str(config)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["IP", "MAC", "STATE", "REMAINING", "HOSTNAME"]
    assert lines[1].split()[:3] == ["10.60.0.100", "02:00:00:00:00:02", "bound"]
    assert lines[1].split()[-1] == "leaf02"
    assert lines[2].split()[2] == "expired" and lines[2].split()[-1] == "-"


def test_leased_address_is_what_render_uses(tmp_path: Path,
                                            capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    config = _config_with_leases(tmp_path)
    assert main(["render", "--config", str(config), "--hostname", "leaf02"]) == 0
    assert b"ip address 10.60.0.100/24" in capsysbinary.readouterr().out


def test_check_warns_about_open_access(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = (REPO / "ztp.yaml").read_text()
    for name in ("templates", "inventory.yaml", "tftpboot"):
        (tmp_path / name).symlink_to(REPO / name)
    (tmp_path / "ztp.yaml").write_text(text + "\nprovisioning:\n  access: open\n")
    rc, out = check(tmp_path / "ztp.yaml", capsys)
    assert rc == 0 and any(line.startswith("warning:") and "provisioning.access is 'open'" in line for line in out)
    rc, out = check(REPO / "ztp.yaml", capsys)
    assert rc == 0 and not any(line.startswith("warning:") for line in out)
