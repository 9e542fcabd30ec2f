"""Cisco Plug and Play (PnP) protocol messages: parse and build the XML bodies (pure codec, issue 12).

A PnP agent on IOS-XE that found its server (DHCP option 43, `ztp.vendors.iosxe_pnp`) speaks HTTP to it:
``GET /pnp/HELLO``, then ``POST /pnp/WORK-REQUEST`` with an ``info`` in namespace
``urn:cisco:pnp:work-info`` naming the device's UDI (``PID:<product>,VID:<version>,SN:<serial>``, on the
``pnp`` element and in ``deviceId/udi``) and a ``correlator``. The server answers with one service
request (here ``urn:cisco:pnp:config-upgrade``: copy a config from a URL into the running or startup
config) carrying the same correlator; the agent does the work and ``POST``s ``/pnp/WORK-RESPONSE`` with a
``response`` in that service's namespace, ``success="1"`` or ``"0"`` plus an ``errorInfo``; the server
answers with ``bye`` (``workInfo/bye`` in the work-info namespace), ending the transaction.

Sources: Cisco DevNet, "Open Plug-n-Play: PnP protocol specification"
(developer.cisco.com/site/open-plug-n-play/learn/learn-open-pnp-protocol, as saved in the public mirror
github.com/kiksen/Cisco-PnP-protocol-specification: Work Request and Bye examples, the schema list with
``pnp_config_upgrade_body.xsd``); Cisco "Network Plug and Play" developer docs
(developer.cisco.com/docs/network-plug-n-play). Confirmed from those: the URLs and methods, the
``pnp``/``info``/``deviceId/udi`` envelope and the correlator, the bye. Not confirmed (the XSD bodies are
not in the public text we could read; taken from how open-source PnP servers build them):
``config/copy/source/location``, ``applyTo`` (``running`` | ``startup``), ``noReload``, the
``details`` attribute, ``errorInfo/errorMessage|errorCode``. Not implemented: backoff, image-install,
device-info, capability, HTTPS with certificates, device authentication (``authRequired``).

Safety: bodies come from the network. ElementTree's expat parser never fetches external entities (no
external entity handler is installed, so ``SYSTEM`` references are not resolved: no XXE), and modern expat
(>= 2.4) bounds entity amplification; on top of that any document with a ``<!DOCTYPE`` is refused outright
(PnP messages never carry one), so no entity can be declared at all, and bodies are size-capped.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass

NS_PNP = "urn:cisco:pnp"
NS_WORK_INFO = "urn:cisco:pnp:work-info"
NS_CONFIG_UPGRADE = "urn:cisco:pnp:config-upgrade"
MAX_BODY = 64 * 1024
"""Largest PnP message accepted (a work request is well under 1 KiB)."""
APPLY_RUNNING = "running"
APPLY_STARTUP = "startup"


class PnpXmlError(ValueError):
    """A PnP body that is not well-formed XML or not the message expected (says what is wrong)."""


@dataclass(frozen=True, slots=True)
class Udi:
    """A Cisco Unique Device Identifier: product id, version id, serial number (``PID:..,VID:..,SN:..``)."""

    pid: str
    vid: str
    sn: str

    def __str__(self) -> str:
        """The UDI as the agent spells it."""
        return f"PID:{self.pid},VID:{self.vid},SN:{self.sn}"


def parse_udi(text: str) -> Udi:
    """``PID:C9300-24P,VID:V01,SN:FCW1234`` -> Udi; PnpXmlError without a serial."""
    fields: dict[str, str] = {}
    for part in text.split(","):
        key, sep, value = part.partition(":")
        if sep:
            fields[key.strip().upper()] = value.strip()
    if not fields.get("SN"):
        raise PnpXmlError(f"udi {text!r} names no serial number (SN:)")
    return Udi(fields.get("PID", ""), fields.get("VID", ""), fields["SN"])


@dataclass(frozen=True, slots=True)
class WorkRequest:
    """A device asking for work (``POST /pnp/WORK-REQUEST``)."""

    udi: Udi
    correlator: str
    hostname: str = ""


@dataclass(frozen=True, slots=True)
class WorkResponse:
    """A device reporting how a service request went (``POST /pnp/WORK-RESPONSE``)."""

    udi: Udi
    correlator: str
    service: str
    """The namespace of the ``response`` element: which service this reports on."""
    success: bool
    error: str = ""


@dataclass(frozen=True, slots=True)
class ConfigUpgrade:
    """The server's config-upgrade service request: copy the config at `location` into `apply_to`."""

    udi: str
    correlator: str
    location: str
    apply_to: str = APPLY_RUNNING


@dataclass(frozen=True, slots=True)
class Bye:
    """The server's end of a transaction (also ztp's "no work for you")."""

    udi: str
    correlator: str


def _q(ns: str, tag: str) -> str:
    return f"{{{ns}}}{tag}"


def _root(body: bytes) -> ET.Element:
    if len(body) > MAX_BODY:
        raise PnpXmlError(f"body of {len(body)} bytes is larger than {MAX_BODY}")
    if b"<!doctype" in body.lower():
        raise PnpXmlError("a DOCTYPE is not allowed in a PnP message")
    try:
        root = ET.fromstring(body)
    except ET.ParseError as exc:
        raise PnpXmlError(f"not well-formed XML: {exc}") from None
    if root.tag != _q(NS_PNP, "pnp"):
        raise PnpXmlError(f"root element is {root.tag!r}, not pnp in namespace {NS_PNP}")
    return root


def _udi_of(root: ET.Element, inner: ET.Element | None) -> Udi:
    text = root.get("udi") or ""
    if not text and inner is not None:
        text = (inner.findtext(f"{{{NS_WORK_INFO}}}deviceId/{{{NS_WORK_INFO}}}udi") or "").strip()
    if not text:
        raise PnpXmlError("no udi on the pnp element or in deviceId/udi")
    return parse_udi(text)


