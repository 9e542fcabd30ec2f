"""Config + inventory + compiled templates are one snapshot: read once, validated once, swapped whole on a good
SIGHUP and kept whole on a refused one; templates cannot change what they are given."""

from __future__ import annotations

import asyncio
import copy
import pickle
from collections.abc import Iterator
from pathlib import Path

import pytest

from ztp.app import Appliance
from ztp.check import validate
from ztp.config import Config, load_config
from ztp.frozen import FrozenDict, FrozenList
from ztp.leases.table import LeaseTable
from ztp.provision import device_view
from ztp.render import Renderer, RenderError, TemplateSet

ZTP_YAML = """\
state_dir: ./state
templates: ./templates
inventory: ./inventory.yaml
dhcp:
  subnets:
    - network: 10.60.0.0/24
      pool: 10.60.0.100-10.60.0.199
      routers: [10.60.0.1]
"""
INVENTORY = """\
defaults:
  template: default.j2
  vars: {ntp: [10.60.0.5]}
devices:
  - hostname: leaf01
    mac: 02:00:00:00:00:01
    ip: 10.60.0.11
    template: leaf.j2
    vars: {vlans: [10, 20], bgp: {asn: 65001}}
"""
LEAF = "hostname {{ hostname }}\nvlans {{ vlans | join(',') }}\n"


def write_tree(root: Path, templates: dict[str, str] | None = None, inventory: str = INVENTORY) -> Path:
    (root / "templates").mkdir(exist_ok=True)
    for name, text in (templates or {"default.j2": "hostname {{ hostname }}\n", "leaf.j2": LEAF}).items():
        (root / "templates" / name).parent.mkdir(parents=True, exist_ok=True)
        (root / "templates" / name).write_text(text)
    (root / "ztp.yaml").write_text(ZTP_YAML)
    (root / "inventory.yaml").write_text(inventory)
    return root / "ztp.yaml"


def leaf01(config: Config, renderer: Renderer | None = None) -> bytes:
    device = config.inventory.by_hostname["leaf01"]
    return (renderer or Renderer(config)).render(device_view(config, LeaseTable(), device=device, mac=None))


@pytest.fixture
def app(tmp_path: Path) -> Iterator[Appliance]:
    snapshot, problems = validate(write_tree(tmp_path))
    assert snapshot is not None and problems == []
    appliance = Appliance(snapshot.config, snapshot.templates)
    yield appliance
    appliance.writer.close()


def served(app: Appliance) -> bytes:
    """leaf01.cfg as TFTP serves it to leaf01 (its reserved address)."""
    return app.tftp.content.get("leaf01.cfg", ("10.60.0.11", 1069))


# --- no template is read from disk between reloads -------------------------------------------------------

def test_a_template_edit_is_not_served_before_a_reload(app: Appliance, tmp_path: Path) -> None:
    assert served(app) == b"hostname leaf01\nvlans 10,20\n"
    (tmp_path / "templates" / "leaf.j2").write_text("edited {{ hostname }}\n")
    assert served(app) == b"hostname leaf01\nvlans 10,20\n"
    assert asyncio.run(app.reload()) is True
    assert served(app) == b"edited leaf01\n"


@pytest.mark.parametrize("breakage", [
    pytest.param({"ntp.j2": "{% if %}\n"}, id="another-template-does-not-compile"),
    pytest.param({"default.j2": "hostname {{ nosuch }}\n"}, id="another-template-does-not-render"),
    pytest.param({"../inventory.yaml": INVENTORY + "  - hostname: [oops\n"}, id="inventory-yaml-error"),
])
def test_a_refused_reload_keeps_serving_the_old_template_text(app: Appliance, tmp_path: Path,
                                                              breakage: dict[str, str]) -> None:
    before = (app.config, app.renderer, served(app))
    # The device's own template changes on disk, and something else in the same reload is wrong.
    (tmp_path / "templates" / "leaf.j2").write_text("new text {{ hostname }}\n")
    for name, text in breakage.items():
        (tmp_path / "templates" / name).write_text(text)
    assert asyncio.run(app.reload()) is False
    assert (app.config, app.renderer, served(app)) == before
    assert served(app) == b"hostname leaf01\nvlans 10,20\n"  # the old text, not the file on disk


def test_a_refused_reload_for_a_bad_dns_zone_keeps_the_old_snapshot(tmp_path: Path,
                                                                    caplog: pytest.LogCaptureFixture) -> None:
    write_tree(tmp_path)
    (tmp_path / "ztp.yaml").write_text(ZTP_YAML + "dns:\n  zone: lab.test\n")
    snapshot, problems = validate(tmp_path / "ztp.yaml")
    assert snapshot is not None and problems == []
    app = Appliance(snapshot.config, snapshot.templates)
    try:
        old = (app.config, app.renderer, app.zone)
        (tmp_path / "ztp.yaml").write_text(ZTP_YAML + "dns:\n  zone: bad_zone!.test\n")
        assert asyncio.run(app.reload()) is False
        assert (app.config, app.renderer, app.zone) == old
        errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
        assert errors[0].startswith(f"{tmp_path / 'ztp.yaml'}:10: dns.zone: zone 'bad_zone!.test.': only ASCII"), errors
    finally:
        app.writer.close()


