"""Cisco PnP (issue 12): the XML codec on documents shaped like Cisco's published examples, and the server's
decisions (who the device is, config-upgrade vs bye, success/failure) without sockets."""

from __future__ import annotations

import asyncio
import logging
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from ztp.config import Config, load_config
from ztp.http.pnp import PnpRoutes, PnpService
from ztp.leases.table import Lease, LeaseState, LeaseTable
from ztp.timeline.machine import Event, Kind
from ztp.vendors import pnp_xml
from ztp.vendors.pnp_xml import Bye, ConfigUpgrade, PnpXmlError, Udi

# The Work Request example of Cisco's Open PnP protocol specification (DevNet), verbatim in shape.
WORK_REQUEST = b"""<pnp xmlns="urn:cisco:pnp" version="1.0" udi="PID:WS-C3750X-24T-E,VID:V04,SN:FDO1703P2EB">
  <info xmlns="urn:cisco:pnp:work-info" correlator="CiscoPnP-1.0-1465-25A1212C">
   <deviceId>
    <udi>PID:WS-C3750X-24T-E,VID:V04,SN:FDO1703P2EB</udi>
    <hostname>Router</hostname>
    <authRequired>true</authRequired>
    <viaProxy>false</viaProxy>
    <securityAdvise>Password in clear text in unsecured transport</securityAdvise>
   </deviceId>
  </info>
</pnp>
"""
CONFIG_OK = b"""<?xml version="1.0" encoding="UTF-8"?>
<pnp xmlns="urn:cisco:pnp" version="1.0" udi="PID:C9300-24P,VID:V01,SN:FCW1234">
  <response xmlns="urn:cisco:pnp:config-upgrade" correlator="CiscoPnP-1.0-7-1" success="1"/>
</pnp>
"""
CONFIG_FAILED = b"""<pnp xmlns="urn:cisco:pnp" version="1.0" udi="PID:C9300-24P,VID:V01,SN:FCW1234">
  <response xmlns="urn:cisco:pnp:config-upgrade" correlator="CiscoPnP-1.0-7-1" success="0">
    <errorInfo>
      <errorMessage>Invalid input detected</errorMessage>
      <errorSeverity>ERROR</errorSeverity>
      <errorCode>PnP Service Error 1402</errorCode>
    </errorInfo>
  </response>
</pnp>
"""


def test_work_request_from_the_cisco_example() -> None:
    req = pnp_xml.parse_work_request(WORK_REQUEST)
    assert req.udi == Udi("WS-C3750X-24T-E", "V04", "FDO1703P2EB")
    assert str(req.udi) == "PID:WS-C3750X-24T-E,VID:V04,SN:FDO1703P2EB"
    assert req.correlator == "CiscoPnP-1.0-1465-25A1212C" and req.hostname == "Router"


def test_udi_only_in_device_id() -> None:
    body = WORK_REQUEST.replace(b' udi="PID:WS-C3750X-24T-E,VID:V04,SN:FDO1703P2EB"', b"")
    assert pnp_xml.parse_work_request(body).udi.sn == "FDO1703P2EB"


@pytest.mark.parametrize(("body", "why"), [
    (b"<pnp", "not well-formed"),
    (b"<pnp xmlns='urn:other'/>", "root element"),
    (b"<pnp xmlns='urn:cisco:pnp' udi='PID:X,VID:V,SN:S'/>", "no info"),
    (b"<pnp xmlns='urn:cisco:pnp' udi='PID:X'><info xmlns='urn:cisco:pnp:work-info'/></pnp>", "no serial"),
    (b"<?xml version='1.0'?><!DOCTYPE pnp [<!ENTITY x SYSTEM 'file:///etc/passwd'>]>"
     b"<pnp xmlns='urn:cisco:pnp' udi='&x;'/>", "DOCTYPE"),
    (b"<pnp xmlns='urn:cisco:pnp'>" + b" " * pnp_xml.MAX_BODY + b"</pnp>", "larger"),
])
def test_malformed_requests_are_refused(body: bytes, why: str) -> None:
    with pytest.raises(PnpXmlError, match=why):
        pnp_xml.parse_work_request(body)


