"""Vendor boot options: the options a switch family reads to find its config (ztp.vendors).

The profile is the device's own inventory `vendor:`, else the one its request's fingerprint (options 60,
61, 77, 55) recognises, else `defaults.vendor`; generic-tftp adds nothing (BootFile's 66/67 are its
options). Layer order stays global < defaults < subnet < vendor profile < device: this runs after
`LayeredOptions` and leaves every option the device's own `options:` set, so a device can still override
what its profile sends. BootFile runs next and fills 66/67 only where the profile left them unset.
"""

from __future__ import annotations

from ipaddress import IPv4Address

from ztp.config import Config
from ztp.devices import boot_file_name
from ztp.dhcp import options as o
from ztp.dhcp.exchange import Proposal, Reply, Request
from ztp.vendors import recognise
from ztp.vendors.boot import boot_context, choose_profile
from ztp.vendors.profile import PROVISION_URL, USER_CLASS, VI_VENDOR_CLASS, Fingerprint

_POAP_TYPE = b"\x00"


class VendorOptions:
    """Adds the chosen profile's boot options under the device's own options."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.inventory = config.inventory
        # Per (server address, device, profile) for inventory devices: the key space is bounded by the
        # configuration (a reload builds a new chain), and the options do not depend on anything else.
        self._cache: dict[tuple[IPv4Address, int, str], dict[int, bytes]] = {}

    def _fingerprint(self, req: Request) -> Fingerprint | None:
        opts = req.pkt.options
        vendor = opts.get(o.VENDOR_CLASS)
        user = opts.get(USER_CLASS)
        client_id = opts.get(o.CLIENT_ID)
        prl = opts.get(o.PARAMETER_LIST, b"")
        # Most requests carry none of what a profile recognises: skip building a fingerprint for them.
        if not (vendor or user or (client_id and client_id[:1] == _POAP_TYPE) or PROVISION_URL in prl
                or VI_VENDOR_CLASS in opts):
            return None
        return Fingerprint(vendor_class=vendor, client_id=client_id, user_class=user,
                           vi_vendor_class=opts.get(VI_VENDOR_CLASS), parameter_list=prl)

    def __call__(self, req: Request, reply: Reply) -> Reply | Proposal:
        """Merge the profile's boot options into the reply, under the device's own options."""
        if reply.subnet is None:
            return reply
        device = reply.device
        if device is None or not device.vendor:
            fp = self._fingerprint(req)
            seen = recognise(fp) if fp is not None else None
            # Kept in the lease (RecordLease): templates branch on the vendor the device turned out to be.
            # "": it said what it is (60, 77, ...) and no profile recognised it; None: it said nothing.
            if fp is not None:
                reply.vendor = seen.name if seen is not None else ""
            profile = seen if seen is not None else choose_profile(self.inventory, device, None)
        else:
            profile = choose_profile(self.inventory, device, None)
        if not profile.name or profile.name == "generic-tftp":
            return reply
        boot = None
        key = (reply.server_id, id(device), profile.name)
        if device is not None:
            boot = self._cache.get(key)
        if boot is None:
            name = boot_file_name(self.inventory, device, req.mac)
            if name is None:
                return reply
            boot = profile.boot_options(boot_context(self.config, device, reply.server_id, name))
            if device is not None:
                self._cache[key] = boot
        own = device.options if device is not None else {}
        opts = reply.options
        for code, value in boot.items():
            if code not in own:
                opts[code] = value
        return reply
