"""The BentoML service: HTTP in, the scorer, HTTP out. Heavier logic lives in `serving.scoring`.

Configuration comes from claimtriage.toml and the environment: MLFLOW_TRACKING_URI (the
registry), CLAIMTRIAGE_MODEL_URI (default models:/claim-triage@champion) and
CLAIMTRIAGE_DATABASE_URL (default a SQLite file claims.db in the working directory).
"""

from __future__ import annotations

import logging
import os
import signal
from typing import Literal, Optional
from urllib.parse import quote

import bentoml
import pydantic_core
from fastapi import FastAPI, Form, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from starlette.responses import JSONResponse, Response

from models.config import load_config
from models.policy import OUTCOMES as OUTCOME_NAMES
from serving import pages
from serving.access import SESSION_HOURS
from serving.clock import utc_now
from serving.grouping import ClaimGroups
from serving.review import STATUSES, ReviewError
from serving.schemas import BatchResult, Claim, Decision, Feedback, Responder

log = logging.getLogger("claimtriage.serving")
GROUP_SIZES = bentoml.metrics.Histogram(
    name="claimtriage_score_group_size",
    documentation="Single claims (/score) scored together in one transaction (serving/grouping.py)",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1000))
MODEL_URI_ENV = "CLAIMTRIAGE_MODEL_URI"
info = FastAPI(title="model information")


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


@bentoml.service(name="claim-triage", traffic={"timeout": 60}, workers=1, **_UNTRACED)
@bentoml.asgi_app(info, path="/")
class ClaimTriage:
    """Claim triage: a decision, calibrated scores, reasons and deadlines for each new claim."""

    def __init__(self) -> None:
        from serving.loading import StartupError, load_scorer

        try:
            self.scorer, self.model_info = load_scorer(os.environ.get(MODEL_URI_ENV), _CONFIG)
        except StartupError as err:
            # BentoML would start this worker again and again; a service that cannot start stops.
            log.critical("claim-triage cannot start: %s", err)
            _stop_server()
            raise
        self.max_batch = self.scorer.max_batch
        self.groups = ClaimGroups(self.scorer.score_each, self.scorer.max_group, on_group=GROUP_SIZES.observe)
        RequireCredentials.store = self.scorer.store  # the same engine checks credentials

    @bentoml.api(route="/score")
    async def score(self, claim: Claim, /) -> Decision:  # type: ignore[valid-type]
        """Score one claim: decision, scores, reasons, rule hits and deadlines (422 names each bad field)."""
        result = await self.groups.score(_record(claim))
        return _unprocessable(result) if "errors" in result else _json(result)

    @bentoml.api(route="/score_batch")
    def score_batch(self, claims: list[Claim], explain: bool = True) -> BatchResult:  # type: ignore[valid-type]
        """Score up to the configured maximum of claims (1,000 by default); a bad claim gets an error entry."""
        if len(claims) > self.max_batch:
            return JSONResponse({"error": f"a batch holds at most {self.max_batch} claims; this one has "
                                          f"{len(claims)}: split it"}, status_code=413)
        batch = self.scorer.score([_record(c) for c in claims], explain=explain)
        return _json({"results": batch.results, "n_errors": batch.n_errors,
                      "n_scored": len(batch.results) - batch.n_errors})

    @info.get("/model")
    def model(self) -> dict:
        """GET /model: the served model's version, trained-at, run metrics, thresholds and features."""
        return self.model_info

    @info.get("/cases")
    def cases(self, decision: Optional[Literal[OUTCOME_NAMES]] = None,  # type: ignore[valid-type]
              status: Optional[Literal[STATUSES]] = None, overdue: bool = False,  # type: ignore[valid-type]
              limit: int = Query(100, ge=1, le=1000), offset: int = Query(0, ge=0, le=10_000_000)) -> list[dict]:
        """The review queue: cases awaiting a person (or of `status`), nearest deadline first, then the riskiest."""
        return self.scorer.store.queue(decision=decision, status=status, overdue=overdue, limit=limit, offset=offset)

    @info.get("/cases/{claim_id}")
    def case(self, claim_id: str) -> dict:
        """One claim's case: the case, its newest decision in full, the claim, its outcome and its ring."""
        found = self.scorer.store.case(claim_id)
        if found is None:
            raise HTTPException(404, f"no claim {claim_id!r} has been scored")
        return found

    @info.post("/cases/{claim_id}/respond")
    def respond(self, claim_id: str, body: Responder) -> dict:
        """An adjuster takes the case: the 24-hour first response is given."""
        return _reviewed(lambda: self.scorer.store.respond(claim_id, body.by))

    @info.get("/login", response_class=HTMLResponse, include_in_schema=False)
    def login_page(self, next: str = "/review"):  # noqa: A002 - the query parameter's name
        return pages.login_page(_safe_next(next))

    @info.post("/login", include_in_schema=False)
    def login(self, username: str = Form(""), password: str = Form(""), next: str = Form("/review")):  # noqa: A002
        """An adjuster logs in; a wrong username or password gets 401 and no hint which."""
        store = self.scorer.store
        token = store.access.login(store.engine, username[:128], password[:256])
        if token is None:
            return HTMLResponse(pages.login_page(_safe_next(next), failed=True), status_code=401)
        reply = RedirectResponse(_safe_next(next), status_code=303)
        reply.set_cookie(SESSION_COOKIE, token, httponly=True, samesite="strict", max_age=SESSION_HOURS * 3600)
        return reply

    @info.post("/logout", include_in_schema=False)
    def logout(self, request: Request):
        token = request.cookies.get(SESSION_COOKIE)
        if token:
            self.scorer.store.access.logout(self.scorer.store.engine, token)
        reply = RedirectResponse("/login", status_code=303)
        reply.delete_cookie(SESSION_COOKIE)
        return reply

    @info.get("/review", response_class=HTMLResponse, include_in_schema=False)
    def review_queue(self, request: Request, decision: Optional[str] = None, overdue: bool = False,
                     recorded: Optional[str] = None):
        """The adjusters' queue page."""
        now = utc_now()
        decision = decision if decision in OUTCOME_NAMES else None
        cases = self.scorer.store.queue(now=now, decision=decision, overdue=overdue, limit=500)
        message = f"Outcome recorded for claim {recorded}; it has left the queue." if recorded else None
        return pages.queue_page(cases, now, decision, overdue, message, user=request.state.adjuster)

    @info.get("/review/{claim_id}", response_class=HTMLResponse, include_in_schema=False)
    def review_case(self, request: Request, claim_id: str):
        """One case, explained."""
        return self._case_reply(request, claim_id)

    @info.post("/review/{claim_id}/respond", include_in_schema=False)
    def review_take(self, request: Request, claim_id: str):
        """The page's button: the logged-in adjuster takes the case (the 24-hour response is given)."""
        try:
            self.scorer.store.respond(claim_id, request.state.adjuster)
        except ReviewError as e:
            return self._case_reply(request, claim_id, error=str(e), status=409)
        return RedirectResponse(f"/review/{quote(claim_id)}", status_code=303)

    @info.post("/review/{claim_id}/outcome", include_in_schema=False)
    def review_outcome(self, request: Request, claim_id: str, outcome: str = Form(""), note: str = Form("")):
        """The page's form: record the outcome as the logged-in adjuster, then back to the queue."""
        try:
            self.scorer.store.record_outcome(claim_id, outcome, note.strip() or None, request.state.adjuster)
        except ReviewError as e:
            return self._case_reply(request, claim_id, error=str(e), status=422)
        return RedirectResponse(f"/review?recorded={quote(claim_id)}", status_code=303)

    def _case_reply(self, request: Request, claim_id: str, error: str | None = None, status: int = 200):
        """The case page (with `error` shown, if any), or a not-found page for a claim never scored."""
        user = request.state.adjuster
        detail = self.scorer.store.case(claim_id)
        if detail is None:
            return HTMLResponse(pages.not_found_page(claim_id, user), status_code=404)
        return HTMLResponse(pages.case_page(detail, utc_now(), error=error, user=user), status_code=status)

    @info.post("/feedback", status_code=201)
    def feedback(self, body: Feedback) -> dict:
        """Record what a claim came to (resolving its case); it becomes the claim's training label."""
        return _reviewed(lambda: self.scorer.store.record_outcome(body.claim_id, body.outcome, body.note, body.recorded_by))