def test_work_responses() -> None:
    ok = pnp_xml.parse_work_response(CONFIG_OK)
    assert (ok.service, ok.success, ok.correlator, ok.udi.sn) == (pnp_xml.NS_CONFIG_UPGRADE, True,
                                                                  "CiscoPnP-1.0-7-1", "FCW1234")
    failed = pnp_xml.parse_work_response(CONFIG_FAILED)
    assert not failed.success and failed.error == "Invalid input detected PnP Service Error 1402"


def test_config_upgrade_and_bye_round_trip() -> None:
    job = ConfigUpgrade("PID:C9300-24P,VID:V01,SN:FCW1234", "C1", "http://10.0.0.1:80/configs/sw1.cfg")
    body = pnp_xml.build_config_upgrade(job)
    assert b'<request xmlns="urn:cisco:pnp:config-upgrade" correlator="C1">' in body
    assert b"<applyTo>running</applyTo>" in body and b"<noReload />" in body
    assert pnp_xml.parse_server_reply(body) == job
    startup = ConfigUpgrade(job.udi, "C2", job.location, pnp_xml.APPLY_STARTUP)
    assert pnp_xml.parse_server_reply(pnp_xml.build_config_upgrade(startup)) == startup
    bye = pnp_xml.build_bye(Bye(job.udi, "C1"))
    assert b"<workInfo><bye /></workInfo>" in bye
    assert pnp_xml.parse_server_reply(bye) == Bye(job.udi, "C1")
    with pytest.raises(ValueError):
        pnp_xml.build_config_upgrade(ConfigUpgrade(job.udi, "C3", job.location, "flash"))


def test_agent_messages_parse_as_the_server_reads_them() -> None:
    udi = Udi("C9300-24P", "V01", "FCW1234")
    req = pnp_xml.parse_work_request(pnp_xml.build_work_request(udi, "C9"))
    assert req.udi == udi and req.correlator == "C9"
    resp = pnp_xml.parse_work_response(pnp_xml.build_work_response(udi, "C9", pnp_xml.NS_CONFIG_UPGRADE,
                                                                    success=False, error="copy failed"))
    assert (resp.success, resp.error, resp.service) == (False, "copy failed", pnp_xml.NS_CONFIG_UPGRADE)


def _config(tmp_path: Path, default_template: bool = False) -> Config:
    (tmp_path / "templates").mkdir()
    (tmp_path / "templates" / "t.j2").write_text("hostname {{ hostname }}\n")
    defaults = "defaults: {template: t.j2}\n" if default_template else ""
    (tmp_path / "inventory.yaml").write_text(
        defaults + "devices:\n"
        "  - {hostname: sw1, mac: '02:00:00:00:00:01', serial: FCW1234, vendor: iosxe-pnp, template: t.j2}\n"
        "  - {hostname: sw2, mac: '02:00:00:00:00:02', template: t.j2}\n")
    (tmp_path / "ztp.yaml").write_text(
        "templates: ./templates\ninventory: ./inventory.yaml\nhttp: {port: 8080}\ndhcp:\n  subnets:\n"
        "    - {network: 10.60.0.0/24, pool: 10.60.0.100-10.60.0.199}\n")
    return load_config(tmp_path / "ztp.yaml")


def _table() -> LeaseTable:
    return LeaseTable([
        Lease(ip=IPv4Address("10.60.0.101"), client="02:00:00:00:00:01", mac="02:00:00:00:00:01",
              state=LeaseState.BOUND, expires=2e9, updated=1.0, hostname="sw1"),
        Lease(ip=IPv4Address("10.60.0.102"), client="02:00:00:00:00:02", mac="02:00:00:00:00:02",
              state=LeaseState.BOUND, expires=2e9, updated=1.0, hostname="sw2"),
        Lease(ip=IPv4Address("10.60.0.109"), client="02:00:00:00:00:09", mac="02:00:00:00:00:09",
              state=LeaseState.BOUND, expires=2e9, updated=1.0),
        Lease(ip=IPv4Address("10.60.0.110"), client="02:00:00:00:00:10", mac="02:00:00:00:00:10",
              state=LeaseState.BOUND, expires=5.0, updated=1.0),
    ])


