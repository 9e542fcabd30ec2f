"""Rendering device configs: sandboxed, StrictUndefined, all-or-nothing; device-sent strings stay inert."""

from __future__ import annotations

import os
from ipaddress import IPv4Address
from pathlib import Path

import pytest

from ztp.config import Config, load_config
from ztp.dhcp import packet as p
from ztp.dhcp.chain import Chain
from ztp.dhcp.exchange import Ingress
from ztp.dhcp.packet import DhcpPacket, build, mac_to_chaddr, parse
from ztp.leases.ledger import Ledger
from ztp.leases.table import LeaseTable
from ztp.provision import RenderedConfigs, device_view
from ztp.render import DeviceView, Renderer, RenderError
from ztp.tftp.content import TftpRefusal

ZTP_YAML = """\
templates: ./templates
inventory: ./inventory.yaml
dhcp:
  subnets:
    - network: 10.60.0.0/24
      pool: 10.60.0.100-10.60.0.199
      routers: [10.60.0.1]
      domain: lab.test
"""
INVENTORY_YAML = """\
defaults:
  template: default.j2
  vars: {ntp_server: 10.60.0.1, asn: 1}
devices:
  - hostname: leaf01
    mac: 02:00:00:00:00:01
    ip: 10.60.0.11
    template: leaf.j2
    vars: {asn: 65001}
  - hostname: broken
    mac: 02:00:00:00:00:02
    template: halfway.j2
  - hostname: escape
    mac: 02:00:00:00:00:03
    template: ../ztp.yaml
"""
TEMPLATES = {
    "base.j2": "! {{ hostname }}\nhostname {{ hostname }}\n{% block body %}{% endblock %}end\n",
    "leaf.j2": ('{% extends "base.j2" %}\n{% block body %}{% include "ntp.j2" %}'
                "router bgp {{ asn }}\n{% endblock %}\n"),
    "ntp.j2": "ntp server {{ ntp_server }}\n",
    "default.j2": ('{% extends "base.j2" %}\n{% block body %}! unknown {{ mac }}\n'
                   "{% if client_hostname is defined %}! calls itself {{ client_hostname }}\n{% endif %}"
                   "{% endblock %}\n"),
    "halfway.j2": "line one {{ hostname }}\nline two\nline three {{ 1 // 0 }}\nline four\n",
}


@pytest.fixture
def config(tmp_path: Path) -> Config:
    (tmp_path / "templates").mkdir()
    for name, text in TEMPLATES.items():
        (tmp_path / "templates" / name).write_text(text)
    (tmp_path / "ztp.yaml").write_text(ZTP_YAML)
    (tmp_path / "inventory.yaml").write_text(INVENTORY_YAML)
    return load_config(tmp_path / "ztp.yaml")


def view(config: Config, hostname: str | None = None, *, mac: str = "02:00:00:00:00:99",
         ip: str | None = "10.60.0.120", client_hostname: str | None = None) -> DeviceView:
    device = config.inventory.by_hostname[hostname] if hostname else None
    addr = IPv4Address(ip) if ip else None
    return DeviceView(mac=device.mac if device and device.mac else mac, device=device, ip=addr,
                      subnet=config.subnet_for(addr) if addr else None, client_hostname=client_hostname)


def write_template(config: Config, name: str, text: str) -> None:
    (config.templates / name).write_text(text)


def test_inventory_device_renders_with_inheritance_include_and_merged_vars(config: Config) -> None:
    leaf01 = config.inventory.by_hostname["leaf01"]
    out = Renderer(config).render(device_view(config, LeaseTable(), device=leaf01, mac=None))
    assert out == b"! leaf01\nhostname leaf01\nntp server 10.60.0.1\nrouter bgp 65001\nend\n"


def test_context_fields(config: Config) -> None:
    write_template(config, "fields.j2", "{{ hostname }} {{ mac }} {{ ip }}/{{ prefixlen }} {{ netmask }} "
                                        "{{ gateway }} {{ domain }} {{ network }} {{ known }} "
                                        "{{ device.hostname }} {{ vars.asn }} {{ routers | join(',') }}")
    r = Renderer(config)
    ctx = r.context(view(config, "leaf01", ip="10.60.0.11"))
    text = r._env.from_string((config.templates / "fields.j2").read_text()).render(ctx)
    assert text == ("leaf01 02:00:00:00:00:01 10.60.0.11/24 255.255.255.0 10.60.0.1 lab.test 10.60.0.0/24 "
                    "True leaf01 65001 10.60.0.1")


def test_unknown_fields_are_undefined_not_none(config: Config) -> None:
    ctx = Renderer(config).context(view(config, ip=None))
    for name in ("ip", "prefixlen", "gateway", "client_hostname", "circuit_id"):
        assert name not in ctx
    assert ctx["hostname"] == "device-020000000099" and ctx["known"] is False


