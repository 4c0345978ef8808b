"""The adjusters' review pages: server-rendered HTML from Jinja2 templates (serving/templates) with
inline SVG and one stylesheet (serving/static/review.css), no script, no build step, no CDN.

`queue_page` lists the cases awaiting a person with their time left; `case_page` explains one
decision in sentences, draws the contributions of the fraud and eligibility models as waterfalls
and the claim's neighbourhood within two hops as a graph (serving/neighbourhood.py), and carries
the forms that take the case and record the outcome. The templates escape every value
(autoescaping), every claim id in a link or a form's address is percent-encoded whole (`/`, `?`,
`#` and `%` included), and every form carries the session's CSRF token.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from urllib.parse import quote

import jinja2

from serving.clock import as_datetime
from serving.neighbourhood import ring_layout
from serving.review import OUTCOME_TEXT

DECISION_TEXT = {
    "AUTO_APPROVE": "approved automatically",
    "STANDARD_REVIEW": "standard review",
    "ENHANCED_REVIEW": "enhanced review (unusual claim)",
    "SIU_REFERRAL": "refer to investigators (SIU)",
}
MODEL_TEXT = {"fraud": "Fraud risk", "eligibility": "Payable as filed", "anomaly": "How unusual"}
LINK_TEXT = {"payee_account": "payee account", "claimant_phone": "phone", "claimant_address": "address",
             "provider_id": "provider", "claimant_id": "claimant", "policy_id": "policy"}
EDGE_TEXT = LINK_TEXT | {"payee_account": "account"}  # on the ring drawing's edges, where room is short
# A node's marks on the ring drawing: a letter in the node (not colour alone) and the words.
MARK_GLYPH = {"confirmed_fraud": "F", "open_siu": "S"}
MARK_TEXT = {"confirmed_fraud": "confirmed fraud", "open_siu": "open SIU case"}
QUEUE_FILTERS = ("SIU_REFERRAL", "ENHANCED_REVIEW", "STANDARD_REVIEW")


def url_part(value) -> str:
    """One path segment or query value: every character that means something in a URL encoded."""
    return quote(str(value), safe="")


def _left(seconds: int | None) -> str:
    if seconds is None:
        return "—"
    sign = "overdue by " if seconds < 0 else ""
    minutes = abs(seconds) // 60
    hours, minutes = divmod(minutes, 60)
    return f"{sign}{hours} h {minutes:02d} min" if hours else f"{sign}{minutes} min"


def _shown(value) -> str:
    """A stored field as text; a field the claim's extract does not have shows as a dash."""
    return "—" if value is None else str(value)


def _amount(value) -> str:
    return "—" if value is None else f"{value:,.2f}"


def _when(moment) -> str:
    moment = as_datetime(moment)
    return "—" if moment is None else moment.strftime("%Y-%m-%d %H:%M UTC")


def _environment() -> jinja2.Environment:
    # Autoescape every template whatever its name; an undefined name is an error, never an empty string.
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
                             autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True,
                             lstrip_blocks=True)
    env.filters.update(urlpart=url_part, left=_left, shown=_shown, amount=_amount, when=_when,
                       link_text=LINK_TEXT.__getitem__, edge_text=EDGE_TEXT.__getitem__,
                       mark_glyph=MARK_GLYPH.__getitem__, mark_text=MARK_TEXT.__getitem__)
    env.globals.update(decision_text=DECISION_TEXT, outcome_text=OUTCOME_TEXT, mark_glyphs=MARK_GLYPH,
                       mark_texts=MARK_TEXT)
    return env


_TEMPLATES = _environment()


def _render(template: str, title: str, user: str | None, csrf: str, **values) -> str:
    return _TEMPLATES.get_template(template).render(title=title, user=user, csrf=csrf, **values)


def login_page(next_path: str, failed: bool = False, csrf: str = "", expired: bool = False) -> str:
    """The login form; `failed` after a wrong (or locked-out) login, `expired` after a form whose
    token no longer matched (sent from elsewhere, or the cookie gone)."""
    return _render("login.html", "Log in", None, csrf, next_path=next_path, failed=failed, expired=expired)


def queue_page(cases: list[dict], now: datetime, decision: str | None = None, overdue: bool = False,
               message: str | None = None, user: str | None = None, csrf: str = "") -> str:
    heading = "Claims awaiting review" + (" — overdue" if overdue else "") + (
        f" — {DECISION_TEXT.get(decision, decision)}" if decision else "")
    return _render("queue.html", "Review queue", user, csrf, cases=cases, now=now, heading=heading,
                   message=message, filters=QUEUE_FILTERS)


