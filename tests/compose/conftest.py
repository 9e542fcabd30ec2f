"""Docker fixtures: a running engine, the ztp image built offline, and compose/docker-compose.yml as data.

The topology the tests build is read from compose/docker-compose.yml (networks, addresses, commands,
capabilities), so the compose file a user runs and the topology CI tests cannot drift apart.
"""

from __future__ import annotations

import io
import os
import secrets
import subprocess
import tarfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import skip_or_fail

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_DIR = ROOT / "compose"
COMPOSE_FILE = COMPOSE_DIR / "docker-compose.yml"
BASE_IMAGE = os.environ.get("ZTP_BASE_IMAGE", "ztp-base:bookworm")
IMAGE = "ztp:test"
POSTGRES_IMAGE = "ztp-postgres:test"
LABEL = "io.ztp.compose-test"
DHCP_SERVER_PORT = 67


def _script(name: str, *args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(ROOT / "scripts" / name), *args], capture_output=True, text=True,
                          timeout=timeout, check=False)


@dataclass(frozen=True)
class NetworkSpec:
    """One `networks:` entry of the compose file."""

    name: str
    subnet: IPv4Network
    gateway: IPv4Address | None
    ip_range: IPv4Network | None
    internal: bool


@dataclass(frozen=True)
class ServiceSpec:
    """One `services:` entry of the compose file, as the docker SDK needs it."""

    name: str
    command: tuple[str, ...]
    cap_add: tuple[str, ...]
    sysctls: dict[str, str]
    environment: dict[str, str]
    volumes: dict[str, dict[str, str]]
    networks: dict[str, IPv4Address | None]
    replicas: int
    depends_on: tuple[str, ...]
    build_context: str = "."
    """`build.context` relative to compose/: "." is the ztp image, "postgres" the database's."""

    @property
    def is_daemon(self) -> bool:
        """`ztp serve` and `ztp relay` run until stopped; agents exit when provisioned."""
        return self.command[0] in {"serve", "relay"}


@dataclass(frozen=True)
class ComposeSpec:
    """compose/docker-compose.yml reduced to what the tests build."""

    networks: dict[str, NetworkSpec]
    services: dict[str, ServiceSpec]

    def start_order(self) -> list[ServiceSpec]:
        """Services with what they depend on first (compose's `depends_on` order)."""
        done: list[str] = []

        def visit(name: str, path: tuple[str, ...]) -> None:
            if name in done:
                return
            if name in path:
                raise ValueError(f"depends_on cycle: {' -> '.join((*path, name))}")
            for dep in self.services[name].depends_on:
                visit(dep, (*path, name))
            done.append(name)

        for name in self.services:
            visit(name, ())
        return [self.services[n] for n in done]


def _volume(entry: str) -> tuple[str, dict[str, str]]:
    host, bind, *mode = entry.split(":")
    path = (COMPOSE_DIR / host).resolve() if not os.path.isabs(host) else Path(host)
    return str(path), {"bind": bind, "mode": mode[0] if mode else "rw"}


def load_compose(path: Path = COMPOSE_FILE) -> ComposeSpec:
    """Parse the compose file (PyYAML; its `<<` merge keys included)."""
    doc: dict[str, Any] = yaml.safe_load(path.read_text())
    networks: dict[str, NetworkSpec] = {}
    for name, net in doc["networks"].items():
        (ipam,) = net["ipam"]["config"]
        networks[name] = NetworkSpec(
            name=name, subnet=IPv4Network(ipam["subnet"]),
            gateway=IPv4Address(ipam["gateway"]) if "gateway" in ipam else None,
            ip_range=IPv4Network(ipam["ip_range"]) if "ip_range" in ipam else None,
            internal=bool(net.get("internal", False)),
        )
    services: dict[str, ServiceSpec] = {}
    for name, svc in doc["services"].items():
        nets = svc.get("networks", [])
        if isinstance(nets, list):
            nets = {n: None for n in nets}
        depends = svc.get("depends_on", [])
        services[name] = ServiceSpec(
            name=name,
            command=tuple(str(a) for a in svc["command"]),
            cap_add=tuple(svc.get("cap_add", [])),
            sysctls={k: str(v) for k, v in (svc.get("sysctls") or {}).items()},
            environment={k: str(v) for k, v in (svc.get("environment") or {}).items()},
            volumes=dict(_volume(v) for v in svc.get("volumes", [])),
            networks={n: IPv4Address(c["ipv4_address"]) if c and "ipv4_address" in c else None
                      for n, c in nets.items()},
            replicas=int((svc.get("deploy") or {}).get("replicas", 1)),
            depends_on=tuple(depends if isinstance(depends, list) else depends.keys()),
            build_context=str(((svc.get("build") or {}).get("context")) or "."),
        )
    return ComposeSpec(networks, services)


@pytest.fixture(scope="session")
def compose_spec() -> ComposeSpec:
    """compose/docker-compose.yml, parsed."""
    return load_compose()


