"""The row stages on Spark (local[2], mapInArrow) against the CLI's outputs."""

import json
import shutil

import pytest

pyspark = pytest.importorskip("pyspark")
if shutil.which("java") is None:
    pytest.skip("no java on this machine (PySpark needs a JVM)", allow_module_level=True)

import privprep  # noqa: E402
from privprep import spark as pspark  # noqa: E402

SPLITS = {"train": 0, "validation": 1, "test": 2}


@pytest.fixture(scope="module")
def spark():
    from pyspark.sql import SparkSession

    session = (
        SparkSession.builder.master("local[2]")
        .appName("privprep-tests")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "4")
        .getOrCreate()
    )
    yield session
    session.stop()


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
