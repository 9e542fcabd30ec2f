"""An appliance lab for end-to-end tests: `ztp serve` in one namespace, clients on a switch segment.

Topology (every address exists only inside the lab's namespaces):

    srv:s1 10.60.0.1/24 ── seg(br0) ── clientN:eth0 (no address until DHCP)
    srv:r1 10.50.0.1/24 ── (optional) relay namespaces for 10.70.0.0/24
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from ztp.lab import Lab, LabError, dhclient_argv

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "tests" / "data"
ZTP = [sys.executable, "-m", "ztp"]


def write_config(tmp: Path, *, config_extra: str = "", inventory: str | None = None,
                 dns: bool = True, lease_time: int = 3600, interfaces: str = "[s1]") -> Path:
    """The repo's example config with paths pointing into `tmp` (state) and the repo (templates)."""
    inv = tmp / "inventory.yaml"
    inv.write_text(inventory if inventory is not None else (REPO / "inventory.yaml").read_text())
    cfg = tmp / "ztp.yaml"
    text = f"""state_dir: {tmp / 'state'}
templates: {REPO / 'templates'}
inventory: {inv}
dhcp:
  interfaces: {interfaces}
  lease_time: {lease_time}
  subnets:
    - network: 10.60.0.0/24
      pool: 10.60.0.100-10.60.0.199
      routers: [10.60.0.1]
      dns_servers: [10.60.0.1]
      domain: lab.test
    - network: 10.70.0.0/24
      pool: 10.70.0.100-10.70.0.199
      routers: [10.70.0.1]
      options: {{150: [10.50.0.1]}}
tftp:
  root: {REPO / 'tftpboot'}
"""
    if dns:
        text += "dns:\n  zone: lab.test\n"
    cfg.write_text(text + config_extra)
    return cfg


@dataclass
class ApplianceLab:
    """A running `ztp serve` with helpers to boot real clients against it."""

    lab: Lab
    tmp: Path
    config: Path
    srv: str = ""
    seg: str = ""
    proc: subprocess.Popen[bytes] | None = None
    clients: dict[str, str] = field(default_factory=dict)
    _serves: int = 0

    def build(self) -> ApplianceLab:
        """Create the server namespace and the client segment."""
        self.srv = self.lab.ns("srv")
        self.seg = self.lab.segment("seg")
        self.lab.attach(self.seg, self.srv, "s1", addr="10.60.0.1/24")
        return self

    @property
    def log(self) -> Path:
        """The current server log."""
        return self.tmp / f"serve{self._serves}.log"

    def log_text(self, *lines: str, timeout: float = 10) -> str:
        """The current server log once it holds every one of `lines` (ztp serve writes its log from a thread,
        in batches up to 0.05 s late); the log as it is after `timeout` otherwise, for the caller's assert."""
        try:
            self.lab.wait_for(lambda: all(line in self.log.read_text(errors="replace") for line in lines), timeout,
                              "the log lines")
        except LabError:
            pass
        return self.log.read_text(errors="replace")

    def start(self) -> None:
        """Start `ztp serve` and wait until DHCP and TFTP listen."""
        self._serves += 1
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.proc = self.lab.spawn(self.srv, [*ZTP, "serve", "--config", str(self.config), "--log-level",
                                              "debug"], log=self.log, env=env)
        self.lab.wait_for(lambda: self.lab.udp_listening(self.srv, 67) and self.lab.udp_listening(self.srv, 69)
                          or (self.proc is not None and self.proc.poll() is not None), 20, "ztp serve listening")
        assert self.proc.poll() is None, f"ztp serve exited: {self.log.read_text()}"

    def stop(self, sig: int = signal.SIGTERM) -> int | None:
        """Stop the server with `sig` (SIGKILL to simulate a crash)."""
        assert self.proc is not None
        code = self.lab.stop(self.proc, sig=sig)
        self.proc = None
        return code

    def client(self, name: str, mac: str) -> str:
        """A client namespace with eth0 (MAC `mac`, no address) on the segment."""
        ns = self.lab.ns(name)
        self.lab.attach(self.seg, ns, "eth0", mac=mac)
        self.clients[name] = ns
        return ns

    def dhclient(self, ns: str, *, timeout: float = 25, extra: tuple[str, ...] = (),
                 tag: str = "") -> dict[str, str]:
        """Run ISC dhclient once (-1) in `ns`; return the variables its script saw on BOUND."""
        out = self.tmp / f"dhclient-{ns}{tag}.env"
        out.unlink(missing_ok=True)
        argv = dhclient_argv("eth0", lease_file=self.tmp / f"{ns}{tag}.leases", pid_file=self.tmp / f"{ns}{tag}.pid",
                             script=DATA / "dhclient-script", conf=DATA / "dhclient.conf", out_file=out,
                             extra=extra)
        log = self.tmp / f"dhclient-{ns}{tag}.log"
        proc = self.lab.spawn(ns, argv, log=log)
        try:
            # dhclient prints "bound to" only after its script has finished writing `out`.
            self.lab.wait_for(lambda: log.exists() and "bound to" in log.read_text(errors="replace"), timeout,
                              f"dhclient in {ns} bound")
        finally:
            self.lab.stop(proc)
        return parse_env(out.read_text())

    def ztp(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Run a ztp subcommand that opens no socket (render, leases, check) in the test's namespace."""
        return subprocess.run([*ZTP, *args, "--config", str(self.config)], capture_output=True, text=True,
                              timeout=60, check=False)

    def rendered(self, **who: str) -> bytes:
        """Exactly what `ztp render` prints for a device."""
        args = [a for k, v in who.items() for a in (f"--{k}", v)]
        res = subprocess.run([*ZTP, "render", "--config", str(self.config), *args], capture_output=True,
                             timeout=60, check=True)
        return res.stdout


def parse_env(text: str) -> dict[str, str]:
    """The last block of key=value lines a dhclient-script run recorded."""
    blocks = text.split("reason=")
    last = "reason=" + blocks[-1]
    out: dict[str, str] = {}
    for line in last.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            out[key] = value
    return out
