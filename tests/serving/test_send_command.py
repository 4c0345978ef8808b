"""`claimtriage send`: a claims file through a running service's API, invalid claims listed and not
sent, the decisions counted, and outcomes reported from the file's labels."""

import pandas as pd
import pytest

from cli.main import main
from cli.send_command import outcome_of
from serving.store import ClaimStore
from training.generate import write_claims


def test_a_file_is_scored_and_half_its_outcomes_reported(service, tmp_path, capsys):
    claims = service["new"].iloc[340:370].copy()
    claims["claim_id"] = [f"SEND-{i}" for i in range(len(claims))]
    path = tmp_path / "month.parquet"
    write_claims(claims, path)
    code = main(["send", "--data", str(path), "--url", service["base"], "--key", service["key"], "--batch", "7",
                 "--outcomes", "0.5"])
    said = capsys.readouterr().out
    assert code == 0, said
    assert said.startswith(f"sent 30 claims to {service['base']}: ") and said.rstrip().endswith("15 outcomes reported")
    decided = sum(int(part.split()[0]) for part in said.split(": ", 1)[1].split(";")[0].split(", "))
    assert decided == 30
    labelled = ClaimStore(service["store_url"]).labelled_claims().set_index("claim_id")
    mine = labelled.loc[labelled.index.str.startswith("SEND-")]
    assert len(mine) == 15
    truth = claims.set_index("claim_id").loc[mine.index]
    assert list(mine["outcome"]) == [outcome_of(bool(f), bool(p)) for f, p in zip(truth["is_fraud"], truth["paid_as_filed"])]
    assert (mine["is_fraud"].astype(bool) == truth["is_fraud"].astype(bool)).all()
    honest = ~truth["is_fraud"].astype(bool)  # a fraud's paid_as_filed label is false by definition
    assert (mine.loc[honest, "paid_as_filed"].astype(bool) == truth.loc[honest, "paid_as_filed"].astype(bool)).all()


def test_the_outcome_reported_follows_the_labels():
    assert [outcome_of(True, True), outcome_of(False, True), outcome_of(False, False), outcome_of(False, None)] == \
        ["confirmed_fraud", "paid_as_filed", "paid_adjusted", "not_fraud"]


def test_invalid_claims_are_listed_not_sent_and_the_exit_code_says_so(service, tmp_path, capsys):
    claims = service["new"].iloc[370:374].copy()
    claims["claim_id"] = [f"SEND-BAD-{i}" for i in range(len(claims))]
    claims["claim_amount"] = claims["claim_amount"].astype("float64")
    claims.loc[claims.index[1], "claim_amount"] = -5.0
    path = tmp_path / "bad.csv"
    write_claims(claims, path)
    assert main(["send", "--data", str(path), "--url", service["base"], "--key", service["key"]]) == 1
    captured = capsys.readouterr()
    assert captured.out.startswith("sent 3 claims") and "claim_amount" in captured.err
    stored = ClaimStore(service["store_url"])
    assert stored.case("SEND-BAD-1") is None and stored.case("SEND-BAD-0") is not None


@pytest.mark.parametrize("args, message", [
    (["--outcomes", "1.5"], "--outcomes is a share of the claims, 0 to 1"),
    (["--batch", "0"], "--batch must be 1 to 1,000"),
    (["--key", ""], "--key (or $CLAIMTRIAGE_API_KEY) is needed"),
])
def test_usage_errors_are_named(tmp_path, capsys, monkeypatch, args, message):
    monkeypatch.delenv("CLAIMTRIAGE_API_KEY", raising=False)
    path = tmp_path / "c.parquet"
    pd.DataFrame({"claim_id": ["a"]}).to_parquet(path)
    assert main(["send", "--data", str(path), "--key", "k", *args]) == 2
    assert message in capsys.readouterr().err
