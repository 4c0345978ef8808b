"""Plain-language reason sentences, one template per feature, written for adjusters.

Each sentence states the claim's value and, where it helps, what is typical among legitimate
training claims ("Reported 41 days after the loss; most claims are reported within 3 days").
"""

from __future__ import annotations

import math
from typing import Callable

from features.builder import ENCODED_LABEL_SUFFIX

Sentence = Callable[[float | str | None, float | None], str]


def _n(v: float) -> str:
    return f"{v:,.0f}" if abs(v) >= 10 or float(v).is_integer() else f"{v:,.1f}"


def _money(v: float) -> str:
    return f"{v:,.0f}"


def _plural(v: float, word: str) -> str:
    return f"{_n(v)} {word}{'' if v == 1 else 's'}"


def _typical(typ: float | None, text: Callable[[float], str]) -> str:
    return "" if typ is None or math.isnan(typ) else "; " + text(typ)


def _delay(v, typ):
    if v < 1:
        return "Reported on the day of the loss" + _typical(typ, lambda t: f"most claims are reported within {_plural(max(t, 1), 'day')}")
    return f"Reported {_plural(v, 'day')} after the loss" + _typical(
        typ, lambda t: f"most claims are reported within {_plural(max(round(t), 1), 'day')}")


def _policy_age(v, typ):
    if v < 0:
        return f"The loss happened {_plural(-v, 'day')} before the policy started"
    return f"The loss happened {_plural(v, 'day')} after the policy started" + _typical(
        typ, lambda t: f"typically {_plural(t, 'day')}")


def _times_typical(v, typ):
    return f"The amount is {v:.1f} times the typical claim of this loss type"


def _count(template: str, typical_text: str | None = None) -> Sentence:
    def sentence(v, typ):
        text = template.format(n=_n(v) if v else "no", s="" if v == 1 else "s")
        text = text[:1].upper() + text[1:]
        return text + (_typical(typ, lambda t: typical_text.format(t=_n(t))) if typical_text else "")
    return sentence


def _flag(yes: str, no: str) -> Sentence:
    return lambda v, typ: yes if v >= 0.5 else no


WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")

SENTENCES: dict[str, Sentence] = {
    "line_of_business": lambda v, typ: f"Line of business: {v}",
    "loss_type": lambda v, typ: f"Loss type: {v}",
    "region": lambda v, typ: f"Region: {v}",
    "claim_amount": lambda v, typ: f"Claimed {_money(v)}" + _typical(typ, lambda t: f"a typical claim is {_money(t)}"),
    "amount_to_typical_for_loss_type": _times_typical,
    "amount_to_premium": lambda v, typ: f"The amount is {v:.1f} times the annual premium"
                                        + _typical(typ, lambda t: f"typically {t:.1f} times"),
    "amount_to_coverage_limit": lambda v, typ: f"The amount is {v:.0%} of the coverage limit",
    "deductible": lambda v, typ: f"Deductible of {_money(v)}",
    "coverage_limit": lambda v, typ: f"Coverage limit of {_money(v)}",
    "annual_premium": lambda v, typ: f"Annual premium of {_money(v)}",
    "policy_age_days": _policy_age,
    "report_delay_days": _delay,
    "loss_weekday": lambda v, typ: f"The loss happened on a {WEEKDAYS[int(v) % 7]}",
    "report_hour": lambda v, typ: f"Reported at {int(v):02d}:00",
    "loss_hour": lambda v, typ: f"The loss happened at {int(v):02d}:00"
                                + (" (night)" if int(v) < 5 else ""),
    "police_report": _flag("A police report was filed", "No police report was filed"),
    "attorney_involved": _flag("An attorney is involved", "No attorney is involved"),
    "witnesses": lambda v, typ: "No witnesses" if v == 0 else f"{_n(v)} witness{'' if v == 1 else 'es'}",
    "injuries": lambda v, typ: "Nobody was injured" if v == 0 else f"{_plural(v, 'person')} injured".replace(
        "persons", "people"),
    "vehicles_involved": _count("{n} vehicle{s} involved"),
    "claimant_age": lambda v, typ: f"The claimant is {_n(v)} years old",
    "customer_tenure_days": lambda v, typ: f"Customer for {_n(v / 365.25)} years at the time of the loss"
    if v >= 365 else f"Customer for only {_plural(v, 'day')} at the time of the loss",
    "claimant_claims_90d": _count("{n} earlier claim{s} by this claimant in the previous 90 days",
                                  "most claimants have {t}"),
    "claimant_claims_365d": _count("{n} earlier claim{s} by this claimant in the previous year",
                                   "most claimants have {t}"),
    "policy_claims_90d": _count("{n} earlier claim{s} on this policy in the previous 90 days"),
    "policy_claims_365d": _count("{n} earlier claim{s} on this policy in the previous year"),
    "provider_claims_90d": _count("The provider handled {n} claim{s} in the previous 90 days",
                                  "a typical provider handles {t}"),
    "provider_claims_365d": _count("The provider handled {n} claim{s} in the previous year",
                                   "a typical provider handles {t}"),
    "days_since_claimant_last_claim": lambda v, typ: f"The claimant's previous claim was {_plural(v, 'day')} earlier",
    "payee_account_other_claimants": _count("{n} other claimant{s} used the same bank account before"),
    "phone_other_claimants": _count("{n} other claimant{s} gave the same phone number before"),
    "address_other_claimants": _count("{n} other claimant{s} gave the same address before"),
    "ring_claims": _count("Linked to {n} earlier claim{s} through shared identities"),
    "ring_claimants": _count("{n} other claimant{s} among the linked earlier claims"),
    "ring_claims_90d": _count("{n} linked earlier claim{s} in the previous 90 days"),
    "ring_claims_2hop": _count("{n} earlier claim{s} within two links of this one"),
    "ring_fraud_share": lambda v, typ: f"{v:.0%} of the linked earlier claims already confirmed as fraud",
}

