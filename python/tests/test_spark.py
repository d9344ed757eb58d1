"""The row stages on Spark against the CLI's outputs: on PySpark in local[2] (a JVM), and on
Sail (a Spark Connect server written in Rust, on loopback, no JVM) where pysail is installed.
Each backend skips, saying why, where it cannot start."""

import importlib.util
import json
import shutil

import pytest

pytest.importorskip("pyspark")

import privprep  # noqa: E402
from privprep import spark as pspark  # noqa: E402

SPLITS = {"train": 0, "validation": 1, "test": 2}


def _jvm():
    if shutil.which("java") is None:
        pytest.skip("no java on this machine (PySpark in local mode needs a JVM)")
    from pyspark.sql import SparkSession

    try:
        session = (
            SparkSession.builder.master("local[2]")
            .appName("privprep-tests")
            .config("spark.sql.session.timeZone", "UTC")
            .config("spark.ui.enabled", "false")
            .config("spark.ui.showConsoleProgress", "false")
            .config("spark.sql.shuffle.partitions", "4")
            .getOrCreate()
        )
    except Exception as e:  # the Connect-only client (pyspark-client) has no local mode
        pytest.skip(f"PySpark cannot start locally: {str(e).splitlines()[0]}")
    return session, None


def _sail():
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
    return session, server


@pytest.fixture(scope="module", params=["jvm", "sail"])
def spark(request):
    session, server = {"jvm": _jvm, "sail": _sail}[request.param]()
    yield session
    session.stop()
    if server is not None:
        server.stop()


def test_spark_keeps_drops_and_transforms_rows_as_the_cli(spark, workspace):
    import pyarrow.parquet as pq

    w = workspace
    plan, key, index = pspark.engine_args(str(w.pipeline), str(w.state))
    spec = json.loads(plan)
    names = [o["name"] for o in spec["outputs"]]
    source = pspark.read_source(
        spark, [str(w.root / "data" / "tickets.csv")], "csv", [c["name"] for c in spec["columns"]]
    ).repartition(4)
    out = pspark.apply(source, plan, key, index).cache()
    counts = pspark.status_counts(out)
    assert counts.get("quarantined", 0) == w.summary["quarantined"]
    assert counts["kept"] == w.summary["rows_written"]
    dropped = {k: v for k, v in counts.items() if k not in ("kept", "quarantined")}
    assert dropped == {k: v for k, v in w.summary["dropped"].items() if v}
    for output in w.summary["outputs"]:
        code = SPLITS[output["split"]]
        got = (
            out.where((out[privprep.STATUS] == 0) & (out[privprep.SPLIT] == code))
            .select(*names)
            .collect()
        )
        want = pq.read_table(w.root / output["path"]).select(names).to_pylist()
        assert sorted((tuple(r) for r in got), key=repr) == sorted(
            (tuple(r[n] for n in names) for r in want), key=repr
        )
