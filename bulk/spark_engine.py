"""The Spark engine: the same scoring as the local engine, spread over a Spark cluster (or local[*]).

1. Read: Parquet or CSV (a file or a directory of part files; CSV as text, as the local engine reads
   it) or a table. Each row keeps its file name and, for Parquet, its row in the file.
2. Validate, partition by partition (`mapInPandas` running `bulk.scoring.BatchPreparer`, the local
   engine's code); claim ids are checked for uniqueness over the whole input with a count per id.
3. History features as Spark window functions over report times (`bulk.spark_history`); the ring
   features (`features.graph`) on the driver: a claim's component as of its report grows claim by
   claim in time order, a sequential union-find over the identity columns only, which Spark's
   partitioned model cannot split. It is the one step whose memory grows on the driver (a few
   hundred bytes a claim); a bundle without ring features skips it.
4. Score with `mapInPandas`: the bundle is broadcast once and unpickled once per Python worker
   (workers are reused), then each batch is validated again (row by row the same result), given its
   counted history and scored by `bulk.scoring.BulkScorer`. `mapInPandas` rather than
   `mlflow.pyfunc.spark_udf`: the pyfunc counts history within the batch it is given, whereas here
   every claim's history is the whole input's, counted in step 3; and the output is several columns
   with reasons, not the pyfunc's scores alone.
5. Write scores by claim id and problems by place to a temporary directory, renamed into place when
   complete (on the local filesystem or any Hadoop filesystem Spark reaches).
"""

from __future__ import annotations

import io
import json
import os
import threading
import uuid
from pathlib import Path

import joblib
import numpy as np
import pandas as pd

from bulk.io import KINDS, REJECTED, SCORES, SUMMARY, BulkInputError, input_files, staged
from bulk.local import REJECTED_ORDER, Progress, run_summary
from bulk.scoring import (POSITION, REJECTED_COLUMNS, ROW, SOURCE, BatchPreparer, BulkScorer, output_columns,
                          rejected_frame)
from bulk.spark_session import spark_session
from features.graph import GRAPH_FEATURES, LINK_FIELDS, GraphReport, graph_features
from features.history import PERSON_FIELDS, TIME_FIELDS
from features.schema import OUTCOME_TIME_FIELD
from models.bundle import TriageBundle

HISTORY_INPUTS = ("claim_id", *TIME_FIELDS, *dict.fromkeys(PERSON_FIELDS + LINK_FIELDS), OUTCOME_TIME_FIELD.name)
TIMES = (*TIME_FIELDS, OUTCOME_TIME_FIELD.name)
LABELS = ("is_fraud",)  # typed beside the history inputs when training samples by it
_FLAGS = ("_valid", "_problems", "_id", "_id_text", "_id_shown", "_mapped")


def score_spark(data: str, out: str, bundle: TriageBundle, about: dict, explain: bool, overwrite: bool = False,
                master: str | None = None, progress: Progress = lambda *_: None) -> dict:
    """Score every claim of `data` (a path or a table name) into the output folder `out` on Spark."""
    spark = spark_session(master)
    raw, where = read_input(spark, data)
    with _Watch(spark, progress) as watch:
        return _score(spark, raw, where, out, bundle, about, explain, overwrite, watch.announce)


def read_input(spark, data: str):
    """The input as a DataFrame with SOURCE and ROW, and how to name it. A local path is checked as
    the local engine checks it; a URI (hdfs://, s3a://) is read as Parquet unless it ends in .csv;
    a name that is no path is a table."""
    from pyspark.sql import functions as F

    if "://" not in data and (os.path.exists(data) or "/" in data or Path(data).suffix.lower() in KINDS):
        inputs = input_files(data)
        kind, paths = inputs.kind, [str(p) for p in inputs.files]
    elif "://" in data:
        kind, paths = ("csv" if data.lower().endswith(".csv") else "parquet"), [data]
    else:
        if not spark.catalog.tableExists(data):
            raise BulkInputError(f"--data {data}: no such file, directory or Spark table")
        return spark.table(data).withColumn(SOURCE, F.lit(data)).withColumn(ROW, F.lit(None).cast("long")), data
    if kind == "csv":
        # Text, every cell as written; only an empty cell is missing (as the local engine reads CSV).
        frame = spark.read.csv(paths, header=True, inferSchema=False, multiLine=True, escape='"')
        return frame.select("*", F.col("_metadata.file_name").alias(SOURCE), F.lit(None).cast("long").alias(ROW)), data
    frame = spark.read.parquet(*paths)
    return frame.select("*", F.col("_metadata.file_name").alias(SOURCE), F.col("_metadata.row_index").alias(ROW)), data


