"""The emulated IOS-XE PnP agent's side of Cisco Plug and Play over HTTP (``ztp agent --profile iosxe-pnp``).

Once DHCP option 43 named the server (``I``/``J``/``K`` fields), a PnP agent says HELLO, sends a
WORK-REQUEST with its UDI, does the work it is given and reports it in a WORK-RESPONSE, until the server
says bye. ztp emulates the one service it serves, config-upgrade: fetch the config from the copy source
URL (the device "applies" it by keeping the bytes), report success (or failure, with the HTTP status as
the error), read the bye. A bye instead of work, or any other service, ends the flow with a PnpFailure
and the agent falls back to AutoInstall (TFTP), as IOS-XE does. Messages: `ztp.vendors.pnp_xml`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ztp.vendors import pnp_xml
from ztp.vendors.pnp_xml import Bye, PnpXmlError, Udi

DEFAULT_PID = "C9300-24P"
"""The product id the emulated device reports in its UDI when the profile names no model."""


class PnpFailure(Exception):
    """The PnP flow gave no config: what went wrong, for the agent's report."""


@dataclass(slots=True)
class PnpOutcome:
    """What the flow fetched and the URLs it used, in order."""

    config: bytes
    location: str
    steps: list[str] = field(default_factory=list)


async def fetch_config(base: str, udi: Udi, *, local: str | None, timeout: float) -> PnpOutcome:
    """Run HELLO, WORK-REQUEST, the config fetch and WORK-RESPONSE against `base` (``http://ip:port``)."""
    import aiohttp  # only PnP devices need it

    steps: list[str] = []
    correlator = f"CiscoPnP-1.0-ztp-{udi.sn}-1"
    connector = aiohttp.TCPConnector(local_addr=(local, 0) if local else None, force_close=True)
    headers = {"Content-Type": "application/xml"}
    try:
        async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=timeout)) as web:
            url = f"{base}/pnp/HELLO"
            steps.append(url)
            async with web.get(url) as hello:
                if hello.status != 200:
                    raise PnpFailure(f"{url}: HTTP {hello.status}")
            url = f"{base}/pnp/WORK-REQUEST"
            steps.append(url)
            async with web.post(url, data=pnp_xml.build_work_request(udi, correlator), headers=headers) as reply:
                body = await reply.read()
                if reply.status != 200:
                    raise PnpFailure(f"{url}: HTTP {reply.status}")
            work = pnp_xml.parse_server_reply(body)
            if isinstance(work, Bye):
                raise PnpFailure(f"{url}: the server has no work for {udi} (bye)")
            steps.append(work.location)
            async with web.get(work.location) as got:
                config = await got.read()
                status = got.status
            ok = status == 200
            url = f"{base}/pnp/WORK-RESPONSE"
            steps.append(url)
            report = pnp_xml.build_work_response(udi, work.correlator, pnp_xml.NS_CONFIG_UPGRADE, success=ok,
                                                 error="" if ok else f"copy {work.location}: HTTP {status}")
            async with web.post(url, data=report, headers=headers) as reply:
                body = await reply.read()
                if reply.status != 200:
                    raise PnpFailure(f"{url}: HTTP {reply.status}")
            if not isinstance(pnp_xml.parse_server_reply(body), Bye):
                raise PnpFailure(f"{url}: the server answered the work-response with more work")
            if not ok:
                raise PnpFailure(f"{work.location}: HTTP {status}")
            return PnpOutcome(config, work.location, steps)
    except PnpXmlError as exc:
        raise PnpFailure(f"{steps[-1]}: {exc}") from None
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        raise PnpFailure(f"{steps[-1] if steps else base}: {type(exc).__name__}: {exc}") from None
