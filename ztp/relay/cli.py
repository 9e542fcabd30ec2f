"""`ztp relay`: command-line options and entry point of the DHCP relay agent."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
from ipaddress import IPv4Address
from pathlib import Path

from ztp.relay.agent import InterfaceError, RelayAgent, lookup_interface, resolve_interface
from ztp.relay.policy import DEFAULT_MAX_HOPS, HOPS_LIMIT, RelayPolicy, RelaySettings

log = logging.getLogger("ztp.relay")


def _max_hops(text: str) -> int:
    value = int(text)
    if not 0 <= value <= HOPS_LIMIT:
        raise argparse.ArgumentTypeError(f"must be 0..{HOPS_LIMIT} (RFC 1542 §4.1.1)")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the relay's options to `parser` (the `ztp relay` subcommand or a stand-alone parser)."""
    parser.add_argument(
        "--client-interface", action="append", required=True, metavar="IF",
        help="interface facing clients (repeatable); a network such as 10.70.0.0/24 names the interface "
        "holding an address in it. Its primary IPv4 address becomes giaddr",
    )
    parser.add_argument(
        "--server", action="append", required=True, type=IPv4Address, metavar="ADDR",
        help="DHCP server to relay to (repeatable); every request goes to each of them",
    )
    parser.add_argument(
        "--circuit-id", metavar="TEXT",
        help="option 82 circuit-id; '{interface}' is replaced by the client interface (default: its name)",
    )
    parser.add_argument(
        "--remote-id", metavar="TEXT",
        help="option 82 remote-id; '{interface}' is replaced (default: the client interface's MAC, 6 bytes)",
    )
    parser.add_argument(
        "--max-hops", type=_max_hops, default=DEFAULT_MAX_HOPS, metavar="N",
        help=f"drop requests whose hops field exceeds N (default {DEFAULT_MAX_HOPS}, at most {HOPS_LIMIT})",
    )
    parser.add_argument(
        "--trusted-interface", action="append", default=[], metavar="IF",
        help="client interface whose requests may already carry option 82 with giaddr 0 (a snooping "
        "switch below); elsewhere such requests are dropped (RFC 3046 §2.1)",
    )
    parser.add_argument(
        "--bindings-file", type=Path, metavar="FILE",
        help="keep this file updated with the binding table and counters as JSON",
    )
    parser.add_argument("--verbose", "-v", action="store_true", help="debug logging")


def run(args: argparse.Namespace) -> int:
    """Run the relay until SIGTERM/SIGINT; 0 on a clean stop, 2 on a configuration problem."""
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.verbose:
        logging.getLogger("ztp").setLevel(logging.DEBUG)
    try:
        names = [resolve_interface(spec) for spec in args.client_interface]
        trusted = {resolve_interface(spec) for spec in args.trusted_interface}
        unknown = trusted - set(names)
        if unknown:
            bad = ", ".join(sorted(unknown))
            raise InterfaceError(f"--trusted-interface {bad} is not a --client-interface")
        if len(set(names)) != len(names):
            raise InterfaceError(f"a client interface is given twice: {', '.join(names)}")
        interfaces = tuple(lookup_interface(name, trusted=name in trusted) for name in names)
        settings = RelaySettings(
            servers=tuple(dict.fromkeys(args.server)),
            circuit_id=args.circuit_id,
            remote_id=args.remote_id,
            max_hops=args.max_hops,
        )
    except (InterfaceError, ValueError) as exc:
        log.error("%s", exc)
        return 2
    agent = RelayAgent(RelayPolicy(interfaces, settings), bindings_file=args.bindings_file)
    try:
        agent.open()
    except OSError as exc:
        log.error("cannot bind the relay's sockets: %s", exc)
        return 2
    try:
        asyncio.run(_serve(agent))
    finally:
        agent.close()
    return 0


async def _serve(agent: RelayAgent) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await agent.serve(stop)
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)


def main(argv: list[str] | None = None) -> int:
    """Stand-alone entry point: `python -m ztp.relay.cli ...`."""
    parser = argparse.ArgumentParser(prog="ztp relay", description="DHCP relay agent (RFC 1542, RFC 3046)")
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
