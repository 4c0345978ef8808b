"""The adjusters' review pages: plain server-rendered HTML with inline SVG, no build step, no CDN.

`queue_page` lists the cases awaiting a person with their time left; `case_page` explains one
decision in sentences, draws the contributions of the fraud and eligibility models as waterfalls,
and carries the form that records the outcome. Everything shown is escaped.
"""

from __future__ import annotations

from datetime import datetime
from html import escape

from serving.clock import as_datetime
from serving.review import OUTCOME_TEXT

DECISION_TEXT = {
    "AUTO_APPROVE": "approved automatically",
    "STANDARD_REVIEW": "standard review",
    "ENHANCED_REVIEW": "enhanced review (unusual claim)",
    "SIU_REFERRAL": "refer to investigators (SIU)",
}
MODEL_TEXT = {"fraud": "Fraud risk", "eligibility": "Payable as filed", "anomaly": "How unusual"}
LINK_TEXT = {"payee_account": "payee account", "claimant_phone": "phone", "claimant_address": "address",
             "provider_id": "provider"}

_STYLE = """
body{font:15px/1.45 system-ui,sans-serif;margin:0;color:#1d2430;background:#f6f7f9}
header{background:#1d2430;color:#fff;padding:10px 24px}header a{color:#fff;text-decoration:none;font-weight:600}
main{padding:16px 24px;max-width:1200px}table{border-collapse:collapse;width:100%;background:#fff}
th,td{padding:6px 10px;border-bottom:1px solid #e3e6ea;text-align:left;vertical-align:top}
th{background:#eef0f3;font-weight:600}tr.overdue td{background:#fff1f0}.overdue-tag{color:#b42318;font-weight:600}
.card{background:#fff;border:1px solid #e3e6ea;border-radius:6px;padding:12px 16px;margin:12px 0}
.decision{font-size:20px;font-weight:600}.muted{color:#5b6472}.flash{background:#ecfdf3;border:1px solid #a6f4c5;
padding:8px 12px;border-radius:6px}.error{background:#fff1f0;border:1px solid #fda29b;padding:8px 12px;border-radius:6px}
ul.reasons li{margin:2px 0}.grid{display:grid;grid-template-columns:1fr 1fr;gap:12px}
nav a{margin-right:12px}
"""


def _page(title: str, body: str, user: str | None = None) -> str:
    who = (f"<form method=post action='/logout' style='float:right;margin:0'>{escape(user)} "
           "<button type=submit>Log out</button></form>") if user else ""
    return (f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{escape(title)}</title>"
            f"<meta name=viewport content='width=device-width,initial-scale=1'><style>{_STYLE}</style></head>"
            f"<body><header>{who}<a href='/review'>Claim review</a></header><main>{body}</main></body></html>")


def login_page(next_path: str, failed: bool = False) -> str:
    error = "<p class=error role=alert>Wrong username or password.</p>" if failed else ""
    return _page("Log in", f"<h1>Adjusters' login</h1>{error}<form class=card method=post action='/login'>"
                           f"<input type=hidden name=next value='{escape(next_path)}'>"
                           "<p><label>Username <input name=username required maxlength=128 autocomplete=username>"
                           "</label></p><p><label>Password <input name=password type=password required "
                           "autocomplete=current-password></label></p><p><button type=submit>Log in</button></p></form>")


def _left(seconds: int | None) -> str:
    if seconds is None:
        return "—"
    sign = "overdue by " if seconds < 0 else ""
    minutes = abs(seconds) // 60
    hours, minutes = divmod(minutes, 60)
    return f"{sign}{hours} h {minutes:02d} min" if hours else f"{sign}{minutes} min"


def _shown(value) -> str:
    """A stored field as text; a field the claim's extract does not have shows as a dash."""
    return "—" if value is None else escape(str(value))


def _amount(value) -> str:
    return "—" if value is None else f"{value:,.2f}"


def _when(moment) -> str:
    moment = as_datetime(moment)
    return "—" if moment is None else moment.strftime("%Y-%m-%d %H:%M UTC")


