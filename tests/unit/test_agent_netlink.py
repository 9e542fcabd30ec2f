"""The agent's rtnetlink messages (golden bytes from iproute2 and the kernel) and how the interface is
configured with them (a fake netlink socket: no sockets, no kernel)."""

from __future__ import annotations

import asyncio
import errno
from ipaddress import IPv4Address

import pytest

from ztp.agent import netlink
from ztp.agent.device import InterfaceConfigurator
from ztp.agent.dhcp_client import Lease
from ztp.agent.netlink import NetlinkAck, NetlinkError, build_address, build_default_route, parse_acks
from ztp.dhcp import options as opt
from ztp.dhcp.packet import BOOTREPLY, DhcpPacket

# Netlink is host byte order: the captures below are from x86-64 (little-endian).

A5 = IPv4Address("10.60.1.5")
A6 = IPv4Address("10.60.1.6")
GW = IPv4Address("10.60.0.1")

# `strace -e sendmsg ip addr add 10.60.1.5/21 dev d0` (iproute2 6.1, ifindex 3), seq set to 1.
IP_ADDR_ADD = bytes.fromhex(
    "28000000" "1400" "0506" "01000000" "00000000"  # nlmsghdr: 40 bytes, RTM_NEWADDR, REQ|ACK|EXCL|CREATE
    "02" "15" "00" "00" "03000000"                  # ifaddrmsg: AF_INET /21 flags 0 scope 0 ifindex 3
    "0800" "0200" "0a3c0105"                        # IFA_LOCAL 10.60.1.5
    "0800" "0100" "0a3c0105"                        # IFA_ADDRESS 10.60.1.5
)
# ... `ip addr add 10.60.1.6/21 dev d0 noprefixroute`: IFA_FLAGS sits between LOCAL and ADDRESS.
IP_ADDR_ADD_NOPREFIXROUTE = bytes.fromhex(
    "30000000" "1400" "0506" "01000000" "00000000"
    "02" "15" "00" "00" "03000000"
    "0800" "0200" "0a3c0106"
    "0800" "0800" "00020000"                        # IFA_FLAGS IFA_F_NOPREFIXROUTE (0x200)
    "0800" "0100" "0a3c0106"
)
# ... `ip addr del 10.60.1.6/21 dev d0`.
IP_ADDR_DEL = bytes.fromhex(
    "28000000" "1500" "0500" "01000000" "00000000"
    "02" "15" "00" "00" "03000000"
    "0800" "0200" "0a3c0106"
    "0800" "0100" "0a3c0106"
)
# ... `ip route replace default via 10.60.0.1 dev d0`.
IP_ROUTE_REPLACE = bytes.fromhex(
    "2c000000" "1800" "0505" "01000000" "00000000"  # RTM_NEWROUTE, REQ|ACK|REPLACE|CREATE
    "02" "00" "00" "00" "fe" "03" "00" "01" "00000000"  # AF_INET dst/0 table main, boot, universe, unicast
    "0800" "0500" "0a3c0001"                        # RTA_GATEWAY
    "0800" "0400" "03000000"                        # RTA_OIF 3
)

# Replies read from a kernel 6.18 NETLINK_ROUTE socket with NETLINK_CAP_ACK and NETLINK_EXT_ACK set.
KERNEL_ACK_OK = bytes.fromhex("2400000002000001010000000730000000000000280000001400050601000000"
                              "00000000")
KERNEL_ACK_EEXIST = bytes.fromhex(
    "48000000020000030200000007300000efffffff28000000140005060200000000000000"
    "23000100697076343a204164647265737320616c72656164792061737369676e65640000")
KERNEL_ACK_ENETUNREACH = bytes.fromhex(
    "440000000200000303000000073000009bffffff2c000000180005050300000000000000"
    "200001004e657874686f702068617320696e76616c6964206761746577617900")


def test_address_add_is_what_iproute2_sends() -> None:
    assert build_address(1, 3, A5, 21) == IP_ADDR_ADD


