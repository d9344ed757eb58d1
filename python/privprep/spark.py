"""The row stages on Spark: one ``mapInArrow`` pass per partition over the kernels.

Each Python worker builds the plan's :class:`~privprep.RowEngine` once (from the
plan text and key texts the closure carries) and runs every Arrow batch of its
partitions through it; Spark counts rows by status with an aggregation. Sources
are read as text (CSV) or as stored (Parquet), and raw values go to the kernels,
so parsing and quarantine follow the CLI's rules.

The closure carries the keys to the executors, as any distributed tokenizer
must: on a shared cluster, turn on Spark's RPC encryption
(``spark.network.crypto.enabled``) and local-disk encryption
(``spark.io.encryption.enabled``).
"""

from __future__ import annotations

import json
from typing import Dict, Iterator, Optional

import pyarrow as pa

from ._native import DROP_REASONS, STATUS, SUBJECT_KEY, RowEngine
from .plan import load_keys, resolve_plan

_ENGINES: Dict[int, RowEngine] = {}


def _spark_schema(schema: pa.Schema):
    """The Spark schema of the engine's output: unsigned subject keys travel as their
    64 bits in a signed long (Spark has no unsigned types)."""
    from pyspark.sql.pandas.types import from_arrow_schema

    fields = [
        pa.field(f.name, pa.int64(), f.nullable) if f.name == SUBJECT_KEY else f
        for f in schema
    ]
    return from_arrow_schema(pa.schema(fields))


def _to_spark(batch: pa.RecordBatch) -> pa.RecordBatch:
    i = batch.schema.get_field_index(SUBJECT_KEY)
    keys = batch.column(i).cast(pa.int64(), safe=False)
    return batch.set_column(i, pa.field(SUBJECT_KEY, pa.int64()), keys)


