"""A Spark session for the bulk engine: local mode by default, any cluster through `master` or the
usual Spark settings (spark-submit, spark-defaults.conf, SPARK_* environment variables).

pyspark is an optional extra (`pip install claimtriage[spark]`): the service never imports it.
Spark runs on a Java virtual machine (Java 17 or 21 for Spark 4): without one, `spark_session`
raises `SparkUnavailable` saying so, before pyspark tries to start a JVM and fails obscurely.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import warnings

DEFAULT_MASTER = "local[*]"


class SparkUnavailable(RuntimeError):
    """Spark cannot run here: pyspark is not installed, or no Java is found."""


def java_problem() -> str | None:
    """Why Spark's JVM cannot start here, or None when a Java is found."""
    home = os.environ.get("JAVA_HOME")
    java = os.path.join(home, "bin", "java") if home else shutil.which("java")
    if not java or not os.path.exists(java):
        where = f"JAVA_HOME={home} has no bin/java" if home else "no `java` on PATH and JAVA_HOME is not set"
        return f"Spark needs Java 17 or 21 ({where}); install a JDK (Debian: apt-get install openjdk-17-jre-headless)"
    try:
        subprocess.run([java, "-version"], capture_output=True, timeout=30, check=True)
    except (OSError, subprocess.SubprocessError) as exc:
        return f"Spark needs Java 17 or 21; {java} -version failed: {exc}"
    return None


def pyspark_problem() -> str | None:
    if importlib.util.find_spec("pyspark") is None:
        return "the Spark engine needs pyspark: pip install 'claimtriage[spark]' (the local engine does not)"
    return None


def spark_problem() -> str | None:
    """Why the Spark engine cannot run here (no pyspark, no Java), or None."""
    return pyspark_problem() or java_problem()


def spark_session(master: str | None = None, app_name: str = "claimtriage", config: dict[str, str] | None = None):
    """The active Spark session, or a new one on `master` (default: what spark-submit or
    spark-defaults.conf set, else local[*]). Times are UTC: features count whole seconds of UTC."""
    problem = spark_problem()
    if problem:
        raise SparkUnavailable(problem)
    # pyspark 4.3 warns that pandas 3 is not fully supported; the engine's tests hold its results
    # equal to the pandas engine's, which is the support that matters here.
    warnings.filterwarnings("ignore", message="PySpark does not yet fully support pandas", category=FutureWarning)
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)  # local workers use this interpreter, not python3
    os.environ.setdefault("PYTHONWARNINGS", "ignore::FutureWarning")
    from pyspark.sql import SparkSession

    builder = SparkSession.builder.appName(app_name)
    if master:
        builder = builder.master(master)
    elif "spark.master" not in _submitted_conf():
        builder = builder.master(DEFAULT_MASTER)
    settings = {"spark.sql.session.timeZone": "UTC", "spark.ui.showConsoleProgress": "false",
                "spark.sql.execution.arrow.pyspark.enabled": "true"}
    if "spark.driver.maxResultSize" not in _submitted_conf():
        # The ring features run on the driver over the identity columns of every claim (bulk.spark_engine):
        # Spark's default cap on what the driver collects, 1 GB, stopped a book of 10 million claims.
        # The driver's memory (spark.driver.memory, SPARK_DRIVER_MEMORY) is the real bound.
        settings["spark.driver.maxResultSize"] = "0"
    settings.update(config or {})
    for key, value in settings.items():
        builder = builder.config(key, value)
    session = builder.getOrCreate()
    session.sparkContext.setLogLevel("ERROR")
    if session.sparkContext.master.startswith("local") and "spark.sql.shuffle.partitions" not in settings \
            and "spark.sql.shuffle.partitions" not in _submitted_conf():
        # One machine: Spark's 200 shuffle partitions would spend a small job starting tasks.
        session.conf.set("spark.sql.shuffle.partitions", str(4 * session.sparkContext.defaultParallelism))
    return session


def _submitted_conf() -> set[str]:
    """Spark settings spark-submit passed to this driver (it sets them as system properties)."""
    from pyspark import SparkConf

    return {key for key, _ in SparkConf().getAll()}