def test_template_set_reads_every_file_once(tmp_path: Path) -> None:
    write_tree(tmp_path, {"default.j2": "{% include 'parts/ntp.j2' %}", "parts/ntp.j2": "ntp {{ ntp[0] }}\n",
                          "leaf.j2": LEAF, ".leaf.j2.swp": "\x00\xff", "leaf.j2~": "{% if %}"})
    templates = TemplateSet.load(tmp_path / "templates")
    assert templates.names == ["default.j2", "leaf.j2", "parts/ntp.j2"] and templates.problems == ()
    for name in templates.names:
        (tmp_path / "templates" / name).unlink()
    config = load_config(tmp_path / "ztp.yaml")
    renderer = Renderer(config, templates)
    assert leaf01(config, renderer) == b"hostname leaf01\nvlans 10,20\n"
    unknown = device_view(config, LeaseTable(), device=None, mac="02:00:00:00:00:99")
    assert renderer.render(unknown) == b"ntp 10.60.0.5\n"


def test_templates_that_cannot_be_read_or_compiled_are_problems_once(tmp_path: Path) -> None:
    write_tree(tmp_path, {"default.j2": "ok\n", "leaf.j2": "one\n{% include 'broken.j2' %}\n",
                          "broken.j2": "line one\n{% for x in %}\n", "unused.j2": "{{ a }\n"})
    (tmp_path / "templates" / "latin1.j2").write_bytes(b"first line\nbanni\xe8re\n")
    snapshot, problems = validate(tmp_path / "ztp.yaml")
    assert snapshot is not None
    root = tmp_path / "templates"
    assert [(str(p.path), p.line) for p in problems] == [
        (str(root / "broken.j2"), 2), (str(root / "latin1.j2"), 2), (str(root / "unused.j2"), 1)]
    assert all(p.message.startswith("syntax error: ") for p in (problems[0], problems[2]))
    assert "not UTF-8" in problems[1].message
    # leaf01 renders broken.j2 through an include: the error is that file and line, listed once.
    with pytest.raises(RenderError) as info:
        leaf01(snapshot.config, snapshot.renderer())
    assert (info.value.file, info.value.line) == (str(root / "broken.j2"), 2)


# --- a template cannot change what it is given ----------------------------------------------------------

@pytest.mark.parametrize("text", [
    "{{ vars.vlans.append(1) }}",
    "{{ vlans.append(1) }}",
    "{{ vars.update({'vlans': []}) }}",
    "{{ bgp.pop('asn') }}",
    "{{ vars.bgp.setdefault('x', 1) }}",
    "{{ vlans.clear() }}",
    "{{ device.update(hostname='other') }}",
    "{{ routers.append('6.6.6.6') }}",
    "{{ ntp.insert(0, '6.6.6.6') }}",
    "{% set v = vars.vlans %}{{ v.reverse() }}",
])
def test_templates_cannot_mutate_their_variables(tmp_path: Path, text: str) -> None:
    write_tree(tmp_path, {"default.j2": "x\n", "leaf.j2": LEAF + text + "\n"})
    config = load_config(tmp_path / "ztp.yaml")
    before = copy.deepcopy((dict(config.inventory.default_vars), dict(config.inventory.by_hostname["leaf01"].vars)))
    with pytest.raises(RenderError) as info:
        leaf01(config)
    assert info.value.file == str(tmp_path / "templates" / "leaf.j2") and info.value.line == 3
    assert "SecurityError" in info.value.message and "is unsafe" in info.value.message
    assert "not change them" in info.value.message
    assert (config.inventory.default_vars, config.inventory.by_hostname["leaf01"].vars) == before
    assert config.inventory.by_hostname["leaf01"].vars == {"vlans": [10, 20], "bgp": {"asn": 65001}}


def test_do_statements_are_not_available(tmp_path: Path) -> None:
    write_tree(tmp_path, {"default.j2": "x\n", "leaf.j2": LEAF + "{% do vars.vlans.append(1) %}\n"})
    snapshot, problems = validate(tmp_path / "ztp.yaml")
    assert snapshot is not None
    assert [(p.path.name, p.line) for p in problems] == [("leaf.j2", 3)]
    assert "syntax error" in problems[0].message and "'do'" in problems[0].message
    assert snapshot.config.inventory.by_hostname["leaf01"].vars["vlans"] == [10, 20]


def test_loaded_inventory_values_are_read_only_outside_templates_too(tmp_path: Path) -> None:
    config = load_config(write_tree(tmp_path))
    vars_ = config.inventory.by_hostname["leaf01"].vars
    assert isinstance(vars_, FrozenDict) and isinstance(vars_["vlans"], FrozenList)
    assert isinstance(config.inventory.default_vars["ntp"], FrozenList)
    with pytest.raises(TypeError, match="read-only"):
        vars_["vlans"].append(30)
    with pytest.raises(TypeError, match="read-only"):
        vars_["bgp"]["asn"] = 1
    with pytest.raises(TypeError, match="read-only"):
        vars_.update(x=1)
    # They still print, compare and copy like plain values (rendered configs do not change).
    assert str(vars_["vlans"]) == "[10, 20]" and vars_ == {"vlans": [10, 20], "bgp": {"asn": 65001}}
    assert copy.deepcopy(vars_) == vars_ and pickle.loads(pickle.dumps(vars_)) == vars_
