"""The operator API on the one HTTP listener: devices, their timelines, leases, explain, metrics, events.

    GET  /api/devices                      counts per state and every device's status
    GET  /api/devices/{key}                one device (key: inventory hostname or MAC), its inventory entry
    GET  /api/devices/{key}/timeline       its events, oldest first
    POST /api/devices/{key}/confirm        mark it confirmed (write token: ztp.http.server.require_token)
    POST /api/reload                       reload config, inventory and templates, as SIGHUP does (token)
    GET  /api/leases                       the lease table
    GET  /api/explain?mac=M | ?hostname=H  `ztp explain` for a device
    GET  /api/events                       server-sent events: device status changes and pool use (the dashboard)
    GET  /api/openapi.json                 this API described (OpenAPI 3.1)
    GET  /metrics                          Prometheus text format
    GET  /, /device/{key}, /static/...     the dashboard (ztp/api/static)

Reads are open on the provisioning side; writes need the token.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from importlib import resources
from typing import Any

from aiohttp import web

from ztp.api.metrics import CONTENT_TYPE, Metrics, pool_use
from ztp.config import MAC_RE, Config, normalize_mac
from ztp.explain import ExplainError, explain
from ztp.http.server import require_token
from ztp.leases.table import LeaseTable
from ztp.timeline.machine import STAGES, DeviceStatus, Event, Kind
from ztp.timeline.recorder import Recorder

_SSE_QUEUE = 256  # updates buffered per dashboard; a client that falls behind is told to reload
_SSE_KEEPALIVE = 15.0
MAX_STREAMS = 64  # dashboards open at once; beyond: 503 (each holds a socket and a queue)
# Pool use is O(leases) to count: counted at most once per POOLS_INTERVAL for all dashboards together, and
# only after an event that can change it (or, for offers that ran out silently, once per keepalive).
POOLS_INTERVAL = 1.0
_LEASE_KINDS = frozenset({Kind.OFFER, Kind.BOUND, Kind.RENEWED, Kind.RELEASED, Kind.DECLINED, Kind.EXPIRED})


def _json(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status, dumps=lambda d: json.dumps(d, default=str))


class OperatorApi:
    """Routes over the running appliance's recorder, lease table and (current) configuration."""

    def __init__(self, recorder: Recorder, config: Callable[[], Config], table: LeaseTable, metrics: Metrics, *,
                 reload: Callable[[], None] | None = None, clock: Callable[[], float] = time.time) -> None:
        """`reload` starts a reload of the running appliance (POST /api/reload); None: the route answers 501."""
        self.reload_appliance = reload
        self.recorder = recorder
        self.config = config
        self.table = table
        self.metrics = metrics
        self.clock = clock
        self.streams = 0
        self._pools: list[dict[str, Any]] = []
        self._pools_at = float("-inf")
        self._pools_dirty = True
        self.pool_counts = 0  # how often pool use was counted for the event streams (tests, bench)
        recorder.listeners.append(self._lease_events)

    def _lease_events(self, events: list[Event]) -> None:
        if not self._pools_dirty and any(e.kind in _LEASE_KINDS for e in events):
            self._pools_dirty = True

    def pools(self, now: float) -> list[dict[str, Any]]:
        """Pool use for the event streams: recounted only when a lease event arrived since the last count (or
        a keepalive period passed: held offers run out without one), and never twice within POOLS_INTERVAL;
        the same list object until then, so a stream can tell cheaply whether anything changed."""
        age = now - self._pools_at
        if (self._pools_dirty or age >= _SSE_KEEPALIVE) and age >= POOLS_INTERVAL:
            self._pools_dirty = False
            self._pools_at = now
            self.pool_counts += 1
            fresh = [{"subnet": s, "size": n, "used": u} for s, n, u in pool_use(self.config(), self.table, now)]
            if fresh != self._pools:
                self._pools = fresh
        return self._pools

    def pools_pending(self) -> bool:
        """Whether a lease event is waiting to be counted into pool use."""
        return self._pools_dirty

    def routes(self) -> list[web.RouteDef]:
        """Every route, for HttpServer.add_routes()."""
        static = resources.files("ztp.api") / "static"
        return [
            web.get("/api/devices", self.devices),
            web.get("/api/devices/{key}", self.device),
            web.get("/api/devices/{key}/timeline", self.timeline),
            web.post("/api/devices/{key}/confirm", self.confirm),
            web.post("/api/reload", self.reload),
            web.get("/api/leases", self.leases),
            web.get("/api/explain", self.explain),
            web.get("/api/events", self.events),
            web.get("/api/openapi.json", self.openapi),
            web.get("/metrics", self.prometheus),
            web.get("/", self._file(static / "index.html", "text/html")),
            web.get("/device/{key}", self._file(static / "device.html", "text/html")),
            web.get("/static/dashboard.js", self._file(static / "dashboard.js", "text/javascript")),
            web.get("/static/dashboard.css", self._file(static / "dashboard.css", "text/css")),
        ]

    @staticmethod
    def _file(path: Any, content_type: str) -> Callable[[web.Request], Any]:
        body = path.read_bytes()  # read once: the package's files do not change while serving

        async def handler(request: web.Request) -> web.Response:
            return web.Response(body=body, content_type=content_type, charset="utf-8",
                                headers={"Cache-Control": "no-cache"})
        return handler

    # --- helpers ------------------------------------------------------------------------------------

    def _key(self, raw: str) -> str:
        """A device key as the API accepts it: an inventory hostname, a key as listed, or a MAC in any spelling."""
        machine = self.recorder.machine
        if raw in machine.devices:
            return raw
        if MAC_RE.match(raw):
            mac = normalize_mac(raw)
            device = self.config().inventory.by_mac.get(mac)
            return device.hostname if device is not None else mac
        return raw.lower()

    def _status(self, status: DeviceStatus, now: float) -> dict[str, Any]:
        out = status.as_dict(now)
        device = self.config().inventory.by_hostname.get(status.key)
        out["inventory"] = device is not None
        out["hostname"] = device.hostname if device is not None else None
        return out

    # --- handlers -----------------------------------------------------------------------------------

    async def devices(self, request: web.Request) -> web.Response:
        """Counts per state, every device's status, inventory devices not heard from, pool use."""
        self.recorder.drain()
        now = self.clock()
        machine = self.recorder.machine
        devices = sorted((self._status(s, now) for s in machine.devices.values()), key=lambda d: d["key"])
        seen = set(machine.devices)
        config = self.config()
        waiting = [d.hostname for d in config.inventory.devices if d.hostname not in seen]
        pools = [{"subnet": s, "size": n, "used": u} for s, n, u in pool_use(config, self.table, now)]
        return _json({"now": now, "states": [s.value for s in STAGES], "counts": machine.counts(),
                      "devices": devices, "waiting": waiting, "pools": pools})

    async def device(self, request: web.Request) -> web.Response:
        """One device's status with its inventory entry and lease."""
        self.recorder.drain()
        key = self._key(request.match_info["key"])
        status = self.recorder.machine.status(key)
        config = self.config()
        entry = config.inventory.by_hostname.get(key)
        if status is None and entry is None:
            return _json({"error": f"no device {key!r}: not in the inventory and never heard from"}, 404)
        out: dict[str, Any] = self._status(status, self.clock()) if status is not None else \
            {"key": key, "state": None, "inventory": True, "hostname": key}
        if entry is not None:
            out["entry"] = {"hostname": entry.hostname, "mac": entry.mac, "client_id": entry.client_id,
                            "circuit_id": entry.circuit_id, "remote_id": entry.remote_id,
                            "ip": str(entry.ip) if entry.ip else None, "template": entry.template,
                            "line": f"{config.inventory.path}:{entry.line}"}
        return _json(out)

    async def timeline(self, request: web.Request) -> web.Response:
        """The device's events from the store, oldest first (`?limit=`, default 500)."""
        self.recorder.drain()
        key = self._key(request.match_info["key"])
        try:
            limit = max(1, min(int(request.query.get("limit", "500")), 10_000))
        except ValueError:
            return _json({"error": "limit must be a number"}, 400)
        events = await self.recorder.events_of(key, limit)
        if not events and self.recorder.machine.status(key) is None:
            return _json({"error": f"no events for {key!r}"}, 404)
        return _json({"key": key, "events": [e.as_dict() for e in events]})

    async def confirm(self, request: web.Request) -> web.Response:
        """Mark a device confirmed (scripted devices, `ztp agent --confirm`); needs the write token."""
        require_token(request)
        key = self._key(request.match_info["key"])
        note = ""
        if request.can_read_body:
            try:
                body = await request.json()
                note = str(body.get("note", ""))[:200] if isinstance(body, dict) else ""
            except (ValueError, UnicodeDecodeError):
                return _json({"error": "the body must be JSON, e.g. {\"note\": \"...\"}"}, 400)
        peer = request.remote or "?"
        status = self.recorder.confirm(key, "api", f"confirmed via the API from {peer}" + (f": {note}" if note
                                                                                           else ""))
        if status is None:
            return _json({"error": f"no device {key!r} has been heard from"}, 404)
        return _json(self._status(status, self.clock()))

    async def reload(self, request: web.Request) -> web.Response:
        """Reload config, inventory and templates (as SIGHUP); the outcome is in the log. Needs the token."""
        require_token(request)
        if self.reload_appliance is None:
            return _json({"error": "this server cannot reload"}, 501)
        self.reload_appliance()
        return _json({"reloading": True, "see": "the log: 'reloaded: ...' or the problems found"}, 202)

    async def leases(self, request: web.Request) -> web.Response:
        """Every lease row."""
        now = self.clock()
        rows = [{"ip": str(x.ip), "mac": x.mac, "client": x.client, "state": x.state_at(now),
                 "expires": x.expires, "remaining": max(0, int(x.expires - now)), "hostname": x.hostname,
                 "vendor": x.vendor}
                for x in self.table.all()]
        return _json({"leases": rows})

    async def explain(self, request: web.Request) -> web.Response:
        """`ztp explain` for `?mac=` or `?hostname=` (optionally `&giaddr=`)."""
        mac, hostname = request.query.get("mac"), request.query.get("hostname")
        if bool(mac) == bool(hostname):
            return _json({"error": "give exactly one of ?mac= or ?hostname="}, 400)
        if mac and not MAC_RE.match(mac):
            return _json({"error": f"{mac!r} is not a MAC address like 02:00:00:00:00:01"}, 400)
        leases = list(self.table.all())  # copied on the loop; the chain then runs on a thread, off it
        try:
            result = await asyncio.to_thread(explain, self.config(), leases, mac=mac, hostname=hostname,
                                             now=self.clock(), giaddr=request.query.get("giaddr"))
        except (ExplainError, ValueError) as exc:
            return _json({"error": str(exc)}, 404)
        return _json(result.as_dict())

    async def prometheus(self, request: web.Request) -> web.Response:
        """Prometheus text exposition."""
        self.recorder.drain()
        return web.Response(body=self.metrics.exposition(), headers={"Content-Type": CONTENT_TYPE})

    async def events(self, request: web.Request) -> web.StreamResponse:
        """Server-sent events (HTML Living Standard §9.2): `devices` with the statuses that changed, `pools`
        with every pool's use when it changed (at most once per POOLS_INTERVAL)."""
        if self.streams >= MAX_STREAMS:
            raise web.HTTPServiceUnavailable(text=f"{MAX_STREAMS} event streams are open already\n",
                                             headers={"Retry-After": "10"})
        queue: asyncio.Queue[list[Event] | None] = asyncio.Queue(maxsize=_SSE_QUEUE)

        def listener(events: list[Event]) -> None:
            try:
                queue.put_nowait(events)
            except asyncio.QueueFull:
                pass  # this client is behind; its next update carries the full state anyway

        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache",
                                           "X-Accel-Buffering": "no"})
        await resp.prepare(request)
        self.recorder.listeners.append(listener)
        self.streams += 1
        sent_pools = self._pools  # what the page fetched with /api/devices is at least this fresh
        try:
            await resp.write(b"retry: 2000\n\n")
            while True:
                # A lease event not yet counted into pool use: come back within POOLS_INTERVAL to send it.
                wait = POOLS_INTERVAL if self.pools_pending() else _SSE_KEEPALIVE
                try:
                    events = await asyncio.wait_for(queue.get(), wait)
                except TimeoutError:
                    events = []
                if events is None:
                    break
                pools = self.pools(self.clock())
                if pools is not sent_pools:
                    sent_pools = pools
                    await resp.write(b"event: pools\ndata: " + json.dumps({"pools": pools}).encode() + b"\n\n")
                if not events:
                    if wait == _SSE_KEEPALIVE:
                        await resp.write(b": keepalive\n\n")
                    continue
                now = self.clock()
                keys = list(dict.fromkeys(e.key for e in events))
                machine = self.recorder.machine
                payload = {"counts": machine.counts(), "now": now,
                           "devices": [self._status(s, now) for s in map(machine.status, keys) if s is not None],
                           "events": [e.as_dict() for e in events[-50:]]}
                await resp.write(b"event: devices\ndata: " + json.dumps(payload, default=str).encode() + b"\n\n")
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            self.streams -= 1
            if listener in self.recorder.listeners:
                self.recorder.listeners.remove(listener)
        return resp

    async def openapi(self, request: web.Request) -> web.Response:
        """The OpenAPI 3.1 description of this API."""
        return _json(OPENAPI)