def _stop_server() -> None:
    """Ask the `bentoml serve` process that started this worker to shut down, with an error."""
    os.kill(os.getppid(), signal.SIGUSR1)


SESSION_COOKIE = "claimtriage_session"
# Open to anyone: the orchestrator's probes, Prometheus, the API's own documentation, the login.
OPEN_PATHS = frozenset({"/healthz", "/livez", "/readyz", "/metrics", "/docs", "/docs.json", "/", "/login",
                        "/logout"})
_UNAUTHORISED = JSONResponse({"error": "missing or invalid credentials"}, status_code=401,
                             headers={"WWW-Authenticate": "Bearer"})


class RequireCredentials:
    """ASGI middleware: API calls need an API key (`Authorization: Bearer KEY` or `X-API-Key: KEY`);
    the review pages need an adjuster's session. Failures say nothing about why."""

    store = None  # the service's claim store, set when the service starts (before it is ready)

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        if self.store is None:  # not started yet: nothing but the open paths is served
            await _UNAUTHORISED(scope, receive, send)
            return
        access, engine = self.store.access, self.store.engine
        headers = dict(scope.get("headers") or [])
        if scope["path"].startswith("/review"):
            token = _cookie(headers.get(b"cookie", b""), SESSION_COOKIE)
            user = access.session_user(engine, token) if token else None
            if user is None:
                reply = RedirectResponse("/login?next=" + quote(scope["path"]), status_code=303) \
                    if scope["method"] == "GET" else _UNAUTHORISED
                await reply(scope, receive, send)
                return
            scope.setdefault("state", {})["adjuster"] = user
        else:
            auth = headers.get(b"authorization", b"").decode("latin-1")
            key = auth[7:].strip() if auth[:7].lower() == "bearer " else headers.get(b"x-api-key", b"").decode("latin-1")
            owner = access.key_owner(engine, key) if key and len(key) <= 200 else None
            if owner is None:
                await _UNAUTHORISED(scope, receive, send)
                return
            scope.setdefault("state", {})["api_key"] = owner  # who wrote what: outcomes keep it
        await self.app(scope, receive, send)


def _cookie(header: bytes, name: str) -> str | None:
    for part in header.decode("latin-1").split(";"):
        key, _, value = part.strip().partition("=")
        if key == name and value:
            return value
    return None


def _safe_next(target: str) -> str:
    """Only back to a review page of this service, never to another site."""
    return target if target.startswith("/review") and "//" not in target else "/review"


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


ClaimTriage.add_asgi_middleware(JsonBodiesOnly)
ClaimTriage.add_asgi_middleware(RequireCredentials)


def _record(claim) -> dict:
    return claim.model_dump(exclude_unset=True)
