"""DHCP server policy as small handlers, one rule each; `ztp.dhcp.chain` puts them in order.

Each handler is `(Request, Reply) -> Reply | Proposal` (see `ztp.dhcp.exchange`): it reads the request
and the reply built so far, and returns the reply for the next handler or a Proposal that ends the chain.
A new rule is a new module here plus one line in `ztp.dhcp.chain.default_handlers`.
"""