def _request(sn: str, correlator: str = "C1") -> pnp_xml.WorkRequest:
    return pnp_xml.parse_work_request(pnp_xml.build_work_request(Udi("C9300-24P", "V01", sn), correlator))


def _response(sn: str, correlator: str, success: bool) -> pnp_xml.WorkResponse:
    return pnp_xml.parse_work_response(pnp_xml.build_work_response(
        Udi("C9300-24P", "V01", sn), correlator, pnp_xml.NS_CONFIG_UPGRADE, success=success, error="bad cli"))


def test_identified_by_serial_offered_its_config_until_it_reports_success(tmp_path: Path) -> None:
    config = _config(tmp_path)
    service = PnpService(lambda: config, _table(), clock=lambda: 100.0)
    answer = service.work_request(_request("fcw1234"), "10.60.0.101", "http://10.60.0.1:8080")
    job = pnp_xml.parse_server_reply(answer.body)
    assert job == ConfigUpgrade("PID:C9300-24P,VID:V01,SN:fcw1234", "C1", "http://10.60.0.1:8080/configs/sw1.cfg")
    assert "by serial" in answer.line[0] % answer.line[1:]
    # A failure is logged and the next work-request gets the config again.
    failed = service.work_response(_response("FCW1234", "C1", False), "10.60.0.101")
    assert isinstance(pnp_xml.parse_server_reply(failed.body), Bye)
    assert "failed" in str(failed.line[0]) and "bad cli" in failed.line
    again = service.work_request(_request("FCW1234", "C2"), "10.60.0.101", "http://10.60.0.1:8080")
    assert isinstance(pnp_xml.parse_server_reply(again.body), ConfigUpgrade)
    done = service.work_response(_response("FCW1234", "C2", True), "10.60.0.101")
    assert isinstance(pnp_xml.parse_server_reply(done.body), Bye) and "succeeded" in str(done.line[0])
    after = service.work_request(_request("FCW1234", "C3"), "10.60.0.101", "http://10.60.0.1:8080")
    assert pnp_xml.parse_server_reply(after.body) == Bye("PID:C9300-24P,VID:V01,SN:FCW1234", "C3")
    assert "already applied" in str(after.line[0])


def test_reports_from_another_address_are_ignored(tmp_path: Path) -> None:
    config = _config(tmp_path)
    service = PnpService(lambda: config, _table(), clock=lambda: 100.0)
    # Anyone may name sw1's serial (it is on the label) and learn its config URL (the fetch is refused)...
    job = pnp_xml.parse_server_reply(service.work_request(_request("FCW1234"), "10.60.0.250", "http://a:1").body)
    assert isinstance(job, ConfigUpgrade)
    # ... but not report on it: neither success (which would stop its PnP) nor failure.
    for ok in (True, False):
        answer = service.work_response(_response("FCW1234", "C1", ok), "10.60.0.250")
        assert answer.result is None and "ignored" in str(answer.line[0])
    assert service.done == {}
    # Another device's address is not sw1's either.
    assert service.work_response(_response("FCW1234", "C1", True), "10.60.0.102").result is None
    assert service.work_response(_response("FCW1234", "C1", True), "10.60.0.101").result is not None


def test_identified_by_lease_holder(tmp_path: Path) -> None:
    config = _config(tmp_path)
    service = PnpService(lambda: config, _table(), clock=lambda: 100.0)
    job = pnp_xml.parse_server_reply(service.work_request(_request("UNLISTED"), "10.60.0.102", "http://a:1").body)
    assert isinstance(job, ConfigUpgrade) and job.location == "http://a:1/configs/sw2.cfg"


def test_unknown_devices_get_no_work(tmp_path: Path) -> None:
    config = _config(tmp_path)
    service = PnpService(lambda: config, _table(), clock=lambda: 100.0)
    for peer in ("10.60.0.250", "10.60.0.109", "10.60.0.110", "fe80::1"):  # no lease, no template, expired, v6
        answer = service.work_request(_request("NOPE"), peer, "http://a:1")
        assert isinstance(pnp_xml.parse_server_reply(answer.body), Bye), peer
        assert "unknown device" in str(answer.line[0])


