"""The row stages on Spark (PySpark in local[2], a JVM) against the CLI's outputs, for CSV,
Parquet and NDJSON sources. ``test_sail.py`` runs the same check on Sail."""

import json
import shutil

import pytest

pytest.importorskip("pyspark")

import privprep  # noqa: E402
from conftest import SPLITS, assert_same_as_cli  # noqa: E402
from privprep import spark as pspark  # noqa: E402


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


@pytest.fixture(scope="module")
def spark():
    session, _ = _jvm()
    yield session
    session.stop()


def test_spark_keeps_drops_and_transforms_rows_as_the_cli(spark, any_workspace):
    w = any_workspace
    plan, key, index = pspark.engine_args(str(w.pipeline), str(w.state))
    spec = json.loads(plan)
    names = [o["name"] for o in spec["outputs"]]
    assert spec["source"]["files"] == [str(w.source.resolve())]
    source = pspark.read_plan_source(spark, plan).repartition(4)
    out = pspark.apply(source, plan, key, index).cache()
    counts = pspark.account(source, out, plan)
    assert counts.pop("rows_read") == w.summary["rows_read"]
    names_of = {name: code for code, name in privprep.DROP_REASONS}
    statuses = {
        {"kept": 0, "quarantined": 1}.get(k, names_of.get(k, -1)): v for k, v in counts.items()
    }
    by_split = {
        code: [
            tuple(r)
            for r in out.where((out[privprep.STATUS] == 0) & (out[privprep.SPLIT] == code))
            .select(*names)
            .collect()
        ]
        for code in SPLITS.values()
    }
    assert_same_as_cli(w, statuses, by_split, names)


@pytest.mark.parametrize("which", ["workspace", "leaky_workspace"])
def test_the_leak_gate_on_spark_gives_the_clis_verdicts(spark, which, request):
    w = request.getfixturevalue(which)
    plan, key, index = pspark.engine_args(str(w.pipeline), str(w.state))
    spec = json.loads(plan)
    source = pspark.read_source(
        spark, [str(w.source)], w.format, [c["name"] for c in spec["columns"]]
    ).repartition(3)
    rows = pspark.apply(source, plan, key, index)
    verdicts = pspark.leak_gate(source, rows, plan)
    assert verdicts == w.summary["leak_gate"]
    if which == "leaky_workspace":
        body = next(v for v in verdicts if v["column"] == "body")
        assert body["result"] == "leak"
        assert body["hits"].get("phone", 0) > 0 and body["hits"].get("identifier_value", 0) > 0


def test_too_many_quarantined_rows_fail_the_accounting(spark, workspace, tmp_path):
    w = workspace
    plan, key, index = pspark.engine_args(str(w.pipeline), str(w.state))
    spec = json.loads(plan)
    assert 0 < w.summary["quarantined"] <= spec["source"]["max_bad_rows"]
    spec["source"]["max_bad_rows"] = w.summary["quarantined"] - 1
    strict = json.dumps(spec)
    source = pspark.read_plan_source(spark, strict)
    rows = pspark.apply(source, strict, key, index)
    with pytest.raises(pspark.AccountingError, match="more than max_bad_rows"):
        pspark.account(source, rows, strict)