def parse_work_request(body: bytes) -> WorkRequest:
    """A WORK-REQUEST body -> WorkRequest; PnpXmlError when malformed."""
    root = _root(body)
    info = root.find(_q(NS_WORK_INFO, "info"))
    if info is None:
        raise PnpXmlError(f"no info element in namespace {NS_WORK_INFO}")
    hostname = (info.findtext(f"{{{NS_WORK_INFO}}}deviceId/{{{NS_WORK_INFO}}}hostname") or "").strip()
    return WorkRequest(_udi_of(root, info), info.get("correlator") or "", hostname)


def parse_work_response(body: bytes) -> WorkResponse:
    """A WORK-RESPONSE body -> WorkResponse; PnpXmlError when malformed."""
    root = _root(body)
    response = next((child for child in root if child.tag.endswith("}response")), None)
    if response is None:
        raise PnpXmlError("no response element")
    service = response.tag[1:].partition("}")[0]
    success = (response.get("success") or "").strip().lower() in ("1", "true")
    error = ""
    if not success:
        info = next((child for child in response if child.tag.endswith("}errorInfo")), None)
        if info is not None:
            parts = [(e.text or "").strip() for e in info if e.tag.rpartition("}")[2] in
                     ("errorCode", "errorMessage")]
            error = " ".join(p for p in parts if p)
    return WorkResponse(_udi_of(root, None), response.get("correlator") or "", service, success, error)


def _document(udi: str) -> ET.Element:
    return ET.Element("pnp", {"xmlns": NS_PNP, "version": "1.0", "udi": udi})


def _serialise(root: ET.Element) -> bytes:
    data: bytes = ET.tostring(root, encoding="utf-8", xml_declaration=False)
    return b'<?xml version="1.0" encoding="UTF-8"?>\n' + data


def build_config_upgrade(job: ConfigUpgrade) -> bytes:
    """The WORK-REQUEST answer asking the agent to copy `job.location` into its running/startup config."""
    if job.apply_to not in (APPLY_RUNNING, APPLY_STARTUP):
        raise ValueError(f"applyTo is running or startup, not {job.apply_to!r}")
    root = _document(job.udi)
    request = ET.SubElement(root, "request", {"xmlns": NS_CONFIG_UPGRADE, "correlator": job.correlator})
    config = ET.SubElement(request, "config", {"details": "all"})
    copy = ET.SubElement(config, "copy")
    source = ET.SubElement(copy, "source")
    ET.SubElement(source, "location").text = job.location
    ET.SubElement(copy, "applyTo").text = job.apply_to
    ET.SubElement(config, "noReload")
    return _serialise(root)


def build_bye(bye: Bye) -> bytes:
    """The WORK-RESPONSE answer ending the transaction (and ztp's answer when it has no work)."""
    root = _document(bye.udi)
    info = ET.SubElement(root, "info", {"xmlns": NS_WORK_INFO, "correlator": bye.correlator})
    ET.SubElement(ET.SubElement(info, "workInfo"), "bye")
    return _serialise(root)


def parse_server_reply(body: bytes) -> ConfigUpgrade | Bye:
    """What the server answered a WORK-REQUEST or WORK-RESPONSE with (the agent's side)."""
    root = _root(body)
    udi = root.get("udi") or ""
    info = root.find(_q(NS_WORK_INFO, "info"))
    if info is not None:
        if info.find(f"{{{NS_WORK_INFO}}}workInfo/{{{NS_WORK_INFO}}}bye") is None:
            raise PnpXmlError("work-info without bye")
        return Bye(udi, info.get("correlator") or "")
    request = root.find(_q(NS_CONFIG_UPGRADE, "request"))
    if request is None:
        tags = ", ".join(child.tag for child in root) or "nothing"
        raise PnpXmlError(f"a service request ztp does not emulate: {tags}")
    n = NS_CONFIG_UPGRADE
    location = (request.findtext(f"{{{n}}}config/{{{n}}}copy/{{{n}}}source/{{{n}}}location") or "").strip()
    apply_to = (request.findtext(f"{{{n}}}config/{{{n}}}copy/{{{n}}}applyTo") or APPLY_RUNNING).strip()
    if not location:
        raise PnpXmlError("config-upgrade without config/copy/source/location")
    return ConfigUpgrade(udi, request.get("correlator") or "", location, apply_to)


def build_work_request(udi: Udi, correlator: str, hostname: str = "Switch") -> bytes:
    """A WORK-REQUEST body as an IOS-XE agent sends it (the emulated device's side)."""
    root = _document(str(udi))
    info = ET.SubElement(root, "info", {"xmlns": NS_WORK_INFO, "correlator": correlator})
    device = ET.SubElement(info, "deviceId")
    ET.SubElement(device, "udi").text = str(udi)
    ET.SubElement(device, "hostname").text = hostname
    ET.SubElement(device, "authRequired").text = "false"
    ET.SubElement(device, "viaProxy").text = "false"
    return _serialise(root)


def build_work_response(udi: Udi, correlator: str, service: str, *, success: bool, error: str = "") -> bytes:
    """A WORK-RESPONSE body reporting on the service request `service` (the emulated device's side)."""
    root = _document(str(udi))
    response = ET.SubElement(root, "response", {"xmlns": service, "correlator": correlator,
                                                "success": "1" if success else "0"})
    if not success:
        info = ET.SubElement(response, "errorInfo")
        ET.SubElement(info, "errorMessage").text = error or "failed"
        ET.SubElement(info, "errorSeverity").text = "ERROR"
    return _serialise(root)
