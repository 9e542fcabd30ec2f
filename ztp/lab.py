"""Network-namespace lab: namespaces joined by veth links, with tracked processes and guaranteed teardown.

Used by the integration tests, ``make demo`` and the benchmarks so that every DHCP/TFTP/DNS peer runs in a
namespace this process created and nothing ever listens or sends on the host's own network. Only iproute2
(``ip``) and ``ss`` are driven, through :mod:`subprocess`.

Example::

    with Lab() as lab:
        srv, cli = lab.ns("srv"), lab.ns("cli")
        lab.link(srv, "eth0", cli, "eth0", addr_a="10.60.0.1/24")
        lab.spawn(srv, ["dnsmasq", "--no-daemon", ...], log=tmp / "dnsmasq.log")
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO

__all__ = ["Lab", "LabError", "dhclient_argv", "netns_list", "remove_stale", "require_root"]

IFNAMSIZ = 15
"""Longest Linux interface name (IFNAMSIZ - 1 for the terminating NUL)."""

_BRIDGE = "br0"


class LabError(RuntimeError):
    """A lab operation failed: a command exited non-zero, timed out, or a wait ran out of time."""


def require_root() -> None:
    """Raise :class:`LabError` unless running as root (namespaces and veths need CAP_NET_ADMIN)."""
    if os.geteuid() != 0:
        raise LabError("needs root: run with sudo (network namespaces need CAP_NET_ADMIN)")


def dhclient_argv(
    iface: str,
    *,
    lease_file: Path | str,
    pid_file: Path | str,
    script: Path | str,
    conf: Path | str | None = None,
    out_file: Path | str | None = None,
    extra: Iterable[str] = (),
) -> list[str]:
    """ISC dhclient argv that stays in the foreground and never runs the system dhclient-script.

    ``-d`` keeps dhclient attached so :meth:`Lab.spawn` tracks it (after ``-1`` alone it would fork into
    the background once bound). dhclient hands its script a fresh environment, not its own, so
    ``out_file`` is passed with ``-e ZTP_DHCLIENT_OUT=...`` for tests/data/dhclient-script.
    """
    argv = ["dhclient", "-4", "-1", "-d", "-v", "-sf", str(script)]
    argv += ["-lf", str(lease_file), "-pf", str(pid_file)]
    if conf is not None:
        argv += ["-cf", str(conf)]
    if out_file is not None:
        argv += ["-e", f"ZTP_DHCLIENT_OUT={out_file}"]
    argv += list(extra)
    argv.append(iface)
    return argv


def _ip(args: Sequence[str], *, timeout: float = 10, check: bool = True) -> subprocess.CompletedProcess[str]:
    cmd = ["ip", *args]
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        raise LabError(f"timed out after {timeout}s: {' '.join(cmd)}") from exc
    if check and res.returncode != 0:
        raise LabError(f"{' '.join(cmd)} exited {res.returncode}: {res.stderr.strip()}")
    return res


def netns_list() -> list[str]:
    """Names of all named network namespaces on the host (``ip netns list``)."""
    out = _ip(["netns", "list"]).stdout
    # Lines look like "name (id: 3)" or just "name".
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def _ns_pids(ns: str) -> list[int]:
    res = _ip(["netns", "pids", ns], check=False)
    return [int(tok) for tok in res.stdout.split() if tok.isdigit()]


def _kill_ns_processes(ns: str, timeout: float = 3) -> None:
    """SIGTERM then SIGKILL everything living in ``ns``: a namespace with live processes outlives its name."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        pids = _ns_pids(ns)
        if not pids:
            return
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sig)
        deadline = time.monotonic() + (timeout if sig == signal.SIGTERM else 1)
        while time.monotonic() < deadline and _ns_pids(ns):
            time.sleep(0.05)


def _delete_ns(ns: str) -> None:
    _kill_ns_processes(ns)
    _ip(["netns", "del", ns], check=False)


def remove_stale(prefix: str) -> list[str]:
    """Delete namespaces named ``{prefix}-*`` left by a killed run (their processes first); return them."""
    stale = [n for n in netns_list() if n.startswith(f"{prefix}-")]
    for ns in stale:
        _delete_ns(ns)
    return stale


NEIGH_SYSCTL = "/proc/sys/net/ipv4/neigh/default/gc_thresh{}"