def test_secondary_address_carries_noprefixroute_in_ifa_flags() -> None:
    assert build_address(1, 3, A6, 21, noprefixroute=True) == IP_ADDR_ADD_NOPREFIXROUTE


def test_address_delete_is_what_iproute2_sends() -> None:
    assert build_address(1, 3, A6, 21, add=False) == IP_ADDR_DEL


def test_default_route_replace_is_what_iproute2_sends() -> None:
    assert build_default_route(1, 3, GW) == IP_ROUTE_REPLACE


def test_sequence_number_is_in_the_header() -> None:
    msg = build_address(0xDEADBEEF, 7, A5, 24)
    assert msg[8:12] == (0xDEADBEEF).to_bytes(4, "little")
    assert msg[20:24] == (7).to_bytes(4, "little")


def test_bad_prefix_length_is_refused() -> None:
    with pytest.raises(ValueError, match="prefix length 33"):
        build_address(1, 3, A5, 33)


def test_kernel_success_ack() -> None:
    assert parse_acks(KERNEL_ACK_OK) == [NetlinkAck(seq=1, error=0)]


def test_kernel_error_ack_with_extended_message() -> None:
    (ack,) = parse_acks(KERNEL_ACK_EEXIST)
    assert ack == NetlinkAck(seq=2, error=errno.EEXIST, message="ipv4: Address already assigned")
    with pytest.raises(OSError, match="add 10.60.1.5/21: File exists: ipv4: Address already assigned") as info:
        ack.raise_for_error("add 10.60.1.5/21")
    assert info.value.errno == errno.EEXIST
    (route,) = parse_acks(KERNEL_ACK_ENETUNREACH)
    assert (route.seq, route.error, route.message) == (3, errno.ENETUNREACH, "Nexthop has invalid gateway")


def test_several_acks_in_one_datagram_and_uncapped_echo() -> None:
    # Without NETLINK_CAP_ACK the kernel echoes the whole failed request before the attributes.
    request = build_address(9, 3, A5, 21)
    echoed_body = (-errno.EEXIST).to_bytes(4, "little", signed=True) + request
    tlv = bytes.fromhex("0800" "0100") + b"no\0\0"
    err = (16 + len(echoed_body) + len(tlv)).to_bytes(4, "little") + bytes.fromhex("0200" "0002") + \
        (9).to_bytes(4, "little") + bytes(4) + echoed_body + tlv
    acks = parse_acks(KERNEL_ACK_OK + err)
    assert acks == [NetlinkAck(1, 0), NetlinkAck(9, errno.EEXIST, "no")]


def test_non_ack_messages_are_skipped() -> None:
    done = (20).to_bytes(4, "little") + (netlink.NLMSG_DONE).to_bytes(2, "little") + bytes(10) + bytes(4)
    assert parse_acks(done) == []


@pytest.mark.parametrize("data, where", [
    (KERNEL_ACK_OK[:-4], "does not fit the 32-byte datagram at offset 0"),
    (bytes.fromhex("14000000" "0200" "0000" "01000000" "00000000" "00000000"), "too short at offset 0"),
    (bytes.fromhex("0c000000") + bytes(12), "length 12 does not fit"),
    (KERNEL_ACK_EEXIST[:0x24] + b"\x40\x00" + KERNEL_ACK_EEXIST[0x26:], "length 64 overruns the message at offset 36"),
])
def test_malformed_replies_say_where(data: bytes, where: str) -> None:
    with pytest.raises(NetlinkError, match=where):
        parse_acks(data)


# -- InterfaceConfigurator over a fake netlink socket -----------------------------------------------------


