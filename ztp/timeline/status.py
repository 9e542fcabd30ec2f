"""`ztp status`: the device table from the stored timeline, without a running server."""

from __future__ import annotations

import time

from ztp.config import Config
from ztp.timeline.machine import STAGES, DeviceTimeline, Timeouts
from ztp.timeline.store import open_timeline, timeline_path


def load_timeline(config: Config, now: float) -> DeviceTimeline:
    """Every device's state rebuilt from the stored timeline (read-only), missed deadlines applied at `now`."""
    machine = DeviceTimeline(Timeouts(offered=config.timeline.offer_timeout, bound=config.timeline.fetch_timeout,
                                      delivered=config.timeline.confirm_timeout))
    if config.state.backend != "postgresql" and not timeline_path(config.state_dir).exists():
        return machine
    store = open_timeline(config, read_only=True)  # the shared database's: every appliance's events
    try:
        machine.replay(store.load(now - config.timeline.retention_days * 86400))
    finally:
        store.close()
    machine.handle_timer(now)
    return machine


def _age(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.0f}s"
    if seconds < 3600:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"


def device_table(config: Config, machine: DeviceTimeline, now: float | None = None) -> str:
    """Counts per state, then one line per device (hostname, MAC, IP, state, time in state, last event)."""
    now = time.time() if now is None else now
    counts = machine.counts()
    lines = ["  ".join(f"{s.value} {counts[s.value]}" for s in STAGES)]
    lines.append(f"{'DEVICE':<18} {'MAC':<18} {'IP':<16} {'STATE':<10} {'IN STATE':>8}  LAST EVENT / REASON")
    for status in sorted(machine.devices.values(), key=lambda s: s.key):
        what = status.reason if status.reason else status.last_text
        if status.failed_stage is not None:
            what = f"at {status.failed_stage.value}: {what}"
        lines.append(f"{status.key:<18} {status.mac or '-':<18} {status.ip or '-':<16} {status.state.value:<10} "
                     f"{_age(now - status.since):>8}  {what}")
    seen = set(machine.devices)
    waiting = [d.hostname for d in config.inventory.devices if d.hostname not in seen]
    if waiting:
        lines.append(f"not heard from: {', '.join(waiting)}")
    return "\n".join(lines) + "\n"
