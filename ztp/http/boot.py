"""HTTP boot: the rendered configs and static files TFTP serves, over the one HTTP listener (issue 12).

* ``GET /configs/<bootfile>``: exactly the bytes ``ztp render`` prints (``leaf01.cfg``), or a vendor profile's
  document built around them (``leaf01.poap.py``, ``leaf01.ztp.json``), through the same provider as TFTP
  (`ztp.provision.RenderedConfigs`), so the same access rule holds: only the device holding the lease or
  reservation gets it; anyone else gets 403 and a log line naming the device and the peer.
* ``GET /files/<path>`` and ``GET /onie-installer...``: static files under ``tftp.root`` (the ONIE waterfall
  asks for its default installer names at the root of the server), streamed by offset reads, never read
  whole; ``tftp.private`` files only for lease or reservation holders, as over TFTP.

Every response carries ``Content-Length`` and an ``ETag`` (a content hash for rendered bytes; inode, size
and modification time for files), answers ``If-None-Match`` with 304 and one ``Range: bytes=`` range with
206 (RFC 9110 §13.1.2, §14). A device that sends its serial number in a header (Cumulus ``CUMULUS-SERIAL``,
or ``X-Serial-Number``) is refused a config listed for another serial.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import time
from collections.abc import Callable

from aiohttp import web

from ztp.provision import RenderedConfigs
from ztp.tftp.content import Content, FileContent, StaticRoot, TftpRefusal, close_content
from ztp.tftp.packet import ERR_ACCESS, ERR_NOT_FOUND
from ztp.tftp.server import TransferNote

log = logging.getLogger("ztp.http.boot")

SERIAL_HEADERS = ("CUMULUS-SERIAL", "X-Serial-Number", "X-Device-Serial")
"""Request headers a device names its serial number in (Cumulus Linux ZTP sends CUMULUS-SERIAL)."""
CHUNK = 256 * 1024
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")

Delivered = Callable[[str, str, int], None]
"""(peer address, file name, bytes): told when a whole file went out (the provisioned log line)."""
HTTP_NOTE = (("transport", "http"),)
"""The option every TransferNote from HTTP boot carries, so the timeline says HTTP, not TFTP."""


def etag_of(data: bytes) -> str:
    """A strong ETag for rendered bytes: their SHA-256, shortened (RFC 9110 §8.8.3)."""
    return '"' + hashlib.sha256(data).hexdigest()[:32] + '"'


def file_etag(content: FileContent) -> str:
    """A strong ETag for an open file: inode, size and modification time, as the bytes cannot change
    under an open descriptor without one of them changing."""
    st = os.fstat(content.fd)
    return f'"{st.st_ino:x}-{st.st_size:x}-{st.st_mtime_ns:x}"'


def byte_range(header: str | None, size: int) -> tuple[int, int] | None | str:
    """The (start, end exclusive) of one ``Range: bytes=`` range, None for the whole file, or "unsatisfiable".

    Several ranges, or a syntax ztp does not know, are answered with the whole file (RFC 9110 §14.2: a
    server MAY ignore Range).
    """
    if not header:
        return None
    match = _RANGE.match(header.strip())
    if match is None:
        return None
    first, last = match.groups()
    if not first and not last:
        return None
    if not first:  # the last N bytes
        n = int(last)
        if n == 0:
            return "unsatisfiable"
        return max(0, size - n), size
    start = int(first)
    end = size if not last else min(size, int(last) + 1)
    if start >= size or end <= start:
        return "unsatisfiable"
    return start, end


def _refusal_status(refusal: TftpRefusal) -> type[web.HTTPException]:
    if refusal.code == ERR_NOT_FOUND:
        return web.HTTPNotFound
    if refusal.code == ERR_ACCESS:
        return web.HTTPForbidden
    return web.HTTPInternalServerError


def _local_address(request: web.Request) -> str | None:
    transport = request.transport
    sockname = transport.get_extra_info("sockname") if transport is not None else None
    return str(sockname[0]) if sockname else None


class HttpBoot:
    """The HTTP boot routes over whatever provider and static root the appliance holds now (reloads swap
    them: the getters are asked on every request)."""

    def __init__(self, configs: Callable[[], RenderedConfigs], static: Callable[[], StaticRoot | None], *,
                 on_delivered: Delivered | None = None,
                 on_transfer: Callable[[TransferNote], None] | None = None) -> None:
        """`on_transfer` hears the same started/finished/refused notes as TFTP's (the device timeline)."""
        self.configs = configs
        self.static = static
        self.on_delivered = on_delivered
        self.on_transfer = on_transfer

    def _note(self, kind: str, peer: str, name: str, **fields: object) -> None:
        if self.on_transfer is not None:
            self.on_transfer(TransferNote(kind, peer, name, options=HTTP_NOTE, **fields))  # type: ignore[arg-type]

    def routes(self) -> list[web.RouteDef]:
        """The routes to add to the HTTP listener (`HttpServer.add_routes`)."""
        return [web.get("/configs/{name}", self.config),
                web.get("/files/{path:.+}", self.file),
                web.get(r"/{name:onie-installer[^/]*}", self.onie)]

    async def config(self, request: web.Request) -> web.StreamResponse:
        """A device's rendered config or profile document, for the lease holder only."""
        name = request.match_info["name"]
        peer = request.remote or ""
        configs = self.configs()
        found = configs.target_for_path(name)
        if found is not None:
            device = found[0].device
            claimed = next((request.headers[h] for h in SERIAL_HEADERS if h in request.headers), None)
            if claimed and device is not None and device.serial and claimed.strip().lower() != device.serial.lower():
                log.warning("%s http %s refused to %s: it says serial %s, the inventory lists %s for %s",
                            found[1].mac, name, peer, claimed.strip(), device.serial, device.hostname)
                self._note("refused", peer, name, reason="serial header names another device", code=ERR_ACCESS)
                raise web.HTTPForbidden(text=f"{name}: the serial number in the request is not {device.hostname}'s\n")
        try:
            data = configs.get(name, (peer, 0), transport="http", server=_local_address(request))
        except TftpRefusal as refusal:
            self._note("refused", peer, name, reason=refusal.message, code=refusal.code)
            raise _refusal_status(refusal)(text=refusal.message + "\n") from None
        return await self._send(request, name, data)

    async def file(self, request: web.Request) -> web.StreamResponse:
        """A static file under tftp.root."""
        return await self._static(request, request.match_info["path"])

    async def onie(self, request: web.Request) -> web.StreamResponse:
        """An ONIE default installer name at the root of the server (its HTTP waterfall)."""
        return await self._static(request, request.match_info["name"])

    async def _static(self, request: web.Request, path: str) -> web.StreamResponse:
        static = self.static()
        if static is None:
            raise web.HTTPNotFound(text="no tftp.root is configured\n")
        try:
            content = static.get(path, (request.remote or "", 0))
        except TftpRefusal as refusal:
            raise _refusal_status(refusal)(text=refusal.message + "\n") from None
        return await self._send(request, path, content)

    async def _send(self, request: web.Request, name: str, content: Content) -> web.StreamResponse:
        try:
            if isinstance(content, FileContent):
                size, etag = content.size, file_etag(content)
            else:
                size, etag = len(content), etag_of(content)
            headers = {"ETag": etag, "Accept-Ranges": "bytes", "Cache-Control": "no-cache"}
            if etag in (t.strip() for t in request.headers.get("If-None-Match", "").split(",")):
                return web.Response(status=304, headers=headers)
            wanted = byte_range(request.headers.get("Range"), size)
            if wanted == "unsatisfiable":
                return web.Response(status=416, headers={**headers, "Content-Range": f"bytes */{size}"})
            start, end = (0, size) if wanted is None or isinstance(wanted, str) else wanted
            status = 200 if wanted is None else 206
            if status == 206:
                headers["Content-Range"] = f"bytes {start}-{end - 1}/{size}"
            peer = request.remote or ""
            started = time.monotonic()
            self._note("started", peer, name, size=size)
            response = web.StreamResponse(status=status, headers=headers)
            response.content_type = "application/octet-stream"
            response.content_length = end - start
            await response.prepare(request)
            if request.method != "HEAD":
                offset = start
                while offset < end:
                    n = min(CHUNK, end - offset)
                    if isinstance(content, FileContent):
                        piece = bytes(content.read(offset, n))
                    else:
                        piece = content[offset:offset + n]
                    await response.write(piece)
                    offset += n
            await response.write_eof()
            if status == 200 and request.method != "HEAD":
                self._note("finished", peer, name, size=size, bytes_sent=size, seconds=time.monotonic() - started)
                if self.on_delivered is not None:
                    self.on_delivered(peer, name, size)
            return response
        finally:
            close_content(content)
