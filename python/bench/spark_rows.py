"""The row stages on Spark against the CLI on the same file, in one run.

    python3 python/bench/spark_rows.py            # 1M rows; PRIVPREP_BENCH_ROWS=10000000 for 10M

Needs the wheel installed (maturin build --release -m python/Cargo.toml; pip install the
wheel), PySpark with pandas and Java, and a release CLI (PRIVPREP_BIN, else
target/release/privprep). Reports, for the pipeline of the wheel's tests (tokens, masks,
generalizations, redaction with drop_row, a split):

- the CLI's wall time for the whole run (read, every stage, Parquet, gate, lineage);
- the row engine alone over pyarrow batches on one core (rows/s): the kernels' per-core
  throughput without Spark;
- Spark local[2] with 1, 2 and 4 partitions per core: the job (read CSV as text, one
  mapInArrow pass, count by status, write the kept rows as Parquet), the same job with an
  identity mapInArrow (the Arrow hand-off and everything around it, without the kernels), and
  the time spent inside the engine's apply per core, from an accumulator;
- ``privprep.spark.run`` end to end with 1, 2 and 4 partitions per core: everything a run on
  Spark does, commit and lineage record included.
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv

import privprep
from privprep import spark as pspark

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "python" / "tests"))
from conftest import PIPELINE  # noqa: E402


def cli() -> str:
    path = os.environ.get("PRIVPREP_BIN") or str(
        Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target")) / "release" / "privprep"
    )
    if not Path(path).exists():
        sys.exit(f"no release CLI at {path}: cargo build --release, or set PRIVPREP_BIN")
    os.environ["PRIVPREP_BIN"] = path
    return path


def main() -> None:
    rows = int(os.environ.get("PRIVPREP_BENCH_ROWS", "1000000"))
    base = Path(os.environ.get("PRIVPREP_BENCH_DIR", f"{tempfile.gettempdir()}/privprep-spark-bench-{rows}"))
    data = base / "data"
    bin_ = cli()
    if not (data / "tickets.csv").exists():
        subprocess.run([bin_, "datagen", "--rows", str(rows), "--seed", "1", "--out", str(data)], check=True)
    state = base / "state"
    shutil.rmtree(state, ignore_errors=True)
    shutil.rmtree(base / "out", ignore_errors=True)
    pipeline = base / "bench.toml"
    pipeline.write_text(PIPELINE.replace("max_bad_rows = 1000", "max_bad_rows = 0"))
    env = dict(os.environ, PRIVPREP_STATE_DIR=str(state))
    env.pop("PRIVPREP_KEY", None)
    env.pop("PRIVPREP_KEY_FILE", None)

    # The CLI, whole run (a first run creates the keys; the second is timed).
    run = [bin_, "-q", "--no-progress", "run", str(pipeline), "--format", "json"]
    subprocess.run(run, cwd=base, env=env, check=True, capture_output=True)
    t = time.perf_counter()
    done = subprocess.run(run, cwd=base, env=env, check=True, capture_output=True)
    cli_s = time.perf_counter() - t
    summary = json.loads(done.stdout)
    print(f"rows={rows} csv_bytes={(data / 'tickets.csv').stat().st_size}")
    print(f"  privprep CLI run (polars, 2 cores):            {cli_s:7.3f} s  "
          f"({summary['rows_written']} kept)")

    os.environ["PRIVPREP_STATE_DIR"] = str(state)
    plan, key, index = pspark.engine_args(str(pipeline), str(state))
    columns = [c["name"] for c in json.loads(plan)["columns"]]

    # The row engine alone, one core, over pyarrow batches of 10,000 rows.
    table = pacsv.read_csv(
        data / "tickets.csv",
        parse_options=pacsv.ParseOptions(newlines_in_values=True),
        convert_options=pacsv.ConvertOptions(
            column_types={c: pa.string() for c in columns}, strings_can_be_null=True
        ),
    )
    engine = privprep.RowEngine(plan, key, index)
    batches = table.to_batches(max_chunksize=10_000)
    t = time.perf_counter()
    for b in batches:
        engine.apply(b)
    alone_s = time.perf_counter() - t
    print(f"  row engine alone, 1 core (pyarrow batches):    {alone_s:7.3f} s  "
          f"{rows / alone_s / 1e3:8.0f} k rows/s per core")

    from pyspark.sql import SparkSession

    spark = (
        SparkSession.builder.master("local[2]")
        .appName("privprep-bench")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.driver.memory", os.environ.get("PRIVPREP_BENCH_DRIVER_MEMORY", "4g"))
        .config("spark.sql.execution.arrow.maxRecordsPerBatch", "10000")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    busy = spark.sparkContext.accumulator(0.0)

    def timed_apply(df):
        schema = pspark._spark_schema(privprep.RowEngine(plan, key, index).output_schema())

        def run(it):
            engine = privprep.RowEngine(plan, key, index)
            spent = 0.0
            for batch in it:
                t0 = time.perf_counter()
                out = pspark._to_spark(engine.apply(batch))
                spent += time.perf_counter() - t0
                yield out
            busy.add(spent)

        return df.mapInArrow(run, schema)

    source = pspark.read_source(spark, [str(data / "tickets.csv")], "csv", columns).cache()
    source.count()
    out_dir = base / "spark-out"
    print("  Spark local[2] (source cached as text; the job: mapInArrow, count by status, write kept rows):")
    for per_core in (1, 2, 4):
        parts = 2 * per_core
        df = source.repartition(parts).cache()
        df.count()
        noop = lambda d: d.write.format("noop").mode("overwrite").save()  # noqa: E731
        # The hand-off alone: every batch to Python and back, nothing done to it.
        t = time.perf_counter()
        noop(df.mapInArrow(lambda it: it, df.schema))
        handoff_s = time.perf_counter() - t
        # The same pass with the row stages.
        busy.value = 0.0
        t = time.perf_counter()
        noop(timed_apply(df))
        stages_s = time.perf_counter() - t
        in_apply = busy.value
        busy.value = 0.0
        t = time.perf_counter()
        rows_out = timed_apply(df).cache()
        counts = rows_out.groupBy(privprep.STATUS).count().collect()
        rows_out.where(f"{privprep.STATUS} = 0").drop(
            privprep.STATUS, privprep.BADCOL, privprep.SUBJECT_KEY
        ).write.mode("overwrite").partitionBy(privprep.SPLIT).parquet(str(out_dir))
        job_s = time.perf_counter() - t
        kept = sum(n for s, n in counts if s == 0)
        assert kept == summary["rows_written"], (kept, summary["rows_written"])
        rows_out.unpersist()
        df.unpersist()
        print(f"    {per_core} partition(s) per core ({parts:2}): job {job_s:6.3f} s "
              f"({job_s / cli_s:3.1f}x the CLI, {job_s * 2 / rows * 1e6:5.2f} core-µs per row); "
              f"pass alone: identity {handoff_s:6.3f} s, with the row stages {stages_s:6.3f} s, "
              f"inside apply {in_apply:6.3f} core-s = {rows / in_apply / 1e3:4.0f} k rows/s per core")
    source.unpersist()

    # The whole run on Spark, as users run it: privprep.spark.run reads the file, places each
    # row (file, record), spreads the rows, runs the stages, accounts, gates, writes the
    # outputs as Parquet folders and commits them with the lineage record through the CLI.
    print("  privprep.spark.run (read, place, stages, account, gate, write, commit):")
    for per_core in (1, 2, 4):
        parts = 2 * per_core
        t = time.perf_counter()
        done = pspark.run(spark, str(pipeline), str(state), partitions=parts)
        run_s = time.perf_counter() - t
        assert done["rows_written"] == summary["rows_written"], done["rows_written"]
        print(f"    {per_core} partition(s) per core ({parts:2}): {run_s:6.3f} s "
              f"({run_s / cli_s:3.1f}x the CLI, {run_s * 2 / rows * 1e6:5.2f} core-µs per row)")
    spark.stop()


if __name__ == "__main__":
    main()