def apply(df, plan_json: str, key: Optional[str] = None, index_key: Optional[str] = None):
    """``df`` (every manifest column, as text or typed) through the plan's row stages: every
    row with its output columns (null where not kept), ``__status``, ``__split``,
    ``__badcol`` and ``__subject_key``."""
    probe = RowEngine(plan_json, key, index_key)  # fails here, on the driver, if anything is wrong
    schema = _spark_schema(probe.output_schema())
    token = hash((plan_json, key, index_key))

    def run(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        engine = _ENGINES.get(token)
        if engine is None:
            engine = _ENGINES[token] = RowEngine(plan_json, key, index_key)
        for batch in batches:
            yield _to_spark(engine.apply(batch))

    return df.mapInArrow(run, schema)


def read_source(spark, files, fmt: str, columns):
    """The source files as Spark reads them: CSV as text (header, quoted multi-line fields,
    empty fields null), Parquet as stored, NDJSON as text."""
    from pyspark.sql.types import StringType, StructField, StructType

    text = StructType([StructField(c, StringType(), True) for c in columns])
    if fmt == "csv":
        return (
            spark.read.option("header", True)
            .option("multiLine", True)
            .option("escape", '"')
            .option("mode", "PERMISSIVE")
            .schema(text)
            .csv(files)
        )
    if fmt == "parquet":
        return spark.read.parquet(*files)
    return spark.read.schema(text).json(files)


def read_plan_source(spark, plan_json: str):
    """The inputs exactly as the plan resolved them (its files, format and CSV separator),
    every manifest column as :func:`read_source` reads it."""
    spec = json.loads(plan_json)
    src = spec["source"]
    columns = [c["name"] for c in spec["columns"]]
    if src["format"] == "csv" and src["separator"] != ",":
        from pyspark.sql.types import StringType, StructField, StructType

        text = StructType([StructField(c, StringType(), True) for c in columns])
        return (
            spark.read.option("header", True)
            .option("multiLine", True)
            .option("escape", '"')
            .option("sep", src["separator"])
            .schema(text)
            .csv(src["files"])
        )
    return read_source(spark, src["files"], src["format"], columns)


class AccountingError(Exception):
    """Rows do not add up, or too many were quarantined: nothing may be written."""


def account(source, rows, plan_json: str) -> Dict[str, int]:
    """The run's accounting, before anything is written: the rows read (counted on the
    source, apart from the row stages) must equal the rows by status, and the quarantined
    ones must not exceed ``max_bad_rows``. Gives the counts of :func:`status_counts` with
    ``rows_read``; raises :class:`AccountingError` otherwise."""
    spec = json.loads(plan_json)
    read = source.count()
    counts = status_counts(rows)
    total = sum(counts.values())
    if total != read:
        raise AccountingError(
            f"row accounting does not add up: read {read} ≠ {total} rows by status\n"
            "  = hint: this is a bug in privprep; nothing was written"
        )
    bad, cap = counts.get("quarantined", 0), spec["source"]["max_bad_rows"]
    if bad > cap:
        raise AccountingError(
            f"{bad} rows could not be parsed, more than max_bad_rows = {cap}\n"
            "  = hint: fix the data or raise [output] max_bad_rows; nothing was written"
        )
    return {"rows_read": read, **counts}


def status_counts(rows) -> Dict[str, int]:
    """Rows by status, counted by a Spark aggregation: ``kept``, ``quarantined`` and each
    drop reason that occurred."""
    names = {0: "kept", 1: "quarantined", **{code: name for code, name in DROP_REASONS}}
    counts = rows.groupBy(STATUS).count().collect()
    return {names.get(r[0], f"status {r[0]}"): r[1] for r in counts}


_GATE_SCHEMA = "column string, scanned long, hits array<long>, ids long"


def leak_gate(source, rows, plan_json: str):
    """The leak gate over the kept rows of :func:`apply`'s output: every judged output value
    scanned by every detector, and searched for the identifier values of every input row of
    ``source`` (kept or not), as the CLI's gate does. The identifier values travel as 64-bit
    keyed hashes under a key drawn here for this call only. Gives the verdicts in the shape
    of ``privprep run --format json``'s ``leak_gate``: per output column its ``result``
    (``clean``, ``leak`` or ``exempt``), ``values_scanned`` and ``hits`` by detector
    (``identifier_value`` for input identifiers)."""
    import secrets

    from ._native import Gate, identifier_keys

    spec = json.loads(plan_json)
    gate = spec["gate"]
    outputs = [o["name"] for o in spec["outputs"]]
    seed = (secrets.randbits(64), secrets.randbits(64))
    columns = gate["identifier_columns"]
    keys = []
    if columns:

        def gather(batches):
            for b in batches:
                yield identifier_keys(seed, b, columns)

        keyed = source.select(*columns).mapInArrow(gather, "key long, first long")
        keys = [(r[0], r[1]) for r in keyed.distinct().collect()]
    Gate(plan_json, seed, [])  # refuses here, on the driver, what it cannot judge

    def check(batches):
        judge = Gate(plan_json, seed, keys)
        for b in batches:
            found = judge.check(b)
            yield pa.RecordBatch.from_pylist(
                [{"column": c, "scanned": n, "hits": h, "ids": i} for c, n, h, i in found],
                schema=pa.schema(
                    [("column", pa.string()), ("scanned", pa.int64()),
                     ("hits", pa.list_(pa.int64())), ("ids", pa.int64())]
                ),
            )

    kept = rows.where(f"{STATUS} = 0").select(*outputs)
    totals: Dict[str, list] = {}
    for r in kept.mapInArrow(check, _GATE_SCHEMA).collect():
        t = totals.setdefault(r["column"], [0, [0] * len(r["hits"]), 0])
        t[0] += r["scanned"]
        t[1] = [a + b for a, b in zip(t[1], r["hits"])]
        t[2] += r["ids"]
    verdicts = []
    for column in outputs:
        if column in gate["exempt"]:
            verdicts.append({"column": column, "result": "exempt", "values_scanned": 0, "hits": {}})
            continue
        if column not in totals:
            continue
        scanned, hits, ids = totals[column]
        named = {gate["slot_names"][i]: n for i, n in enumerate(hits) if n}
        if ids:
            named["identifier_value"] = ids
        verdicts.append({
            "column": column,
            "result": "leak" if named else "clean",
            "values_scanned": scanned,
            "hits": named,
        })
    return verdicts


def engine_args(pipeline: str, state: Optional[str] = None, key_file: Optional[str] = None):
    """(plan text, run key text, index key text) of a pipeline file, for :func:`apply`."""
    plan = resolve_plan(pipeline, state, key_file)
    key, index = load_keys(plan, state, key_file)
    return plan, key, index