def _score(spark, raw, where: str, out: str, bundle: TriageBundle, about: dict, explain: bool, overwrite: bool,
           progress: Progress) -> dict:
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    preparer = BatchPreparer(bundle)
    columns = [c for c in raw.columns if c not in POSITION]
    # The bundle goes to each executor once; `token` names this run's copy in the workers' cache.
    shared = spark.sparkContext.broadcast(_pickled(bundle))
    version, token = about["model_version"], uuid.uuid4().hex

    # 2. Validation: every input row once, with its problems, its key and its history inputs.
    present = [c for c in HISTORY_INPUTS if c in {f.name for f in bundle.claim_fields} | {OUTCOME_TIME_FIELD.name}]
    progress("validate", 0, 0)
    checked, cached = validated(raw, preparer, present)
    n_read = checked.count()
    rejected = rejections(checked, preparer)

    # 3. History features of the valid claims, counted over the valid claims.
    valid = checked.filter(F.col("_valid") & (F.col("_copies") == 1))
    wanted = [s.name for s in bundle.builder.specs_ if s.source == "history"]
    graph_report = GraphReport()
    history = counted_history(spark, valid, present, wanted, bundle.builder.graph_settings, graph_report, progress)
    scored_input = valid.select(*columns, *POSITION, F.col("_id").alias("_key")).join(
        history.withColumnRenamed("claim_id", "_key"), "_key")

    # 4. Scoring, a batch at a time, by the local engine's code.
    out_schema = T.StructType([T.StructField(c, T.DoubleType() if c.endswith(("_probability", "_score"))
                                             else T.StringType()) for c in output_columns(explain)])

    def score(batches):
        worker = _worker(shared, token, version, explain)
        for batch in batches:
            batch = batch.reset_index(drop=True)
            prepared = worker.preparer.prepare(batch[[*columns, *POSITION]])
            if len(prepared.claims) != len(batch):  # validation is row by row: what passed once passes again
                raise RuntimeError(f"{len(batch) - len(prepared.claims)} claims failed validation on a second pass")
            values = {name: batch[name].to_numpy(dtype=np.float64, na_value=np.nan) for name in wanted}
            yield worker.scorer.score(prepared.claims.drop(columns=list(POSITION)), values)

    scores = scored_input.mapInPandas(score, out_schema)

    # 5. Written whole or not at all.
    progress("score and write", 0, n_read)
    with _staging(spark, out, overwrite) as folder:
        scores.orderBy("claim_id").write.parquet(f"{folder}/{SCORES}")
        rejected.orderBy(*[F.col(c).asc_nulls_last() for c in REJECTED_ORDER]) \
            .coalesce(1).write.parquet(f"{folder}/{REJECTED}")
        written = spark.read.parquet(f"{folder}/{SCORES}")
        decisions = {r["decision"]: r["count"] for r in written.groupBy("decision").count().collect()}
        problems = spark.read.parquet(f"{folder}/{REJECTED}")
        # Rows, not (file, row) pairs: Spark does not know a CSV row's number.
        counts = (checked.filter(F.col("_problems").isNotNull() | (F.col("_copies") > 1)).count(), problems.count())
        summary = run_summary("spark", where, about, explain, n_read, decisions, counts,
                              preparer.columns_not_read(raw.columns), graph_report)
        _write_text(spark, f"{folder}/{SUMMARY}", json.dumps(summary, indent=2, sort_keys=True) + "\n")
    cached.unpersist()
    return summary


def validated(raw, preparer: BatchPreparer, present: list[str]):
    """`raw` with, per row: valid or not (`_valid`), its problems as JSON (`_problems`), its key (`_id`,
    `_id_text`, `_id_shown`, `_mapped`), how many rows share its claim id (`_copies`), and its typed
    history inputs (`_h_NAME` for NAME in `present`); and the validated rows it reads, persisted (several
    jobs read them: `unpersist` them when done)."""
    from pyspark import StorageLevel
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    schema = T.StructType(list(raw.schema.fields) + [
        T.StructField("_valid", T.BooleanType()), T.StructField("_problems", T.StringType()),
        T.StructField("_id", T.StringType()), T.StructField("_id_text", T.StringType()),
        T.StructField("_id_shown", T.StringType()), T.StructField("_mapped", T.BooleanType())]
        + [T.StructField(f"_h_{c}", T.TimestampType() if c in TIMES else T.BooleanType() if c in LABELS
                         else T.StringType()) for c in present])

    def check(batches):
        for batch in batches:
            yield _checked(preparer, batch.reset_index(drop=True), present)

    rows = raw.mapInPandas(check, schema).persist(StorageLevel.MEMORY_AND_DISK)
    # Claim ids on several rows, counted on the ids alone and joined back: there are few, so Spark
    # broadcasts them instead of shuffling every whole row to count by id.
    repeated = rows.filter(F.col("_id").isNotNull()).groupBy("_id").count().filter(F.col("count") > 1)
    checked = rows.join(repeated.withColumnRenamed("count", "_copies"), "_id", "left") \
        .withColumn("_copies", F.coalesce(F.col("_copies"), F.lit(1)))
    return checked, rows


