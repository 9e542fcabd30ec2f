"""`ztp agent`: boot one emulated switch (or a fleet of them) through a network interface.

One device::

    ztp agent --interface eth0 [--mac MAC] [--hostname NAME] [--vendor-class TEXT] [--client-id TEXT]
              [--out DIR] [--timeout S] [--json] [--stay [S]] [--release] [--broadcast]

A fleet (boot storm)::

    ztp agent --interface eth0 --count N [--concurrency C] [--mac-prefix PREFIX] [--json]

Booting like a vendor's switch (ztp.agent.profiles): its options 55/60/61/77, its way of reading the reply
and of fetching (HTTP or TFTP, the ONIE waterfall, the POAP script's MD5 line); a fleet can mix them::

    ztp agent --interface eth0 --profile eos|sonic|cumulus|junos|nxos-poap|iosxe-pnp|onie|generic [--serial S]
    ztp agent --interface eth0 --profile-mix eos=10,junos=5,onie=5 [--json]

Exit status (one device):
    0  provisioned: leased, boot file fetched (and written to --out)
    1  other error (no permission for the packet socket, interface, address configuration, writing)
    2  bad command line
    3  no offer within --timeout
    4  NAK: the server refused the request (3 NAKs, or the timeout ran out after a NAK)
    5  no boot file (or no boot server) in the ACK
    6  TFTP error (server ERROR, timeout, size not matching tsize)
    7  address conflict: every address offered was in use (DECLINEd) until --timeout
    8  the boot server's name could not be resolved with the option 6 DNS servers
    9  offers but no ACK within --timeout
   10  provisioned, but --confirm could not reach the appliance's API (or was refused)
Exit status (fleet): 0 when every device was provisioned, 1 otherwise.

Boot attempts (--boot-attempts N, default 3): like a switch's ZTP loop (EOS ZTP, POAP, SONiC ZTP, ONIE), a
device whose boot fails after DHCP (no boot file in the ACK, TFTP/HTTP fetch, DNS, vendor check) or whose
OFFER goes unACKed for 10 s forgets its address (no RELEASE; address and route off the interface), waits a
jittered backoff (1-2 s, 2-4 s, ... at most 16 s) and boots again from DISCOVER, all within --timeout; the
exit status is the last attempt's. --boot-attempts 1: one attempt, as before. The JSON result has
`attempts` and `attempt_failures` (stage, reason, exit_code, backoff of each earlier attempt).

--client-id TEXT becomes option 61 as type 0 followed by TEXT; ``hex:...`` gives the raw value.
With --count, --hostname NAME gives device i the name NAME-i (numbered from 1).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import logging
import math
import os
import signal
import sys
from pathlib import Path

from ztp.agent import profiles
from ztp.agent.confirm import post_confirm
from ztp.agent.device import (
    EXIT_ERROR,
    AgentOptions,
    ClientPortSink,
    Device,
    DeviceResult,
    DeviceSpec,
    InterfaceConfigurator,
)
from ztp.agent.dhcp_client import client_id_from_text
from ztp.agent.fleet import DEFAULT_MAC_PREFIX, Progress, fleet_macs, run_fleet
from ztp.agent.rawsock import ForeignMacIngress, PacketLink, mac_bytes
from ztp.agent.tftp_client import TftpOptions
from ztp.net.sockets import interface_mac

log = logging.getLogger("ztp.agent")
EXIT_CONFIRM = 10


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the `ztp agent` options (issue 3: these names are a contract) to `parser`."""
    parser.add_argument("--interface", "-i", required=True, help="interface to boot through")
    parser.add_argument("--mac", help="device MAC (default: the interface's own)")
    parser.add_argument("--hostname", help="option 12 host name (fleet: NAME-i)")
    parser.add_argument("--vendor-class", help="option 60 vendor class identifier")
    parser.add_argument("--client-id", help="option 61 client identifier (TEXT, or hex:...)")
    parser.add_argument("--out", type=Path, help="directory to write the boot file to")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds to get provisioned (default 60)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument("--boot-attempts", type=int, default=3, metavar="N",
                        help="boot again from DISCOVER after a failed fetch or an unACKed offer, N attempts in "
                             "all within --timeout (default 3; 1: give up after the first)")
    parser.add_argument("--stay", nargs="?", type=float, const=math.inf, default=None, metavar="SECONDS",
                        help="keep the lease (renew at T1, rebind at T2) until SIGTERM or for SECONDS")
    parser.add_argument("--release", action="store_true", help="send DHCPRELEASE and remove the address on exit")
    parser.add_argument("--count", type=int, default=None, help="boot a fleet of N devices")
    parser.add_argument("--concurrency", type=int, default=100, help="fleet devices in flight (default 100)")
    parser.add_argument("--mac-prefix", default=DEFAULT_MAC_PREFIX,
                        help=f"fleet MACs are PREFIX + device number (default {DEFAULT_MAC_PREFIX})")
    parser.add_argument("--broadcast", action="store_true", help="set the BOOTP broadcast flag (RFC 2131 §4.1)")
    parser.add_argument("--profile", help="boot like this vendor profile (eos, sonic, cumulus, junos, nxos-poap, "
                                          "iosxe-pnp, onie, generic)")
    parser.add_argument("--profile-mix", help="fleet of NAME=COUNT,... profiles (the count is their sum)")
    parser.add_argument("--serial", help="serial number a profile sends (default ZTP + the MAC's hex digits)")
    parser.add_argument("--blksize", type=int, default=1468, help="TFTP blksize to ask for (0: do not ask)")
    parser.add_argument("--windowsize", type=int, default=8, help="TFTP windowsize to ask for (1: do not ask)")
    parser.add_argument("--no-tsize", action="store_true", help="do not ask for the TFTP transfer size")
    parser.add_argument("--tftp-timeout", type=float, default=1.0, help="TFTP retransmit timeout (s)")
    parser.add_argument("--tftp-retries", type=int, default=5, help="TFTP retransmissions before failing")
    parser.add_argument("--arp-probes", type=int, default=2, help="ARP probes after the ACK (0: none)")
    parser.add_argument("--arp-wait", type=float, default=0.5, help="seconds to wait for an ARP reply")
    parser.add_argument("--decline-wait", type=float, default=10.0,
                        help="seconds to wait after a DECLINE before restarting (RFC 2131 §3.1: 10)")
    parser.add_argument("--no-configure", action="store_true",
                        help="do not add the leased address/route to the interface")
    parser.add_argument("--seed", type=int, default=None, help="random seed (xids, jitter)")
    parser.add_argument("--no-progress", action="store_true", help="no fleet progress output")
    parser.add_argument("--verbose", "-v", action="count", default=0, help="more log output on stderr")
    parser.add_argument("--confirm", action="store_true",
                        help="once provisioned, POST /api/devices/<mac>/confirm to the appliance (issue 11)")
    parser.add_argument("--confirm-url", metavar="URL",
                        help="the appliance's HTTP API (default: http://<DHCP server id>)")
    parser.add_argument("--token", default=os.environ.get("ZTP_TOKEN"),
                        help="http.token for --confirm (default: $ZTP_TOKEN)")


