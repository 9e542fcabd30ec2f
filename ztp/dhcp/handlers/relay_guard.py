"""Who may relay (RFC 2131 §4.1: giaddr names the relay's link; RFC 3046 §2.1 trusts relays to be who they
say): a relayed request is served only from a relay the configuration allows.

With `dhcp.relays` (addresses or networks) both the datagram's source address and giaddr must lie in it;
without it giaddr must at least lie in a configured subnet, so that a forged giaddr cannot pick a subnet
the appliance does not serve (RFC 3527 link-selection relays whose giaddr lies outside the subnets need
`dhcp.relays`). A renewing client's unicast (giaddr 0) is no relay and passes.
"""

from __future__ import annotations

import logging
from ipaddress import IPv4Address, IPv4Network

from ztp.config import Config
from ztp.dhcp.exchange import Proposal, Reply, Request, silent
from ztp.ipkey import ip_key, is_zero


class RelayGuard:
    """Ends the chain, silently and counted (`relay_refused`), for a relayed request from a relay that is
    not allowed."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.relays: tuple[IPv4Network, ...] = config.relays
        # Relays are few and send again and again: each address is judged once (bounded: a forged giaddr
        # per packet must not grow this; past the cap the verdict is just not remembered).
        self._verdict: dict[tuple[int, int], bool] = {}  # by (peer, giaddr) (ipkey.ip_key)

    def allowed(self, peer: IPv4Address, giaddr: IPv4Address) -> bool:
        """Whether a datagram from `peer` carrying `giaddr` may be served."""
        key = (ip_key(peer), ip_key(giaddr))
        verdict = self._verdict.get(key)
        if verdict is None:
            if self.relays:
                verdict = any(peer in net for net in self.relays) and any(giaddr in net for net in self.relays)
            else:
                verdict = self.config.subnet_for(giaddr) is not None
            if len(self._verdict) < 4096:
                self._verdict[key] = verdict
        return verdict

    def __call__(self, req: Request, reply: Reply) -> Reply | Proposal:
        """Pass direct requests; refuse a relayed one from a relay that is not allowed."""
        giaddr = req.pkt.giaddr
        if is_zero(giaddr) or self.allowed(req.ingress.peer, giaddr):
            return reply
        why = "not in dhcp.relays" if self.relays else "giaddr in no configured subnet (and dhcp.relays unset)"
        return silent("relayed by %s (giaddr %s): %s; ignored", req.ingress.peer, giaddr, why,
                      level=logging.WARNING, counter="relay_refused")