MISSING_SENTENCES = {
    "ring_fraud_share": "No earlier claim is linked to this one",
    "days_since_claimant_last_claim": "The claimant has no earlier claim",
    "police_report": "Not stated whether a police report was filed",
    "customer_tenure_days": "Not stated since when the claimant is a customer",
}


def _fraud_rate(label: str, v: float, typ: float | None) -> str:
    # The model reads a code as its fraud rate among training claims, shrunk towards the rate of all
    # of them (`typ`) when few had it; codes it never saw, or none given, read as that overall rate.
    # Only the value arrives here, so at the overall rate the sentence holds for a seen code as well.
    if typ is not None and not math.isnan(typ) and round(typ, 4) == v:
        return f"{label} read as a fraud rate of {v:.1%}: that of all training claims, as for any new to the model " \
               "or not given"
    return f"{label} with a fraud rate of {v:.1%} among training claims with it" + _typical(
        typ, lambda t: f"{t:.1%} among all training claims")


def _share(label: str, v: float, typ: float | None) -> str:
    if v == 0:
        return f"{label} new to the model: no training claim had it"
    return f"{label} seen on {v:.1%} of training claims"


ENCODED_SENTENCES = {"target": _fraud_rate, "frequency": _share}
assert ENCODED_SENTENCES.keys() == ENCODED_LABEL_SUFFIX.keys(), "every encoding needs its sentence"


def _encoded(label: str) -> tuple[str, str] | None:
    """(encoding, the feature's own label) for a categorical feature the model reads as a number."""
    for method, suffix in ENCODED_LABEL_SUFFIX.items():
        if label.endswith(suffix):
            return method, label.removesuffix(suffix)
    return None


def reason_sentence(feature: str, label: str, value: float | str | None, typical: float | None) -> str:
    """The sentence for one feature's value; a generic one for passed-through extra features."""
    method, label = _encoded(label) or (None, label)
    missing = value is None or (isinstance(value, float) and math.isnan(value))
    if missing:
        return MISSING_SENTENCES.get(feature, f"No {label} given")
    if method is not None:  # before the templates: a category read as a number has no name to show
        return ENCODED_SENTENCES[method](label[:1].upper() + label[1:], float(value), typical)
    template = SENTENCES.get(feature)
    if template is None:
        shown = value if isinstance(value, str) else _n(float(value))
        return f"{label[:1].upper()}{label[1:]}: {shown}"
    return template(value, typical)


# The identities a claim shares with other claimants' earlier claims (features.history), as the ring
# sentence names them.
SHARED_IDENTITY_WORDS = {"phone_other_claimants": "phone", "payee_account_other_claimants": "account",
                         "address_other_claimants": "address"}


def ring_sentence(values: dict[str, float]) -> str:
    """The claim's ring in one sentence, from whichever of its graph features the model reads and
    the identities it shares with other claimants (SHARED_IDENTITY_WORDS) ("Linked to 7 earlier
    claims by 4 other claimants through a shared phone and account, 5 of them in the previous 90
    days; 2 confirmed as fraud before this claim")."""
    claims = values.get("ring_claims")
    if claims is None or math.isnan(claims):
        claims = values.get("ring_claims_2hop")
        if claims is None or math.isnan(claims):
            return "No earlier claim is linked to this one"
        text = f"{_plural(claims, 'earlier claim')} within two links of this one"
    elif claims == 0:
        return "No earlier claim is linked to this one through a shared claimant, policy, account, phone or address"
    else:
        text = f"Linked to {_plural(claims, 'earlier claim')}"
        people = values.get("ring_claimants")
        if people is not None and not math.isnan(people):
            text += f" by {_plural(people, 'other claimant')}"
        shared = [word for name, word in SHARED_IDENTITY_WORDS.items() if values.get(name, 0) > 0]
        if shared:
            text += " through a shared " + (" and ".join(shared) if len(shared) < 3
                                             else f"{', '.join(shared[:-1])} and {shared[-1]}")
        recent = values.get("ring_claims_90d")
        if recent is not None and not math.isnan(recent):
            text += f", {_n(recent)} of them in the previous 90 days"
    share = values.get("ring_fraud_share")
    if share is not None and not math.isnan(share) and claims == values.get("ring_claims"):
        frauds = round(share * claims)
        text += f"; {_n(frauds) if frauds else 'none'} confirmed as fraud before this claim"
    return text