def _get(summary: str, params: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {"get": {"summary": summary, "parameters": params or [],
                    "responses": {"200": {"description": "OK", "content": {"application/json": {}}},
                                  "404": {"description": "unknown device"}}}}


_KEY = {"name": "key", "in": "path", "required": True, "schema": {"type": "string"},
        "description": "inventory hostname, else the MAC"}
OPENAPI: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {"title": "ztp operator API", "version": "1",
             "description": "Device states and timelines, leases, explain, metrics."},
    "components": {"securitySchemes": {"token": {"type": "http", "scheme": "bearer",
                                                 "description": "http.token from ztp.yaml"}}},
    "paths": {
        "/healthz": _get("liveness"),
        "/api/devices": _get("counts per state, every device's status, inventory devices not seen, pools"),
        "/api/devices/{key}": _get("one device with its inventory entry", [_KEY]),
        "/api/devices/{key}/timeline": _get("the device's events, oldest first", [
            _KEY, {"name": "limit", "in": "query", "schema": {"type": "integer", "default": 500}}]),
        "/api/devices/{key}/confirm": {"post": {
            "summary": "mark the device confirmed (it runs its config)", "parameters": [_KEY],
            "security": [{"token": []}],
            "requestBody": {"required": False, "content": {"application/json": {"schema": {
                "type": "object", "properties": {"note": {"type": "string"}}}}}},
            "responses": {"200": {"description": "the device's status"}, "401": {"description": "no token"},
                          "403": {"description": "wrong token, or none configured"},
                          "404": {"description": "never heard from"}}}},
        "/api/reload": {"post": {
            "summary": "reload config, inventory and templates (as SIGHUP)", "security": [{"token": []}],
            "responses": {"202": {"description": "reload started; the outcome is logged"},
                          "401": {"description": "no token"}, "403": {"description": "wrong token"}}}},
        "/api/leases": _get("the lease table"),
        "/api/explain": _get("why a device gets what it gets (a DISCOVER run through the chain, nothing sent)", [
            {"name": "mac", "in": "query", "schema": {"type": "string"}},
            {"name": "hostname", "in": "query", "schema": {"type": "string"}},
            {"name": "giaddr", "in": "query", "schema": {"type": "string"}}]),
        "/api/events": {"get": {"summary": "server-sent events: `devices` updates",
                                "responses": {"200": {"description": "text/event-stream"}}}},
        "/metrics": {"get": {"summary": "Prometheus text format",
                             "responses": {"200": {"description": "text/plain"}}}},
    },
}