@pytest.fixture(scope="session")
def docker_client() -> Iterator[Any]:
    """A client of a running docker engine (started with scripts/start-dockerd.sh if needed)."""
    try:
        import docker
    except ImportError:
        skip_or_fail("the docker package is not installed (pip install -e '.[dev]')")
    started = _script("start-dockerd.sh", timeout=120)
    if started.returncode != 0:
        skip_or_fail(f"no docker engine: scripts/start-dockerd.sh: {started.stderr.strip()}")
    client = docker.from_env(timeout=120)
    try:
        client.ping()
        yield client
    finally:
        client.close()


@pytest.fixture(scope="session")
def ztp_image(docker_client: Any) -> str:
    """The ztp image of compose/Dockerfile on the offline base image, built from host wheels."""
    base = _script("build-base-image.sh", timeout=900)
    if base.returncode != 0:
        pytest.fail(f"scripts/build-base-image.sh failed:\n{base.stderr}", pytrace=False)
    wheels = _script("build-wheels.sh", timeout=300)
    if wheels.returncode != 0:
        pytest.fail(f"scripts/build-wheels.sh failed:\n{wheels.stderr}", pytrace=False)
    import docker.errors

    try:
        previous = docker_client.images.get(IMAGE).id
    except docker.errors.ImageNotFound:
        previous = None
    try:
        image, _ = docker_client.images.build(path=str(COMPOSE_DIR), tag=IMAGE, buildargs={"BASE": BASE_IMAGE},
                                              rm=True, forcerm=True, pull=False)
    except docker.errors.BuildError as exc:
        log = "".join(str(chunk.get("stream", chunk.get("error", ""))) for chunk in exc.build_log)
        pytest.fail(f"building {IMAGE} from compose/Dockerfile failed: {exc}\n{log[-4000:]}", pytrace=False)
    if previous is not None and previous != image.id:
        # The old build (now untagged) would only pile up; the base image stays cached.
        try:
            docker_client.images.remove(previous, noprune=False)
        except docker.errors.APIError:
            pass
    return IMAGE


@pytest.fixture(scope="session")
def postgres_image(docker_client: Any) -> str:
    """The PostgreSQL image of compose/postgres/Dockerfile: Debian's postgresql-15 on the offline base image."""
    base = _script("build-base-image.sh", timeout=900)
    if base.returncode != 0:
        pytest.fail(f"scripts/build-base-image.sh failed:\n{base.stderr}", pytrace=False)
    debs = _script("build-postgres-debs.sh", timeout=300)
    if debs.returncode != 0:
        pytest.fail(f"scripts/build-postgres-debs.sh failed:\n{debs.stderr}", pytrace=False)
    import docker.errors

    try:
        docker_client.images.build(path=str(COMPOSE_DIR / "postgres"), tag=POSTGRES_IMAGE,
                                   buildargs={"BASE": BASE_IMAGE}, rm=True, forcerm=True, pull=False)
    except docker.errors.BuildError as exc:
        log = "".join(str(chunk.get("stream", chunk.get("error", ""))) for chunk in exc.build_log)
        pytest.fail(f"building {POSTGRES_IMAGE} from compose/postgres/Dockerfile failed: {exc}\n{log[-4000:]}",
                    pytrace=False)
    return POSTGRES_IMAGE


