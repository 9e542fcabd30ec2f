"""The HTTP listener's routing and write-token rule, driven without sockets (aiohttp mocked requests)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from ztp.api.metrics import ApplianceCollector, Metrics
from ztp.api.routes import OperatorApi
from ztp.config import load_config
from ztp.http.server import TOKEN_KEY, HttpServer, require_token
from ztp.leases.table import LeaseTable
from ztp.timeline.recorder import Recorder

TOKEN = "s3cret-token-0123456789"


def _request(server: HttpServer, method: str, path: str, headers: dict[str, str] | None = None) -> web.Request:
    return make_mocked_request(method, path, headers=headers or {}, app=server.app)


async def _dispatch(server: HttpServer, request: web.Request) -> web.StreamResponse:
    match = await server.app.router.resolve(request)
    match.add_app(server.app)
    request._match_info = match  # what aiohttp's request handler does before calling the route
    return await match.handler(request)


def test_healthz() -> None:
    server = HttpServer(port=0)
    resp = asyncio.run(_dispatch(server, _request(server, "GET", "/healthz")))
    assert isinstance(resp, web.Response) and resp.status == 200 and resp.text == "ok\n"


def test_features_add_routes() -> None:
    server = HttpServer(port=0)

    async def hello(request: web.Request) -> web.Response:
        return web.Response(text="hi")

    server.add_routes([web.get("/hello", hello)])
    resp = asyncio.run(_dispatch(server, _request(server, "GET", "/hello")))
    assert isinstance(resp, web.Response) and resp.text == "hi"
    assert server.app[TOKEN_KEY] is server


@pytest.mark.parametrize(("token", "header", "status"), [
    (None, f"Bearer {TOKEN}", 403),  # no token configured: every write refused
    (TOKEN, "", 401),
    (TOKEN, f"Basic {TOKEN}", 401),
    (TOKEN, "Bearer wrong-token-0123456789", 403),
])
def test_write_token_refusals(token: str | None, header: str, status: int) -> None:
    server = HttpServer(port=0, token=token)
    headers = {"Authorization": header} if header else {}
    with pytest.raises(web.HTTPException) as info:
        require_token(_request(server, "POST", "/api/x", headers))
    assert info.value.status == status


def test_write_token_accepted_and_swappable() -> None:
    server = HttpServer(port=0, token=TOKEN)
    require_token(_request(server, "POST", "/api/x", {"Authorization": f"Bearer {TOKEN}"}))
    server.token = "another-token-0123456789"  # a reload swaps it
    with pytest.raises(web.HTTPForbidden):
        require_token(_request(server, "POST", "/api/x", {"Authorization": f"Bearer {TOKEN}"}))


def test_reload_endpoint_needs_the_token() -> None:
    config = load_config(Path(__file__).resolve().parents[2] / "ztp.yaml")
    table = LeaseTable()

    class NoStore:
        def append(self, events: object) -> None: ...
        def close(self) -> None: ...

    recorder = Recorder(config, table, NoStore())  # type: ignore[arg-type]
    metrics = Metrics(ApplianceCollector(recorder, lambda: config, table, dict, dict, lambda: 0.0))
    reloads: list[int] = []
    server = HttpServer(port=0, token=TOKEN)
    server.add_routes(OperatorApi(recorder, lambda: config, table, metrics, reload=lambda: reloads.append(1)).routes())
    with pytest.raises(web.HTTPUnauthorized):
        asyncio.run(_dispatch(server, _request(server, "POST", "/api/reload")))
    resp = asyncio.run(_dispatch(server, _request(server, "POST", "/api/reload",
                                                  {"Authorization": f"Bearer {TOKEN}"})))
    assert resp.status == 202 and reloads == [1]
    spec = asyncio.run(_dispatch(server, _request(server, "GET", "/api/openapi.json")))
    assert isinstance(spec, web.Response) and spec.text is not None and "/api/reload" in spec.text