def _options(args: argparse.Namespace, *, fleet: bool) -> AgentOptions:
    tftp = TftpOptions(blksize=args.blksize or None, windowsize=args.windowsize if args.windowsize > 1 else None,
                       tsize=not args.no_tsize, timeout=args.tftp_timeout, retries=args.tftp_retries)
    return AgentOptions(interface=args.interface, timeout=args.timeout, out_dir=args.out, per_device_dir=fleet,
                        configure=not args.no_configure, tftp=tftp, arp_probes=args.arp_probes,
                        arp_wait=args.arp_wait, decline_wait=args.decline_wait, stay=args.stay,
                        release=args.release, boot_attempts=args.boot_attempts)


def _specs(args: argparse.Namespace, own_mac: bytes) -> list[DeviceSpec]:
    client_id = client_id_from_text(args.client_id) if args.client_id else None
    if args.count is None:
        mac = mac_bytes(args.mac).hex(":") if args.mac else own_mac.hex(":")
        spec = DeviceSpec(mac=mac, hostname=args.hostname, vendor_class=args.vendor_class,
                          client_id=client_id, broadcast=args.broadcast)
        return [_profiled(spec, args.profile, args.serial)] if args.profile else [spec]
    mix = profiles.parse_mix(args.profile_mix) if args.profile_mix else [(args.profile, args.count)]
    names = [name for name, n in mix for _ in range(n)]
    specs = []
    for i, mac in enumerate(fleet_macs(args.mac_prefix, args.count), start=1):
        spec = DeviceSpec(mac=mac, hostname=f"{args.hostname}-{i}" if args.hostname else None,
                          vendor_class=args.vendor_class,
                          client_id=client_id + str(i).encode() if client_id else None, broadcast=args.broadcast)
        name = names[i - 1]
        specs.append(_profiled(spec, name, f"{args.serial}{i}" if args.serial else None) if name else spec)
    return specs


def _profiled(spec: DeviceSpec, name: str, serial: str | None) -> DeviceSpec:
    """`spec` with a vendor profile's fingerprint (explicit --vendor-class/--client-id still win)."""
    profile = profiles.resolve(name)
    serial = serial or profiles.default_serial(spec.mac)
    vendor_class, client_id, user_class, prl = profiles.fingerprint_options(profile, serial=serial, mac=spec.mac)
    return dataclasses.replace(spec, profile=profile.name, serial=serial, user_class=user_class,
                               parameter_list=prl, vendor_class=spec.vendor_class or vendor_class,
                               client_id=spec.client_id or client_id)


