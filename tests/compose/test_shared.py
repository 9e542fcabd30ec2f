"""compose/docker-compose.shared.yml in docker: two appliances on one PostgreSQL behind one relay.

Built with the docker SDK from the compose file itself (see conftest.py): PostgreSQL (Debian's package on
the offline base image), `ztp-a` and `ztp-b` (each runs `ztp db upgrade`, then `ztp serve`), the relay
forwarding every request to both, and the switch replicas. Every switch gets a distinct address from the
shared pool and exactly the bytes `ztp render` gives; both appliances' `ztp leases` show every lease; with
`ztp-a` stopped, a new switch still provisions through `ztp-b`, and a switch `ztp-a` had served (its MAC
in a new container) keeps its address.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Iterator
from ipaddress import IPv4Address
from typing import Any

import pytest
import yaml

from tests.compose.conftest import COMPOSE_DIR, ComposeSpec, ServiceSpec, Topology, load_compose
from ztp.config import load_config

pytestmark = pytest.mark.compose

SHARED_FILE = COMPOSE_DIR / "docker-compose.shared.yml"
SWITCH_WAIT = 90.0  # beyond the agent's own --timeout (60 s in the compose file)
NEW_MAC = "02:42:0a:46:00:fe"
APPLIANCE_WAIT = 120.0  # initdb, `ztp db upgrade` retried while db starts, then serve binds udp/67


def _appliances(spec: ComposeSpec) -> list[ServiceSpec]:
    return [s for s in spec.services.values() if s.command[0] == "serve"]


def _one(spec: ComposeSpec, verb: str) -> ServiceSpec:
    (service,) = [s for s in spec.services.values() if s.command[0] == verb]
    return service


def _config_path(service: ServiceSpec) -> str:
    return service.command[service.command.index("--config") + 1]


@pytest.fixture(scope="module")
def shared_spec() -> ComposeSpec:
    """compose/docker-compose.shared.yml, parsed."""
    return load_compose(SHARED_FILE)


@pytest.fixture
def shared_topology(docker_client: Any, ztp_image: str, postgres_image: str,
                    shared_spec: ComposeSpec) -> Iterator[Topology]:
    """An empty topology of the shared compose file (unique names), torn down after the test."""
    topo = Topology(docker_client, shared_spec, ztp_image, images={"postgres": postgres_image},
                    daemon_timeout=APPLIANCE_WAIT)
    try:
        yield topo
    finally:
        topo.close()


def test_shared_compose_file_describes_two_appliances(shared_spec: ComposeSpec) -> None:
    """Two appliances on one config and one database, a relay forwarding to both, nothing published."""
    spec = shared_spec
    raw = yaml.safe_load(SHARED_FILE.read_text())
    assert all(net.internal for net in spec.networks.values()), "test networks must have no way out"
    assert not any("ports" in svc for svc in raw["services"].values()), "no port may be published on the host"
    appliances = _appliances(spec)
    assert len(appliances) == 2
    assert len({_config_path(a) for a in appliances}) == 1, "both appliances must render from one config"
    relay = _one(spec, "relay")
    servers = [IPv4Address(relay.command[i + 1]) for i, a in enumerate(relay.command) if a == "--server"]
    assert sorted(servers) == sorted(a.networks["mgmt"] for a in appliances), "the relay forwards to both"
    (db,) = [s for s in spec.services.values() if s.build_context == "postgres"]
    db_ip = db.networks["mgmt"]
    assert db_ip is not None and db_ip in spec.networks["mgmt"].subnet
    assert IPv4Address(db.environment["ZTP_DB_NETWORK"].split("/")[0]) == spec.networks["mgmt"].subnet[0]
    (host, mount), = appliances[0].volumes.items()
    config = load_config(COMPOSE_DIR.parent / _config_path(appliances[0]).removeprefix(mount["bind"] + "/"))
    assert config.state.backend == "postgresql" and str(db_ip) in config.state.dsn
    assert all(a.environment.get("ZTP_DB_UPGRADE") == _config_path(a) for a in appliances)
    assert _one(spec, "agent").replicas >= 3


def _switch_result(topology: Topology, switch: Any) -> dict[str, Any]:
    status = switch.wait(timeout=SWITCH_WAIT)
    assert status["StatusCode"] == 0, (
        f"{switch.name} exited {status['StatusCode']}:\n{topology.logs(switch)}\n{topology.all_logs()}")
    # The last JSON document of stdout: a restarted switch has printed one per run.
    text, decoder, documents = topology.logs(switch, stderr=False), json.JSONDecoder(), []
    index = text.find("{")
    while index != -1:
        document, end = decoder.raw_decode(text, index)
        documents.append(document)
        index = text.find("{", end)
    assert documents, f"{switch.name} printed no result:\n{topology.logs(switch)}"
    result: dict[str, Any] = documents[-1]
    return result


def _check_config(topology: Topology, switch: Any, result: dict[str, Any], render_on: Any,
                  config_path: str, out_dir: str) -> None:
    fetched = topology.read_file(switch, f"{out_dir}/{result['boot_file']}")
    code, rendered = render_on.exec_run(["ztp", "render", "--config", config_path, "--mac", result["mac"]],
                                        demux=True)
    assert code == 0, f"ztp render --mac {result['mac']} failed: {rendered[1]!r}"
    assert fetched == rendered[0], f"{switch.name} fetched something else than `ztp render` prints"
    assert hashlib.sha256(fetched).hexdigest() == result["sha256"]


def _leases(appliance: Any, config_path: str) -> dict[str, str]:
    code, out = appliance.exec_run(["ztp", "leases", "--config", config_path, "--json"], demux=True)
    assert code == 0, out[1]
    return {row["mac"]: row["ip"] for row in json.loads(out[0]) if row.get("state", "bound") == "bound"}


def test_two_appliances_share_leases_and_survive_one(shared_topology: Topology,
                                                     shared_spec: ComposeSpec) -> None:
    """Distinct addresses and rendered configs from either appliance; with one stopped, the other serves."""
    topology, spec = shared_topology, shared_spec
    a_spec, b_spec = sorted(_appliances(spec), key=lambda s: s.name)
    switch_spec = _one(spec, "agent")
    config_path = _config_path(a_spec)
    out_dir = switch_spec.command[switch_spec.command.index("--out") + 1]
    config = load_config(COMPOSE_DIR / "ztp.shared.yaml")
    (subnet,) = config.subnets
    assert subnet.pool_start is not None and subnet.pool_end is not None
    a_ip, b_ip = a_spec.networks["mgmt"], b_spec.networks["mgmt"]

    topology.create_networks()
    for service in spec.start_order():
        topology.start(service)
    (appliance_a,) = topology.containers[a_spec.name]
    (appliance_b,) = topology.containers[b_spec.name]
    switches = topology.containers[switch_spec.name]

    results: dict[str, dict[str, Any]] = {}
    for switch in switches:
        result = results[switch.name] = _switch_result(topology, switch)
        ip = IPv4Address(result["ip"])
        assert subnet.pool_start <= ip <= subnet.pool_end, f"{ip} is not from the shared pool"
        assert IPv4Address(result["server_id"]) in {a_ip, b_ip}
        # Either appliance renders the same bytes: check against the one that did not answer too.
        _check_config(topology, switch, result, appliance_a, config_path, out_dir)
        _check_config(topology, switch, result, appliance_b, config_path, out_dir)
    assert len({r["ip"] for r in results.values()}) == len(switches), "two switches share an address"
    expected = {r["mac"]: r["ip"] for r in results.values()}
    assert _leases(appliance_a, config_path) == expected, "ztp-a's view of the shared store"
    assert _leases(appliance_b, config_path) == expected, "ztp-b's view of the shared store"

    # Failover: ztp-a goes away; the relay still forwards to it, nobody answers from there.
    appliance_a.stop(timeout=5)
    # A new switch (a MAC no switch had: docker derives 02:42:0a:46:00:10-1f from access's ip_range).
    late = topology.start(dataclasses.replace(switch_spec, name="switch-new", replicas=1),
                          mac_address=NEW_MAC)[0]
    result = _switch_result(topology, late)
    assert result["mac"] == NEW_MAC
    assert IPv4Address(result["server_id"]) == b_ip, "only ztp-b is left to answer"
    assert result["ip"] not in expected.values(), "the survivor gave out an address already held"
    _check_config(topology, late, result, appliance_b, config_path, out_dir)
    new_ip = result["ip"]

    # A switch ztp-a had served (its MAC, in a fresh container) moves to ztp-b and keeps its address.
    served_by_a = [r for r in results.values() if IPv4Address(r["server_id"]) == a_ip]
    moving = (served_by_a or list(results.values()))[0]
    again = topology.start(dataclasses.replace(switch_spec, name="switch-moved", replicas=1),
                           mac_address=moving["mac"])[0]
    result = _switch_result(topology, again)
    assert result["mac"] == moving["mac"]
    assert IPv4Address(result["server_id"]) == b_ip
    assert result["ip"] == moving["ip"], "the client lost its address when its appliance stopped"
    _check_config(topology, again, result, appliance_b, config_path, out_dir)
    assert _leases(appliance_b, config_path) == {**expected, NEW_MAC: new_ip}
