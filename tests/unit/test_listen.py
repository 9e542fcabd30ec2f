"""Which addresses TFTP and DNS bind: the provisioning interfaces plus `listen:`, never 0.0.0.0 unless
nothing is configured; a missing interface is an error naming the ones that exist (no sockets here)."""

from __future__ import annotations

from ipaddress import IPv4Address

import pytest

from ztp.net.listen import WILDCARD, ListenError, listen_addresses

HOST = {"lo": IPv4Address("127.0.0.1"), "s1": IPv4Address("10.60.0.1"), "r1": IPv4Address("10.50.0.1"),
        "bare": None}
LOCAL = {IPv4Address("10.50.0.1"), IPv4Address("10.60.0.1"), IPv4Address("10.80.0.1")}


def resolve(interfaces: list[str], extra: tuple[str, ...] = ()) -> list[str]:
    return listen_addresses(interfaces, [IPv4Address(a) for a in extra], names=lambda: list(HOST),
                            address_of=HOST.get, is_local=lambda ip: ip in LOCAL)


def test_interface_addresses_then_listen_list_without_duplicates() -> None:
    assert resolve(["s1"]) == ["10.60.0.1"]
    assert resolve(["s1", "r1"], ("10.80.0.1", "10.60.0.1")) == ["10.60.0.1", "10.50.0.1", "10.80.0.1"]
    assert resolve([], ("10.80.0.1",)) == ["10.80.0.1"]  # relayed subnets only


def test_wildcard_only_when_nothing_is_configured() -> None:
    assert resolve([]) == [WILDCARD]


def test_missing_interface_lists_the_existing_ones() -> None:
    with pytest.raises(ListenError) as info:
        resolve(["s1", "eth9"])
    message = str(info.value)
    assert "'eth9' does not exist" in message and "interfaces here: lo, s1, r1, bare" in message
    assert isinstance(info.value, OSError)  # `ztp serve` reports it as "cannot start" and exits 1


def test_interface_without_ipv4_and_foreign_listen_address_are_errors_together() -> None:
    with pytest.raises(ListenError) as info:
        resolve(["bare"], ("192.0.2.1",))
    message = str(info.value)
    assert "'bare' has no IPv4 address" in message and "listen: 192.0.2.1 is not an address" in message


def test_listen_is_a_config_key(tmp_path: object) -> None:
    from pathlib import Path

    from ztp.config import ConfigError, load_config

    base = Path(str(tmp_path))
    (base / "templates").mkdir()
    (base / "inventory.yaml").write_text("devices: []\n")
    (base / "ztp.yaml").write_text("listen: [10.80.0.1]\ntftp:\n  max_sessions: 50\n  max_sessions_per_peer: 2\n")
    config = load_config(base / "ztp.yaml")
    assert config.listen == (IPv4Address("10.80.0.1"),)
    assert (config.tftp_max_sessions, config.tftp_max_sessions_per_peer) == (50, 2)
    (base / "ztp.yaml").write_text("listen: [eth0]\n")
    with pytest.raises(ConfigError) as info:
        load_config(base / "ztp.yaml")
    assert "listen.0" in str(info.value)