def ensure_neighbour_capacity(entries: int) -> None:
    """Raise the kernel's ARP table limits (shared by all namespaces) so `entries` neighbours fit.

    The defaults (gc_thresh3 = 1024) overflow in a boot storm of 1,000 devices: the kernel then drops
    unicast replies ("neighbor table overflow") and DHCP/TFTP exchanges are lost. Never lowers a limit.
    """
    wanted = {1: max(1024, entries // 4), 2: entries, 3: entries * 2}
    for index, value in wanted.items():
        path = Path(NEIGH_SYSCTL.format(index))
        try:
            if int(path.read_text()) < value:
                path.write_text(f"{value}\n")
        except (OSError, ValueError) as exc:
            raise LabError(f"cannot raise {path} to {value}: {exc}") from exc


class Lab:
    """Network namespaces joined by veth links; everything it made is torn down on exit (even on error).

    Namespaces are named ``{prefix}-{name}``; veth ends are created directly inside their namespaces
    (``ip -n``), so interface names are free per namespace and nothing ever appears in the host namespace.
    """

    def __init__(self, prefix: str | None = None) -> None:
        """Use ``prefix`` (stale namespaces with it are removed) or pick an unused ``z`` + 5 hex one."""
        if prefix is None:
            existing = netns_list()
            while True:
                prefix = "z" + secrets.token_hex(3)[:5]
                if not any(n.startswith(f"{prefix}-") for n in existing):
                    break
        else:
            if not prefix or "/" in prefix or any(c.isspace() for c in prefix):
                raise LabError(f"bad lab prefix {prefix!r}")
            remove_stale(prefix)
        self.prefix: str = prefix
        self._namespaces: list[str] = []
        self._procs: list[subprocess.Popen[bytes]] = []
        self._logs: dict[int, IO[bytes]] = {}
        self._ports: dict[str, int] = {}

    def __enter__(self) -> Lab:
        """Return the lab itself."""
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Tear everything down (see :meth:`cleanup`)."""
        self.cleanup()

    @property
    def namespaces(self) -> list[str]:
        """Full names of the namespaces this lab created, in creation order."""
        return list(self._namespaces)

    @property
    def processes(self) -> list[subprocess.Popen[bytes]]:
        """Processes started with :meth:`spawn` (running or not)."""
        return list(self._procs)

    # -- topology ---------------------------------------------------------------------------------------

    def ns(self, name: str) -> str:
        """Create namespace ``{prefix}-{name}`` with ``lo`` up and return its full name."""
        full = f"{self.prefix}-{name}"
        if full in self._namespaces:
            raise LabError(f"namespace {full} already created by this lab")
        if full in netns_list():
            _delete_ns(full)
        _ip(["netns", "add", full])
        self._namespaces.append(full)
        _ip(["-n", full, "link", "set", "lo", "up"])
        return full

    def link(
        self,
        ns_a: str,
        if_a: str,
        ns_b: str,
        if_b: str,
        *,
        addr_a: str | None = None,
        addr_b: str | None = None,
        mac_a: str | None = None,
        mac_b: str | None = None,
    ) -> None:
        """Join ``ns_a:if_a`` and ``ns_b:if_b`` with a veth pair, optionally addressed (CIDR), both up."""
        for ifname in (if_a, if_b):
            _check_ifname(ifname)
        _ip(["-n", ns_a, "link", "add", if_a, "type", "veth", "peer", "name", if_b, "netns", ns_b])
        self._configure(ns_a, if_a, addr=addr_a, mac=mac_a)
        self._configure(ns_b, if_b, addr=addr_b, mac=mac_b)

    def segment(self, name: str) -> str:
        """Create a namespace holding bridge ``br0`` (up): one switch segment to :meth:`attach` to."""
        seg = self.ns(name)
        _ip(["-n", seg, "link", "add", _BRIDGE, "type", "bridge"])
        # Forward immediately: the default 15 s STP/learning delay would eat the first DHCP exchanges.
        _ip(["-n", seg, "link", "set", _BRIDGE, "type", "bridge", "forward_delay", "0", "stp_state", "0"])
        _ip(["-n", seg, "link", "set", _BRIDGE, "up"])
        self._ports[seg] = 0
        return seg

    def attach(
        self, segment_ns: str, ns: str, ifname: str, *, addr: str | None = None, mac: str | None = None
    ) -> str:
        """Connect ``ns:ifname`` to a new port of ``segment_ns``'s ``br0``; return the port's name."""
        if segment_ns not in self._ports:
            raise LabError(f"{segment_ns} is not a segment of this lab (use Lab.segment)")
        self._ports[segment_ns] += 1
        port = f"p{self._ports[segment_ns]}"
        self.link(ns, ifname, segment_ns, port, addr_a=addr, mac_a=mac)
        _ip(["-n", segment_ns, "link", "set", port, "master", _BRIDGE])
        return port

    def add_addr(self, ns: str, ifname: str, cidr: str) -> None:
        """Add address ``cidr`` (e.g. ``10.60.0.1/24``) to ``ns:ifname``."""
        _ip(["-n", ns, "addr", "add", cidr, "dev", ifname])

    def _configure(self, ns: str, ifname: str, *, addr: str | None, mac: str | None) -> None:
        if mac is not None:
            _ip(["-n", ns, "link", "set", ifname, "address", mac])
        if addr is not None:
            self.add_addr(ns, ifname, addr)
        _ip(["-n", ns, "link", "set", ifname, "up"])

    # -- processes --------------------------------------------------------------------------------------

    def run(
        self,
        ns: str,
        argv: list[str],
        *,
        timeout: float = 30,
        check: bool = True,
        input: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` inside ``ns`` to completion (text output captured); LabError on failure/timeout."""
        cmd = ["ip", "netns", "exec", ns, *argv]
        try:
            res = subprocess.run(
                cmd, capture_output=True, text=True, timeout=timeout, input=input, check=False
            )
        except subprocess.TimeoutExpired as exc:
            raise LabError(f"timed out after {timeout}s in {ns}: {' '.join(argv)}") from exc
        if check and res.returncode != 0:
            raise LabError(
                f"in {ns}: {' '.join(argv)} exited {res.returncode}\n"
                f"stdout: {res.stdout.strip()}\nstderr: {res.stderr.strip()}"
            )
        return res

    def spawn(
        self, ns: str, argv: list[str], *, log: Path | None = None, env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        """Start ``argv`` inside ``ns`` in its own session, tracked for :meth:`cleanup`.

        stdout and stderr go to ``log`` when given (else discarded); ``env`` is added to this process's
        environment rather than replacing it, so PATH still finds the program.
        """
        out: IO[bytes] | int = subprocess.DEVNULL
        fh: IO[bytes] | None = None
        if log is not None:
            fh = open(log, "ab")  # closed in stop()/cleanup()
            out = fh
        full_env = None if env is None else {**os.environ, **env}
        try:
            proc = subprocess.Popen(
                ["ip", "netns", "exec", ns, *argv],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=full_env,
                start_new_session=True,
            )
        except BaseException:
            if fh is not None:
                fh.close()
            raise
        self._procs.append(proc)
        if fh is not None:
            self._logs[proc.pid] = fh
        return proc

    def stop(
        self, proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM, timeout: float = 5
    ) -> int | None:
        """Signal ``proc``'s process group, wait ``timeout`` s, then SIGKILL; return its exit code."""
        # Group signals only while the leader is unreaped, so the pgid cannot have been recycled; children
        # that outlive their leader are still caught by cleanup(), which empties the namespaces.
        if proc.poll() is None:
            _killpg(proc.pid, sig)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                _killpg(proc.pid, signal.SIGKILL)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=2)
        fh = self._logs.pop(proc.pid, None)
        if fh is not None:
            fh.close()
        return proc.returncode

    # -- waiting ----------------------------------------------------------------------------------------

    def wait_for(
        self, predicate: Callable[[], bool], timeout: float, what: str, interval: float = 0.05
    ) -> None:
        """Poll ``predicate`` until true; raise ``LabError(what)`` after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            if predicate():
                return
            if time.monotonic() >= deadline:
                raise LabError(f"timed out after {timeout}s waiting for {what}")
            time.sleep(interval)

    def udp_listening(self, ns: str, port: int) -> bool:
        """True if some UDP socket in ``ns`` is bound to ``port`` (``ss -uln``)."""
        res = self.run(ns, ["ss", "-H", "-u", "-l", "-n"], timeout=5, check=False)
        for line in res.stdout.splitlines():
            cols = line.split()
            # Columns: State Recv-Q Send-Q Local:Port Peer:Port; local may be "0.0.0.0%eth0:67".
            if len(cols) >= 4 and cols[3].rsplit(":", 1)[-1] == str(port):
                return True
        return False

    def wait_udp_listening(self, ns: str, port: int, timeout: float = 10) -> None:
        """Wait until a UDP socket in ``ns`` listens on ``port``; LabError on timeout."""
        self.wait_for(lambda: self.udp_listening(ns, port), timeout, f"UDP port {port} listening in {ns}")

    def ping(self, ns: str, addr: str, *, count: int = 1, timeout: float = 2) -> bool:
        """True if ``addr`` answers ICMP echo from inside ``ns`` within ``timeout`` seconds."""
        wait = max(1, int(timeout))
        res = self.run(
            ns, ["ping", "-c", str(count), "-W", str(wait), addr], timeout=timeout * count + 5, check=False
        )
        return res.returncode == 0

    # -- teardown ---------------------------------------------------------------------------------------

    def cleanup(self) -> None:
        """Kill spawned process groups and delete this lab's namespaces; idempotent, never raises."""
        try:
            live = [p for p in self._procs if p.poll() is None]
            for proc in live:
                _killpg(proc.pid, signal.SIGTERM)
            deadline = time.monotonic() + 3
            for proc in live:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            for proc in live:
                if proc.poll() is None:
                    _killpg(proc.pid, signal.SIGKILL)
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        proc.wait(timeout=1)
        except Exception:
            pass  # teardown must go on to the namespaces whatever happened
        for fh in self._logs.values():
            with contextlib.suppress(Exception):
                fh.close()
        self._logs.clear()
        # ip netns pids also finds what spawned programs forked or daemonized (dhclient without -d).
        for ns in reversed(self._namespaces):
            with contextlib.suppress(Exception):
                _delete_ns(ns)
        self._namespaces.clear()
        self._ports.clear()


def _killpg(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _check_ifname(ifname: str) -> None:
    if not ifname or len(ifname) > IFNAMSIZ or "/" in ifname or any(c.isspace() for c in ifname):
        raise LabError(f"bad interface name {ifname!r}: 1-{IFNAMSIZ} chars, no '/' or spaces")