def test_unlisted_lease_holder_with_a_default_template(tmp_path: Path) -> None:
    config = _config(tmp_path, default_template=True)
    service = PnpService(lambda: config, _table(), clock=lambda: 100.0)
    job = pnp_xml.parse_server_reply(service.work_request(_request("NOPE"), "10.60.0.109", "http://a:1").body)
    assert isinstance(job, ConfigUpgrade) and job.location == "http://a:1/configs/020000000009.cfg"


def test_response_nobody_asked_for(tmp_path: Path) -> None:
    config = _config(tmp_path)
    service = PnpService(lambda: config, _table(), clock=lambda: 100.0)
    answer = service.work_response(_response("NOPE", "C77", True), "10.60.0.250")
    assert isinstance(pnp_xml.parse_server_reply(answer.body), Bye) and "nothing ztp asked" in str(answer.line[0])
    assert service.done == {}


def _post(routes: PnpRoutes, path: str, body: bytes, peer: str) -> tuple[int, bytes]:
    transport = mock.Mock()
    transport.get_extra_info = lambda key, default=None: {"peername": (peer, 40000),
                                                          "sockname": ("10.60.0.1", 8080)}.get(key, default)
    payload = mock.Mock()

    async def read(n: int = -1) -> bytes:
        return body

    payload.read = read
    request = make_mocked_request("POST", path, transport=transport, payload=payload)
    handler: Any = routes.work_request if path.endswith("REQUEST") else routes.work_response

    async def run() -> tuple[int, bytes]:
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            return exc.status, (exc.text or "").encode()
        return response.status, bytes(response.body)  # type: ignore[arg-type]

    return asyncio.run(run())


def test_shell_answers_xml_and_refuses_malformed_with_400(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    config = _config(tmp_path)
    routes = PnpRoutes(PnpService(lambda: config, _table(), clock=lambda: 100.0))
    status, body = _post(routes, "/pnp/WORK-REQUEST", pnp_xml.build_work_request(Udi("P", "V", "FCW1234"), "C1"),
                         "10.60.0.101")
    assert status == 200
    assert pnp_xml.parse_server_reply(body) == ConfigUpgrade("PID:P,VID:V,SN:FCW1234", "C1",
                                                             "http://10.60.0.1:8080/configs/sw1.cfg")
    with caplog.at_level(logging.WARNING, logger="ztp.http.pnp"):
        status, body = _post(routes, "/pnp/WORK-REQUEST", b"<pnp><info>", "10.60.0.101")
    assert status == 400 and b"not well-formed" in body
    assert "work-request from 10.60.0.101 refused (400)" in caplog.text
    status, body = _post(routes, "/pnp/WORK-RESPONSE", CONFIG_OK, "10.60.0.101")
    assert status == 200 and isinstance(pnp_xml.parse_server_reply(body), Bye)


def test_outcomes_reach_the_timeline(tmp_path: Path) -> None:
    config = _config(tmp_path)
    posted: list[Event] = []
    routes = PnpRoutes(PnpService(lambda: config, _table(), clock=lambda: 100.0), post=posted.append)
    _post(routes, "/pnp/WORK-REQUEST", pnp_xml.build_work_request(Udi("P", "V", "FCW1234"), "C1"), "10.60.0.101")
    _post(routes, "/pnp/WORK-RESPONSE", CONFIG_FAILED.replace(b"CiscoPnP-1.0-7-1", b"C1"), "10.60.0.101")
    _post(routes, "/pnp/WORK-RESPONSE", CONFIG_OK, "10.60.0.101")
    _post(routes, "/pnp/WORK-RESPONSE", CONFIG_OK.replace(b"config-upgrade", b"device-info"), "10.60.0.101")
    assert [(e.key, e.kind, e.ip) for e in posted] == [("sw1", Kind.FAILED, "10.60.0.101"),
                                                        ("sw1", Kind.CONFIRMED, "10.60.0.101")]
    assert "Invalid input detected" in posted[0].text and posted[0].detail["stage"] == "delivered"
    assert posted[1].detail == {"source": "pnp"}
