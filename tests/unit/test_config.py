"""Loading ztp.yaml + inventory.yaml: the README example, paths, option layers, each problem's line."""

from __future__ import annotations

from ipaddress import IPv4Address
from pathlib import Path

import pytest

from ztp.config import ConfigError, Problem, load_config, normalize_mac
from ztp.yamlsource import SourceList, SourceMap, YamlError, line_of, load_yaml

REPO = Path(__file__).resolve().parents[2]

BASE_ZTP = """\
templates: ./templates
inventory: ./inventory.yaml
dhcp:
  subnets:
    - network: 10.60.0.0/24
      pool: 10.60.0.100-10.60.0.199
      routers: [10.60.0.1]
"""
BASE_INV = """\
devices:
  - hostname: leaf01
    mac: 02:00:00:00:00:01
"""


def write(tmp_path: Path, ztp: str = BASE_ZTP, inventory: str | None = BASE_INV) -> Path:
    (tmp_path / "templates").mkdir(exist_ok=True)
    (tmp_path / "ztp.yaml").write_text(ztp)
    if inventory is not None:
        (tmp_path / "inventory.yaml").write_text(inventory)
    return tmp_path / "ztp.yaml"


def problems(path: Path) -> list[tuple[str, int, str]]:
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value) == "\n".join(str(p) for p in info.value.problems)
    return [(p.path.name, p.line, p.message) for p in info.value.problems]


def test_readme_example_loads() -> None:
    config = load_config(REPO / "ztp.yaml")
    assert config.state_dir == REPO / "state"
    assert config.templates == REPO / "templates"
    assert config.tftp_root == REPO / "tftpboot"
    assert config.inventory.path == REPO / "inventory.yaml"
    assert config.interfaces == ("s1",)
    assert config.lease_time == 3600 and config.offer_hold == 30
    first, second = config.subnets
    assert str(first.network) == "10.60.0.0/24" and first.domain == "lab.test"
    assert (first.pool_start, first.pool_end) == (IPv4Address("10.60.0.100"), IPv4Address("10.60.0.199"))
    assert second.options == {150: IPv4Address("10.50.0.1").packed}
    assert second.lease_time == 3600  # inherited from dhcp.lease_time
    assert config.dns is not None and config.dns.zone == "lab.test"
    leaf01 = config.inventory.by_mac["02:00:00:00:00:01"]
    assert leaf01.hostname == "leaf01" and leaf01.ip == IPv4Address("10.60.0.11")
    assert leaf01.options == {43: b"\x01\x03ztp"}
    assert leaf01.line == 6 and leaf01.boot_file == "leaf01.cfg"
    assert config.inventory.default_template == "default.j2"
    assert config.inventory.default_vars["ntp_server"] == "10.60.0.1"
    assert config.inventory.by_hostname["leaf07"].circuit_id == "r1-port7"
    assert config.subnet_for(IPv4Address("10.70.0.1")) is second
    assert config.subnet_for(IPv4Address("10.50.0.1")) is None


def test_paths_are_relative_to_the_file_that_names_them(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "etc").mkdir()
    (tmp_path / "inv").mkdir()
    (tmp_path / "tpl").mkdir()
    (tmp_path / "etc" / "ztp.yaml").write_text(
        "templates: ../tpl\ninventory: ../inv/devices.yaml\nstate_dir: ../var/state\n")
    (tmp_path / "inv" / "devices.yaml").write_text(BASE_INV)
    monkeypatch.chdir("/")
    config = load_config(Path(tmp_path / "etc" / "ztp.yaml"))
    assert config.templates == tmp_path / "tpl"
    assert config.inventory.path == tmp_path / "inv" / "devices.yaml"
    assert config.state_dir == tmp_path / "var" / "state"
    assert not config.state_dir.exists()  # created by the server, not by loading
    assert config.subnets == () and config.dns is None and config.tftp_root is None


