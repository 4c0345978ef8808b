"""`claimtriage score-bulk` on the local engine: the same decisions, scores and reasons as the
pandas path and the service for the same claims and history; every row either scored or set aside
with its reasons; output written whole or not at all."""

from __future__ import annotations

import json
from datetime import datetime

import numpy as np
import pandas as pd
import pytest

from bulk.io import compare_outputs, read_output
from cli.main import main
from features.validation import validate_claims
from models.config import Deadlines
from models.pyfunc import load_bundle, wire_format
from serving.scoring import Scorer
from serving.store import ClaimStore

pytestmark = pytest.mark.slow
SCORES = ["claim_id", "decision", "approval_probability", "fraud_probability", "anomaly_score", "rule_hits"]


def _bulk(*args) -> int:
    return main(["score-bulk", *map(str, args)])


def _champion():
    return load_bundle("models:/claim-triage@champion")


def test_local_engine_scores_exactly_as_the_pandas_path(in_bulk_home, edge_book, tmp_path):
    edge_book.to_parquet(tmp_path / "book.parquet")
    assert _bulk("--data", tmp_path / "book.parquet", "--out", tmp_path / "out") == 0
    scores, rejected, summary = read_output(tmp_path / "out")
    bundle = _champion()
    claims = validate_claims(edge_book, fields=bundle.claim_fields).claims
    expected = bundle.score(claims).sort_values("claim_id", ignore_index=True)
    pd.testing.assert_frame_equal(scores[SCORES], expected[SCORES], check_exact=True, check_dtype=False)
    assert (scores["model_version"] == "1").all() and len(rejected) == 0
    assert summary["claims_read"] == summary["claims_scored"] == len(edge_book)
    assert sum(summary["decisions"].values()) == len(edge_book)
    assert "is_fraud" in summary["columns_not_read"] and "fraud_confirmed_at" not in summary["columns_not_read"]


def test_local_engine_answers_as_the_service_for_the_same_claims_and_history(in_bulk_home, edge_book, tmp_path):
    """The service, on an empty store, scoring the book a day at a time in report order, has each claim's
    history exactly as the book is to itself: the same decision, scores and reasons."""
    book = edge_book.drop(columns=["fraud_confirmed_at"]).head(1_200)  # outcomes reach the service by /feedback
    book.to_parquet(tmp_path / "book.parquet")
    assert _bulk("--data", tmp_path / "book.parquet", "--out", tmp_path / "out", "--explain") == 0
    scores = read_output(tmp_path / "out")[0].set_index("claim_id")
    bundle = _champion()
    scorer = Scorer(bundle, "1", ClaimStore(f"sqlite:///{tmp_path / 'claims.db'}"), Deadlines())
    answers = {}
    for _, day in book.groupby(book["report_date"].dt.floor("D"), sort=True):
        wire = wire_format(day, bundle)
        records = [{k: v for k, v in r.items() if v is not None}
                   for r in wire.astype(object).where(wire.notna(), None).to_dict(orient="records")]
        for answer in scorer.score(records, explain=True, now=datetime(2026, 12, 1)).results:
            answers[answer["claim_id"]] = answer
    assert set(answers) == set(scores.index)
    for claim_id, answer in answers.items():
        row = scores.loc[claim_id]
        assert answer["decision"] == row["decision"], claim_id
        assert answer["scores"]["fraud_probability"] == row["fraud_probability"], claim_id
        assert answer["scores"]["anomaly_score"] == row["anomaly_score"], claim_id
        assert answer["scores"]["approval_probability"] == row["approval_probability"], claim_id
        for model in ("eligibility", "fraud", "anomaly"):
            assert answer["reasons"][model] == json.loads(row[f"{model}_reasons"]), (claim_id, model)


def test_invalid_rows_are_set_aside_with_their_reasons_and_never_counted(in_bulk_home, edge_book, tmp_path):
    book = edge_book.head(800).copy()
    book["claim_amount"] = book["claim_amount"].astype(object)
    book.loc[5, "claim_amount"] = "12x"
    book.loc[7, "claim_id"] = book.loc[8, "claim_id"]
    book.loc[9, "report_date"] = None
    book.loc[11, "line_of_business"] = "marine"
    book = book.astype({"claim_amount": str})
    text = book.astype(str).replace({"NaT": "", "nan": "", "<NA>": "", "None": ""})
    text.to_csv(tmp_path / "book.csv", index=False)
    assert _bulk("--data", tmp_path / "book.csv", "--out", tmp_path / "out") == 0
    scores, rejected, summary = read_output(tmp_path / "out")
    assert list(zip(rejected["row"], rejected["column"])) == [
        (5, "claim_amount"), (7, "claim_id"), (8, "claim_id"), (9, "report_date"), (11, "line_of_business")]
    assert rejected.loc[0, "value"] == '"12x"' and rejected.loc[0, "claim_id"] == book.loc[5, "claim_id"]
    assert rejected["reason"].str.len().gt(0).all() and (rejected["source"] == "book.csv").all()
    assert summary["rows_rejected"] == 5 and summary["claims_scored"] == 795 == len(scores)
    assert not set(scores["claim_id"]) & set(rejected["claim_id"])
    # The rest scored exactly as the pandas path scores the valid claims: the rejected rows are no history.
    bundle = _champion()
    valid = validate_claims(text, fields=bundle.claim_fields).claims
    expected = bundle.score(valid).sort_values("claim_id", ignore_index=True)
    pd.testing.assert_frame_equal(scores[SCORES], expected[SCORES], check_exact=True, check_dtype=False)


