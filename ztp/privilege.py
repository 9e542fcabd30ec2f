"""Least privilege for `ztp serve`: once its ports and raw sockets are open, become the unprivileged `user:`
and keep only the capabilities still needed (capabilities(7), prctl(2), capset(2), through ctypes).

Kept: CAP_NET_RAW (ICMP conflict probes and raw sockets opened later) and CAP_NET_ADMIN (ARP-cache
injection with SIOCSARP so a unicast OFFER reaches a client without an address, RFC 2131 §4.1; forced
socket buffer sizes for TFTP sessions). Everything else is dropped from the bounding set too, and
no_new_privs is set, so nothing the process runs later can regain root.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import pwd
from collections.abc import Iterable
from pathlib import Path
from typing import Final

log = logging.getLogger("ztp")

CAP_NET_ADMIN: Final = 12
CAP_NET_RAW: Final = 13
KEPT: Final = (CAP_NET_ADMIN, CAP_NET_RAW)
PR_CAPBSET_DROP: Final = 24
PR_SET_KEEPCAPS: Final = 8
PR_SET_NO_NEW_PRIVS: Final = 38
_LINUX_CAPABILITY_VERSION_3: Final = 0x20080522


class PrivilegeError(OSError):
    """The switch to `user:` is impossible as configured; the message says what to do."""


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                ("inheritable", ctypes.c_uint32)]


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def _prctl(libc: ctypes.CDLL, option: int, arg: int) -> None:
    if libc.prctl(option, ctypes.c_ulong(arg), ctypes.c_ulong(0), ctypes.c_ulong(0), ctypes.c_ulong(0)) != 0:
        err = ctypes.get_errno()
        raise PrivilegeError(err, f"prctl({option}): {os.strerror(err)}")


def _capset(libc: ctypes.CDLL, caps: Iterable[int]) -> None:
    mask = [0, 0]
    for cap in caps:
        mask[cap // 32] |= 1 << (cap % 32)
    header = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)(*(_CapData(m, m, 0) for m in mask))
    if libc.capset(ctypes.byref(header), data) != 0:
        err = ctypes.get_errno()
        raise PrivilegeError(err, f"capset: {os.strerror(err)}")


def _last_cap() -> int:
    try:
        return int(Path("/proc/sys/kernel/cap_last_cap").read_text())
    except (OSError, ValueError):
        return 40


def lookup_user(user: str) -> pwd.struct_passwd:
    """The passwd entry of `user` (a name or a numeric uid); PrivilegeError saying how to create it."""
    try:
        return pwd.getpwuid(int(user)) if user.isdigit() else pwd.getpwnam(user)
    except KeyError:
        raise PrivilegeError(f"user {user!r} (config key user:) does not exist; create it with "
                             f"`useradd --system --no-create-home --shell /usr/sbin/nologin {user}`") from None


def own_state_dir(state_dir: Path, uid: int, gid: int) -> None:
    """Give `state_dir` and what it holds (the lease database and its WAL) to the service user."""
    state_dir.mkdir(parents=True, exist_ok=True)
    for path in (state_dir, *state_dir.rglob("*")):
        if path.is_symlink():
            continue  # never follow a link out of the state directory
        st = path.lstat()
        if st.st_uid != uid or st.st_gid != gid:
            os.chown(path, uid, gid, follow_symlinks=False)


def drop_privileges(user: str, *, state_dir: Path, keep: Iterable[int] = KEPT) -> None:
    """Switch the process to `user` (uid, gid, no supplementary groups) keeping only `keep` capabilities.

    Already running as `user`: nothing to do. Not root: PrivilegeError (only root can switch users).
    Capabilities are per thread: the calling (event-loop) thread keeps `keep`; threads started before
    the switch lose every capability with root, which they never needed. The SQLite lease writer process
    calls this itself with `keep=()` once its database is open.
    """
    entry = lookup_user(user)
    uid, gid = entry.pw_uid, entry.pw_gid
    if os.geteuid() == uid:
        return
    if os.geteuid() != 0:
        raise PrivilegeError(f"cannot switch to user {user!r}: ztp serve is not running as root")
    if uid == 0:
        raise PrivilegeError(f"user: {user!r} is root; name an unprivileged user (useradd --system ztp)")
    own_state_dir(state_dir, uid, gid)
    kept = set(keep)
    libc = _libc()
    for cap in range(_last_cap() + 1):
        if cap not in kept:
            _prctl(libc, PR_CAPBSET_DROP, cap)
    _prctl(libc, PR_SET_KEEPCAPS, 1)
    os.setgroups([])
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)
    _capset(libc, kept)
    _prctl(libc, PR_SET_KEEPCAPS, 0)
    _prctl(libc, PR_SET_NO_NEW_PRIVS, 1)
    log.info("running as %s (uid %d, gid %d) with only CAP_NET_ADMIN and CAP_NET_RAW", user, uid, gid)


def effective_capabilities(pid: int | str = "self") -> int:
    """CapEff of a process as a bit mask (from /proc/<pid>/status)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("CapEff:"):
            return int(line.split()[1], 16)
    return 0
