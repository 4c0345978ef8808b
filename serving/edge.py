"""The HTTP edge: what every request meets before (and after) the service's own code.

ASGI middlewares, outermost first as the service registers them: security headers on every answer;
our own pages (/ and /docs, rendered here from the OpenAPI spec, and /static/*), served without
credentials; the body-size limits (413 before a body is read); JSON only for the scoring endpoints;
then, after the credentials check (serving/service.py), strict JSON (serving/strict_json.py).
BentoML's own middlewares, outside all of these, are adapted in serving/bentoml_adaptations.py.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Callable

import anyio.to_thread
from starlette.datastructures import MutableHeaders
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse

from serving.body_checker import BodyChecker
from serving.strict_json import ClaimLimits, Refused, check_batch, check_claim, check_json

STATIC_DIR = Path(__file__).resolve().parent / "static"
# Answers carry these whatever produced them; HTML also the content policy below (no script at all,
# styles and images from this service only, forms posting back to it, never framed).
SECURITY_HEADERS = {"x-content-type-options": "nosniff", "x-frame-options": "DENY", "referrer-policy": "no-referrer"}
CONTENT_SECURITY_POLICY = ("default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; "
                           "frame-ancestors 'none'; base-uri 'none'")
# Bodies at most this large are checked on the event loop (batches in a worker thread); larger ones in
# a process of their own (serving/body_checker.py).
PARSE_INLINE_BYTES = 64 * 1024
# Bodies larger than this are read at a pace while other requests wait (LimitBodies): a batch of
# 1,000 claims is under it.
PACED_BYTES = 1 << 20
_STATIC_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


class SecurityHeaders:
    """ASGI middleware: nosniff, no framing, no referrer and no caching (but of /static/*) on every
    answer, and the content security policy on every HTML page."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        caching = "no-cache" if scope["path"].startswith("/static/") else "no-store"

        async def with_headers(message):
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    headers[name] = value
                headers["cache-control"] = caching
                if headers.get("content-type", "").startswith("text/html"):
                    headers["content-security-policy"] = CONTENT_SECURITY_POLICY
            await send(message)
        await self.app(scope, receive, with_headers)


class OwnPages:
    """ASGI middleware: `/` (to the API docs), `/docs` (rendered from the OpenAPI spec: no script,
    nothing from another host) and `/static/<file>` (files of serving/static only), open to anyone."""

    def __init__(self, app, spec: Callable[[], dict], static_dir: Path = STATIC_DIR):
        self.app = app
        self.spec = spec
        self.static_dir = static_dir
        self._docs: str | None = None

    async def __call__(self, scope, receive, send):
        path = scope["path"] if scope["type"] == "http" else None
        if path == "/" and scope["method"] in ("GET", "HEAD"):
            reply = RedirectResponse("/docs", status_code=307)
        elif path == "/docs" and scope["method"] in ("GET", "HEAD"):
            reply = HTMLResponse(self.docs_page())
        elif path is not None and path.startswith("/static/"):
            reply = self._static(path[len("/static/"):], scope["method"])
        else:
            await self.app(scope, receive, send)
            return
        await reply(scope, receive, send)

    def docs_page(self) -> str:
        if self._docs is None:  # the spec is fixed once the service is defined
            from serving.api_docs import render_docs

            self._docs = render_docs(self.spec())
        return self._docs

    def _static(self, name: str, method: str):
        if method not in ("GET", "HEAD"):
            return JSONResponse({"error": "static files are only read (GET)"}, status_code=405,
                                headers={"Allow": "GET, HEAD"})
        # One plain file name, no folders: '/', '\\' and a leading dot never reach the file system.
        if _STATIC_NAME.fullmatch(name) and (self.static_dir / name).is_file():
            return FileResponse(self.static_dir / name)
        return JSONResponse({"error": "no such file"}, status_code=404)


class LimitBodies:
    """ASGI middleware: a body over the limit is a 413 naming the limit. A declared Content-Length is
    judged before a byte is read; a chunked body is counted as it arrives and cut at the limit.

    A large body (over PACED_BYTES) is also read at a pace while other requests wait in this worker:
    after each piece, `pace_seconds` of the event loop go to them. Reading is what a client sending
    8 MB bodies back to back costs the others (the checks run in a process of their own); paced at
    3 ms a piece, /score's p99 beside such a client went from 2.3x to 1.7x of idle (benchmarks/
    bench_hostile.py), and a large batch waits a few ms a piece only while others are being answered.
    Reading slower also slows the sender: the server stops reading the socket while a piece waits."""

    def __init__(self, app, max_body_bytes: int, max_batch_body_bytes: int,
                 batch_paths: tuple[str, ...] = ("/score_batch",), pace_seconds: float = 0.0):
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.max_batch_body_bytes = max_batch_body_bytes
        self.batch_paths = batch_paths
        self.pace_seconds = pace_seconds
        self.in_flight = 0  # this worker's requests between arriving and being answered
        self.sleep = asyncio.sleep

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        self.in_flight += 1
        try:
            await self._limited(scope, receive, send)
        finally:
            self.in_flight -= 1

    def _paced(self, receive):
        """`receive`, giving the event loop to other requests after each piece of a large body."""
        async def paced():
            message = await receive()
            if self.in_flight > 1 and message.get("more_body"):
                await self.sleep(self.pace_seconds)
            return message
        return paced

    async def _limited(self, scope, receive, send):
        limit = self.max_batch_body_bytes if scope["path"] in self.batch_paths else self.max_body_bytes
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        if declared is not None:  # the server holds the body to this length
            size = int(declared) if declared.isdigit() else None
            if size is None or size > limit:
                await self._too_large(scope, receive, send, size, limit)
                return
            paced = self.pace_seconds > 0 and size > PACED_BYTES
            await self.app(scope, self._paced(receive) if paced else receive, send)
            return
        if b"chunked" not in headers.get(b"transfer-encoding", b"").lower():
            await self.app(scope, receive, send)  # no body at all
            return
        try:
            body = await _read_body(receive, limit)
        except _TooLarge:
            await self._too_large(scope, receive, send, None, limit)
            return
        if body is not None:
            await self.app(scope, _replay(body, receive), send)

    @staticmethod
    async def _too_large(scope, receive, send, size: int | None, limit: int) -> None:
        path = scope["path"] if len(scope["path"]) <= 80 else "this endpoint"
        told = f"is {size:,} bytes" if size is not None else "is larger than that"
        reply = JSONResponse({"error": f"the request body {told}; {path} takes at most {limit:,}"}, status_code=413)
        await reply(scope, receive, send)


class JsonBodiesOnly:
    """ASGI middleware: the scoring endpoints take JSON; anything else is a 415 with a message.

    BentoML would otherwise try to parse, say, a multipart body without a boundary and fail
    with a server error; a client's wrong Content-Type must never be a 500.
    """

    def __init__(self, app, paths: tuple[str, ...] = ("/score", "/score_batch")):
        self.app = app
        self.paths = paths

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope["method"] == "POST" and scope["path"] in self.paths:
            headers = dict(scope.get("headers") or [])
            media = headers.get(b"content-type", b"application/json").split(b";")[0].strip().lower()
            if media not in (b"application/json", b""):
                reply = JSONResponse({"error": f"send JSON (Content-Type: application/json), not {media.decode()!r}"},
                                     status_code=415)
                await reply(scope, receive, send)
                return
        await self.app(scope, receive, send)


class StrictJson:
    """ASGI middleware (after the credentials check): the JSON endpoints' bodies are checked by
    serving/strict_json.py before anything parses them, then handed on byte for byte. A small batch
    is checked in a worker thread, and a large body in a process of its own, so the event loop and
    the scoring thread keep answering others meanwhile."""

    _RESPOND = re.compile(r"/cases/.+/respond")

    def __init__(self, app, limits: ClaimLimits):
        self.app = app
        self.limits = limits
        self.checker = BodyChecker(limits)

    async def __call__(self, scope, receive, send):
        check = self._check_for(scope)
        if check is None:
            await self.app(scope, receive, send)
            return
        body = await _read_body(receive, None)  # within the limit: LimitBodies came first
        if body is None:
            return
        try:
            if len(body) > PARSE_INLINE_BYTES and scope["path"] in ("/score", "/score_batch"):
                await self.checker.judge(b"c" if scope["path"] == "/score" else b"b", body)
            elif len(body) > PARSE_INLINE_BYTES or scope["path"] == "/score_batch":  # a batch of 1,001 empty
                await anyio.to_thread.run_sync(check, body)  # claims is 4 KB, and takes ~3 ms
            else:
                check(body)
        except Refused as refused:
            await JSONResponse({"error": str(refused)}, status_code=refused.status)(scope, receive, send)
            return
        await self.app(scope, _replay(body, receive), send)

    def _check_for(self, scope) -> Callable[[bytes], None] | None:
        if scope["type"] != "http" or scope["method"] != "POST":
            return None
        path = scope["path"]
        if path == "/score":
            return lambda body: check_claim(body, self.limits)
        if path == "/score_batch":
            return lambda body: check_batch(body, self.limits)
        if path == "/feedback" or self._RESPOND.fullmatch(path):
            return check_json
        return None


class _TooLarge(Exception):
    """A body past its limit."""


async def _read_body(receive, limit: int | None) -> bytes | None:
    """The whole body (_TooLarge past `limit` bytes), or None when the client went away first."""
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunk = message.get("body", b"")
        size += len(chunk)
        if limit is not None and size > limit:
            raise _TooLarge
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _replay(body: bytes, receive):
    """A `receive` that gives the body already read, then whatever the client sends next."""
    given = False

    async def replay():
        nonlocal given
        if not given:
            given = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()
    return replay