def _print_result(res: DeviceResult, as_json: bool) -> None:
    if as_json:
        print(json.dumps(res.to_json(), indent=2, sort_keys=True))
        return
    if res.provisioned:
        print(f"{res.mac}: provisioned {res.ip}/{res.prefixlen} from {res.server_id} (lease {res.lease_time}s)")
        print(f"  boot file {res.boot_file} from {res.boot_server} ({res.boot_server_source}): "
              f"{res.bytes} bytes sha256 {res.sha256}" + (f" -> {res.path}" if res.path else ""))
    else:
        print(f"{res.mac}: FAILED at {res.stage}: {res.reason}")
    print("  " + "  ".join(f"{k} {v * 1e3:.1f}ms" for k, v in res.timings.items()))


async def _main(args: argparse.Namespace) -> int:
    loop = asyncio.get_running_loop()
    fleet = args.count is not None
    opts = _options(args, fleet=fleet)
    try:
        link = PacketLink(args.interface)
    except OSError as exc:
        print(f"ztp agent: cannot open a packet socket on {args.interface}: {exc} (needs root or CAP_NET_RAW)",
              file=sys.stderr)
        return EXIT_ERROR
    stop = asyncio.Event()
    main = asyncio.current_task()

    def on_signal() -> None:
        if stop.is_set() or opts.stay is None:
            if main is not None:
                main.cancel()
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal)
    sink = ClientPortSink() if opts.stay is not None else None
    host = InterfaceConfigurator(args.interface, enabled=opts.configure)
    try:
        link.start(loop)
        if sink is not None:
            sink.start(loop)
        specs = _specs(args, link.mac)
        foreign = [mac_bytes(s.mac) for s in specs if mac_bytes(s.mac) != link.mac]
        with ForeignMacIngress(args.interface, foreign):
            if not fleet:
                result = await Device(specs[0], link, host, opts).run(stop)
                _print_result(result, args.json)
                if args.confirm and result.provisioned:
                    base = args.confirm_url or f"http://{result.server_id}"
                    ok, said = await asyncio.to_thread(post_confirm, base, result.mac, args.token)
                    print(f"{result.mac}: confirm -> {said}", file=sys.stderr)
                    if not ok:
                        return EXIT_CONFIRM
                return result.exit_code
            progress = Progress(len(specs), enabled=not args.no_progress)
            summary = await run_fleet(specs, opts, concurrency=args.concurrency, link=link, host=host,
                                      stop=stop, progress=progress, seed=args.seed)
            if args.json:
                print(json.dumps(summary.to_json(), indent=1, sort_keys=True))
            else:
                print(summary.table())
            return 0 if summary.provisioned == summary.count else 1
    except asyncio.CancelledError:
        print("ztp agent: interrupted", file=sys.stderr)
        return 130
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        if sink is not None:
            sink.close(loop)
        host.close()
        link.close()


def run(args: argparse.Namespace) -> int:
    """Run `ztp agent` with parsed `args`; returns the exit status documented in this module."""
    level = logging.WARNING if args.count is not None else logging.INFO
    if args.verbose:
        level = logging.DEBUG if args.verbose > 1 else logging.INFO
    logging.basicConfig(level=level, stream=sys.stderr, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    if args.profile_mix:
        try:
            total = sum(n for _, n in profiles.parse_mix(args.profile_mix))
        except ValueError as exc:
            print(f"ztp agent: --profile-mix: {exc}", file=sys.stderr)
            return 2
        if args.count is not None and args.count != total:
            print(f"ztp agent: --count {args.count} differs from the --profile-mix total {total}", file=sys.stderr)
            return 2
        args.count = total
    if args.profile:
        try:
            profiles.resolve(args.profile)
        except ValueError as exc:
            print(f"ztp agent: --profile: {exc}", file=sys.stderr)
            return 2
    if args.boot_attempts < 1:
        print("ztp agent: --boot-attempts must be at least 1", file=sys.stderr)
        return 2
    if args.count is not None and args.count < 1:
        print("ztp agent: --count must be at least 1", file=sys.stderr)
        return 2
    if args.mac:
        try:
            mac_bytes(args.mac)
        except ValueError as exc:
            print(f"ztp agent: {exc}", file=sys.stderr)
            return 2
    try:
        interface_mac(args.interface)
    except OSError as exc:
        print(f"ztp agent: interface {args.interface}: {exc}", file=sys.stderr)
        return EXIT_ERROR
    return asyncio.run(_main(args))


def main(argv: list[str] | None = None) -> int:
    """Stand-alone entry point (`python -m ztp.agent.cli`)."""
    parser = argparse.ArgumentParser(prog="ztp agent", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
