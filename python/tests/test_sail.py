"""The Spark check of ``test_spark.py`` on Sail: a Spark Connect server written in Rust, on
loopback, no JVM. Sail serves the PySpark Connect clients up to 4.0, and a process that started
a classic local session cannot open a Connect one, so this runs in an environment of its own:
``PRIVPREP_SAIL=1`` with pysail and ``pyspark-client`` 4.0 (``.ci/run`` keeps one, and
``tests/python_wheel.rs`` runs it)."""

import importlib.util
import os

import pytest

if os.environ.get("PRIVPREP_SAIL") != "1":
    pytest.skip("Sail runs in its own environment (PRIVPREP_SAIL=1)", allow_module_level=True)
pytest.importorskip("pyspark")

from test_spark import test_spark_keeps_drops_and_transforms_rows_as_the_cli as check  # noqa: E402
from test_spark import test_the_leak_gate_on_spark_gives_the_clis_verdicts as gate_check  # noqa: E402,E501
from test_spark import test_a_run_on_spark_commits_what_the_cli_commits as run_check  # noqa: E402,E501


@pytest.fixture(scope="module")
def spark():
    if importlib.util.find_spec("pysail") is None:
        pytest.skip("pysail is not installed (pip install pysail)")
    from pysail.spark import SparkConnectServer
    from pyspark.sql import SparkSession

    server = SparkConnectServer()
    server.start()
    host, port = server.listening_address
    session = None
    try:
        session = SparkSession.builder.remote(f"sc://{host}:{port}").getOrCreate()
        session.range(1).collect()
    except Exception as e:  # an unsupported client version, a missing Connect dependency
        # Release the client's session while the server is up: a client left behind retries
        # against a stopped server for minutes when the interpreter exits.
        if session is not None:
            try:
                session.stop()
            except Exception:
                pass
        server.stop()
        version = __import__("pyspark").__version__
        pytest.skip(f"Sail could not serve PySpark {version}: {str(e).splitlines()[0]}")
    yield session
    session.stop()
    server.stop()


def test_sail_keeps_drops_and_transforms_rows_as_the_cli(spark, any_workspace):
    check(spark, any_workspace)


@pytest.mark.parametrize("which", ["workspace", "leaky_workspace"])
def test_the_leak_gate_on_sail_gives_the_clis_verdicts(spark, which, request):
    gate_check(spark, which, request)


def test_a_run_on_sail_commits_what_the_cli_commits(spark, any_workspace, tmp_path):
    # Sail writes datetime columns as UTC-adjusted timestamps (the same instants).
    run_check(spark, any_workspace, tmp_path, utc_timestamps=True)