def queue_page(cases: list[dict], now: datetime, decision: str | None = None, overdue: bool = False,
               message: str | None = None, user: str | None = None) -> str:
    links = ["<a href='/review'>all open</a>", "<a href='/review?overdue=true'>overdue</a>"]
    links += [f"<a href='/review?decision={d}'>{escape(DECISION_TEXT[d])}</a>"
              for d in ("SIU_REFERRAL", "ENHANCED_REVIEW", "STANDARD_REVIEW")]
    rows = []
    for c in cases:
        status = escape(c["status"])
        overdue_tag = " <span class=overdue-tag>OVERDUE</span>" if c["overdue"] else ""
        respond = "given" if c["respond_seconds_left"] is None else _left(c["respond_seconds_left"])
        rows.append(
            f"<tr class='{'overdue' if c['overdue'] else ''}' data-claim='{escape(c['claim_id'])}'>"
            f"<td><a href='/review/{escape(c['claim_id'])}'>{escape(c['claim_id'])}</a></td>"
            f"<td>{escape(DECISION_TEXT.get(c['decision'], c['decision']))}</td>"
            f"<td>{c['fraud_probability']:.1%}</td><td>{c['anomaly_score']:.0%}</td><td>{status}</td>"
            f"<td>respond: {respond}<br>resolve: {_left(c['resolve_seconds_left'])}{overdue_tag}</td>"
            f"<td>{escape(c['assignee'] or '—')}</td></tr>")
    title = "Claims awaiting review" + (" — overdue" if overdue else "") + (
        f" — {DECISION_TEXT.get(decision, decision)}" if decision else "")
    table = ("<table id=queue><thead><tr><th>claim</th><th>decision</th><th>fraud probability</th>"
             "<th>more unusual than</th><th>status</th><th>time left</th><th>adjuster</th></tr></thead>"
             f"<tbody>{''.join(rows)}</tbody></table>") if rows else "<p id=empty>No claims are waiting.</p>"
    flash = f"<p class=flash role=status>{escape(message)}</p>" if message else ""
    return _page("Review queue", f"{flash}<h1>{escape(title)}</h1><nav>{' '.join(links)}</nav>"
                                 f"<p class=muted>{len(cases)} case(s), nearest deadline first, then the riskiest. "
                                 f"Now: {_when(now)}.</p>{table}", user)


def waterfall_svg(model: str, reasons: list[dict], total: dict | None, width: int = 600) -> str:
    """Base value, then each top contribution, then everything else, ending at the model's output."""
    if not reasons or total is None:
        return ""
    steps = [(r["feature"].replace("_", " "), r["contribution"]) for r in reasons]
    rest = total["model_output"] - total["base_value"] - sum(c for _, c in steps)
    if abs(rest) > 1e-9:
        steps.append(("all other features", rest))
    level = total["base_value"]
    points = [level]
    for _, c in steps:
        level += c
        points.append(level)
    low, high = min(points), max(points)
    span = (high - low) or 1.0
    label_w, bar_w, row_h = 230, width - 300, 26
    x = lambda v: label_w + (v - low) / span * bar_w  # noqa: E731
    height = row_h * (len(steps) + 2) + 8
    parts = [f"<svg class=waterfall data-model='{escape(model)}' width={width} height={height} role=img "
             f"aria-label='{escape(MODEL_TEXT.get(model, model))}: contributions'>"]
    y = 4
    parts.append(f"<text x=0 y={y + 17}>starting point (average claim)</text>"
                 f"<line x1={x(total['base_value']):.1f} x2={x(total['base_value']):.1f} y1={y} y2={y + row_h - 4} "
                 "stroke=#5b6472 stroke-width=2 />")
    level = total["base_value"]
    for name, c in steps:
        y += row_h
        start, end = x(level), x(level + c)
        colour = "#d92d20" if c > 0 else "#1570ef"
        parts.append(f"<text x=0 y={y + 17}>{escape(name)}</text>"
                     f"<rect x={min(start, end):.1f} y={y + 3} width={max(abs(end - start), 1):.1f} height={row_h - 8} "
                     f"fill={colour} />"
                     f"<text x={max(start, end) + 4:.1f} y={y + 17} font-size=12>{c:+.3f}</text>")
        level += c
    y += row_h
    parts.append(f"<text x=0 y={y + 17} font-weight=600>this claim</text>"
                 f"<line x1={x(total['model_output']):.1f} x2={x(total['model_output']):.1f} y1={y} y2={y + row_h - 4} "
                 "stroke=#1d2430 stroke-width=3 />")
    parts.append("</svg>")
    return "".join(parts)


def not_found_page(claim_id: str, user: str | None = None) -> str:
    return _page("Not found", f"<h1>Claim {escape(claim_id)}</h1><p id=empty>No claim {escape(claim_id)} has been "
                              "scored.</p><p><a href='/review'>Back to the queue</a></p>", user)