def test_option_layers_are_encoded_per_level(tmp_path: Path) -> None:
    ztp = BASE_ZTP.replace("      routers: [10.60.0.1]\n",
                           "      routers: [10.60.0.1]\n      options: {42: 10.60.0.1}\n")
    ztp += "  options: {66: boot.example, 224: \"hex:0102\"}\n"
    inv = "defaults:\n  options: {67: default.cfg, 19: true}\n" + BASE_INV + "    options: {13: 12}\n"
    config = load_config(write(tmp_path, ztp, inv))
    assert config.global_options == {66: b"boot.example", 224: b"\x01\x02"}
    assert config.subnets[0].options == {42: bytes((10, 60, 0, 1))}
    assert config.inventory.default_options == {67: b"default.cfg", 19: b"\x01"}
    assert config.inventory.devices[0].options == {13: b"\x00\x0c"}


def test_mac_spellings_are_normalised(tmp_path: Path) -> None:
    inv = "devices:\n  - {hostname: A1, mac: 02-00-00-00-00-AB}\n  - {hostname: a2, mac: 020000000ACD}\n"
    config = load_config(write(tmp_path, inventory=inv))
    assert sorted(config.inventory.by_mac) == ["02:00:00:00:00:ab", "02:00:00:00:0a:cd"]
    assert config.inventory.by_hostname["a1"].hostname == "a1"  # hostnames are lowercased
    assert normalize_mac("0200.0000.00AB") == "02:00:00:00:00:ab"


@pytest.mark.parametrize(
    ("pool", "needle"),
    [
        ("10.60.0.100", "must be FIRST-LAST"),
        ("10.60.0.199-10.60.0.100", "ends before it starts"),
        ("10.60.0.100-10.61.0.5", "is not inside 10.60.0.0/24"),
        ("10.60.0.0-10.60.0.0", "network or broadcast"),
        ("10.60.0.240-10.60.0.255", "network or broadcast"),
    ],
)
def test_pool_problems_point_at_the_pool_line(tmp_path: Path, pool: str, needle: str) -> None:
    found = problems(write(tmp_path, BASE_ZTP.replace("10.60.0.100-10.60.0.199", pool)))
    assert [(name, line) for name, line, _ in found] == [("ztp.yaml", 6)]
    assert needle in found[0][2]


def test_bad_pool_address_is_a_schema_free_problem(tmp_path: Path) -> None:
    found = problems(write(tmp_path, BASE_ZTP.replace("10.60.0.100-10.60.0.199", "10.60.0.x-10.60.0.9")))
    assert found[0][:2] == ("ztp.yaml", 6)


def test_router_problems(tmp_path: Path) -> None:
    ztp = BASE_ZTP.replace("routers: [10.60.0.1]", "routers:\n        - 10.61.0.1\n        - 10.60.0.150")
    found = problems(write(tmp_path, ztp))
    assert found == [("ztp.yaml", 8, "router 10.61.0.1 is outside 10.60.0.0/24"),
                     ("ztp.yaml", 9, "router 10.60.0.150 is inside the pool 10.60.0.100-10.60.0.199")]


def test_pool_of_a_point_to_point_subnet_may_use_both_addresses(tmp_path: Path) -> None:
    ztp = "templates: ./templates\ndhcp:\n  subnets:\n    - {network: 10.9.0.0/31, pool: 10.9.0.0-10.9.0.1}\n"
    config = load_config(write(tmp_path, ztp))
    assert config.subnets[0].in_pool(IPv4Address("10.9.0.0"))


@pytest.mark.parametrize(
    ("device", "line", "needle"),
    [
        ("  - {hostname: x1, mac: 02:00:00:00:00:09, ip: 10.60.0.0}", 4, "network or broadcast address"),
        ("  - {hostname: x1, mac: 02:00:00:00:00:09, ip: 10.60.0.255}", 4, "network or broadcast address"),
        ("  - {hostname: x1, mac: 02:00:00:00:00:09, ip: 10.60.0.1}", 4, "is a router"),
        ("  - {hostname: x1}", 4, "give at least one of mac, client_id, circuit_id or remote_id"),
        ("  - {hostname: x1, client_id: SN1}\n  - {hostname: x2, client_id: SN1}", 5,
         "duplicate client_id 'SN1'"),
        ("  - {hostname: r1, remote_id: relay-9}\n  - {hostname: r2, remote_id: relay-9}", 5,
         "ambiguous with r1"),
    ],
)
def test_inventory_device_problems(tmp_path: Path, device: str, line: int, needle: str) -> None:
    found = problems(write(tmp_path, inventory=BASE_INV + device + "\n"))
    assert len(found) == 1, found
    assert found[0][:2] == ("inventory.yaml", line) and needle in found[0][2]