def waterfall(model: str, reasons: list[dict], total: dict | None, width: int = 600) -> dict | None:
    """Base value, then each top contribution, then everything else, ending at the model's output:
    the chart's geometry, which the template draws as SVG."""
    if not reasons or total is None:
        return None
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
    chart = {"model": model, "label": MODEL_TEXT.get(model, model), "width": width, "row_h": row_h,
             "height": row_h * (len(steps) + 2) + 8, "start": {"x": x(total["base_value"]), "y": 4}, "steps": []}
    level, y = total["base_value"], 4
    for name, c in steps:
        y += row_h
        start, end = x(level), x(level + c)
        chart["steps"].append({"name": name, "contribution": c, "y": y, "x": min(start, end),
                               "width": max(abs(end - start), 1), "label_x": max(start, end) + 4,
                               "colour": "#d92d20" if c > 0 else "#1570ef"})
        level += c
    chart["end"] = {"x": x(total["model_output"]), "y": y + row_h}
    return chart


INDICATOR_DAYS = (7, 30, 90)
MIX_COLOURS = {"AUTO_APPROVE": "#12b76a", "STANDARD_REVIEW": "#98a2b3", "ENHANCED_REVIEW": "#f79009",
               "SIU_REFERRAL": "#d92d20"}


def indicators_page(figures: dict, since: datetime, until: datetime, days: int, now: datetime,
                    user: str | None = None, csrf: str = "") -> str:
    """The claims managers' page: the service indicators of the last `days` days
    (monitoring.indicators), and the decision mix per day or week as stacked bars."""
    return _render("indicators.html", "Service indicators", user, csrf, figures=figures, since=since,
                   until=until, days=days, choices=INDICATOR_DAYS, now=now, chart=mix_chart(figures["decision_mix"]),
                   colours=MIX_COLOURS)


def mix_chart(mix: dict, width: int = 720, height: int = 220) -> dict | None:
    """The decision mix's geometry: one stacked bar per day (or week), highest total full height."""
    rows = mix["rows"]
    if not rows:
        return None
    top = max(sum(row[d] for d in MIX_COLOURS) for row in rows) or 1
    left, bottom = 40, 24
    slot = (width - left) / len(rows)
    bars = []
    for i, row in enumerate(rows):
        x, level, parts = left + i * slot + slot * 0.15, height - bottom, []
        for decision, colour in MIX_COLOURS.items():
            h = row[decision] / top * (height - bottom - 8)
            if row[decision]:
                parts.append({"decision": decision, "n": row[decision], "y": level - h, "height": h, "colour": colour})
            level -= h
        bars.append({"period": row["period"], "x": x, "width": slot * 0.7, "parts": parts,
                     "total": sum(row[d] for d in MIX_COLOURS), "label": i % max(1, len(rows) // 8) == 0})
    return {"width": width, "height": height, "bottom": height - bottom, "top": top, "bars": bars, "left": left}


def not_found_page(claim_id: str, user: str | None = None, csrf: str = "") -> str:
    return _render("not_found.html", "Not found", user, csrf, claim_id=claim_id)


def case_page(detail: dict, now: datetime, error: str | None = None, user: str | None = None,
              csrf: str = "") -> str:
    decision, claim = detail.get("decision") or {}, detail.get("claim") or {}
    reasons, totals = decision.get("reasons") or {}, decision.get("contribution_totals") or {}
    why = [{"model": model, "title": MODEL_TEXT[model], "reasons": reasons[model],
            "chart": waterfall(model, reasons[model], totals.get(model)) if model != "anomaly" else None}
           for model in ("fraud", "eligibility", "anomaly") if reasons.get(model)]
    fields = [(name.replace("_", " "), _when(value) if isinstance(value, datetime) else str(value))
              for name, value in claim.items()]
    return _render("case.html", f"Claim {detail['claim_id']}", user, csrf, claim_id=detail["claim_id"], error=error,
                   decision=decision, scores=decision.get("scores") or {}, case=detail.get("case"),
                   model_version=str(detail.get("model_version")), rule_hits=decision.get("rule_hits") or [],
                   why=why, outcome=detail.get("outcome"), fields=fields, ring=detail.get("ring") or [], now=now,
                   graph=_drawn(detail.get("neighbourhood")))


def _drawn(graph: dict | None) -> dict | None:
    """The neighbourhood's drawing, where the claim has any linked claim to draw."""
    return ring_layout(graph) if graph and len(graph["nodes"]) > 1 else None
