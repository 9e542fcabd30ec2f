"""`ztp agent --confirm`: tell the appliance the device runs its config (`POST /api/devices/{key}/confirm`).

Scripted devices that send no syslog confirm this way; the appliance's timeline then shows them
`confirmed`. The key is the device's MAC: the API maps it to the inventory hostname.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from urllib.parse import quote


def confirm_url(base: str, mac: str) -> str:
    """The confirm endpoint of the appliance at `base` (``http://10.60.0.1`` or with a port) for `mac`."""
    return f"{base.rstrip('/')}/api/devices/{quote(mac, safe='')}/confirm"


def post_confirm(base: str, mac: str, token: str | None, *, timeout: float = 10.0) -> tuple[bool, str]:
    """POST the confirmation; (ok, the device's state or the error) — never raises for network problems."""
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(confirm_url(base, mac), data=json.dumps({"note": "ztp agent"}).encode(),
                                     headers=headers, method="POST")
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # the appliance is on-link: no proxy
    try:
        with opener.open(request, timeout=timeout) as response:
            body = json.loads(response.read() or b"{}")
            return True, str(body.get("state", "?"))
    except urllib.error.HTTPError as exc:
        return False, f"HTTP {exc.code}: {exc.read().decode(errors='replace').strip()[:200]}"
    except (urllib.error.URLError, OSError, ValueError) as exc:
        return False, str(getattr(exc, "reason", exc))