class FakeRoute:
    """Records requests; answers each with the next queued errno (0 by default)."""

    def __init__(self, errors: dict[int, int] | None = None) -> None:
        self.sent: list[bytes] = []
        self.errors = errors or {}
        self.seq = 0
        self.closed = False

    def next_seq(self) -> int:
        self.seq += 1
        return self.seq

    async def request(self, seq: int, message: bytes) -> NetlinkAck:
        self.sent.append(message)
        await asyncio.sleep(0)  # a real ACK may come a loop iteration later: let other devices run
        return NetlinkAck(seq, self.errors.get(len(self.sent), 0))

    def close(self) -> None:
        self.closed = True


def lease(address: IPv4Address, *, routers: bool = True) -> Lease:
    options = {opt.SUBNET_MASK: IPv4Address("255.255.248.0").packed}
    if routers:
        options[opt.ROUTERS] = GW.packed
    ack = DhcpPacket(op=BOOTREPLY, xid=1, chaddr=bytes(16), yiaddr=address, options=options)
    return Lease(address=address, server_id=GW, lease_time=3600, renewal_time=1800, rebinding_time=3150,
                 acquired_at=0.0, ack=ack)


def test_first_address_is_primary_with_default_route_then_secondaries_without_prefix_route() -> None:
    fake = FakeRoute()
    host = InterfaceConfigurator("eth0", rtnl=fake, ifindex=3)

    async def go() -> None:
        await asyncio.gather(host.add(lease(A5)), host.add(lease(A6)))

    asyncio.run(go())
    # The second device decides "secondary" while the first is still waiting for its ACK.
    assert fake.sent == [build_address(1, 3, A5, 21), build_address(2, 3, A6, 21, noprefixroute=True),
                         build_default_route(3, 3, GW)]
    host.close()
    assert fake.closed


def test_existing_address_is_fine_and_other_errors_raise_with_errno() -> None:
    fake = FakeRoute({1: errno.EEXIST, 3: errno.EPERM})
    host = InterfaceConfigurator("eth0", rtnl=fake, ifindex=3)
    asyncio.run(host.add(lease(A5, routers=False)))
    asyncio.run(host.add(lease(A5, routers=False)))  # the same address again: still primary
    assert fake.sent[1] == build_address(2, 3, A5, 21)
    with pytest.raises(OSError, match="add 10.60.1.6/21 to eth0: Operation not permitted") as info:
        asyncio.run(host.add(lease(A6, routers=False)))
    assert info.value.errno == errno.EPERM


def test_failed_primary_is_not_remembered() -> None:
    fake = FakeRoute({1: errno.EPERM})
    host = InterfaceConfigurator("eth0", rtnl=fake, ifindex=3)
    with pytest.raises(OSError):
        asyncio.run(host.add(lease(A5, routers=False)))
    asyncio.run(host.add(lease(A6, routers=False)))
    assert fake.sent[1] == build_address(2, 3, A6, 21)  # primary: keeps its prefix route


def test_removing_the_primary_lets_the_next_address_take_the_route() -> None:
    fake = FakeRoute()
    host = InterfaceConfigurator("eth0", rtnl=fake, ifindex=3)
    asyncio.run(host.add(lease(A5)))
    asyncio.run(host.remove(lease(A5)))
    asyncio.run(host.add(lease(A6)))
    assert fake.sent == [build_address(1, 3, A5, 21), build_default_route(2, 3, GW),
                         build_address(3, 3, A5, 21, add=False), build_address(4, 3, A6, 21),
                         build_default_route(5, 3, GW)]


def test_failed_default_route_is_not_fatal() -> None:
    fake = FakeRoute({2: errno.ENETUNREACH})
    host = InterfaceConfigurator("eth0", rtnl=fake, ifindex=3)
    asyncio.run(host.add(lease(A5)))
    assert len(fake.sent) == 2


def test_disabled_configurator_sends_nothing() -> None:
    fake = FakeRoute()
    host = InterfaceConfigurator("eth0", enabled=False, rtnl=fake, ifindex=3)
    asyncio.run(host.add(lease(A5)))
    asyncio.run(host.remove(lease(A5)))
    assert fake.sent == []
