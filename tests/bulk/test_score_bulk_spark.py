"""`claimtriage score-bulk --engine spark` in local mode writes exactly what the local engine writes:
the same scores, decisions and reasons, the same rejected rows, the same summary; reruns give the
same output; a version trained through a dataset mapping maps in bulk too."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from bulk.io import read_output
from cli.main import main
from features.mapping import apply_mapping, load_mapping, read_source
from features.validation import validate_claims
from models.pyfunc import load_bundle

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
EXTRACT, MAPPING = ROOT / "tests/data/insurance_claims.csv", ROOT / "mappings/insurance_claims.yaml"


def _bulk(*args) -> int:
    return main(["score-bulk", *map(str, args)])


def _by_claim(rejected: pd.DataFrame) -> pd.DataFrame:
    """Problems without their row number (Spark does not know a CSV row's), by file and claim."""
    return rejected.drop(columns="row").sort_values(["source", "claim_id", "column", "reason"], ignore_index=True)


def _same_runs(tmp_path: Path, data: Path, *extra, name: str = "") -> tuple:
    local, spark = tmp_path / f"local{name}", tmp_path / f"spark{name}"
    assert _bulk("--data", data, "--out", local, *extra) == 0
    assert _bulk("--data", data, "--out", spark, "--engine", "spark", "--master", "local[2]", *extra) == 0
    return read_output(local), read_output(spark)


def _flawed(book: pd.DataFrame) -> pd.DataFrame:
    """The book with rows a claims system gets wrong: a negative amount, a duplicated claim id, a
    missing report date, an unknown line of business."""
    book = book.copy()
    book.loc[5, "claim_amount"] = -3.0
    book.loc[7, "claim_id"] = book.loc[8, "claim_id"]
    book.loc[9, "report_date"] = pd.NaT
    book.loc[11, "line_of_business"] = "marine"
    return book


def test_spark_writes_what_the_local_engine_writes(spark, in_bulk_home, edge_book, tmp_path):
    _flawed(edge_book).to_parquet(tmp_path / "book.parquet")
    (local, spark_run) = _same_runs(tmp_path, tmp_path / "book.parquet", "--explain")
    pd.testing.assert_frame_equal(spark_run[0], local[0], check_exact=True)
    assert len(local[0]) == len(edge_book) - 5 and local[0]["fraud_reasons"].notna().all()
    pd.testing.assert_frame_equal(spark_run[1], local[1], check_exact=True)
    assert list(local[1]["row"]) == [5, 7, 8, 9, 11]
    assert {k: v for k, v in spark_run[2].items() if k != "engine"} == \
        {k: v for k, v in local[2].items() if k != "engine"}
    # A rerun over the same input replaces the output with the same output.
    assert _bulk("--data", tmp_path / "book.parquet", "--out", tmp_path / "spark", "--engine", "spark",
                 "--master", "local[2]", "--explain", "--overwrite") == 0
    pd.testing.assert_frame_equal(read_output(tmp_path / "spark")[0], local[0], check_exact=True)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary output left
    assert _bulk("--compare", tmp_path / "local", tmp_path / "spark") == 0


def test_csv_part_files_and_tables(spark, in_bulk_home, edge_book, tmp_path, capsys):
    """CSV is read as text by both engines (ids stay as written); a Spark table is an input too.
    Spark does not know a CSV row's number: its rejected rows say where by file and claim id."""
    book = _flawed(edge_book.head(900))
    text = book.astype(str).replace({"NaT": "", "nan": "", "<NA>": "", "None": ""})
    parts = tmp_path / "parts"
    parts.mkdir()
    for i, start in enumerate(range(0, len(text), 300)):
        text.iloc[start:start + 300].to_csv(parts / f"part-{i:05d}.csv", index=False)
    local, spark_run = _same_runs(tmp_path, parts)
    pd.testing.assert_frame_equal(spark_run[0], local[0], check_exact=True)
    assert spark_run[1]["row"].isna().all() and local[1]["row"].notna().all()
    pd.testing.assert_frame_equal(_by_claim(spark_run[1]), _by_claim(local[1]))
    assert spark_run[2]["rows_rejected"] == local[2]["rows_rejected"] == 5
    assert _bulk("--compare", tmp_path / "local", tmp_path / "spark") == 0  # problems matched without rows

    spark.createDataFrame(_flawed(edge_book.head(900)).drop(columns=["fraud_confirmed_at"])) \
        .createOrReplaceTempView("open_claims")
    book.drop(columns=["fraud_confirmed_at"]).to_parquet(tmp_path / "book.parquet")
    assert _bulk("--data", "open_claims", "--out", tmp_path / "table", "--engine", "spark") == 0
    assert _bulk("--data", tmp_path / "book.parquet", "--out", tmp_path / "file") == 0
    table, file = read_output(tmp_path / "table"), read_output(tmp_path / "file")
    pd.testing.assert_frame_equal(table[0], file[0], check_exact=True)
    assert (table[1]["source"] == "open_claims").all() and len(table[1]) == len(file[1]) == 5
    assert _bulk("--compare", tmp_path / "table", tmp_path / "file") == 1
    assert "problems differ" in capsys.readouterr().out  # other sources


@pytest.fixture(scope="module")
def mapped_home(tmp_path_factory, empty_tracking_store):
    """A home whose champion was trained on the public extract through its mapping."""
    from tests.conftest import use_home

    home = tmp_path_factory.mktemp("mapped-bulk")
    with pytest.MonkeyPatch.context() as patch:
        use_home(patch, home, empty_tracking_store)
        (home / "claimtriage.toml").write_text("[training]\ncv_below_rows = 0\n")
        assert main(["train", "--data", str(EXTRACT), "--mapping", str(MAPPING)]) == 0
    return home


def test_a_mapping_trained_version_maps_in_bulk(spark, mapped_home, tmp_path, monkeypatch):
    monkeypatch.setenv("CLAIMTRIAGE_HOME", str(mapped_home))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{mapped_home / 'mlflow.db'}")
    monkeypatch.chdir(mapped_home)
    raw = pd.read_csv(EXTRACT, dtype=str, keep_default_na=False)
    raw.loc[3, "incident_type"] = "Meteor Strike"  # a value the mapping does not map
    raw.loc[4, "incident_date"] = "31/31/2015"     # not a date
    raw.loc[6, "total_claim_amount"] = "-5"         # maps, then validation rejects it
    raw.loc[8, "policy_number"] = raw.loc[9, "policy_number"]  # two claims with one id
    raw.to_csv(tmp_path / "extract.csv", index=False)
    local, spark_run = _same_runs(tmp_path, tmp_path / "extract.csv")
    pd.testing.assert_frame_equal(spark_run[0], local[0], check_exact=True)
    problems = local[1].set_index("row")
    assert list(problems.index) == [3, 4, 6, 8, 9] and len(local[0]) == len(raw) - 5
    assert list(problems["column"]) == ["incident_type", "incident_date", "total_claim_amount", "policy_number",
                                        "policy_number"]  # named by the extract's columns, as the service names them
    # The value as the extract holds it, as the service quotes it (not the mapped -5.0).
    assert problems.loc[6, "reason"].endswith("(as claim_amount)") and problems.loc[6, "value"] == "-5"
    assert problems.loc[8, "reason"].endswith("(as claim_id)")
    pd.testing.assert_frame_equal(_by_claim(spark_run[1]), _by_claim(local[1]))
    # The same scores as the pandas path on the extract mapped as training maps it.
    bundle = load_bundle("models:/claim-triage@champion")
    mapping = load_mapping(MAPPING)
    mapped = apply_mapping(read_source(EXTRACT, mapping), mapping).drop(index=[3, 4, 6, 8, 9])
    claims = validate_claims(mapped.drop(columns=["is_fraud"]), fields=bundle.claim_fields).claims
    expected = bundle.score(claims).sort_values("claim_id", ignore_index=True)
    pd.testing.assert_frame_equal(local[0][expected.columns[:-1]], expected[expected.columns[:-1]], check_exact=True,
                                  check_dtype=False)


def test_output_on_a_hadoop_filesystem_is_moved_into_place_whole(spark, tmp_path):
    """The staging a cluster's output goes through (hdfs://, s3a://), here on Hadoop's own local
    filesystem: nothing at the destination until the block completes; a failure leaves nothing."""
    from bulk.io import BulkInputError
    from bulk.spark_engine import _HadoopStaging

    out = f"file://{tmp_path}/out"
    with _HadoopStaging(spark, out, overwrite=False) as folder:
        spark.range(5).write.parquet(f"{folder}/scores")
        assert not (tmp_path / "out").exists()
    assert spark.read.parquet(f"{out}/scores").count() == 5
    with pytest.raises(BulkInputError, match="exists; pass --overwrite"):
        _HadoopStaging(spark, out, overwrite=False)
    with pytest.raises(RuntimeError, match="disk full"):
        with _HadoopStaging(spark, out, overwrite=True) as folder:
            spark.range(7).write.parquet(f"{folder}/scores")
            raise RuntimeError("disk full")
    assert spark.read.parquet(f"{out}/scores").count() == 5  # the earlier output stands
    with _HadoopStaging(spark, out, overwrite=True) as folder:
        spark.range(7).write.parquet(f"{folder}/scores")
    assert spark.read.parquet(f"{out}/scores").count() == 7
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no temporary or retired folder left


def test_progress_names_spark_stages_by_the_step_announced(spark):
    # Spark names a DataFrame job's stages by JVM call sites ("$anonfun$withThreadLocalCaptured$1"):
    # the progress lines name them by the engine's own step instead.
    import time

    from bulk.spark_engine import _Watch

    lines = []
    with _Watch(spark, lambda stage, done, total: lines.append((stage, done, total)), every=0.05) as watch:
        watch.announce("counting slowly", 0, 0)
        spark.sparkContext.parallelize(range(4), 4).map(lambda x: time.sleep(0.4) or x).count()
    assert lines[0] == ("counting slowly", 0, 0)
    stages = lines[1:]
    assert stages, "no stage was reported while the job ran"
    assert all(stage.startswith("counting slowly: spark stage ") and stage.endswith(", tasks") and total == 4
               and 0 <= done <= 4 for stage, done, total in stages), stages
