"""The appliance's one HTTP listener: an aiohttp application on the appliance's event loop.

Everything served over HTTP shares it: `/healthz`, the operator API and dashboard (issue 11) and HTTP boot
(issue 12). Each feature contributes its routes with `HttpServer.add_routes()` before `start()` (aiohttp
freezes the router when the server starts); the composition root (`ztp.app`) decides which features are
wired. Like TFTP and DNS it binds the provisioning network's addresses (`ztp.net.listen`), one listening
socket per address, or the `http.listen` addresses when given.

Read endpoints are open to whoever reaches the listener; write endpoints call `require_token()`, which
checks `Authorization: Bearer <http.token>` in constant time (RFC 6750 §2.1) and refuses every write when no
token is configured.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Iterable, Sequence

from aiohttp import web

from ztp.net.listen import WILDCARD

log_default = logging.getLogger("ztp.http")

# Long-lived responses (the dashboard's event stream) must not hold `ztp serve` up when it stops.
_SHUTDOWN_SECONDS = 2.0

TOKEN_KEY: web.AppKey[HttpServer] = web.AppKey("ztp_http_server")


def require_token(request: web.Request) -> None:
    """Raise 401/403 unless the request carries the configured write token (RFC 6750 §2.1 bearer header).

    With no `http.token` configured, writes are refused (403) with the fix in the message.
    """
    server = request.app[TOKEN_KEY]
    token = server.token
    if not token:
        raise web.HTTPForbidden(text="write endpoints are disabled: set http.token in ztp.yaml\n")
    header = request.headers.get("Authorization", "")
    scheme, _, given = header.partition(" ")
    if scheme.lower() != "bearer" or not given:
        raise web.HTTPUnauthorized(text="send the token as 'Authorization: Bearer <http.token>'\n",
                                   headers={"WWW-Authenticate": 'Bearer realm="ztp"'})
    if not hmac.compare_digest(given.strip().encode(), token.encode()):
        raise web.HTTPForbidden(text="wrong token\n")


async def _healthz(request: web.Request) -> web.Response:
    return web.Response(text="ok\n")


class HttpServer:
    """One aiohttp application served on `port` of each of `hosts`; features add routes before `start()`."""

    def __init__(self, port: int = 80, hosts: Sequence[str] = (WILDCARD,), token: str | None = None,
                 log: logging.Logger = log_default) -> None:
        """`hosts` are bound one socket each (the caller passes the provisioning addresses); port 0 picks one."""
        self.port = port
        self.hosts = tuple(hosts)
        self.token = token  # swapped on reload; read per request by require_token()
        self.log = log
        self.app = web.Application(client_max_size=1024 * 1024)
        self.app[TOKEN_KEY] = self
        self.app.router.add_get("/healthz", _healthz)
        self._runner: web.AppRunner | None = None
        self.bound: list[tuple[str, int]] = []

    def add_routes(self, routes: Iterable[web.AbstractRouteDef]) -> None:
        """Add a feature's routes (`web.get(...)`, `web.RouteTableDef`); only before `start()`."""
        if self._runner is not None:
            raise RuntimeError("HttpServer.add_routes() after start(): add routes while building the appliance")
        self.app.router.add_routes(routes)

    async def start(self) -> None:
        """Bind every host (OSError, nothing left bound, when one fails) and serve."""
        runner = web.AppRunner(self.app, access_log=self.log if self.log.isEnabledFor(logging.DEBUG) else None,
                               handle_signals=False, shutdown_timeout=_SHUTDOWN_SECONDS)
        await runner.setup()
        self._runner = runner
        try:
            port = self.port
            for host in self.hosts:
                site = web.TCPSite(runner, host, port, reuse_address=True, backlog=128)
                await site.start()
                server = site._server  # aiohttp exposes no public accessor for the bound sockets
                sockets = getattr(server, "sockets", None) or []
                for sock in sockets:
                    name = sock.getsockname()
                    self.bound.append((name[0], name[1]))
                    port = name[1]  # port 0: the other hosts share the one picked for the first
            self.port = port
        except BaseException:
            await runner.cleanup()
            self._runner = None
            self.bound.clear()
            raise
        self.log.info("http listening on %s port %d", ", ".join(self.hosts), self.port)

    async def close(self) -> None:
        """Stop accepting, finish in-flight requests briefly, close the sockets."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        self.bound.clear()
