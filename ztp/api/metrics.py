"""`/metrics`: Prometheus exposition of the appliance, names `ztp_<area>_<what>_<unit>`.

Nothing is counted on the packet paths for it: the collector reads, at scrape time, the counters the
servers and the timeline recorder already keep (DHCP messages by type and outcome are tallied by the
recorder in its batches), the devices per state and the pools' use from the lease table.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ztp.config import Config
from ztp.leases.table import LeaseTable
from ztp.timeline.recorder import Recorder

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_RENDER_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)


def pool_use(config: Config, table: LeaseTable, now: float) -> list[tuple[str, int, int]]:
    """(subnet, pool size, addresses in use) per subnet with a pool: O(leases) at scrape time."""
    out: list[tuple[str, int, int]] = []
    pools = [(s, int(s.pool_start), int(s.pool_end)) for s in config.subnets
             if s.pool_start is not None and s.pool_end is not None]
    used = dict.fromkeys((str(s.network) for s, _, _ in pools), 0)
    for lease in table.leases():
        if not lease.active(now):
            continue
        ip = int(lease.ip)
        for subnet, first, last in pools:
            if first <= ip <= last:
                used[str(subnet.network)] += 1
                break
    for subnet, first, last in pools:
        out.append((str(subnet.network), last - first + 1, used[str(subnet.network)]))
    return out


class ApplianceCollector(Collector):
    """Reads the appliance's counters at scrape time."""

    def __init__(self, recorder: Recorder, config: Callable[[], Config], table: LeaseTable,
                 dhcp_counters: Callable[[], Mapping[str, int]], tftp_counters: Callable[[], Mapping[str, int]],
                 clock: Callable[[], float]) -> None:
        self.recorder = recorder
        self.config = config
        self.table = table
        self.dhcp_counters = dhcp_counters
        self.tftp_counters = tftp_counters
        self.clock = clock

    def collect(self) -> Iterator[Metric]:
        """Every metric family, fresh."""
        messages = CounterMetricFamily("ztp_dhcp_messages", "DHCP requests decided, by message type and outcome "
                                       "(the reply sent, or why none)", labels=["type", "outcome"])
        for (mtype, outcome), n in sorted(self.recorder.dhcp_messages.items()):
            messages.add_metric([mtype, outcome], n)
        yield messages
        server = CounterMetricFamily("ztp_dhcp_server_events", "DHCP server counters (received, sent, "
                                     "malformed, refusals)", labels=["event"])
        for name, n in sorted(self.dhcp_counters().items()):
            server.add_metric([name], n)
        yield server
        tftp = self.tftp_counters()
        transfers = CounterMetricFamily("ztp_tftp_transfers", "TFTP transfers by outcome", labels=["outcome"])
        for outcome in ("completed", "failed", "refused", "busy"):
            transfers.add_metric([outcome], tftp.get(outcome, 0))
        yield transfers
        yield CounterMetricFamily("ztp_tftp_sent_bytes", "Bytes sent in TFTP DATA", value=tftp.get("bytes_sent", 0))
        yield CounterMetricFamily("ztp_tftp_retransmits", "TFTP blocks sent again after a timeout",
                                  value=tftp.get("retransmits", 0))
        yield GaugeMetricFamily("ztp_tftp_sessions_active", "TFTP transfers running", value=tftp.get("active", 0))
        states = GaugeMetricFamily("ztp_devices", "Devices by provisioning state", labels=["state"])
        for state, n in self.recorder.machine.counts().items():
            states.add_metric([state], n)
        yield states
        size = GaugeMetricFamily("ztp_pool_size_addresses", "Addresses in each dynamic pool", labels=["subnet"])
        used = GaugeMetricFamily("ztp_pool_used_addresses", "Pool addresses offered, bound or held",
                                 labels=["subnet"])
        for subnet, total, n in pool_use(self.config(), self.table, self.clock()):
            size.add_metric([subnet], total)
            used.add_metric([subnet], n)
        yield size
        yield used
        yield CounterMetricFamily("ztp_timeline_events", "Device timeline events recorded",
                                  value=self.recorder.counters.get("events", 0))
        yield CounterMetricFamily("ztp_timeline_dropped", "Observations not recorded: the timeline's queue "
                                  "was full (a storm longer than it holds)",
                                  value=self.recorder.counters.get("queue_dropped", 0))


class Metrics:
    """The registry behind `/metrics`: the collector plus the render-time histogram."""

    def __init__(self, collector: ApplianceCollector) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(collector)
        self.recorder = collector.recorder
        self.render = Histogram("ztp_render_duration_seconds", "Time to render one device config",
                                buckets=_RENDER_BUCKETS, registry=self.registry)

    def exposition(self) -> bytes:
        """The text format (render times gathered by the recorder since the last scrape go in first)."""
        pending, self.recorder.render_seconds[:] = list(self.recorder.render_seconds), []
        for seconds in pending:
            self.render.observe(seconds)
        return generate_latest(self.registry)
