"""A throwaway PostgreSQL cluster for one test run (Debian's `postgresql` package, no mocks).

`initdb` into a temporary directory; the postmaster listens on a unix socket in that directory only
(`listen_addresses = ''`: never on an interface of the host); it runs as the `postgres` user when the tests
run as root (PostgreSQL refuses root). It is stopped by the PID this module started, at the end of the
session and, should the session die first, at interpreter exit.
"""

from __future__ import annotations

import atexit
import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

PORT = 5432  # names the socket file (.s.PGSQL.5432) in our private directory; nothing listens on TCP


def postgres_bin() -> Path | None:
    """The newest installed server's bin directory (/usr/lib/postgresql/N/bin), or None."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                   key=lambda p: int(Path(p).parent.parent.name) if Path(p).parent.parent.name.isdigit() else 0)
    return Path(found[-1]).parent if found else None


class PgCluster:
    """One running cluster; `database()` makes a fresh, empty database and returns its DSN."""

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.root = Path(tempfile.mkdtemp(prefix="ztp-pg-"))
        self.data = self.root / "data"
        self.sock = self.root / "sock"
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = self.root / "postgres.log"
        self._user: str | None = "postgres" if os.geteuid() == 0 else None

    def _as_owner(self) -> dict[str, Any]:
        if self._user is None:
            return {}
        return {"user": self._user, "group": self._user, "extra_groups": []}

    def start(self) -> None:
        """initdb (the first time) and start; RuntimeError with the server log when it is not up in 60 s."""
        if not self.data.exists():
            self.sock.mkdir(mode=0o700)
            if self._user is not None:
                pw = pwd.getpwnam(self._user)
                os.chmod(self.root, 0o755)
                for path in (self.root, self.sock):
                    os.chown(path, pw.pw_uid, pw.pw_gid)
            subprocess.run([str(self.bindir / "initdb"), "-D", str(self.data), "-U", "postgres", "-A", "trust",
                            "-E", "UTF8", "--no-sync"], check=True, capture_output=True, **self._as_owner())
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [str(self.bindir / "postgres"), "-D", str(self.data), "-k", str(self.sock), "-p", str(PORT),
                 "-c", "listen_addresses=", "-c", "fsync=on", "-c", "synchronous_commit=on",
                 "-c", "max_connections=100", "-c", "shared_buffers=32MB"],
                stdout=out, stderr=subprocess.STDOUT, start_new_session=True, **self._as_owner())
        atexit.register(self.stop)  # once per start: stop() is idempotent
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            if self._ready():
                return
            time.sleep(0.2)
        log = self.log.read_text(errors="replace")[-2000:]
        self.stop()
        raise RuntimeError(f"PostgreSQL did not start in {self.root}:\n{log}")

    def _ready(self) -> bool:
        import psycopg

        try:
            with psycopg.connect(self.dsn("postgres"), connect_timeout=2):
                return True
        except psycopg.Error:
            return False

    def dsn(self, dbname: str) -> str:
        """A libpq DSN for `dbname` over our unix socket."""
        return f"host={self.sock} port={PORT} user=postgres dbname={dbname}"

    def database(self) -> str:
        """A new empty database; its DSN."""
        import psycopg

        name = f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.dsn("postgres"), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")  # type: ignore[arg-type]
        return self.dsn(name)

    def stop(self) -> None:
        """Fast shutdown of the postmaster we started (by PID), SIGKILL after 20 s; remove the directory."""
        self.halt()
        shutil.rmtree(self.root, ignore_errors=True)

    def halt(self) -> None:
        """Fast shutdown of the postmaster we started (by PID), SIGKILL after 20 s; the data stays (an outage)."""
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGINT)  # "fast" shutdown: roll back sessions, checkpoint, exit
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