def rejections(checked, preparer: BatchPreparer):
    """The problems of the rejected rows of `validated`, one row per problem, as the local engine names them."""
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    schema = T.StructType([T.StructField(c, T.LongType() if c == "row" else T.StringType())
                           for c in REJECTED_COLUMNS])

    def problems(batches):
        for batch in batches:
            rows = [row for text in batch["_problems"] for row in json.loads(text)]
            yield pd.DataFrame(rows, columns=list(REJECTED_COLUMNS), dtype=object)

    def duplicates(batches):
        for batch in batches:
            keys = batch.rename(columns={"_id": "claim_id"}).reset_index(drop=True)
            yield _for_spark(preparer.duplicate_rejections(keys))

    found = checked.filter(F.col("_problems").isNotNull()).select("_problems").mapInPandas(problems, schema)
    copies = checked.filter(F.col("_copies") > 1).select(SOURCE, ROW, "_id", "_id_text", "_id_shown", "_mapped")
    return found.unionByName(copies.mapInPandas(duplicates, schema))


def counted_history(spark, valid, present: list[str], wanted: list[str], settings, report: GraphReport,
                    progress: Progress):
    """claim_id and the history features `wanted` of the valid claims (rows of `validated`), counted
    over them: window functions on the executors, the ring features on the driver."""
    from pyspark.sql import functions as F

    counted = [n for n in wanted if n not in GRAPH_FEATURES]
    linked = [n for n in wanted if n in GRAPH_FEATURES]
    narrow = valid.select([F.col(f"_h_{c}").alias(c) for c in present if c not in LABELS])
    progress("history", 0, 0)
    history = narrow.select("claim_id")
    if counted:
        from bulk.spark_history import history_columns

        history = history_columns(narrow, counted).select("claim_id", *counted)
    if linked:
        progress("ring features (driver)", 0, 0)
        # Only what the graph reads: a provider links nothing unless a link field (and is the widest text).
        needed = {"claim_id", *TIME_FIELDS, *PERSON_FIELDS, *settings.link_fields, OUTCOME_TIME_FIELD.name}
        pool = narrow.select([c for c in narrow.columns if c in needed]).toPandas()
        found = graph_features(pool, None, settings, linked, report)
        rings = spark.createDataFrame(pd.DataFrame({"claim_id": pool["claim_id"].astype(object), **found}))
        history = history.join(rings, "claim_id")
    return history


def _checked(preparer: BatchPreparer, batch: pd.DataFrame, present: list[str]) -> pd.DataFrame:
    """One batch as read, plus per row: valid or not, its problems (JSON), its key, its history inputs."""
    n = len(batch)
    rows = batch[ROW].to_numpy(dtype=object)  # the input's own row numbers (None for CSV on Spark)
    work = batch.copy()
    work[ROW] = np.arange(n)  # positions in this batch, to put each result on its row
    prepared = preparer.prepare(work)
    problems: list[list] = [[] for _ in range(n)]
    for problem in _for_spark(prepared.rejected).itertuples(index=False):
        at = problem.row
        problems[at].append([problem.source, _row(rows[at]), problem.claim_id, problem.column, problem.value,
                             problem.reason])
    out = batch.copy()
    claims, keys = prepared.claims, prepared.keys
    places = claims[ROW].to_numpy(dtype=np.int64)
    valid = np.zeros(n, dtype=bool)
    valid[places] = True
    out["_valid"] = valid
    out["_problems"] = [json.dumps(p) if p else None for p in problems]
    keyed = keys[ROW].to_numpy(dtype=np.int64)
    for name, column in (("_id", "claim_id"), ("_id_text", "_id_text"), ("_id_shown", "_id_shown")):
        values = np.full(n, None, dtype=object)
        values[keyed] = keys[column].to_numpy(dtype=object)
        out[name] = values
    out["_mapped"] = bool(len(keys)) and bool(keys["_mapped"].iat[0])
    for name in present:
        if name in LABELS:
            values = np.full(n, None, dtype=object)
            if name in claims.columns:
                values[places] = claims[name].astype(object).where(claims[name].notna(), None).to_numpy(dtype=object)
        elif name in TIMES:
            values = np.full(n, np.datetime64("NaT"), dtype="datetime64[us]")
            if name in claims.columns:
                values[places] = claims[name].to_numpy(dtype="datetime64[us]")
        else:
            values = np.full(n, None, dtype=object)
            if name in claims.columns:
                column = claims[name]
                values[places] = column.astype(object).where(column.notna(), None).to_numpy(dtype=object)
        out[f"_h_{name}"] = values
    return out


