"""The BentoML service: HTTP in, the scorer, HTTP out. Heavier logic lives in `serving.scoring`.

Configuration comes from claimtriage.toml and the environment: MLFLOW_TRACKING_URI (the
registry), CLAIMTRIAGE_MODEL_URI (default models:/claim-triage@champion) and
CLAIMTRIAGE_DATABASE_URL (default a SQLite file claims.db in the working directory).
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import os
import secrets
import signal
from datetime import timedelta
from typing import Literal, Optional
from urllib.parse import quote, urlsplit

import bentoml
import pydantic_core
from pydantic import StrictBool
from fastapi import Depends, FastAPI, Form, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from starlette.concurrency import run_in_threadpool
from starlette.responses import JSONResponse, Response

from models.config import load_config
from models.policy import OUTCOMES as OUTCOME_NAMES
from serving import bentoml_adaptations, edge, pages
from serving.access import SESSION_HOURS, form_token, form_token_matches
from serving.clock import utc_now
from serving.grouping import ClaimGroups
from serving.live_metrics import LiveMetrics
from serving.review import STATUSES, ReviewError
from serving.schemas import BatchResult, Claim, Decision, Feedback, Responder
from serving.strict_json import ClaimLimits

log = logging.getLogger("claimtriage.serving")
# Before any metric exists: this server's Prometheus files go to a directory of its own.
bentoml_adaptations.use_own_metrics_directory()
GROUP_SIZES = bentoml.metrics.Histogram(
    name="claimtriage_score_group_size",
    documentation="Single claims (/score) scored together in one transaction (serving/grouping.py)",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1000))
LIVE_METRICS = LiveMetrics()  # decisions, scores, overdue cases, the shadow challenger (serving/live_metrics.py)
MODEL_URI_ENV = "CLAIMTRIAGE_MODEL_URI"
# /docs is our own page (serving/edge.py): FastAPI's and ReDoc's load their scripts from a CDN.
info = FastAPI(title="model information", docs_url=None, redoc_url=None)


def _reviewed(action):
    try:
        return action()
    except ReviewError as e:
        raise HTTPException(e.status, str(e)) from None


def _json(body: dict) -> Response:
    """The scorer's answer as JSON, as built: its shape is the declared response model's (tests hold
    every answer to it), so re-validating thousands of nested reasons per batch would only cost time."""
    return Response(pydantic_core.to_json(body, inf_nan_mode="null"), media_type="application/json")


def _unprocessable(result: dict) -> JSONResponse:
    return JSONResponse({"error": "the claim is not valid", **result}, status_code=422)


# Read once, when the service is defined: BentoML takes its settings from the decorator, and the
# service loads with the same configuration.
_CONFIG = load_config()
_UNTRACED = {} if _CONFIG.serving.trace_single_claims else {"tracing": {"excluded_urls": ["/score$"]}}

# --- the review pages' logins and forms

SESSION_COOKIE = "claimtriage_session"
LOGIN_COOKIE = "claimtriage_login"  # the login form's own CSRF token, before there is a session
_COOKIE_FLAGS = {"httponly": True, "samesite": "strict", "secure": _CONFIG.security.secure_cookies}
# Logins wait their turn for scrypt here, on the event loop, not in threads the API needs.
_SCRYPT_TURNS = asyncio.Semaphore(1)


def _login_form(next_path: str, status: int = 200, failed: bool = False, expired: bool = False) -> HTMLResponse:
    """The login page with a fresh form token, kept in a cookie only /login reads (a login from
    another site's form cannot send it)."""
    token = secrets.token_urlsafe(32)
    reply = HTMLResponse(pages.login_page(next_path, failed=failed, csrf=form_token(token), expired=expired),
                         status_code=status)
    reply.set_cookie(LOGIN_COOKIE, token, path="/login", **_COOKIE_FLAGS)
    return reply


def _form_of_session(request: Request, csrf: str = Form("")) -> None:
    """A POST under /review must carry its session's form token: a form on another site cannot."""
    if not hmac.compare_digest(request.state.form_token.encode(), csrf.encode()):
        raise HTTPException(403, "this form is not from your session: reload the page and try again")


def _client_address(request: Request) -> str | None:
    """Whom to count wrong logins against: the connection's peer, or, only where the setting says a
    proxy of ours sets it, the last X-Forwarded-For entry (the one that proxy added)."""
    forwarded = request.headers.get("x-forwarded-for") if _CONFIG.security.trust_forwarded_for else None
    if forwarded:
        return forwarded.rsplit(",", 1)[-1].strip()[:256] or None
    return request.client.host if request.client else None


def _recorded_by(detail: dict | None, adjuster: str) -> bool:
    """Whether the claim's outcome was recorded by `adjuster` (a queue message says only what is so)."""
    outcome = (detail or {}).get("outcome")
    return bool(outcome) and outcome.get("recorded_by") == adjuster


@bentoml.service(name="claim-triage", traffic={"timeout": 60}, workers=1, **_UNTRACED)
@bentoml.asgi_app(info, path="/")
class ClaimTriage:
    """Claim triage: a decision, calibrated scores, reasons and deadlines for each new claim."""

    def __init__(self) -> None:
        from serving.loading import StartupError, load_scorer

        try:
            self.scorer, self.model_info = load_scorer(os.environ.get(MODEL_URI_ENV), _CONFIG, LIVE_METRICS)
        except StartupError as err:
            # BentoML would start this worker again and again; a service that cannot start stops.
            log.critical("claim-triage cannot start: %s", err)
            _stop_server()
            raise
        self.max_batch = self.scorer.max_batch
        self.groups = ClaimGroups(self.scorer.score_each, self.scorer.max_group, on_group=GROUP_SIZES.observe)
        RequireCredentials.store = self.scorer.store  # the same engine checks credentials
        LIVE_METRICS.watch_overdue(self.scorer.store.engine, self.scorer.store.review.cases,
                                   _CONFIG.serving.overdue_refresh_seconds)

    @bentoml.api(route="/score")
    async def score(self, claim: Claim, /) -> Decision:  # type: ignore[valid-type]
        """Score one claim: decision, scores, reasons, rule hits and deadlines (422 names each bad field)."""
        result = await self.groups.score(_record(claim))
        return _unprocessable(result) if "errors" in result else _json(result)

    @bentoml.api(route="/score_batch")
    def score_batch(self, claims: list[Claim], explain: StrictBool = True) -> BatchResult:  # type: ignore[valid-type]
        """Score up to the configured maximum of claims (1,000 by default); a bad claim gets an error entry."""
        if len(claims) > self.max_batch:
            return JSONResponse({"error": f"a batch holds at most {self.max_batch} claims; this one has "
                                          f"{len(claims)}: split it"}, status_code=413)
        batch = self.scorer.score([_record(c) for c in claims], explain=explain)
        return _json({"results": batch.results, "n_errors": batch.n_errors,
                      "n_scored": len(batch.results) - batch.n_errors})

    @info.get("/model")
    def model(self) -> dict:
        """GET /model: the served model's version, trained-at, run metrics, thresholds and features, and
        `challenger`: the version scoring in its shadow (serving/shadow.py), or null."""
        return self.model_info

    @info.get("/cases")
    def cases(self, decision: Optional[Literal[OUTCOME_NAMES]] = None,  # type: ignore[valid-type]
              status: Optional[Literal[STATUSES]] = None, overdue: bool = False,  # type: ignore[valid-type]
              limit: int = Query(100, ge=1, le=1000), offset: int = Query(0, ge=0, le=10_000_000)) -> list[dict]:
        """The review queue: cases awaiting a person (or of `status`), nearest deadline first, then the riskiest."""
        return self.scorer.store.queue(decision=decision, status=status, overdue=overdue, limit=limit, offset=offset)

    @info.get("/cases/{claim_id:path}")  # a claim id may hold "/" (sent raw or as %2F)
    def case(self, claim_id: str) -> dict:
        """One claim's case: the case, its newest decision in full, the claim, its outcome and its ring."""
        found = self.scorer.store.case(claim_id)
        if found is None:
            raise HTTPException(404, f"no claim {claim_id!r} has been scored")
        return found

    @info.post("/cases/{claim_id:path}/respond")
    def respond(self, request: Request, claim_id: str, body: Responder) -> dict:
        """An adjuster takes the case: the 24-hour first response is given."""
        via = f"api key {request.state.api_key}"
        return _reviewed(lambda: self.scorer.store.respond(claim_id, body.by, via=via))

    @info.get("/login", response_class=HTMLResponse, include_in_schema=False)
    def login_page(self, next: str = "/review"):  # noqa: A002 - the query parameter's name
        return _login_form(_safe_next(next))

    @info.post("/login", include_in_schema=False)
    async def login(self, request: Request, username: str = Form(""), password: str = Form(""),
                    next: str = Form("/review"), csrf: str = Form("")):  # noqa: A002
        """An adjuster logs in; a wrong username or password, or a locked-out one, gets 401 and no hint which."""
        if not form_token_matches(request.cookies.get(LOGIN_COOKIE), csrf):
            return _login_form(_safe_next(next), status=403, expired=True)
        store = self.scorer.store
        async with _SCRYPT_TURNS:  # waiting logins wait here, holding no thread the API needs
            token = await run_in_threadpool(store.access.login, store.engine, username[:128], password[:256],
                                            _client_address(request), _CONFIG.security)
        if token is None:
            return _login_form(_safe_next(next), status=401, failed=True)
        reply = RedirectResponse(_safe_next(next), status_code=303)
        reply.set_cookie(SESSION_COOKIE, token, max_age=SESSION_HOURS * 3600, **_COOKIE_FLAGS)
        reply.delete_cookie(LOGIN_COOKIE, path="/login", **_COOKIE_FLAGS)
        return reply

    @info.post("/logout", include_in_schema=False)
    def logout(self, request: Request, csrf: str = Form("")):
        """Ends the session, asked by this session's own page only (its form token)."""
        token = request.cookies.get(SESSION_COOKIE)
        if token and self.scorer.store.access.session_user(self.scorer.store.engine, token):
            if not form_token_matches(token, csrf):
                raise HTTPException(403, "this form is not from your session: log out from the review page")
            self.scorer.store.access.logout(self.scorer.store.engine, token)
        reply = RedirectResponse("/login", status_code=303)
        reply.delete_cookie(SESSION_COOKIE, **_COOKIE_FLAGS)
        return reply

    @info.get("/review", response_class=HTMLResponse, include_in_schema=False)
    def review_queue(self, request: Request, decision: Optional[str] = None, overdue: bool = False,
                     recorded: Optional[str] = None):
        """The adjusters' queue page."""
        now = utc_now()
        decision = decision if decision in OUTCOME_NAMES else None
        cases = self.scorer.store.queue(now=now, decision=decision, overdue=overdue, limit=500)
        message = None
        if recorded and _recorded_by(self.scorer.store.case(recorded[:200]), request.state.adjuster):
            message = f"Outcome recorded for claim {recorded}; it has left the queue."  # escaped by the page
        return pages.queue_page(cases, now, decision, overdue, message, user=request.state.adjuster,
                                csrf=request.state.form_token)

    @info.get("/indicators", response_class=HTMLResponse, include_in_schema=False)
    def indicators_page(self, request: Request, days: int = pages.INDICATOR_DAYS[0]):
        """The claims managers' page: the service indicators of the last 7, 30 or 90 days."""
        from serving.monitor_reads import service_indicators

        days = days if days in pages.INDICATOR_DAYS else pages.INDICATOR_DAYS[0]
        now = utc_now()
        since = now - timedelta(days=days)
        _, figures = service_indicators(self.scorer.store, since, now, now, _CONFIG.monitoring.weekly_after_days,
                                        _CONFIG.targets)
        return pages.indicators_page(figures, since, now, days, now, user=request.state.adjuster,
                                     csrf=request.state.form_token)

    @info.get("/review/{claim_id:path}", response_class=HTMLResponse, include_in_schema=False)
    def review_case(self, request: Request, claim_id: str):
        """One case, explained."""
        return self._case_reply(request, claim_id)

    @info.post("/review/{claim_id:path}/respond", include_in_schema=False, dependencies=[Depends(_form_of_session)])
    def review_take(self, request: Request, claim_id: str):
        """The page's button: the logged-in adjuster takes the case (the 24-hour response is given)."""
        try:
            self.scorer.store.respond(claim_id, request.state.adjuster, via=f"review page {request.state.adjuster}")
        except ReviewError as e:
            return self._case_reply(request, claim_id, error=str(e), status=409)
        return RedirectResponse(f"/review/{quote(claim_id, safe='')}", status_code=303)

    @info.post("/review/{claim_id:path}/outcome", include_in_schema=False, dependencies=[Depends(_form_of_session)])
    def review_outcome(self, request: Request, claim_id: str, outcome: str = Form(""), note: str = Form("")):
        """The page's form: record the outcome as the logged-in adjuster, then back to the queue."""
        try:
            self.scorer.store.record_outcome(claim_id, outcome, note.strip() or None, request.state.adjuster,
                                             via=f"review page {request.state.adjuster}")
        except ReviewError as e:
            return self._case_reply(request, claim_id, error=str(e), status=422)
        return RedirectResponse(f"/review?recorded={quote(claim_id, safe='')}", status_code=303)

    def _case_reply(self, request: Request, claim_id: str, error: str | None = None, status: int = 200):
        """The case page (with `error` shown, if any), or a not-found page for a claim never scored."""
        user, csrf = request.state.adjuster, request.state.form_token
        detail = self.scorer.store.case(claim_id)
        if detail is None:
            return HTMLResponse(pages.not_found_page(claim_id, user, csrf), status_code=404)
        return HTMLResponse(pages.case_page(detail, utc_now(), error=error, user=user, csrf=csrf), status_code=status)

    @info.post("/feedback", status_code=201)
    def feedback(self, request: Request, body: Feedback) -> dict:
        """Record what a claim came to (resolving its case); it becomes the claim's training label.
        It is recorded under the API key that sent it: `recorded_by` may only repeat the key's name."""
        key = request.state.api_key
        errors = body.problems(key)
        if errors:
            return JSONResponse({"error": "the outcome cannot be recorded", "errors": errors}, status_code=422)
        return _reviewed(lambda: self.scorer.store.record_outcome(body.claim_id, body.outcome, body.note, key,
                                                                  via=f"api key {key}"))


def _stop_server() -> None:
    """Ask the `bentoml serve` process that started this worker to shut down, with an error."""
    os.kill(os.getppid(), signal.SIGUSR1)


# Open to anyone: the orchestrator's probes, the API's own documentation, the login; and Prometheus's
# /metrics when config.security.metrics_access is "open" (by default it takes an API key, as a bearer token).
# (/, /docs and /static/* are answered before this check, by serving/edge.py.)
OPEN_PATHS = frozenset({"/healthz", "/livez", "/readyz", "/docs", "/docs.json", "/", "/login", "/logout"}
                       | ({"/metrics"} if _CONFIG.security.metrics_access == "open" else set()))
_UNAUTHORISED = JSONResponse({"error": "missing or invalid credentials"}, status_code=401,
                             headers={"WWW-Authenticate": "Bearer"})


class RequireCredentials:
    """ASGI middleware: API calls need an API key (`Authorization: Bearer KEY` or `X-API-Key: KEY`);
    the review pages need an adjuster's session. Failures say nothing about why. A browser's POST
    to the login, the logout or a review page from another site is refused (403) before anything."""

    store = None  # the service's claim store, set when the service starts (before it is ready)

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        if scope["method"] == "POST" and _page_form(scope["path"]) and _cross_site(headers):
            await _CROSS_SITE(scope, receive, send)
            return
        if scope["path"] in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        if self.store is None:  # not started yet: nothing but the open paths is served
            await _UNAUTHORISED(scope, receive, send)
            return
        access, engine = self.store.access, self.store.engine
        if _page(scope["path"]):
            token = _cookie(headers.get(b"cookie", b""), SESSION_COOKIE)
            user = access.session_user(engine, token) if token else None
            if user is None:
                reply = RedirectResponse("/login?next=" + quote(_page_address(scope), safe=""), status_code=303) \
                    if scope["method"] == "GET" else _UNAUTHORISED
                await reply(scope, receive, send)
                return
            state = scope.setdefault("state", {})
            state["adjuster"], state["form_token"] = user, form_token(token)
        else:
            auth = headers.get(b"authorization", b"").decode("latin-1")
            key = auth[7:].strip() if auth[:7].lower() == "bearer " else headers.get(b"x-api-key", b"").decode("latin-1")
            owner = access.key_owner(engine, key) if key and len(key) <= 200 else None
            if owner is None:
                await _UNAUTHORISED(scope, receive, send)
                return
            scope.setdefault("state", {})["api_key"] = owner  # who wrote what: outcomes keep it
        await self.app(scope, receive, send)


_CROSS_SITE = JSONResponse({"error": "a form sent from another site is refused"}, status_code=403)


def _page(path: str) -> bool:
    """The adjusters' pages, behind a login session (the API's paths take a key)."""
    return path.startswith("/review") or path == "/indicators"


def _page_form(path: str) -> bool:
    return path in ("/login", "/logout") or path == "/review" or path.startswith("/review/")


def _cross_site(headers: dict) -> bool:
    """Whether a browser says the request comes from another site: Sec-Fetch-Site says so, or the
    Origin (or, without one, the Referer) names another host than the one addressed. An Origin of
    "null" decides nothing: browsers send it for this site's own forms too when the page's referrer
    policy is no-referrer (and Sec-Fetch-Site then tells). A client that sends none of these is no
    browser carrying someone's cookie; the forms' tokens still hold it."""
    if headers.get(b"sec-fetch-site", b"").lower() in (b"cross-site", b"same-site"):
        return True
    source = headers.get(b"origin") or headers.get(b"referer")
    if source is None or source == b"null":
        return False
    netloc = urlsplit(source.decode("latin-1")).netloc.lower()
    return netloc != headers.get(b"host", b"").decode("latin-1").lower()


def _page_address(scope) -> str:
    """The page asked for, as a URL path (and query) to come back to after the login."""
    query = scope.get("query_string", b"").decode("latin-1")
    return quote(scope["path"]) + (f"?{query}" if query else "")


def _cookie(header: bytes, name: str) -> str | None:
    for part in header.decode("latin-1").split(";"):
        key, _, value = part.strip().partition("=")
        if key == name and value:
            return value
    return None


def _safe_next(target: str) -> str:
    """Only back to a page of this service (`/review`, `/review/...`, `/review?...`, `/indicators...`), never
    to another site: no `//` or backslash a browser could read as another host, no control characters."""
    shaped = target in ("/review", "/indicators") or target.startswith(("/review/", "/review?", "/indicators?"))
    unsafe = "//" in target or "\\" in target or not target.isprintable() or len(target) > 2048
    return target if shaped and not unsafe else "/review"


# The HTTP edge (serving/edge.py), outermost first; BentoML's own metrics, tracing, access log and
# timeout wrap them all. Sizes are judged before credentials (nothing is read to judge them), JSON after.
bentoml_adaptations.adapt_bentoml_middlewares()  # metrics by route template; timeouts' timers let go
bentoml_adaptations.shorten_interpreter_turns()  # the event loop waits less for threads' turns
ClaimTriage.add_asgi_middleware(edge.SecurityHeaders)
ClaimTriage.add_asgi_middleware(edge.OwnPages, spec=lambda: ClaimTriage.openapi_spec.asdict())
ClaimTriage.add_asgi_middleware(edge.LimitBodies, max_body_bytes=_CONFIG.security.max_body_bytes,
                                max_batch_body_bytes=_CONFIG.security.max_batch_body_bytes,
                                pace_seconds=_CONFIG.security.large_body_pace_ms / 1000)
ClaimTriage.add_asgi_middleware(edge.JsonBodiesOnly)
ClaimTriage.add_asgi_middleware(RequireCredentials)
ClaimTriage.add_asgi_middleware(edge.StrictJson, limits=ClaimLimits(
    max_fields_per_claim=_CONFIG.security.max_fields_per_claim, max_claims=_CONFIG.serving.max_batch_claims,
    max_claim_chars=_CONFIG.security.max_body_bytes))


def _record(claim) -> dict:
    return claim.model_dump(exclude_unset=True)
