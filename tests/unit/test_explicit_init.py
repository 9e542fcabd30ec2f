"""The per-packet records spell out __init__ (init=False) for the compiled build (setup.py): each must take
exactly its dataclass fields, in order, with the same defaults, so that adding a field without adding it to
__init__ fails here instead of as an AttributeError on some later packet."""

from __future__ import annotations

import dataclasses
import inspect
import sys
from ipaddress import IPv4Address

import pytest

from ztp.dhcp.exchange import Ingress, Proposal, Reply, Request
from ztp.dhcp.fit import Fitted
from ztp.dhcp.packet import DhcpPacket
from ztp.dhcp.reply import Destination
from ztp.leases.ledger import ChangeKind, EventKind, LeaseChange, LeaseEvent
from ztp.leases.table import Lease, LeaseState
from ztp.timeline.machine import DeviceStatus, Event

RECORDS = [Ingress, Request, Reply, Proposal, Fitted, DhcpPacket, Destination, LeaseChange, LeaseEvent, Lease, Event,
           DeviceStatus]


@pytest.mark.parametrize("cls", RECORDS, ids=lambda c: c.__name__)
def test_init_takes_the_fields_in_order_with_their_defaults(cls: type) -> None:
    assert "__init__" in cls.__dict__ and not cls.__dataclass_params__.init  # type: ignore[attr-defined]
    if (sys.modules[cls.__module__].__file__ or "").endswith(".so"):
        return  # compiled (tests/unit/test_compiled.py): its __init__ has no signature to read; the pure run checks it
    params = list(inspect.signature(cls.__dict__["__init__"]).parameters.values())[1:]
    fields = [f for f in dataclasses.fields(cls) if f.init]
    assert [p.name for p in params] == [f.name for f in fields]
    for param, fld in zip(params, fields, strict=True):
        if fld.default_factory is not dataclasses.MISSING:
            assert param.default is None, fld.name  # None stands for "a new one", built in __init__
        elif fld.default is dataclasses.MISSING:
            assert param.default is inspect.Parameter.empty, fld.name
        else:
            assert param.default == fld.default, fld.name


def test_defaults_and_factories_give_fresh_values() -> None:
    a, b = DhcpPacket(op=1, xid=1, chaddr=b"\x02" * 6), DhcpPacket(op=1, xid=1, chaddr=b"\x02" * 6)
    assert a == b and a.options == {} and a.options is not b.options
    assert Reply(mtype=2).options is not Reply(mtype=2).options
    assert dataclasses.replace(a, xid=2) == DhcpPacket(op=1, xid=2, chaddr=b"\x02" * 6)


def test_frozen_records_stay_frozen() -> None:
    lease = Lease(IPv4Address("10.0.0.5"), "aa", "aa", LeaseState.BOUND, 10.0, 1.0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        lease.ip = IPv4Address("10.0.0.6")  # type: ignore[misc]
    change = LeaseChange(ChangeKind.BIND, lease)
    with pytest.raises(dataclasses.FrozenInstanceError):
        change.lease = lease  # type: ignore[misc]
    assert hash(lease) == hash(Lease(IPv4Address("10.0.0.5"), "aa", "aa", LeaseState.BOUND, 10.0, 1.0))
    assert dataclasses.replace(lease, hostname="leaf01").hostname == "leaf01"
    assert LeaseEvent(kind=EventKind.BOUND, lease=lease).previous is None