def test_strict_undefined_names_the_variable_file_and_line(config: Config) -> None:
    write_template(config, "undef.j2", "hostname {{ hostname }}\n\nsnmp community {{ snmp_community }}\n")
    with pytest.raises(RenderError) as info:
        Renderer(config).render(_view_with(config, "undef.j2"))
    err = info.value
    assert "'snmp_community' is undefined" in err.message
    assert err.file == str(config.templates / "undef.j2") and err.line == 3


def test_undefined_in_a_base_template_points_at_the_base(config: Config) -> None:
    write_template(config, "base.j2",
                   "hostname {{ hostname }}\n{% block body %}{% endblock %}\nlogging {{ syslog }}\n")
    with pytest.raises(RenderError) as info:
        Renderer(config).render(view(config, "leaf01"))
    assert info.value.file == str(config.templates / "base.j2") and info.value.line == 3
    assert "'syslog' is undefined" in info.value.message


def test_undefined_attribute_of_a_variable(config: Config) -> None:
    write_template(config, "attr.j2", "{{ device.nosuch }}\n")
    with pytest.raises(RenderError) as info:
        Renderer(config).render(_view_with(config, "attr.j2"))
    assert "nosuch" in info.value.message


@pytest.mark.parametrize(("text", "expected"), [
    ("hostname {{ hostname }}\n", b"hostname device-020000000099\n"),
    ("a\n\n", b"a\n\n"),
    ("no newline", b"no newline"),
    ("{% if true %}x{% endif %}\n", b"x\n"),
])
def test_trailing_newline_is_kept(config: Config, text: str, expected: bytes) -> None:
    write_template(config, "nl.j2", text)
    assert Renderer(config).render(_view_with(config, "nl.j2")) == expected


def test_error_half_way_gives_render_error_not_partial_output(config: Config) -> None:
    with pytest.raises(RenderError) as info:
        Renderer(config).render(view(config, "broken"))
    assert info.value.line == 3 and info.value.file.endswith("halfway.j2")
    assert "ZeroDivisionError" in info.value.message
    # Through the TFTP content provider: a refusal, never the first two lines.
    errors: list[tuple[str, RenderError]] = []
    provider = RenderedConfigs(config, Renderer(config), LeaseTable(),
                               on_error=lambda m, e: errors.append((m, e)))
    with pytest.raises(TftpRefusal) as refusal:
        provider.get("broken.cfg", ("10.60.0.5", 1069))
    assert refusal.value.code == 0 and "cannot be rendered" in refusal.value.message
    assert "halfway.j2:3" in refusal.value.message
    assert errors and errors[0][0] == "02:00:00:00:00:02"


def test_syntax_error(config: Config) -> None:
    write_template(config, "syntax.j2", "ok\n{% if %}\n")
    with pytest.raises(RenderError) as info:
        Renderer(config).render(_view_with(config, "syntax.j2"))
    assert info.value.line == 2 and "syntax error" in info.value.message


def test_template_outside_the_templates_directory_is_not_found(config: Config) -> None:
    with pytest.raises(RenderError) as info:
        Renderer(config).render(view(config, "escape"))
    assert "not found" in info.value.message
    assert info.value.file == str(config.inventory.path)
    assert info.value.line == config.inventory.by_hostname["escape"].template_line


def test_no_template_at_all(tmp_path: Path, config: Config) -> None:
    (config.inventory.path).write_text(INVENTORY_YAML.replace("  template: default.j2\n", ""))
    bare = load_config(config.path)
    with pytest.raises(RenderError) as info:
        Renderer(bare).render(view(bare))
    assert "no template" in info.value.message


@pytest.mark.parametrize("expr", [
    "''.__class__.__mro__",
    "''.__class__.__mro__[1].__subclasses__()",
    "hostname.__class__",
    "device.__init__",
    "cycler.__init__.__globals__",
    "self._TemplateReference__context",
    "range.__self__",
    "''.format.__globals__",
])
def test_sandbox_blocks_attribute_escapes(config: Config, expr: str) -> None:
    write_template(config, "evil.j2", f"before\n{{{{ {expr} }}}}\nafter\n")
    with pytest.raises(RenderError) as info:
        Renderer(config).render(_view_with(config, "evil.j2"))
    message = info.value.message.lower()
    assert any(word in message for word in ("unsafe", "undefined", "securityerror", "no attribute")), message


def test_sandbox_blocks_format_string_escape(config: Config) -> None:
    write_template(config, "fmt.j2", "{{ '{0.__class__.__mro__}'.format(hostname) }}\n")
    with pytest.raises(RenderError):
        Renderer(config).render(_view_with(config, "fmt.j2"))


