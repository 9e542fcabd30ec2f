"""Per-client and per-relay rate limits: one client (or one relay) cannot take the single event loop's time
from everyone else. Token buckets in bounded tables (`ztp.ratelimit`): a flood of spoofed MACs evicts the
least recently seen buckets instead of growing memory."""

from __future__ import annotations

import logging

from ztp.config import Config
from ztp.dhcp.exchange import Proposal, Reply, Request, silent
from ztp.ipkey import ip_key, is_zero
from ztp.ratelimit import SourceRateLimiter

MAX_CLIENTS = 65536  # buckets kept per table: far above a hall's devices, a few MB at most
MAX_RELAYS = 4096


class RateLimit:
    """Drops (counted `rate_limited_client` / `rate_limited_relay`) a request over `dhcp.rate_limit` per
    client key or `dhcp.relay_rate_limit` per relay (giaddr, and the source address it came from)."""

    def __init__(self, config: Config) -> None:
        self.clients = SourceRateLimiter(config.rate_limit, max_sources=MAX_CLIENTS)
        self.relays = SourceRateLimiter(config.relay_rate_limit, max_sources=MAX_RELAYS)

    def __call__(self, req: Request, reply: Reply) -> Reply | Proposal:
        """Take a token for the client and, for a relayed request, for its relay."""
        giaddr = req.pkt.giaddr
        if not is_zero(giaddr) and not self.relays.allow(ip_key(giaddr), req.now):
            return silent("relay %s over dhcp.relay_rate_limit (%s/s); dropped", giaddr, self.relays.rate,
                          counter="rate_limited_relay")
        if not self.clients.allow(req.client, req.now):
            return silent("client over dhcp.rate_limit (%s/s); dropped", self.clients.rate,
                          level=logging.DEBUG, counter="rate_limited_client")
        return reply
