"""compose/docker-compose.yml's topology in docker: switches on `access` provisioned through the relay.

Built with the docker SDK from the compose file itself (see conftest.py): the appliance alone on `mgmt`,
the relay on both networks, the switch replicas on `access`. Every switch must lease an address in the
access subnet from the relayed pool and fetch exactly the bytes `ztp render` gives for it.
"""

from __future__ import annotations

import hashlib
import json
from ipaddress import IPv4Address
from pathlib import PurePosixPath
from typing import Any

import pytest

from tests.compose.conftest import ComposeSpec, ServiceSpec, Topology
from ztp.config import Config, Subnet, load_config

pytestmark = pytest.mark.compose

SWITCH_WAIT = 90.0  # beyond the agent's own --timeout (60 s in the compose file)


def _service(spec: ComposeSpec, verb: str) -> ServiceSpec:
    (service,) = [s for s in spec.services.values() if s.command[0] == verb]
    return service


def _option(command: tuple[str, ...], name: str) -> str:
    return command[command.index(name) + 1]


def _host_path(service: ServiceSpec, container_path: str) -> str:
    """Where a path inside the service's container lives on the host, through its bind mounts."""
    path = PurePosixPath(container_path)
    for host, mount in service.volumes.items():
        bind = PurePosixPath(mount["bind"])
        if path.is_relative_to(bind):
            return str(PurePosixPath(host) / path.relative_to(bind))
    raise AssertionError(f"{container_path} is not under any volume of service {service.name}")


def _server_config(spec: ComposeSpec) -> tuple[str, Config]:
    server = _service(spec, "serve")
    in_container = _option(server.command, "--config")
    from pathlib import Path

    return in_container, load_config(Path(_host_path(server, in_container)))


def _relayed_subnet(spec: ComposeSpec, config: Config) -> Subnet:
    relay_access = _service(spec, "relay").networks["access"]
    assert relay_access is not None
    subnet = config.subnet_for(relay_access)
    assert subnet is not None, f"compose ztp.yaml has no subnet for the relay's giaddr {relay_access}"
    return subnet


def test_compose_file_describes_a_relayed_topology(compose_spec: ComposeSpec) -> None:
    """The compose file keeps the issue's shape and agrees with compose/ztp.yaml."""
    spec = compose_spec
    assert set(spec.networks) == {"mgmt", "access"}
    assert all(net.internal for net in spec.networks.values()), "test networks must have no way out"
    server, relay, switch = _service(spec, "serve"), _service(spec, "relay"), _service(spec, "agent")
    assert set(server.networks) == {"mgmt"}
    assert set(relay.networks) == {"mgmt", "access"}
    assert set(switch.networks) == {"access"}
    assert switch.replicas >= 2
    assert IPv4Address(_option(relay.command, "--server")) == server.networks["mgmt"]
    _, config = _server_config(spec)
    subnet = _relayed_subnet(spec, config)
    access = spec.networks["access"]
    assert subnet.network == access.subnet
    assert subnet.routers == (relay.networks["access"],), "the switches' router to mgmt is the relay"
    assert subnet.pool_start is not None and subnet.pool_end is not None
    # docker's own addresses for the switches must stay out of the relayed DHCP pool.
    assert access.ip_range is not None
    assert not (subnet.pool_start <= access.ip_range[-1] and access.ip_range[0] <= subnet.pool_end)
    assert relay.sysctls.get("net.ipv4.ip_forward") == "1", "the relay routes the switches' TFTP"
    assert server.environment.get("ZTP_ROUTES", "").startswith(str(access.subnet))


def test_switches_are_provisioned_through_the_relay(topology: Topology, compose_spec: ComposeSpec) -> None:
    """Every switch replica leases from the relayed pool and fetches exactly what `ztp render` gives."""
    spec = compose_spec
    config_path, config = _server_config(spec)
    subnet = _relayed_subnet(spec, config)
    server_spec, relay_spec = _service(spec, "serve"), _service(spec, "relay")
    switch_spec = _service(spec, "agent")
    out_dir = _option(switch_spec.command, "--out")

    topology.create_networks()
    for service in spec.start_order():
        topology.start(service)
    (server,) = topology.containers[server_spec.name]
    (relay,) = topology.containers[relay_spec.name]
    switches = topology.containers[switch_spec.name]
    assert len(switches) == switch_spec.replicas

    # The image's ztp is the wheel `pip install .` builds: its DHCP hot path compiled, which the switches
    # below are served by (the rest of the suite runs the pure build of the development venv).
    code, version = server.exec_run(["ztp", "--version"], demux=True)
    assert code == 0 and version[0].strip().endswith(b"(compiled)"), version

    results: dict[str, dict[str, Any]] = {}
    for switch in switches:
        status = switch.wait(timeout=SWITCH_WAIT)
        output = topology.logs(switch, stderr=False)
        assert status["StatusCode"] == 0, (
            f"{switch.name} exited {status['StatusCode']}:\n{topology.logs(switch)}\n{topology.all_logs()}")
        result = json.loads(output)
        results[switch.name] = result

        ip = IPv4Address(result["ip"])
        assert ip in spec.networks["access"].subnet
        assert subnet.pool_start is not None and subnet.pool_end is not None
        assert subnet.pool_start <= ip <= subnet.pool_end, f"{ip} is not from the relayed pool"
        assert result["router"] == str(relay_spec.networks["access"])
        assert result["server_id"] == str(server_spec.networks["mgmt"]), "the lease came from the appliance"

        fetched = topology.read_file(switch, f"{out_dir}/{result['boot_file']}")
        code, rendered = server.exec_run(["ztp", "render", "--config", config_path, "--mac", result["mac"]],
                                         demux=True)
        assert code == 0, f"ztp render --mac {result['mac']} failed: {rendered[1]!r}"
        assert fetched == rendered[0], f"{switch.name} fetched something else than `ztp render` prints"
        assert hashlib.sha256(fetched).hexdigest() == result["sha256"]

    assert len({r["ip"] for r in results.values()}) == len(switches), "two switches share an address"
    assert "ztp serving, compiled build:" in topology.logs(server), topology.logs(server)[-2000:]

    # The appliance's lease table agrees, and every request came through the relay (giaddr set).
    code, out = server.exec_run(["ztp", "leases", "--config", config_path, "--json"], demux=True)
    assert code == 0, out[1]
    leases = {row["mac"]: row["ip"] for row in json.loads(out[0])}
    assert leases == {r["mac"]: r["ip"] for r in results.values()}
    relay_log = topology.logs(relay)
    giaddr = relay_spec.networks["access"]
    for r in results.values():
        assert f"{r['mac']} DISCOVER" in relay_log and f"giaddr={giaddr}" in relay_log, relay_log[-3000:]
