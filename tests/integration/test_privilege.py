"""Issue 10, least privilege: `ztp serve` with `user:` binds its ports as root, then runs as that user with
only CAP_NET_ADMIN and CAP_NET_RAW, and still serves DHCP (with conflict probes and ARP-injected unicast
replies) and TFTP; the lease database it writes belongs to that user."""

from __future__ import annotations

import pwd
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import skip_or_fail
from tests.integration.appliance import ZTP, ApplianceLab, write_config
from ztp.lab import Lab
from ztp.privilege import CAP_NET_ADMIN, CAP_NET_RAW, effective_capabilities

USER = "nobody"  # present on every Debian system; the README's `useradd --system ztp` is the real setup


@pytest.fixture
def state_dir() -> Iterator[Path]:
    # Under /tmp with traversable parents: pytest's own tmp directories are root-only (0700), and the
    # service user must reach its state directory by path (SQLite opens its -wal and -shm files by name).
    path = Path(tempfile.mkdtemp(prefix="ztp-priv-", dir="/tmp"))
    path.chmod(0o755)
    try:
        yield path / "state"
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def appliance(lab: Lab, tmp_path: Path, state_dir: Path) -> Iterator[ApplianceLab]:
    try:
        entry = pwd.getpwnam(USER)
    except KeyError:
        skip_or_fail(f"needs a user {USER!r}")
    cfg = write_config(tmp_path, dns=False, config_extra=f"user: {USER}\n")
    cfg.write_text(cfg.read_text().replace(f"state_dir: {tmp_path / 'state'}", f"state_dir: {state_dir}"))
    app = ApplianceLab(lab=lab, tmp=tmp_path, config=cfg).build()
    app.start()
    app.lab.wait_for(lambda: "running as" in app.log.read_text(), 10, "ztp serve switched user")
    app.uid = entry.pw_uid  # type: ignore[attr-defined]
    yield app
    if app.proc is not None:
        app.stop()


def _status(pid: int) -> dict[str, str]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        out[key] = value.strip()
    return out


def test_serve_runs_as_the_user_with_two_capabilities_and_still_serves(appliance: ApplianceLab,
                                                                       state_dir: Path) -> None:
    assert appliance.proc is not None
    pid = appliance.proc.pid  # `ip netns exec` execs ztp in place: the same process
    uid = appliance.uid  # type: ignore[attr-defined]
    status = _status(pid)
    assert status["Name"].startswith("python"), status["Name"]
    assert status["Uid"].split() == [str(uid)] * 4
    assert status["Gid"].split()[0] != "0" and status["Groups"] == ""
    assert effective_capabilities(pid) == (1 << CAP_NET_ADMIN) | (1 << CAP_NET_RAW)
    assert int(status["CapBnd"], 16) == (1 << CAP_NET_ADMIN) | (1 << CAP_NET_RAW)
    assert status["NoNewPrivs"] == "1"
    # DHCP: a reservation (leaf01) and a pool address (probed first) to real dhclients; TFTP: the config.
    leaf = appliance.client("c1", "02:00:00:00:00:01")
    assert appliance.dhclient(leaf)["new_ip_address"] == "10.60.0.11"
    other = appliance.client("c2", "02:77:00:00:02:01")
    assert appliance.dhclient(other)["new_ip_address"] == "10.60.0.100"
    out = appliance.tmp / "leaf01.cfg"
    appliance.lab.run(leaf, ["tftp", "-m", "binary", "10.60.0.1", "-c", "get", "leaf01.cfg", str(out)], timeout=20)
    assert out.read_bytes() == appliance.rendered(hostname="leaf01")
    log = appliance.log.read_text()
    assert "probing 10.60.0.100 before offering it" in log and "cannot open an ICMP socket" not in log
    # The leases were written as the user, into the state directory it was given.
    db = state_dir / "leases.sqlite3"
    assert db.stat().st_uid == uid and state_dir.stat().st_uid == uid
    # ... by the lease writer process: started as root before the switch, now the user with no capability.
    children = [int(c) for task in Path(f"/proc/{pid}/task").iterdir()
                for c in (task / "children").read_text().split()]
    (writer,) = [c for c in children if b"ztp.rowwriter" in Path(f"/proc/{c}/cmdline").read_bytes()]
    assert _status(writer)["Uid"].split() == [str(uid)] * 4 and _status(writer)["Groups"] == ""
    assert effective_capabilities(writer) == 0 and int(_status(writer)["CapBnd"], 16) == 0
    appliance.stop()
    log = appliance.log.read_text()
    stopped = next(line for line in log.splitlines() if "ztp stopped; dhcp counters" in line)
    # dhclient asks for unicast replies: they went out through ARP-cache injection (SIOCSARP, CAP_NET_ADMIN).
    assert "arp_fallback_broadcast" not in stopped and "cannot add ARP entries" not in log, stopped
    assert "'commit_failed'" not in stopped
    assert appliance.ztp("leases", "--json").stdout.count('"state": "bound"') == 2


def test_a_missing_user_stops_the_start_saying_how_to_create_it(lab: Lab, tmp_path: Path) -> None:
    cfg = write_config(tmp_path, dns=False, config_extra="user: ztp-no-such-user\n")
    app = ApplianceLab(lab=lab, tmp=tmp_path, config=cfg).build()
    proc = lab.spawn(app.srv, [*ZTP, "serve", "--config", str(cfg)], log=app.log)
    lab.wait_for(lambda: proc.poll() is not None, 20, "ztp serve exits")
    assert proc.returncode == 1
    assert "useradd --system" in app.log.read_text() and "ztp-no-such-user" in app.log.read_text()
    check = app.ztp("check", "--here")
    assert check.returncode != 0 and "ztp-no-such-user" in check.stdout + check.stderr
