"""A Spark session for the bulk engine: local mode by default, any cluster through `master` or the
usual Spark settings (spark-submit, spark-defaults.conf, SPARK_* environment variables).

pyspark is an optional extra (`pip install claimtriage[spark]`): the service never imports it.
Spark runs on a Java virtual machine (Java 17 or 21 for Spark 4): without one, `spark_session`
raises `SparkUnavailable` saying so, before pyspark tries to start a JVM and fails obscurely.
"""

from __future__ import annotations

import importlib.util
import os
import re
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

    preset = spark_defaults() | _submitted_conf()  # spark-submit's own settings win over the file's
    builder = SparkSession.builder.appName(app_name)
    if master:
        builder = builder.master(master)
    elif "spark.master" not in preset:
        builder = builder.master(DEFAULT_MASTER)
    settings = {"spark.sql.session.timeZone": "UTC", "spark.ui.showConsoleProgress": "false",
                "spark.sql.execution.arrow.pyspark.enabled": "true"}
    memory = default_driver_memory(master or preset.get("spark.master", DEFAULT_MASTER), set(preset) | set(config or {}))
    if memory and not _jvm_started():
        settings["spark.driver.memory"] = memory
    if "spark.driver.maxResultSize" not in preset:
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
            and "spark.sql.shuffle.partitions" not in preset:
        # One machine: Spark's 200 shuffle partitions would spend a small job starting tasks.
        session.conf.set("spark.sql.shuffle.partitions", str(4 * session.sparkContext.defaultParallelism))
    return session


def _jvm_started() -> bool:
    """Whether this driver's JVM runs already (spark-submit started it, or an earlier session did): its
    heap can no longer change."""
    from pyspark import SparkContext

    return bool(os.environ.get("PYSPARK_GATEWAY_PORT")) or SparkContext._gateway is not None


def _submitted_conf() -> dict[str, str]:
    """Spark settings spark-submit passed to this driver (it sets them as system properties)."""
    from pyspark import SparkConf

    return dict(SparkConf().getAll())


def spark_defaults() -> dict[str, str]:
    """The settings of the spark-defaults.conf that spark-submit reads when it starts the driver's JVM
    ($SPARK_CONF_DIR, else $SPARK_HOME/conf; pyspark's own directory when neither is set)."""
    conf_dir = os.environ.get("SPARK_CONF_DIR")
    if not conf_dir:
        home = os.environ.get("SPARK_HOME")
        if not home:
            spec = importlib.util.find_spec("pyspark")
            home = os.path.dirname(spec.origin) if spec and spec.origin else None
        conf_dir = os.path.join(home, "conf") if home else None
    path = os.path.join(conf_dir, "spark-defaults.conf") if conf_dir else None
    if not path or not os.path.isfile(path):
        return {}
    found = {}
    with open(path, encoding="utf-8") as lines:
        for line in lines:
            # Java properties, as Spark reads them: "key value", "key=value" or "key:value"; # and ! comment.
            setting = re.match(r"\s*([^#!\s=:][^\s=:]*)\s*[=:\s]\s*(.*?)\s*$", line)
            if setting:
                found[setting.group(1)] = setting.group(2)
    return found


CGROUP_LIMIT_FILES = ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes")  # v2, v1


def machine_memory() -> int:
    """Bytes of memory this process may use: the machine's, or its container's limit when lower."""
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    for limit_file in CGROUP_LIMIT_FILES:
        try:
            with open(limit_file, encoding="ascii") as f:
                limit = f.read().strip()
        except OSError:
            continue
        if limit.isdigit():
            total = min(total, int(limit))
    return total


LOCAL_DRIVER_SHARE = 3  # a local master's JVM may take a third of the machine's memory


def default_driver_memory(master: str, preset: set[str], memory: int | None = None) -> str | None:
    """The driver heap to ask for (e.g. "8035m"), or None to leave Spark's own choice.

    On a local master the driver's JVM runs the executors' tasks too, and Spark's default heap of 1 GB
    ran out at a million claims (collecting the identity columns for the ring features): it gets a
    third of the machine's memory (at least 1 GB; the driver's Python process and the Python workers
    need the rest). Never when the driver memory is set anywhere else: the `config` passed in, by
    spark-submit, in spark-defaults.conf, SPARK_DRIVER_MEMORY or PYSPARK_SUBMIT_ARGS; nor on a
    cluster, whose driver is sized by whoever runs it."""
    if not master.startswith("local") or "spark.driver.memory" in preset or os.environ.get("SPARK_DRIVER_MEMORY"):
        return None
    submit_args = os.environ.get("PYSPARK_SUBMIT_ARGS", "")
    if "--driver-memory" in submit_args or "spark.driver.memory" in submit_args:
        return None
    memory = machine_memory() if memory is None else memory
    return f"{max(1024, memory // LOCAL_DRIVER_SHARE // 2**20)}m"