@dataclass
class Topology:
    """The compose topology built with the docker SDK under unique names; `close()` removes all of it."""

    client: Any
    spec: ComposeSpec
    image: str
    suffix: str = field(default_factory=lambda: secrets.token_hex(3))
    networks: dict[str, Any] = field(default_factory=dict)
    bridges: list[str] = field(default_factory=list)
    containers: dict[str, list[Any]] = field(default_factory=dict)
    images: dict[str, str] = field(default_factory=dict)
    """Image per `build_context` other than the ztp image's ("postgres": the database's)."""
    daemon_timeout: float = 30.0
    """How long `start` waits for a daemon to listen (appliances first wait for `ztp db upgrade`)."""

    def create_networks(self) -> None:
        """Create every compose network (internal, fixed subnet) and let traffic within each bridge pass."""
        from docker.types import IPAMConfig, IPAMPool

        for net in self.spec.networks.values():
            bridge = f"ztp{net.name[0]}-{self.suffix}"  # a bridge name has at most 15 characters
            pool = IPAMPool(subnet=str(net.subnet), gateway=str(net.gateway) if net.gateway else None,
                            iprange=str(net.ip_range) if net.ip_range else None)
            try:
                self.networks[net.name] = self.client.networks.create(
                    f"ztp-test-{self.suffix}-{net.name}", driver="bridge", internal=net.internal,
                    ipam=IPAMConfig(pool_configs=[pool]), labels={LABEL: self.suffix},
                    options={"com.docker.network.bridge.name": bridge},
                )
            except Exception as exc:
                users = [n.name for n in self.client.networks.list()
                         if any(c.get("Subnet") == str(net.subnet)
                                for c in (n.attrs.get("IPAM") or {}).get("Config") or [])]
                raise RuntimeError(f"cannot create network {net.name} ({net.subnet}): {exc}; networks on that "
                                   f"subnet: {users} (a running `docker-compose ... up`? run `down` first)") from exc
            self.bridges.append(bridge)
        allow = subprocess.run(["sh", str(COMPOSE_DIR / "allow-bridges.sh"), "add", *self.bridges],
                               capture_output=True, text=True, check=False)
        if allow.returncode != 0:
            raise RuntimeError(f"compose/allow-bridges.sh add failed: {allow.stderr}")

    def start(self, service: ServiceSpec, *, mac_address: str | None = None) -> list[Any]:
        """Create and start the service's replicas; daemons are awaited until they listen on udp/67.

        `mac_address` (one replica only) replaces the MAC docker derives from the container's address.
        """
        assert mac_address is None or service.replicas == 1, "one MAC for several replicas"
        started = []
        first, *more = service.networks.items()
        for index in range(1, service.replicas + 1):
            endpoint = self.client.api.create_endpoint_config(
                ipv4_address=str(first[1]) if first[1] else None)
            container = self.client.containers.create(
                self.images.get(service.build_context, self.image), command=list(service.command),
                name=f"ztp-test-{self.suffix}-{service.name}-{index}", mac_address=mac_address,
                cap_add=list(service.cap_add), sysctls=service.sysctls or None,
                environment=service.environment, volumes=service.volumes, labels={LABEL: self.suffix},
                network=self.networks[first[0]].name,
                networking_config={self.networks[first[0]].name: endpoint},
            )
            self.containers.setdefault(service.name, []).append(container)
            for net, address in more:
                self.networks[net].connect(container, ipv4_address=str(address) if address else None)
            container.start()
            started.append(container)
        if service.is_daemon:
            for container in started:
                self.wait_listening(container, DHCP_SERVER_PORT, self.daemon_timeout)
        return started

    def wait_listening(self, container: Any, port: int, timeout: float = 30.0) -> None:
        """Wait until `container` has a UDP socket bound to `port` (read from /proc/net/udp)."""
        deadline = time.monotonic() + timeout
        needle = f":{port:04X} "
        while time.monotonic() < deadline:
            container.reload()
            if container.status != "running":
                raise AssertionError(f"{container.name} stopped ({container.status}):\n{self.logs(container)}")
            code, out = container.exec_run(["cat", "/proc/net/udp"])
            if code == 0 and any(needle in line.split()[1] + " " for line in out.decode().splitlines()[1:]):
                return
            time.sleep(0.2)
        raise AssertionError(f"{container.name} not listening on udp/{port} after {timeout}s:\n"
                             f"{self.logs(container)}")

    @staticmethod
    def logs(container: Any, *, stdout: bool = True, stderr: bool = True) -> str:
        """The container's output (both streams unless told)."""
        return str(container.logs(stdout=stdout, stderr=stderr).decode(errors="replace"))

    def all_logs(self) -> str:
        """Every container's output, for failure messages."""
        parts = []
        for containers in self.containers.values():
            for container in containers:
                parts.append(f"----- {container.name}\n{self.logs(container)[-3000:]}")
        return "\n".join(parts)

    @staticmethod
    def read_file(container: Any, path: str) -> bytes:
        """The bytes of one regular file in `container` (running or exited)."""
        stream, _ = container.get_archive(path)
        with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as tar:
            member = tar.next()
            assert member is not None and member.isfile(), f"{path} in {container.name} is not a file"
            extracted = tar.extractfile(member)
            assert extracted is not None
            return extracted.read()

    def close(self) -> None:
        """Remove the containers, the networks and the bridge rules; every step runs whatever failed."""
        errors: list[str] = []
        for containers in reversed(list(self.containers.values())):
            for container in containers:
                try:
                    container.remove(force=True)
                except Exception as exc:  # noqa: BLE001 - keep tearing down
                    errors.append(f"{container.name}: {exc}")
        for network in self.networks.values():
            try:
                network.remove()
            except Exception as exc:  # noqa: BLE001
                errors.append(f"{network.name}: {exc}")
        if self.bridges:
            subprocess.run(["sh", str(COMPOSE_DIR / "allow-bridges.sh"), "remove", *self.bridges],
                           capture_output=True, check=False)
        if errors:
            raise RuntimeError("teardown: " + "; ".join(errors))


@pytest.fixture
def topology(docker_client: Any, ztp_image: str, compose_spec: ComposeSpec) -> Iterator[Topology]:
    """An empty :class:`Topology` (unique names) that is torn down after the test, passed or failed."""
    topo = Topology(docker_client, compose_spec, ztp_image)
    try:
        yield topo
    finally:
        topo.close()
