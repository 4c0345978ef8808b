"""The Spark session's defaults: a local driver gets memory enough for the ring step, and whatever the
user set (spark-defaults.conf, SPARK_DRIVER_MEMORY, spark-submit) wins over our defaults."""

from __future__ import annotations

import pytest

from bulk import spark_session as session_module
from bulk.spark_session import default_driver_memory, spark_defaults

GIB = 2**30


@pytest.fixture
def no_driver_settings(monkeypatch):
    for name in ("SPARK_DRIVER_MEMORY", "PYSPARK_SUBMIT_ARGS"):
        monkeypatch.delenv(name, raising=False)


def test_a_local_driver_gets_a_third_of_the_machines_memory(no_driver_settings):
    assert default_driver_memory("local[2]", set(), memory=24 * GIB) == "8192m"
    assert default_driver_memory("local[*]", set(), memory=12 * GIB + 3 * 2**20) == "4097m"
    assert default_driver_memory("local", set(), memory=2 * GIB) == "1024m"  # never below Spark's own 1 GB


def test_a_cluster_driver_is_left_to_whoever_runs_it(no_driver_settings):
    assert default_driver_memory("spark://head:7077", set(), memory=24 * GIB) is None
    assert default_driver_memory("yarn", set(), memory=24 * GIB) is None


def test_driver_memory_set_anywhere_else_wins(no_driver_settings, monkeypatch):
    assert default_driver_memory("local[2]", {"spark.driver.memory"}, memory=24 * GIB) is None
    monkeypatch.setenv("SPARK_DRIVER_MEMORY", "2g")
    assert default_driver_memory("local[2]", set(), memory=24 * GIB) is None
    monkeypatch.delenv("SPARK_DRIVER_MEMORY")
    monkeypatch.setenv("PYSPARK_SUBMIT_ARGS", "--driver-memory 3g pyspark-shell")
    assert default_driver_memory("local[2]", set(), memory=24 * GIB) is None


def test_spark_defaults_conf_is_read_as_spark_reads_it(tmp_path, monkeypatch):
    (tmp_path / "spark-defaults.conf").write_text(
        "# a comment\n! another\nspark.master   local[3]\nspark.driver.memory=6g\n"
        "spark.executor.extraJavaOptions : -Dx=1 -Dy=2  \n\nspark.lonely\n")
    monkeypatch.setenv("SPARK_CONF_DIR", str(tmp_path))
    assert spark_defaults() == {"spark.master": "local[3]", "spark.driver.memory": "6g",
                                "spark.executor.extraJavaOptions": "-Dx=1 -Dy=2", "spark.lonely": ""}
    monkeypatch.setenv("SPARK_CONF_DIR", str(tmp_path / "none"))
    assert spark_defaults() == {}


def test_the_container_limit_bounds_the_machines_memory(tmp_path, monkeypatch):
    physical = session_module.os.sysconf("SC_PAGE_SIZE") * session_module.os.sysconf("SC_PHYS_PAGES")
    unlimited, limited = tmp_path / "memory.max", tmp_path / "memory.limit_in_bytes"
    unlimited.write_text("max\n")
    limited.write_text(f"{physical // 4}\n")
    monkeypatch.setattr(session_module, "CGROUP_LIMIT_FILES", (str(unlimited), str(tmp_path / "absent")))
    assert session_module.machine_memory() == physical  # "max" and a missing file limit nothing
    monkeypatch.setattr(session_module, "CGROUP_LIMIT_FILES", (str(unlimited), str(limited)))
    assert session_module.machine_memory() == physical // 4
    limited.write_text(f"{physical * 4}\n")  # a limit above the machine's memory is no limit
    assert session_module.machine_memory() == physical


def test_the_local_session_runs_with_the_memory_it_asked_for(spark):
    # The suite's session (tests/bulk/conftest.py) sets no driver memory: the JVM must have been
    # started with the default, not Spark's own 1 GB (whose heap ran out at a million claims).
    wanted = spark.sparkContext.getConf().get("spark.driver.memory", None)
    expected = default_driver_memory("local[2]", set())
    if expected is None:
        pytest.skip("driver memory set outside the project (SPARK_DRIVER_MEMORY or PYSPARK_SUBMIT_ARGS)")
    assert wanted == expected
    heap = spark.sparkContext._jvm.java.lang.Runtime.getRuntime().maxMemory()
    assert heap > 0.85 * int(expected[:-1]) * 2**20, (heap, expected)


def test_a_new_driver_follows_spark_defaults_conf(spark, tmp_path):
    # A fresh driver (its own JVM) with a spark-defaults.conf naming a master and a heap: both are
    # used, neither overridden by the project's local[*] and third-of-memory defaults.
    import os
    import subprocess
    import sys

    (tmp_path / "spark-defaults.conf").write_text("spark.master local[1]\nspark.driver.memory 1536m\n")
    script = ("from bulk.spark_session import spark_session\n"
              "s = spark_session()\n"
              "print(s.sparkContext.master, s.sparkContext._jvm.java.lang.Runtime.getRuntime().maxMemory())\n"
              "s.stop()\n")
    env = {k: v for k, v in os.environ.items() if k not in ("SPARK_DRIVER_MEMORY", "PYSPARK_SUBMIT_ARGS")}
    env["SPARK_CONF_DIR"] = str(tmp_path)
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    done = subprocess.run([sys.executable, "-c", script], env=env, cwd=root, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    master, heap = done.stdout.split()[-2:]
    assert master == "local[1]"
    assert 1.2 * 2**30 < int(heap) <= 1.5 * 2**30, heap