def test_same_circuit_id_with_different_remote_ids_is_not_ambiguous(tmp_path: Path) -> None:
    inv = BASE_INV + ("  - {hostname: p1, circuit_id: port1, remote_id: relay-a}\n"
                      "  - {hostname: p2, circuit_id: port1, remote_id: relay-b}\n")
    assert len(load_config(write(tmp_path, inventory=inv)).inventory.devices) == 3


@pytest.mark.parametrize(
    ("field", "needle"),
    [
        ("hostname: -bad-", "hostname must be one DNS label"),
        ("hostname: a.b", "hostname must be one DNS label"),
        ("mac: 02:00:00:00:00", "is not a MAC address"),
        ("ip: 10.60.0.300", "valid IPv4 address"),
        ("vars: [1, 2]", "valid dictionary"),
    ],
)
def test_schema_errors_name_the_field_and_line(tmp_path: Path, field: str, needle: str) -> None:
    key = field.split(":")[0]
    inv = "devices:\n  - hostname: ok1\n    mac: 02:00:00:00:00:01\n"
    inv = inv.replace(f"    {key}:", "    #") if key != "hostname" else inv.replace("hostname: ok1", field)
    if key != "hostname":
        inv += f"    {field}\n"
    found = problems(write(tmp_path, inventory=inv))
    assert len(found) == 1, found
    name, line, message = found[0]
    assert name == "inventory.yaml"
    expected_line = 2 if key == "hostname" else 4
    assert line == expected_line and message.startswith(f"devices.0.{key}: ") and needle in message


def test_missing_inventory_templates_and_tftp_root(tmp_path: Path) -> None:
    ztp = BASE_ZTP.replace("./templates", "./nowhere") + "tftp:\n  root: ./tftpboot\n"
    found = problems(write(tmp_path, ztp, inventory=None))
    where = [(name, line) for name, line, _ in found]
    assert where == [("ztp.yaml", 2), ("ztp.yaml", 1), ("ztp.yaml", 9)]
    assert "inventory file" in found[0][2] and "does not exist" in found[0][2]
    assert "templates directory" in found[1][2] and "tftp.root" in found[2][2]


@pytest.mark.parametrize(("text", "line", "needle"), [
    ("- just\n- a list\n", 1, "must be a YAML mapping"),
    ("dhcp:\n  lease_time: 3600\n  lease_time: 60\n", 3, "duplicate key 'lease_time'"),
    ("dhcp: {subnets: [\n", 2, "expected"),
    ("dhcp:\n  lease_time: 5\n", 2, "greater than or equal to 10"),
    ("dns: {}\n", 1, "dns.zone: Field required"),
])
def test_config_file_problems(tmp_path: Path, text: str, line: int, needle: str) -> None:
    found = problems(write(tmp_path, text))
    assert found[0][:2] == ("ztp.yaml", line), found
    assert needle in found[0][2]


def test_empty_files_are_valid(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, "", inventory=""))
    assert config.subnets == () and config.inventory.devices == ()


def test_problem_format() -> None:
    assert str(Problem(Path("/x/ztp.yaml"), 7, "bad")) == "/x/ztp.yaml:7: bad"


def test_yaml_source_lines(tmp_path: Path) -> None:
    path = tmp_path / "t.yaml"
    path.write_text("a:\n  b:\n    - 1\n    - {c: 2,\n       d: 3}\n")
    tree = load_yaml(path)
    assert isinstance(tree, SourceMap) and isinstance(tree["a"]["b"], SourceList)
    assert line_of(tree, ["a"]) == 1
    assert line_of(tree, ["a", "b", 0]) == 3
    assert line_of(tree, ["a", "b", 1, "d"]) == 5
    assert line_of(tree, ["a", "b", 7, "x"]) == 2  # the deepest part that exists
    path.write_text("a: [1\n")
    with pytest.raises(YamlError) as info:
        load_yaml(path)
    assert info.value.path == path and info.value.line == 2
