"""Training data on Spark (`claimtriage train --engine spark`): a book too big for one machine's
pandas is validated and given its history features on Spark; the fit stays on one machine.

Every valid claim's history features (window functions, and the ring features on the driver, as
`bulk.spark_engine` counts them for scoring) are counted over the whole book. Then, when the book
has more valid claims than `sample_claims`, a stratified sample is drawn: within fraud and non-fraud
claims alike the same share, exactly (the claims of each with the smallest hash of claim id and seed),
so the sample's fraud rate is the book's and calibrated probabilities stay calibrated; the same
book and seed give the same sample. The sample comes to the driver as a pandas frame whose claims
carry their counted history features (`features.builder.PRECOUNTED` columns), which the feature
builder reads instead of counting history within the sample.
"""

from __future__ import annotations

from bulk.local import Progress
from bulk.scoring import POSITION, BatchPreparer
from bulk.spark_engine import HISTORY_INPUTS, LABELS, counted_history, read_input, validated
from bulk.spark_session import spark_session
from features.builder import PRECOUNTED
from features.graph import GRAPH_FEATURES, GraphReport, GraphSettings
from features.history import history_feature_requirements
from training.data import DataError, training_fields

DEFAULT_SAMPLE_CLAIMS = 2_000_000


def training_frame(data: str, settings: GraphSettings, sample_claims: int = DEFAULT_SAMPLE_CLAIMS, seed: int = 0,
                   master: str | None = None, progress: Progress = lambda *_: None):
    """(claims to train on as read, with their history features counted over the whole book; what the
    engine did, for the run's parameters)."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    if sample_claims < 1:
        raise ValueError(f"--sample-claims must be at least 1, not {sample_claims}")
    spark = spark_session(master)
    raw, where = read_input(spark, data)
    columns = [c for c in raw.columns if c not in POSITION]
    fields, labels = training_fields(columns)
    if "is_fraud" not in columns:
        raise DataError(f"{where}: no is_fraud column; training needs the fraud label")
    preparer = BatchPreparer(fields=fields, labels=labels)
    present = [c for c in (*HISTORY_INPUTS, *LABELS) if c in {f.name for f in fields} | set(labels)]
    progress("validate", 0, 0)
    checked, cached = validated(raw, preparer, present)
    valid = checked.filter(F.col("_valid") & (F.col("_copies") == 1))
    n_rows, n_valid = checked.count(), valid.count()
    if n_valid == 0:
        raise DataError(f"{where}: no valid claims to train on ({n_rows:,} rows read)")
    report = GraphReport()
    wanted = [*history_feature_requirements(), *GRAPH_FEATURES]
    history = counted_history(spark, valid, present, wanted, settings, report, progress)
    history = history.select(F.col("claim_id").alias("_key"), *[F.col(n).alias(PRECOUNTED + n) for n in wanted])
    chosen = valid.select(*columns, F.col("_id").alias("_key"), F.col("_h_is_fraud").alias("_stratum"))
    share = min(1.0, sample_claims / n_valid)
    if share < 1.0:
        # Per stratum, exactly round(share * its claims): those with the smallest hash of claim id and seed.
        sizes = {r["_stratum"]: r["count"] for r in chosen.groupBy("_stratum").count().collect()}
        quota = F.when(F.col("_stratum"), F.lit(round(share * sizes.get(True, 0)))) \
            .otherwise(F.lit(round(share * sizes.get(False, 0))))
        order = Window.partitionBy("_stratum").orderBy(F.xxhash64("_key", F.lit(seed)), "_key")
        chosen = chosen.withColumn("_rank", F.row_number().over(order)).filter(F.col("_rank") <= quota)
    progress("sample to the driver", 0, 0)
    frame = chosen.join(history, "_key").drop("_key", "_stratum", "_rank").toPandas()
    cached.unpersist()
    frame = frame.sort_values("claim_id", kind="stable", ignore_index=True)
    info = {"engine": "spark", "master": spark.sparkContext.master, "book_rows": n_rows,
            "book_valid_claims": n_valid, "book_invalid_rows": n_rows - n_valid,
            "sample_claims": len(frame), "sample_share": round(share, 6), "sample_seed": seed,
            "graph_placeholder_values": report.placeholder_values, "graph_over_shared_links": report.over_shared_links}
    return frame, info