def _row(value):
    """A row number as JSON keeps it: None where unknown (CSV on Spark), else an int."""
    return None if value is None or value is pd.NA or value != value else int(value)


def _for_spark(rejected: pd.DataFrame) -> pd.DataFrame:
    """Problems as plain Python values (None, int, str): JSON and Arrow take them as they are."""
    out = rejected_frame([rejected]).astype(object)
    return out.where(out.notna(), None)


class _Worker:
    def __init__(self, bundle: TriageBundle, version: str, explain: bool):
        self.preparer = BatchPreparer(bundle)
        self.scorer = BulkScorer(bundle, version, explain)


_WORKERS: dict[tuple[str, bool], _Worker] = {}
_BUNDLES: dict[str, TriageBundle] = {}


def _worker(shared, token: str, version: str, explain: bool) -> _Worker:
    """The bundle and its scorer in this Python worker, unpickled once from the broadcast and kept:
    Spark reuses its Python workers, so each loads the model once, not once per batch."""
    if (token, explain) not in _WORKERS:
        if token not in _BUNDLES:
            _BUNDLES.clear()  # one run's bundle at a time: a worker outliving a run does not hoard models
            _WORKERS.clear()
            _BUNDLES[token] = joblib.load(io.BytesIO(shared.value))
        _WORKERS[(token, explain)] = _Worker(_BUNDLES[token], version, explain)
    return _WORKERS[(token, explain)]


def _pickled(bundle: TriageBundle) -> bytes:
    buffer = io.BytesIO()
    joblib.dump(bundle, buffer)
    return buffer.getvalue()


class _Watch:
    """Spark's progress on stderr while a job runs: the active stages' finished and total tasks, each
    stage named by the step the engine last announced (`announce`): Spark's own names for the stages
    of DataFrame work are the JVM's call sites, such as "$anonfun$withThreadLocalCaptured$1"."""

    def __init__(self, spark, progress: Progress, every: float = 10.0):
        self.tracker = spark.sparkContext.statusTracker()
        self.progress, self.every = progress, every
        self.step = "start"
        self.done = threading.Event()

    def announce(self, step: str, done: int, total: int) -> None:
        """The engine's progress: passed on, and remembered to name the stages that follow."""
        self.step = step
        self.progress(step, done, total)

    def __enter__(self):
        self.thread = threading.Thread(target=self._run, name="spark-progress", daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.done.set()
        self.thread.join()

    def _run(self) -> None:
        while not self.done.wait(self.every):
            for stage_id in self.tracker.getActiveStageIds():
                info = self.tracker.getStageInfo(stage_id)
                if info is not None:
                    self.progress(f"{self.step}: spark stage {stage_id}, tasks", info.numCompletedTasks, info.numTasks)


def _staging(spark, out: str, overwrite: bool):
    """Where to write before the output is moved into place: `bulk.io.staged` on the local filesystem,
    the same rename dance through Hadoop's FileSystem for any URI Spark writes to (hdfs://, s3a://...)."""
    if "://" not in out or out.startswith("file://"):
        return staged(out.removeprefix("file://"), overwrite)
    return _HadoopStaging(spark, out, overwrite)


class _HadoopStaging:
    def __init__(self, spark, out: str, overwrite: bool):
        jvm = spark.sparkContext._jvm
        self.jvm = jvm
        self.out = jvm.org.apache.hadoop.fs.Path(out)
        self.fs = self.out.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration())
        if self.fs.exists(self.out) and not overwrite:
            raise BulkInputError(f"--out {out} exists; pass --overwrite to replace it")
        self.temporary = jvm.org.apache.hadoop.fs.Path(self.out.getParent(), f".{self.out.getName()}.partial-{uuid.uuid4().hex[:12]}")

    def __enter__(self) -> str:
        return self.temporary.toString()

    def __exit__(self, kind, *exc) -> None:
        if kind is not None:
            self.fs.delete(self.temporary, True)
            return
        if self.fs.exists(self.out):
            retired = self.jvm.org.apache.hadoop.fs.Path(self.out.getParent(), f".{self.out.getName()}.replaced-{uuid.uuid4().hex[:12]}")
            self.fs.rename(self.out, retired)
            self.fs.rename(self.temporary, self.out)
            self.fs.delete(retired, True)
        elif not self.fs.rename(self.temporary, self.out):
            raise RuntimeError(f"could not move the finished output to {self.out.toString()}")


def _write_text(spark, path: str, text: str) -> None:
    """A small text file on whatever filesystem `path` is on."""
    if "://" not in path or path.startswith("file://"):
        Path(path.removeprefix("file://")).write_text(text)
        return
    jvm = spark.sparkContext._jvm
    target = jvm.org.apache.hadoop.fs.Path(path)
    stream = target.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration()).create(target, True)
    try:
        stream.write(bytearray(text.encode()))
    finally:
        stream.close()