def test_template_edits_wait_for_a_new_renderer(config: Config) -> None:
    # Templates are compiled when loaded: an edit on disk reaches devices only through a new snapshot (a
    # SIGHUP reload that validates it), never half-way through one.
    write_template(config, "live.j2", "one\n")
    r = Renderer(config)
    v = _view_with(config, "live.j2")
    assert r.render(v) == b"one\n"
    write_template(config, "live.j2", "two\n")
    path = config.templates / "live.j2"
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 2_000_000_000))
    assert r.render(v) == b"one\n"
    assert Renderer(config).render(v) == b"two\n"


# --- strings a device sends never reach a config unescaped ------------------------------------------

EVIL_NAMES = [b"{{7*7}}", b"$(reboot)", b"x`id`;rm -rf /", b"a\nip route 0.0.0.0/0 6.6.6.6", b"{% raw %}z",
              b"\xff\xfe{{ config }}", b"..", b"leaf01"]


@pytest.mark.parametrize("sent", EVIL_NAMES)
def test_device_sent_hostname_is_sanitized_before_rendering(config: Config, sent: bytes) -> None:
    table = LeaseTable()
    ledger = Ledger(table)
    chain = Chain(config, ledger)
    server = IPv4Address("10.60.0.1")
    ingress = Ingress(ifindex=2, ifname="s1", server_ip=server, local_ips=frozenset({server}), broadcast=True)
    client = "02:00:00:00:00:77"

    def send(mtype: int, **opts: bytes) -> DhcpPacket:
        pkt = DhcpPacket(op=p.BOOTREQUEST, xid=9, chaddr=mac_to_chaddr(client),
                         options={53: bytes((mtype,)), 12: sent, **{int(k[1:]): v for k, v in opts.items()}})
        decision = chain.handle(parse(build(pkt)), ingress, 1000.0)
        if decision.probe is not None:  # dhcp.ping_check, and nobody answers
            decision = chain.handle(parse(build(pkt)), ingress, 1000.0, cleared=decision.probe)
        assert decision.reply is not None
        if decision.change is not None:
            ledger.commit(decision.change, lambda error: None)
        return decision.reply

    offer = send(p.DISCOVER)
    ack = send(p.REQUEST, o50=offer.yiaddr.packed, o54=server.packed)
    assert ack.message_type == p.ACK
    v = device_view(config, table, device=None, mac=client)
    out = Renderer(config).render(v)
    text = out.decode()
    if v.client_hostname is not None:
        assert set(v.client_hostname) <= set("abcdefghijklmnopqrstuvwxyz0123456789-")
        assert f"! calls itself {v.client_hostname}\n" in text
    for bad in ("{", "}", "$", "`", ";", "(", "6.6.6.6\n", "49"):
        assert bad not in text, (sent, text)
    assert text.count("\n") == 5 if v.client_hostname else text.count("\n") == 4
    # The TFTP path serves exactly the same bytes.
    provider = RenderedConfigs(config, Renderer(config), table)
    assert provider.get("020000000077.cfg", ("10.60.0.100", 1069)) == out


def test_claimed_inventory_name_is_dropped(config: Config) -> None:
    table = LeaseTable()
    table.bind(IPv4Address("10.60.0.100"), "02:00:00:00:00:77", "02:00:00:00:00:77", lease_time=60, now=0,
               hostname=None)
    v = device_view(config, table, device=None, mac="02:00:00:00:00:77")
    assert v.client_hostname is None and v.ip == IPv4Address("10.60.0.100")


# --- which file names map to which device ------------------------------------------------------------

def test_boot_file_names(config: Config) -> None:
    table = LeaseTable()
    table.bind(IPv4Address("10.60.0.100"), "02:00:00:00:00:55", "02:00:00:00:00:55", lease_time=60, now=0)
    provider = RenderedConfigs(config, Renderer(config), table)
    assert provider.view_for_path("leaf01.cfg").device is not None  # type: ignore[union-attr]
    assert provider.view_for_path("/LEAF01.cfg").device is not None  # type: ignore[union-attr]
    for name in ("sub/leaf01.cfg", "leaf01.txt", "nosuch.cfg", "020000000066.cfg",  # no lease
                 "020000000001.cfg"):  # a listed device is served by hostname only
        assert provider.view_for_path(name) is None, name
    unknown = provider.view_for_path("020000000055.cfg")
    assert unknown is not None and unknown.ip == IPv4Address("10.60.0.100") and unknown.device is None
    with pytest.raises(TftpRefusal) as info:
        provider.get("nosuch.cfg", ("10.60.0.5", 1069))
    assert info.value.code == 1


# --- helpers ---------------------------------------------------------------------------------------

def _view_with(config: Config, template: str) -> DeviceView:
    """An unknown device (no inventory vars) rendered with `template` instead of the default."""
    from dataclasses import replace

    device = replace(config.inventory.by_hostname["leaf01"], template=template,
                     hostname="device-020000000099", vars={})
    v = view(config)
    return DeviceView(mac=v.mac, device=device, ip=v.ip, subnet=v.subnet)