def test_a_directory_of_part_files_is_one_input(in_bulk_home, edge_book, tmp_path):
    whole, parts = tmp_path / "whole.parquet", tmp_path / "parts"
    edge_book.to_parquet(whole)
    parts.mkdir()
    for i, start in enumerate(range(0, len(edge_book), 1_000)):
        edge_book.iloc[start:start + 1_000].to_parquet(parts / f"part-{i:05d}.parquet")
    (parts / "_SUCCESS").write_text("")
    assert _bulk("--data", whole, "--out", tmp_path / "a") == 0
    assert _bulk("--data", parts, "--out", tmp_path / "b") == 0
    pd.testing.assert_frame_equal(read_output(tmp_path / "a")[0], read_output(tmp_path / "b")[0])


def test_scores_are_written_a_chunk_at_a_time_in_claim_id_order(in_bulk_home, edge_book, tmp_path, monkeypatch):
    """Only one chunk's scores and reasons are held at a time (10M claims with reasons no longer fit in
    memory at once), and the part files, read in name order, are by claim id as Spark writes them,
    whatever the input's order; chunking changes nothing in what is written."""
    import bulk.local

    edge_book.sample(frac=1.0, random_state=3).to_parquet(tmp_path / "book.parquet")  # not in claim id order
    assert _bulk("--data", tmp_path / "book.parquet", "--out", tmp_path / "whole", "--explain") == 0
    monkeypatch.setattr(bulk.local, "CHUNK", 700)
    assert _bulk("--data", tmp_path / "book.parquet", "--out", tmp_path / "chunked", "--explain") == 0
    parts = sorted((tmp_path / "chunked" / "scores").glob("part-*.parquet"))
    assert len(parts) == -(-len(edge_book) // 700)
    frames = [pd.read_parquet(part) for part in parts]
    assert all(len(frame) <= 700 for frame in frames)
    in_file_order = pd.concat(frames, ignore_index=True)
    assert in_file_order["claim_id"].is_monotonic_increasing and in_file_order["claim_id"].is_unique
    whole = pd.read_parquet(tmp_path / "whole" / "scores")
    pd.testing.assert_frame_equal(in_file_order, whole)
    assert read_output(tmp_path / "chunked")[2] == read_output(tmp_path / "whole")[2]


def test_output_is_written_whole_or_not_at_all(in_bulk_home, edge_book, tmp_path, monkeypatch, capsys):
    edge_book.head(300).to_parquet(tmp_path / "book.parquet")
    out = tmp_path / "out"
    assert _bulk("--data", tmp_path / "book.parquet", "--out", out) == 0
    first = read_output(out)
    assert _bulk("--data", tmp_path / "book.parquet", "--out", out) == 2
    assert "exists; pass --overwrite" in capsys.readouterr().err
    import bulk.scoring

    def broken(self, claims, history):
        raise RuntimeError("disk full")

    with monkeypatch.context() as patch:
        patch.setattr(bulk.scoring.BulkScorer, "score", broken)
        assert _bulk("--data", tmp_path / "book.parquet", "--out", out, "--overwrite") == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["book.parquet", "out"]  # no partial output left
    pd.testing.assert_frame_equal(read_output(out)[0], first[0])  # the earlier output stands
    assert _bulk("--data", tmp_path / "book.parquet", "--out", out, "--overwrite") == 0
    pd.testing.assert_frame_equal(read_output(out)[0], first[0])  # a rerun gives the same output


@pytest.mark.parametrize("args, message", [
    (["--data", "nowhere.parquet"], "--data nowhere.parquet: no such file or directory"),
    (["--data", "book.txt"], "unknown file type '.txt'"),
    (["--data", "book.parquet", "--model", "models:/claim-triage/99"], "no model version at models:/claim-triage/99"),
    (["--data", "book.parquet", "--master", "local[2]"], "--master applies to --engine spark"),
])
def test_clear_errors_before_any_work(in_bulk_home, edge_book, tmp_path, monkeypatch, capsys, args, message):
    monkeypatch.chdir(tmp_path)
    edge_book.head(200).to_parquet("book.parquet")
    (tmp_path / "book.txt").write_text("x")
    assert _bulk(*args, "--out", "out") == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_the_spark_engine_without_java_says_so(in_bulk_home, edge_book, tmp_path, monkeypatch, capsys):
    edge_book.head(200).to_parquet(tmp_path / "book.parquet")
    monkeypatch.setenv("JAVA_HOME", str(tmp_path / "no-jdk"))
    assert _bulk("--data", tmp_path / "book.parquet", "--out", tmp_path / "out", "--engine", "spark") == 2
    err = capsys.readouterr().err
    assert "Spark needs Java 17 or 21" in err and "no-jdk has no bin/java" in err


def test_reasons_are_each_model_s_strongest(in_bulk_home, edge_book, tmp_path):
    edge_book.head(300).to_parquet(tmp_path / "book.parquet")
    assert _bulk("--data", tmp_path / "book.parquet", "--out", tmp_path / "out", "--explain") == 0
    scores = read_output(tmp_path / "out")[0]
    for column in ("eligibility_reasons", "fraud_reasons", "anomaly_reasons"):
        reasons = [json.loads(text) for text in scores[column]]
        assert all(1 <= len(r) <= 5 for r in reasons)
        strength = [[abs(x["contribution"]) for x in r] for r in reasons]
        assert all(np.all(np.diff(s) <= 0) for s in strength) and all(x["text"] for r in reasons for x in r)


def test_compare_names_the_first_difference(in_bulk_home, edge_book, tmp_path, capsys):
    edge_book.head(300).to_parquet(tmp_path / "a.parquet")
    changed = edge_book.head(300).copy()
    changed.loc[10, "claim_amount"] *= 40
    changed.to_parquet(tmp_path / "b.parquet")
    assert _bulk("--data", tmp_path / "a.parquet", "--out", tmp_path / "a") == 0
    assert _bulk("--data", tmp_path / "a.parquet", "--out", tmp_path / "a2") == 0
    assert _bulk("--data", tmp_path / "b.parquet", "--out", tmp_path / "b") == 0
    capsys.readouterr()
    assert _bulk("--compare", tmp_path / "a", tmp_path / "a2") == 0
    assert _bulk("--compare", tmp_path / "a", tmp_path / "b") == 1
    out = capsys.readouterr().out
    assert "anomaly_score differs on" in out and f"first {edge_book.loc[10, 'claim_id']}" in out


def _output(folder, parts: list[list[tuple[str, float]]]) -> None:
    """A score-bulk output by hand: score part files as listed, Spark's marker files beside them."""
    (folder / "scores").mkdir(parents=True)
    (folder / "rejected").mkdir()
    for k, rows in enumerate(parts):
        pd.DataFrame({"claim_id": [c for c, _ in rows], "fraud_probability": [p for _, p in rows]}).to_parquet(
            folder / "scores" / f"part-{k:05d}.parquet", index=False)
    (folder / "scores" / "_SUCCESS").write_text("")
    (folder / "scores" / ".part-00000.parquet.crc").write_bytes(b"\0")
    pd.DataFrame({c: pd.Series([], dtype="str") for c in ("source", "row", "claim_id", "column", "value", "reason")}
                 ).to_parquet(folder / "rejected" / "part-00000.parquet", index=False)
    (folder / "summary.json").write_text(json.dumps({"engine": folder.name}))


def test_compare_matches_claims_across_part_files_a_slice_at_a_time(tmp_path, monkeypatch):
    monkeypatch.setattr("bulk.io.COMPARED_AT_ONCE", 2)  # five claims: three slices
    rows = [("C1", 0.1), ("C2", 0.2), ("C3", None), ("C4", 0.4), ("C5", 0.5)]
    _output(tmp_path / "a", [[rows[4], rows[0]], [rows[2], rows[1], rows[3]]])
    _output(tmp_path / "b", [rows])
    assert compare_outputs(tmp_path / "a", tmp_path / "b") == []
    changed = [("C1", 0.1), ("C2", 0.2), ("C3", 0.3), ("C4", 0.4), ("C5", 0.55)]
    _output(tmp_path / "c", [changed[3:], changed[:3]])
    assert compare_outputs(tmp_path / "a", tmp_path / "c") == [
        "fraud_probability differs on 2 claims, first C3: nan and 0.3"]
    # Both in claim id order (as the engines write them): streamed, part boundaries apart from the slices'.
    _output(tmp_path / "d", [changed[:3], changed[3:4], changed[4:]])
    assert compare_outputs(tmp_path / "b", tmp_path / "d") == [
        "fraud_probability differs on 2 claims, first C3: nan and 0.3"]
    _output(tmp_path / "e", [rows[:1], rows[1:4], rows[4:]])
    assert compare_outputs(tmp_path / "e", tmp_path / "b") == []
