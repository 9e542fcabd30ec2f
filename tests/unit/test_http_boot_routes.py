"""HTTP boot without sockets: Range parsing (RFC 9110 §14), ETags, and the config route's access and serial
checks driven with aiohttp mocked requests over a real provider."""

from __future__ import annotations

import asyncio
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from ztp.access import AccessRule
from ztp.config import load_config
from ztp.http.boot import HttpBoot, byte_range, etag_of
from ztp.leases.table import Lease, LeaseState, LeaseTable
from ztp.provision import RenderedConfigs
from ztp.render import Renderer


@pytest.mark.parametrize(("header", "size", "want"), [
    (None, 100, None), ("bytes=0-9", 100, (0, 10)), ("bytes=90-", 100, (90, 100)), ("bytes=-10", 100, (90, 100)),
    ("bytes=0-500", 100, (0, 100)), ("bytes=100-", 100, "unsatisfiable"), ("bytes=-0", 100, "unsatisfiable"),
    ("bytes=0-1,5-6", 100, None), ("items=0-1", 100, None), ("bytes=5-2", 100, "unsatisfiable"),
])
def test_byte_range(header: str | None, size: int, want: object) -> None:
    assert byte_range(header, size) == want


def test_etag_is_a_content_hash() -> None:
    assert etag_of(b"a") == etag_of(b"a") != etag_of(b"b")
    assert etag_of(b"a").startswith('"') and len(etag_of(b"a")) == 34


def _boot(tmp_path: Path) -> HttpBoot:
    (tmp_path / "templates").mkdir()
    (tmp_path / "templates" / "t.j2").write_text("hostname {{ hostname }}\n")
    (tmp_path / "inventory.yaml").write_text(
        "devices:\n  - {hostname: cl1, mac: '02:00:00:00:00:01', ip: 10.60.0.11, serial: CL123, vendor: cumulus,"
        " template: t.j2}\n")
    (tmp_path / "ztp.yaml").write_text(
        "templates: ./templates\ninventory: ./inventory.yaml\nhttp: {port: 8080}\ndhcp:\n  subnets:\n"
        "    - {network: 10.60.0.0/24, pool: 10.60.0.100-10.60.0.199}\n")
    config = load_config(tmp_path / "ztp.yaml")
    table = LeaseTable([Lease(ip=IPv4Address("10.60.0.150"), client="02:00:00:00:00:09", mac="02:00:00:00:00:09",
                              state=LeaseState.BOUND, expires=2e9, updated=1.0)])
    configs = RenderedConfigs(config, Renderer(config), table, access=AccessRule(config, table))
    return HttpBoot(lambda: configs, lambda: None)


def _get(boot: HttpBoot, path: str, peer: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    written: list[bytes] = []

    async def write(data: Any) -> None:
        written.append(bytes(data))

    writer = mock.Mock()
    writer.write = write
    writer.write_headers = mock.AsyncMock()
    writer.write_eof = mock.AsyncMock()
    writer.drain = mock.AsyncMock()
    transport = mock.Mock()
    transport.get_extra_info = lambda key, default=None: {"peername": (peer, 40000),
                                                          "sockname": ("10.60.0.1", 8080)}.get(key, default)
    request = make_mocked_request("GET", path, headers=headers or {}, writer=writer, transport=transport,
                                  match_info={"name": path.rsplit("/", 1)[1]})

    async def run() -> int:
        try:
            response = await boot.config(request)
        except web.HTTPException as exc:
            return exc.status
        return response.status

    status = asyncio.run(run())
    return status, b"".join(written)


def test_config_only_for_the_holder_and_the_right_serial(tmp_path: Path) -> None:
    boot = _boot(tmp_path)
    status, body = _get(boot, "/configs/cl1.cfg", "10.60.0.11")
    assert status == 200 and body.endswith(b"hostname cl1\n")
    assert _get(boot, "/configs/cl1.cfg", "10.60.0.150")[0] == 403  # another device's lease
    assert _get(boot, "/configs/cl1.cfg", "10.60.0.11", {"CUMULUS-SERIAL": "cl123"})[0] == 200
    assert _get(boot, "/configs/cl1.cfg", "10.60.0.11", {"CUMULUS-SERIAL": "OTHER"})[0] == 403
    assert _get(boot, "/configs/nope.cfg", "10.60.0.11")[0] == 404


def test_transfer_notes_for_the_timeline(tmp_path: Path) -> None:
    boot = _boot(tmp_path)
    notes: list[Any] = []
    boot.on_transfer = notes.append
    _get(boot, "/configs/cl1.cfg", "10.60.0.11")
    _get(boot, "/configs/cl1.cfg", "10.60.0.150")
    assert [(n.kind, n.peer, n.filename, dict(n.options)["transport"]) for n in notes] == [
        ("started", "10.60.0.11", "cl1.cfg", "http"), ("finished", "10.60.0.11", "cl1.cfg", "http"),
        ("refused", "10.60.0.150", "cl1.cfg", "http")]
    assert notes[1].bytes_sent == notes[1].size > 0 and notes[2].code == 2
