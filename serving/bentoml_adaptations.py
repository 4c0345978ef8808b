"""BentoML, adapted where it falls short under attack: done once, when the service module is imported.

Its request metrics are labelled by route template rather than by raw path; its request timeout
lets go of each request once answered; each server keeps its Prometheus files in a directory of
its own; and threads take shorter turns with the event loop. Each says what it replaces and why;
tests/serving/test_edge.py fails if a BentoML upgrade stops one of them from taking effect.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import os
import re
import shutil
import sys
from pathlib import Path

from bentoml._internal.server.http import instruments as bentoml_instruments
from bentoml._internal.server.http import traffic as bentoml_traffic
from opentelemetry.instrumentation import asgi as otel_asgi
from starlette.responses import JSONResponse
from starlette.routing import Match, Mount

log = logging.getLogger("claimtriage.serving")
UNMATCHED = "unmatched"  # the metrics' endpoint label for a path no route serves
INTERPRETER_TURN_SECONDS = 0.001  # see shorten_interpreter_turns
_CONVERTOR = re.compile(r"\{(\w+):\w+\}")


def route_template(routes, scope) -> str:
    """The template of the route that serves `scope`'s path (`/cases/{claim_id}`), or UNMATCHED:
    a label with few values, whatever paths clients make up. Our own pages have fixed labels."""
    path = scope["path"]
    if path == "/docs":
        return path
    if path.startswith("/static/"):
        return "/static/{file}"
    partial = None
    for route in routes:
        match, child = route.matches(scope)
        if match is Match.NONE:
            continue
        inner = _inner_routes(route)
        if inner is None:
            template = getattr(route, "path_format", None) or _CONVERTOR.sub(r"{\1}", getattr(route, "path", ""))
        else:  # a mount (its path, then its app's route) or an included router (its routes)
            prefix = route.path if isinstance(route, Mount) else ""
            found = route_template(inner, {**scope, **child})
            template = prefix + ("/{path}" if found == UNMATCHED else found)
        if match is Match.FULL:
            return template
        partial = partial or template  # the path is served, not with this method: a 405
    return partial or UNMATCHED


def _inner_routes(route):
    """The routes behind a mount, or behind a router FastAPI included (it keeps them on
    `original_router`); None for a route that answers itself."""
    holder = route.app if isinstance(route, Mount) else getattr(route, "original_router", None)
    return getattr(holder, "routes", None)


class RouteLabelledMetrics(bentoml_instruments.RunnerTrafficMetricsMiddleware):
    """BentoML's request metrics, labelled by route template instead of by raw path.

    BentoML labels `endpoint` with `scope["path"]`: every distinct path a client invents became a
    new series, kept for the life of the worker (issue #13: 25,000 made-up /cases/<id> paths grew
    it from 1.0 to 1.6 GB, with TimeoutTimerCancelled's cause), and /metrics listed real claim
    ids. Its middleware reads the path once, when a request comes in; so the path it sees is the
    template, and the raw path is put back before the request goes on (into the app BentoML
    wraps). BentoML has no setting for this (1.4.40); tests/serving/test_edge.py fails if an
    upgrade stops this from taking effect.
    """

    _RAW_PATH = "claimtriage.raw_path"

    def __init__(self, app, **options):
        super().__init__(_RawPathRestored(app, self._RAW_PATH), **options)

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope["path"] != "/metrics":
            scope[self._RAW_PATH] = scope["path"]
            scope["path"] = self._template(scope)
        await super().__call__(scope, receive, send)

    @staticmethod
    def _template(scope) -> str:
        try:
            return route_template(getattr(scope.get("app"), "routes", ()), scope)
        except Exception:  # noqa: BLE001 - a label is never worth a failed request
            log.exception("no route template for a request's metrics; labelled %r", UNMATCHED)
            return UNMATCHED


class _RawPathRestored:
    def __init__(self, app, key: str):
        self.app = app
        self.key = key

    async def __call__(self, scope, receive, send):
        if self.key in scope:
            scope["path"] = scope.pop(self.key)
        await self.app(scope, receive, send)


class RequestSpansOnly(otel_asgi.OpenTelemetryMiddleware):
    """BentoML's tracing middleware with one span per request, without a child span for every
    piece of the body received and of the answer sent: an 8 MB batch arrives in ~130 pieces, and
    their spans were ~6% of the event loop's time while a client sent such bodies back to back
    (benchmarks/bench_hostile.py). The request's own span, its timing and attributes, stay."""

    def __init__(self, app, **options):
        options.setdefault("exclude_spans", ["receive", "send"])
        super().__init__(app, **options)


class TimeoutTimerCancelled(bentoml_traffic.TimeoutMiddleware):
    """BentoML's request timeout (a 504 when no answer has begun within `timeout` seconds), with a
    timer that holds nothing of the request and is cancelled as soon as the answer begins.

    BentoML's leaves every request's timer scheduled for the whole timeout (60 s here), holding the
    request's context (its tracing span and all that refers to) until it fires: measured, 50,000
    requests in a minute kept ~200 MB alive in the worker. An answer that fails before it begins is
    raised at once here, not after the timeout."""

    async def __call__(self, scope, receive, send):
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        loop = asyncio.get_running_loop()
        begun = loop.create_future()
        # The timer needs nothing of the request's context: given an empty one, it holds none of it.
        timer = loop.call_later(self.timeout, self._set_timer_out, begun, context=contextvars.Context())

        async def send_begun(message):
            if not begun.done():
                begun.set_result(None)
            await send(message)

        answer = asyncio.ensure_future(self.app(scope, receive, send_begun))
        try:
            await asyncio.wait((begun, answer), return_when=asyncio.FIRST_COMPLETED)
        except BaseException:
            answer.cancel()
            raise
        finally:
            timer.cancel()
        timed_out = begun.done() and begun.exception() is not None
        if timed_out and answer.cancel():
            reply = JSONResponse({"error": f"no answer could be given within {self.timeout} seconds"}, status_code=504)
            await reply(scope, receive, send)
            return
        await answer


def adapt_bentoml_middlewares() -> None:
    """Make BentoML build its request-metrics, timeout and tracing middlewares from
    RouteLabelledMetrics, TimeoutTimerCancelled and RequestSpansOnly: it imports each class from
    its module when it assembles a service's app, after the service is imported."""
    bentoml_instruments.RunnerTrafficMetricsMiddleware = RouteLabelledMetrics
    bentoml_traffic.TimeoutMiddleware = TimeoutTimerCancelled
    otel_asgi.OpenTelemetryMiddleware = RequestSpansOnly


def shorten_interpreter_turns(seconds: float = INTERPRETER_TURN_SECONDS) -> None:
    """Let threads take turns with the event loop more often (Python's default turn is 5 ms).

    A thread checking a large body, or scoring a batch, holds the interpreter for a whole turn
    whenever the event loop wants it back; a single claim waits several turns. Measured with
    benchmarks/bench_hostile.py (/score p50, ms, idle ~7): beside an attacker sending 8 MB bodies
    26 at 5 ms, 19 at 1 ms; beside valid 8 MB batches, 31 and 19."""
    sys.setswitchinterval(seconds)


def use_own_metrics_directory() -> Path | None:
    """In a worker of `bentoml serve` (and so of `claimtriage serve`): keep this server's Prometheus
    files in a directory of its own, before any metric is made.

    BentoML gives every server run under one BENTOML_HOME the same directory, and empties it when a
    server starts: a second server deleted the first one's counters, and the two then mixed theirs.
    The directory here is named after the server process (the workers' parent: its id and start
    time, so a reused id is a new directory); those of servers no longer running are removed.
    Returns the directory, or None where nothing was changed (not a BentoML worker, or
    PROMETHEUS_MULTIPROC_DIR chosen by whoever started the server)."""
    import psutil
    from bentoml._internal.configuration.containers import BentoMLContainer

    shared = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not shared or Path(shared).resolve() != Path(BentoMLContainer.prometheus_multiproc_dir.get()).resolve():
        return None
    server = psutil.Process(os.getppid())
    servers = Path(shared).resolve().with_name("prometheus_multiproc_dir.servers")
    own = servers / f"{server.pid}-{int(server.create_time())}"
    _remove_stopped(servers, keep=own)
    own.mkdir(parents=True, exist_ok=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(own)
    return own


def _remove_stopped(servers: Path, keep: Path) -> None:
    import psutil

    for folder in servers.glob("*-*") if servers.is_dir() else ():
        pid, _, started = folder.name.partition("-")
        try:
            running = int(psutil.Process(int(pid)).create_time()) == int(started)
        except (ValueError, psutil.Error):
            running = False
        if not running and folder != keep:
            shutil.rmtree(folder, ignore_errors=True)