def case_page(detail: dict, now: datetime, error: str | None = None, user: str | None = None) -> str:
    claim_id = detail["claim_id"]
    decision, case, claim = detail.get("decision") or {}, detail.get("case"), detail.get("claim") or {}
    scores = decision.get("scores") or {}
    parts = [f"<h1>Claim {escape(claim_id)}</h1>"]
    if error:
        parts.append(f"<p class=error role=alert>{escape(error)}</p>")
    if decision:
        parts.append(
            f"<div class=card><div class=decision id=decision>{escape(DECISION_TEXT.get(decision['decision'], ''))}</div>"
            f"<p>Fraud probability <b>{scores.get('fraud_probability', 0):.1%}</b>; payable as filed "
            + ("—" if scores.get("approval_probability") is None else f"<b>{scores['approval_probability']:.1%}</b>")
            + f"; more unusual than <b id=anomaly>{scores.get('anomaly_score', 0):.0%}</b> of past claims. "
            f"<span class=muted>Model version {escape(str(detail.get('model_version')))}, scored "
            f"{_when(decision.get('scored_at'))}.</span></p>")
        if case:
            overdue = " <span class=overdue-tag>OVERDUE</span>" if case["overdue"] else ""
            parts.append(f"<p>Status <b id=status>{escape(case['status'])}</b>; respond by {_when(case['respond_by'])}, "
                         f"resolve by {_when(case['resolve_by'])} ({_left(case['seconds_left'])} left){overdue}"
                         + (f"; taken by {escape(case['assignee'])}" if case.get("assignee") else "") + ".</p>"
                         + ("<form method=post action='/review/" + escape(claim_id) + "/respond'>"
                            "<button type=submit id=take-case>Take this case (first response given)</button></form>"
                            if case["status"] == "open" else ""))
        parts.append("</div>")
        hits = decision.get("rule_hits") or []
        if hits:
            parts.append("<div class=card><h2>Rules that block automatic approval</h2><ul id=rules>"
                         + "".join(f"<li>{escape(h['text'])}</li>" for h in hits) + "</ul></div>")
        reasons = decision.get("reasons") or {}
        totals = decision.get("contribution_totals") or {}
        why = []
        for model in ("fraud", "eligibility", "anomaly"):
            if reasons.get(model):
                items = "".join(f"<li>{escape(r['text'])}</li>" for r in reasons[model])
                chart = waterfall_svg(model, reasons[model], totals.get(model)) if model != "anomaly" else ""
                why.append(f"<div class=card data-model='{model}'><h2>{MODEL_TEXT[model]}: why</h2>"
                           f"<ul class=reasons>{items}</ul>{chart}</div>")
        if why:
            parts.append("<p class=muted>Red bars push towards fraud (or towards paying, for the eligibility chart), "
                         "blue bars away, in the model's own units.</p>" + "".join(why))
    outcome = detail.get("outcome")
    if outcome:
        parts.append(f"<div class=card id=outcome>Outcome recorded: <b>{escape(OUTCOME_TEXT[outcome['outcome']])}</b> "
                     f"by {escape(outcome['recorded_by'])} at {_when(outcome['recorded_at'])}"
                     + (f": {escape(outcome['note'])}" if outcome.get("note") else "") + "</div>")
    elif decision:
        options = "".join(f"<option value='{k}'>{escape(v)}</option>" for k, v in OUTCOME_TEXT.items())
        parts.append("<form class=card method=post action='/review/" + escape(claim_id) + "/outcome'>"
                     "<h2>Record the outcome</h2><p><label>Outcome <select name=outcome required>"
                     f"<option value=''>choose…</option>{options}</select></label></p>"
                     "<p><label>Note<br><textarea name=note rows=3 cols=60 maxlength=4000></textarea></label></p>"
                     "<p><button type=submit id=record-outcome>Record outcome</button></p></form>")
    fields = "".join(f"<tr><th>{escape(k.replace('_', ' '))}</th><td>{escape(_when(v) if isinstance(v, datetime) else str(v))}</td></tr>"
                     for k, v in claim.items())
    ring_rows = "".join(
        f"<tr><td><a href='/review/{escape(r['claim_id'])}'>{escape(r['claim_id'])}</a></td>"
        f"<td>{_shown(r['claimant_id'])}</td><td>{_when(r['report_date'])}</td>"
        f"<td>{_shown(r['loss_type'])}</td><td>{_amount(r['claim_amount'])}</td>"
        f"<td>{escape(', '.join(LINK_TEXT[s] for s in r['shares']))}</td></tr>" for r in detail.get("ring") or [])
    ring = ("<table id=ring><thead><tr><th>claim</th><th>claimant</th><th>reported</th><th>loss</th><th>amount</th>"
            f"<th>shares</th></tr></thead><tbody>{ring_rows}</tbody></table>") if ring_rows else \
        "<p class=muted>No other claim shares its payee account, phone, address or provider.</p>"
    parts.append(f"<div class=grid><div class=card><h2>The claim</h2><table id=fields>{fields}</table></div>"
                 f"<div class=card><h2>Linked claims (the ring view)</h2>{ring}</div></div>")
    return _page(f"Claim {claim_id}", "".join(parts), user)
