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
import subprocess
from pathlib import Path
from typing import Dict, Iterator, Optional, Tuple

import pyarrow as pa

from ._native import BADCOL, DROP_REASONS, SPLIT, STATUS, SUBJECT_KEY, RowEngine
from .plan import PlanError, load_keys, resolve_plan

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


# Columns the Spark engine adds around the row engine's: where each row was read (the file's
# URI and the start of its block, from Spark's file metadata), and per task one row of
# free-text counts (status -1) in ``__stats``.
PATH = "__path"
BLOCK = "__block"
FILE = "__file"
ROW = "__row"
STATS = "__stats"
STATS_STATUS = -1
# A row's index in its file block (see :func:`place`).
BIDX = "__bidx"


def _runs(batch: pa.RecordBatch):
    """The batch's runs of rows read from one file block: (start, end, (path, block))."""
    import numpy as np
    import pyarrow.compute as pc

    n = batch.num_rows
    if n == 0:
        return []
    paths = batch.column(batch.schema.get_field_index(PATH))
    blocks = batch.column(batch.schema.get_field_index(BLOCK))
    change = np.zeros(n, dtype=bool)
    change[0] = True
    if n > 1:
        differs = pc.or_(
            pc.not_equal(paths.slice(1), paths.slice(0, n - 1)),
            pc.not_equal(blocks.slice(1), blocks.slice(0, n - 1)),
        )
        change[1:] = differs.to_numpy(zero_copy_only=False)
    starts = np.flatnonzero(change)
    ends = np.append(starts[1:], n)
    return [
        (int(a), int(b), (paths[int(a)].as_py(), blocks[int(a)].as_py()))
        for a, b in zip(starts, ends)
    ]


def _block_index(batch: pa.RecordBatch, seen) -> pa.Array:
    """Each row's index in its file block: the rows of that block this task has passed
    (``seen``, updated) plus its place in the run."""
    import numpy as np

    out = np.empty(batch.num_rows, dtype=np.int64)
    for a, b, place in _runs(batch):
        done = seen.get(place, 0)
        out[a:b] = np.arange(done, done + b - a, dtype=np.int64)
        seen[place] = done + b - a
    return pa.array(out, pa.int64())


def _places(batch: pa.RecordBatch, offsets, seen) -> Tuple[pa.Array, pa.Array]:
    """Each row's input file index and record index in that file: a block's first record
    index (``offsets``) plus the row's index in the block (``__bidx`` where :func:`place`
    added it, else counted here: the rows of that block this task has passed, ``seen``)."""
    import numpy as np

    def where(place):
        if place not in offsets:
            raise RuntimeError(
                f"{place[0]}: read by Spark but not counted; the input changed while the job ran"
            )
        return offsets[place]

    n = batch.num_rows
    at = batch.schema.get_field_index(BIDX)
    if at < 0:
        # As read: long runs of one block each.
        index = _block_index(batch, seen).to_numpy(zero_copy_only=False)
        files = np.empty(n, dtype=np.uint64)
        rows = np.empty(n, dtype=np.uint64)
        for a, b, place in _runs(batch):
            file, first = where(place)
            files[a:b] = file
            rows[a:b] = first + index[a:b]
        return pa.array(files, pa.uint64()), pa.array(rows, pa.uint64())
    # Spread: blocks interleave; each distinct (file, block) is looked up once.
    index = batch.column(at).to_numpy(zero_copy_only=False).astype(np.uint64)
    paths = batch.column(batch.schema.get_field_index(PATH)).dictionary_encode()
    blocks = batch.column(batch.schema.get_field_index(BLOCK)).to_numpy(zero_copy_only=False)
    codes = paths.indices.to_numpy(zero_copy_only=False).astype(np.int64)
    pairs, inverse = np.unique(np.stack([codes, blocks.astype(np.int64)]), axis=1, return_inverse=True)
    names = paths.dictionary.to_pylist()
    found = [where((names[int(c)], int(b))) for c, b in pairs.T]
    file_of = np.array([f for f, _ in found], dtype=np.uint64)
    first_of = np.array([r for _, r in found], dtype=np.uint64)
    inverse = np.asarray(inverse).reshape(-1)
    return (
        pa.array(file_of[inverse], pa.uint64()),
        pa.array(first_of[inverse] + index, pa.uint64()),
    )


def apply(
    df,
    plan_json: str,
    key: Optional[str] = None,
    index_key: Optional[str] = None,
    offsets: Optional[Dict[Tuple[str, int], Tuple[int, int]]] = None,
    stats: bool = False,
):
    """``df`` (every manifest column, as text or typed) through the plan's row stages: every
    row with its output columns (null where not kept), ``__status``, ``__split``,
    ``__badcol`` and ``__subject_key``.

    With ``offsets`` (from :func:`count_blocks`; ``df`` from :func:`locate`), each row also
    gets ``__file`` (the input's index in the plan) and ``__row`` (its record index in that
    file), which the engine needs when each row is its own privacy unit, and the quarantine
    report to say where a bad record is. With ``stats``, each task adds one row of status
    ``-1`` whose ``__stats`` holds its free-text counts as JSON (see :func:`text_counts`)."""
    probe = RowEngine(plan_json, key, index_key)  # fails here, on the driver, if anything is wrong
    out = probe.output_schema()
    extra = []
    if offsets is not None:
        extra += [pa.field(FILE, pa.int64(), True), pa.field(ROW, pa.int64(), True)]
    if stats:
        extra.append(pa.field(STATS, pa.string(), True))
    schema = _spark_schema(pa.schema(list(out) + extra))
    token = hash((plan_json, key, index_key))
    surrogates = json.loads(plan_json)["gate"]["text_surrogates"]

    def run(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        engine = _ENGINES.get(token)
        if engine is None:
            engine = _ENGINES[token] = RowEngine(plan_json, key, index_key)
        before = engine.text_stats() if stats else None
        seen: Dict[Tuple[str, int], int] = {}
        for batch in batches:
            if offsets is not None and batch.schema.get_field_index(FILE) < 0:
                files, rows = _places(batch, offsets, seen)
                batch = batch.append_column(FILE, files).append_column(ROW, rows)
            done = _to_spark(engine.apply(batch))
            if offsets is not None:
                done = done.append_column(FILE, batch.column(FILE).cast(pa.int64()))
                done = done.append_column(ROW, batch.column(ROW).cast(pa.int64()))
            if stats:
                done = done.append_column(STATS, pa.nulls(done.num_rows, pa.string()))
            yield done
        if stats:
            after = engine.text_stats()
            counts = [
                [a[1] - b[1], a[2] - b[2], [x - y for x, y in zip(a[3], b[3])], a[4] - b[4]]
                for a, b in zip(after, before)
            ]
            # The surrogates this worker's engine wrote, for the leak gate (a worker's engine
            # serves several tasks: the driver takes the union).
            emitted = engine.emitted_keys() if surrogates else []
            stats_json = json.dumps({"texts": counts, "emitted": emitted})
            yield _stats_row(done_schema(out, extra), stats_json)

    return df.mapInArrow(run, schema)


def place(located):
    """:func:`locate`'s frame with each row's index in its file block (``__bidx``), computed
    where the rows were read, so that the frame may then be repartitioned (a CSV with
    multi-line fields is read one task per file) and still say where each row came from: the
    record index is the block's first record index (:func:`count_blocks`) plus ``__bidx``."""
    from pyspark.sql.types import LongType, StructField, StructType

    def run(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        seen: Dict[Tuple[str, int], int] = {}
        for batch in batches:
            yield batch.append_column(BIDX, _block_index(batch, seen))

    schema = StructType(list(located.schema.fields) + [StructField(BIDX, LongType(), True)])
    return located.mapInArrow(run, schema)


def done_schema(out: pa.Schema, extra) -> pa.Schema:
    """The Arrow schema of :func:`apply`'s batches, as Spark receives them."""
    fields = [
        pa.field(f.name, pa.int64(), f.nullable) if f.name == SUBJECT_KEY else f for f in out
    ]
    return pa.schema(fields + list(extra))


def _stats_row(schema: pa.Schema, counts: str) -> pa.RecordBatch:
    columns = []
    for f in schema:
        if f.name == STATUS:
            columns.append(pa.array([STATS_STATUS], f.type))
        elif f.name == SPLIT:
            columns.append(pa.array([0], f.type))
        elif f.name == STATS:
            columns.append(pa.array([counts], pa.string()))
        else:
            columns.append(pa.nulls(1, f.type))
    return pa.RecordBatch.from_arrays(columns, schema=schema)


def task_stats(rows) -> list:
    """The per-task rows :func:`apply` added with ``stats``, parsed: each a dict of ``texts``
    (free-text counts per text column) and ``emitted`` (surrogate keys)."""
    return [
        json.loads(r[0])
        for r in rows.where(f"{STATUS} = {STATS_STATUS}").select(STATS).collect()
    ]


def text_counts(stats: list, plan_json: str) -> list:
    """Free-text counts of a run, summed over :func:`task_stats`: per text column of the plan,
    ``texts``, ``texts_changed``, ``spans`` (per detector slot) and ``rows_dropped``."""
    texts = json.loads(plan_json)["texts"]
    total = [[0, 0, [], 0] for _ in texts]
    for task in stats:
        for t, c in zip(total, task["texts"]):
            t[0] += c[0]
            t[1] += c[1]
            t[2] = [a + b for a, b in zip(t[2], c[2])] if t[2] else list(c[2])
            t[3] += c[3]
    return [
        {"texts": t[0], "texts_changed": t[1], "spans": t[2], "rows_dropped": t[3]}
        for t in total
    ]


def emitted_keys(stats: list) -> list:
    """The keys of every surrogate the row engines wrote into texts, from :func:`task_stats`
    (for :func:`leak_gate`)."""
    return sorted({k for task in stats for k in task["emitted"]})


def locate(source):
    """``source`` (a file source) with where each row was read: ``__path`` (the file's URI)
    and ``__block`` (the start of the file block), from Spark's file metadata."""
    from pyspark.sql import functions as F

    return source.select(
        "*",
        F.col("_metadata.file_path").alias(PATH),
        F.col("_metadata.file_block_start").alias(BLOCK),
    )


def read_located(spark, plan_json: str):
    """The plan's inputs as :func:`read_plan_source` reads them, with where each row was read
    (``__path``, ``__block``, as :func:`locate` gives them), and whether the session gave file
    metadata. Where it has none (Spark Connect servers such as Sail), each file is read apart
    and tagged with its path, and ``__block`` is the Spark partition: record indices are then
    known only for a file read as one partition."""
    from pyspark.sql import functions as F

    source = read_plan_source(spark, plan_json)
    located = locate(source)
    try:
        located.schema  # analysed here: a session without file metadata fails now
        return source, located, True
    except Exception:
        pass
    spec = json.loads(plan_json)
    parts = []
    for f in spec["source"]["files"]:
        one = dict(spec, source=dict(spec["source"], files=[f]))
        parts.append(
            read_plan_source(spark, json.dumps(one)).select(
                "*", F.lit(f).alias(PATH), F.spark_partition_id().cast("long").alias(BLOCK)
            )
        )
    located = parts[0]
    for p in parts[1:]:
        located = located.unionByName(p)
    return source, located, False


def local_path(uri: str) -> str:
    """A local file's path from the URI Spark gives (``file:/a/b%20c`` → ``/a/b c``)."""
    from urllib.parse import unquote, urlparse

    u = urlparse(uri)
    return unquote(u.path) if u.scheme in ("", "file") else uri


def is_uri(path: str) -> bool:
    """A source path that is a URI (``s3a://…``, ``file:///…``), as the CLI tells them."""
    scheme, sep, _ = path.partition("://")
    return bool(sep) and bool(scheme) and all(c.isalnum() or c in "+-." for c in scheme)


def _uri(path: str) -> str:
    """A file's URI as written in a source (Hadoop gives local files as ``file:/a/b``)."""
    from urllib.parse import urlparse

    u = urlparse(path)
    if u.scheme and not u.netloc and u.path.startswith("/"):
        return f"{u.scheme}://{u.path}"
    return path


def count_blocks(located, files) -> Tuple[Dict[Tuple[str, int], Tuple[int, int]], list, list, list]:
    """Rows per file block of :func:`locate`'s frame, counted by a Spark aggregation apart from
    the row stages: the offsets :func:`apply` takes (per block, the file's index and the
    record index of the block's first row), and per input file its rows, its blocks and its
    name. The inputs are the plan's ``files``, or, for a source of URIs (globs allowed), the
    files Spark found, by URI."""
    blocks = located.groupBy(PATH, BLOCK).count().collect()
    remote = any(is_uri(f) for f in files)
    if remote:
        raw = sorted({r[0] for r in blocks})
        index = {n: i for i, n in enumerate(raw)}
        key = lambda path: path  # noqa: E731
        names = [_uri(n) for n in raw]
    else:
        names = list(files)
        index = {str(Path(f)): i for i, f in enumerate(files)}
        key = lambda path: str(Path(local_path(path)))  # noqa: E731
    offsets, per_file, blocks_of = {}, [0] * len(names), [0] * len(names)
    for path, block, n in sorted(blocks, key=lambda r: (key(r[0]), r[1])):
        i = index.get(key(path))
        if i is None:
            raise AccountingError(
                f"{path}: Spark read a file the plan does not list\n"
                "  = hint: this is a bug in privprep; nothing was written"
            )
        offsets[(path, block)] = (i, per_file[i])
        per_file[i] += n
        blocks_of[i] += 1
    return offsets, per_file, blocks_of, names


def _csv_reader(spark, separator: str = ","):
    """Spark's CSV reader as privprep reads CSV: a header, quoted multi-line fields, empty
    fields null."""
    return (
        spark.read.option("header", True)
        .option("multiLine", True)
        .option("escape", '"')
        .option("sep", separator)
    )


def _csv(spark, files, header, separator: str = ","):
    """CSV files whose header is ``header``, every field as text. Spark maps CSV fields to a
    schema by position, so the schema follows the header, and Spark checks the header's names
    against it (a file whose columns differ fails instead of being read mislabelled)."""
    from pyspark.sql.types import StringType, StructField, StructType

    text = StructType([StructField(c, StringType(), True) for c in header])
    return (
        _csv_reader(spark, separator)
        .option("enforceSchema", False)
        .option("mode", "PERMISSIVE")
        .schema(text)
        .csv(files)
    )


def read_source(spark, files, fmt: str, columns):
    """The source files as Spark reads them: CSV as text (header, quoted multi-line fields,
    empty fields null; its header in the order of ``columns``), Parquet as stored, NDJSON as
    text."""
    from pyspark.sql.types import StringType, StructField, StructType

    if fmt == "csv":
        return _csv(spark, files, columns)
    if fmt == "parquet":
        return spark.read.parquet(*files)
    text = StructType([StructField(c, StringType(), True) for c in columns])
    return spark.read.schema(text).json(files)


def read_plan_source(spark, plan_json: str):
    """The inputs exactly as the plan resolved them (its files, format and CSV separator),
    every manifest column as :func:`read_source` reads it. A CSV's fields are named by its
    header, whatever the manifest's order."""
    spec = json.loads(plan_json)
    src = spec["source"]
    columns = [c["name"] for c in spec["columns"]]
    if src["format"] != "csv":
        return read_source(spark, src["files"], src["format"], columns)
    from pyspark.sql import functions as F

    header = src.get("csv_columns")
    if not header:
        # A source of URIs: the CLI read no header; Spark reads the first file's.
        header = _csv_reader(spark, src["separator"]).csv(src["files"]).columns
        missing = [c for c in columns if c not in header]
        extra = [c for c in header if c not in columns]
        if missing or extra:
            raise PlanError(
                f"{', '.join(src['files'])}: the CSV header does not match the manifest"
                + (f"; not in the data: {', '.join(missing)}" if missing else "")
                + (f"; not in the manifest: {', '.join(extra)}" if extra else "")
                + "\n  = hint: fix the manifest's [[columns]] or the data"
            )
    frame = _csv(spark, src["files"], header, src["separator"])
    return frame.select(*[F.col(c) for c in columns])


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
    counts = rows.where(f"{STATUS} >= 0").groupBy(STATUS).count().collect()
    return {names.get(r[0], f"status {r[0]}"): r[1] for r in counts}


_GATE_SCHEMA = "column string, scanned long, hits array<long>, ids long"


def _to_arrow(df) -> pa.Table:
    """A small frame on the driver as an Arrow table (Spark 4's ``toArrow``; else collected)."""
    if hasattr(df, "toArrow"):
        try:
            return df.toArrow()
        except Exception:  # a session without the Arrow path: collect instead
            pass
    rows = df.collect()
    names = df.columns
    return pa.table({n: [r[i] for r in rows] for i, n in enumerate(names)})


def leak_gate(source, rows, plan_json: str, emitted=()):
    """The leak gate over the kept rows of :func:`apply`'s output: every judged output value
    scanned by every detector, and searched for the identifier values of every input row of
    ``source`` (kept or not), as the CLI's gate does. The identifier values travel as 64-bit
    keyed hashes under a key drawn here for this call only. Gives the verdicts in the shape
    of ``privprep run --format json``'s ``leak_gate``: per output column its ``result``
    (``clean``, ``leak`` or ``exempt``), ``values_scanned`` and ``hits`` by detector
    (``identifier_value`` for input identifiers). ``emitted``: the surrogates the engines
    wrote into texts (:func:`emitted_keys`), which are not leaks."""
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

        keyed = source.select(*columns).mapInArrow(gather, "key long, first long").distinct()
        # As Arrow columns: a million keys as Python tuples cost seconds to collect and ship.
        keys = _to_arrow(keyed)
    emitted = list(emitted)
    Gate(plan_json, seed, [])  # refuses here, on the driver, what it cannot judge

    def check(batches):
        judge = Gate(plan_json, seed, keys, emitted)
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


class RunFailed(Exception):
    """The run failed and was recorded as failed; nothing of it is in place. ``summary`` is
    the run summary (as ``privprep run --format json`` gives it)."""

    def __init__(self, message: str, summary: Optional[dict]):
        super().__init__(message)
        self.summary = summary


def _privprep(args, state: Optional[str]) -> subprocess.CompletedProcess:
    from .plan import cli, state_dir

    return subprocess.run(
        [cli(), "--state-dir", str(state_dir(state)), "--no-progress", *args],
        capture_output=True,
        text=True,
    )


def _quarantine_report(plan: dict, files: list, bad) -> str:
    """The quarantine report's lines (as the CLI writes them, sorted by file and record): where
    each bad record is and why, never what it held."""
    columns = plan["columns"]
    entries = []
    for file, row, col in bad:
        column = columns[col] if col is not None and 0 <= col < len(columns) else None
        if column is None:
            error = "value did not parse"
        elif column["type"] in ("date", "datetime"):
            error = f"value is not a {column['type']} in the format {column.get('format') or ''}"
        else:
            error = f"value is not a valid {column['type']}"
        entry = {"file": files[file], "record": row}
        if row is None:  # not known on this engine: the entry says so by leaving it out
            del entry["record"]
        entries.append(dict(entry, column=column["name"] if column else None, error=error))
    entries.sort(key=lambda e: (e["file"], e.get("record", -1)))
    return "".join(json.dumps(e, ensure_ascii=False) + "\n" for e in entries)


def _execute(spark, begun: dict, plan_json: str, key, index, partitions=None) -> dict:
    """The Spark job of :func:`run`: what ``privprep external commit`` needs to check and
    commit, with every output written into its staging folder."""
    from pyspark import StorageLevel

    clock = _Phases()
    _, located, metadata = read_located(spark, plan_json)
    # The inputs are read once: placed (and spread), counted, run through the stages and
    # searched by the gate from this copy (on a shared cluster, spark.io.encryption.enabled
    # encrypts what spills to disk).
    if partitions:
        located = place(located).repartition(partitions)
    located = located.persist(StorageLevel.MEMORY_AND_DISK)
    try:
        return _stages(spark, begun, plan_json, key, index, located, metadata, clock)
    finally:
        located.unpersist()
        clock.report()


class _Phases:
    """Wall time per phase of a Spark run, printed to stderr when ``PRIVPREP_SPARK_TIMINGS``
    is set (for benchmarks: where the time goes)."""

    def __init__(self):
        import time

        self.time = time.perf_counter
        self.last = self.time()
        self.phases = []

    def mark(self, name: str) -> None:
        now = self.time()
        self.phases.append((name, now - self.last))
        self.last = now

    def report(self) -> None:
        import os
        import sys

        if os.environ.get("PRIVPREP_SPARK_TIMINGS"):
            print(
                "privprep.spark phases: "
                + ", ".join(f"{n} {t:.2f} s" for n, t in self.phases),
                file=sys.stderr,
            )


def _stages(spark, begun, plan_json, key, index, located, metadata, clock) -> dict:
    from pyspark import StorageLevel
    from pyspark.sql import functions as F

    plan = begun["plan"]
    files = plan["source"]["files"]
    offsets, per_file, blocks, files = count_blocks(located, files)
    clock.mark("read and count")
    # Without file metadata, a record's index is known only in a file read as one partition.
    known = [metadata or b <= 1 for b in blocks]
    if plan["policy"]["row_unit"] and not all(known):
        split = files[known.index(False)]
        raise AccountingError(
            f"{split}: each row is its own privacy unit, which needs each record's index in "
            "its file, and this Spark session (no file metadata) read the file in parts\n"
            "  = hint: run it on Spark proper, or with the CLI (privprep run)"
        )
    rows_read = sum(per_file)
    done = {
        "rows_read": rows_read,
        "inputs": [{"path": f, "rows": n} for f, n in zip(files, per_file)],
    }
    rows = apply(located, plan_json, key, index, offsets=offsets, stats=True)
    rows = rows.persist(StorageLevel.MEMORY_AND_DISK)
    try:
        statuses = status_counts(rows)
        clock.mark("stages and count by status")
        if sum(statuses.values()) != rows_read:
            raise AccountingError(
                f"row accounting does not add up: read {rows_read} ≠ "
                f"{sum(statuses.values())} rows by status\n"
                "  = hint: this is a bug in privprep; nothing was written"
            )
        done["statuses"] = statuses
        stats = task_stats(rows)
        done["text_columns"] = text_counts(stats, plan_json)
        if statuses.get("quarantined"):
            bad = rows.where(f"{STATUS} = 1").select(FILE, ROW, BADCOL).collect()
            bad = [(f, r if known[f] else None, c) for f, r, c in bad]
            Path(begun["quarantine"]["staging"]).write_text(_quarantine_report(plan, files, bad))
            if statuses["quarantined"] > plan["source"]["max_bad_rows"]:
                return done  # the CLI fails the run and puts the report in place alone
        clock.mark("text counts and quarantine")
        emitted = emitted_keys(stats)
        done["leak_gate"] = leak_gate(located, rows, plan_json, emitted)
        clock.mark("leak gate")
        if plan["gate"]["fail"] and any(v["result"] == "leak" for v in done["leak_gate"]):
            return done  # the CLI fails the run on the verdicts; nothing is written
        names = [o["name"] for o in plan["outputs"]]
        kept = rows.where(f"{STATUS} = 0")
        for out in begun["outputs"]:
            # zstd, as the CLI writes its outputs.
            kept.where(F.col(SPLIT) == out["code"]).select(*names).write.option(
                "compression", "zstd"
            ).parquet(out["staging"])
        clock.mark("write outputs")
        if begun.get("releases"):
            if not all(known):
                raise AccountingError(
                    f"{files[known.index(False)]}: a DP release keeps each subject's first rows "
                    "in input order, and this Spark session (no file metadata) read the file in "
                    "parts\n  = hint: run it on Spark proper, or with the CLI (privprep run)"
                )
            done["releases"] = [
                release_aggregates(kept, job, str(Path(begun["scratch"]) / "releases" / str(n)))
                for n, job in enumerate(begun["releases"])
            ]
        kept.select(
            F.col(SPLIT).cast("int").alias("split"), F.col(SUBJECT_KEY).alias("key")
        ).distinct().write.option("compression", "zstd").parquet(
            str(Path(begun["scratch"]) / "subjects")
        )
        clock.mark("releases and subject keys")
        return done
    finally:
        rows.unpersist()


def release_aggregates(kept, job: dict, out: str) -> dict:
    """A DP release's exact aggregates over the kept rows, written as Parquet to ``out``: per
    group, ``count`` and each clamped sum, after the contribution bound the CLI's calibration
    assumed. Gives the rows and distinct keys the release read (for its public ``max_rows``
    and ``max_keys``).

    Why the noise the CLI then adds (OpenDP, at the scale it calibrated for the polars plan)
    is enough, although OpenDP never sees this plan: the rows are truncated exactly as in the
    plan OpenDP analysed (``ReleasePlan::plan`` in ``src/dp/release.rs``). With
    ``max_rows_per_subject = K`` each subject keeps its first K rows in input order; otherwise
    at most ``R = max_rows_per_group`` rows per group (its first, in input order) in its first
    ``G = max_groups`` groups (by key order). Adding or removing one subject then changes at
    most G groups, each count by at most R (at most K rows in all with the per-subject
    bound), and each sum by at most R·max(|lower|, |upper|), since every value is first
    replaced by the bounds' midpoint when missing or NaN and clamped to [lower, upper], as
    OpenDP's ``dp.sum`` does. Those are the per-group (L∞) and per-subject (L0) bounds OpenDP
    derived from the same truncation, so its per-column scale and, for private keys, its
    threshold (a group is released when its noisy count exceeds it) give the same privacy
    loss here. A group without a subject never appears unless its key is public, where it
    gets noise on zero, as OpenDP fills it. A quantile is OpenDP's noisy min over its discrete
    quantile scores, which the CLI computes from the rows below and above each candidate
    (counted here, after the same truncation, a missing value taking the middle candidate as
    on polars); one subject moves each of those counts by at most its rows in the group, as in
    the plan OpenDP analysed. The parity test runs releases on both engines at a loss so large
    that the noise vanishes: the counts, sums and quantiles agree."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    keys = [name for _, name in job["keys"]]
    frame = kept.select(
        F.col(SUBJECT_KEY).alias("__s"), FILE, ROW,
        *[F.col(alias).alias(name) for alias, name in job["keys"]],
        *[F.col(s["value"]).alias(s["name"]) for s in job["sums"]],
        *[F.col(q["value"]).alias(q["name"]) for q in job.get("quantiles", [])],
    )
    rows = kept.count()
    distinct = frame.select(*keys).distinct().count() if keys else 1
    for k in keys:
        frame = frame.where(F.col(k).isNotNull())
    order = [F.col(FILE), F.col(ROW)]
    if job["max_rows_per_subject"] is not None:
        window = Window.partitionBy("__s").orderBy(*order)
        frame = frame.withColumn("__n", F.row_number().over(window))
        frame = frame.where(F.col("__n") <= job["max_rows_per_subject"])
    else:
        window = Window.partitionBy("__s", *keys).orderBy(*order)
        frame = frame.withColumn("__n", F.row_number().over(window))
        keep = F.col("__n") <= job["max_rows_per_group"]
        if keys:
            ranked = Window.partitionBy("__s").orderBy(*keys)
            frame = frame.withColumn("__g", F.dense_rank().over(ranked))
            keep = keep & (F.col("__g") <= job["max_groups"])
        frame = frame.where(keep)
    aggs = [F.count(F.lit(1)).alias("count")]
    for s in job["sums"]:
        mid = (s["lower"] + s["upper"]) / 2.0
        v = F.col(s["name"])
        filled = F.when(v.isNull() | F.isnan(v), F.lit(mid)).otherwise(v)
        clamped = F.least(F.greatest(filled, F.lit(s["lower"])), F.lit(s["upper"]))
        aggs.append(F.sum(clamped).alias(s["name"]))
    for q in job.get("quantiles", []):
        # OpenDP's quantile score of a candidate needs the rows below and above it.
        v = F.col(q["name"])
        filled = F.when(v.isNull() | F.isnan(v), F.lit(q["missing"])).otherwise(v)
        for i, c in enumerate(q["candidates"]):
            aggs.append(F.sum(F.when(filled < F.lit(c), 1).otherwise(0)).alias(f"{q['name']}__lt{i}"))
            aggs.append(F.sum(F.when(filled > F.lit(c), 1).otherwise(0)).alias(f"{q['name']}__gt{i}"))
    table = frame.groupBy(*keys).agg(*aggs) if keys else frame.agg(*aggs)
    table.coalesce(1).write.option("compression", "zstd").parquet(out)
    return {"rows": rows, "keys": distinct}


def _describe(e: BaseException) -> str:
    """A failed job's error for the lineage record: privprep's own messages whole; another
    exception by its type and first line (Spark's messages name files and columns)."""
    if isinstance(e, (AccountingError, PlanError)):
        return str(e)
    first = (str(e).strip().splitlines() or [""])[0][:300]
    return f"the Spark job failed: {type(e).__name__}: {first}"


def run(
    spark,
    pipeline: str,
    state_dir: Optional[str] = None,
    key_file: Optional[str] = None,
    partitions: Optional[int] = None,
) -> dict:
    """Runs a pipeline file on Spark and commits it as ``privprep run`` does: the outputs land
    at the paths the pipeline names (a Parquet folder each, with ``_privprep.json``), the run's
    record goes into the lineage store with ``engine = "spark"``, and the result is the run
    summary (the fields of ``privprep run --format json``).

    The CLI (``$PRIVPREP_BIN`` or ``privprep`` on the driver's PATH) plans and journals the run
    and commits it; Spark reads the sources, runs every row stage in one ``mapInArrow`` pass,
    counts rows by status, runs the leak gate and writes the outputs into staging folders. A
    run that fails (bad rows over ``max_bad_rows``, a leak under ``leak_gate = "fail"``, a
    failed job) is recorded as failed, leaves no output and raises :class:`RunFailed`; a
    driver that dies leaves a journal entry the next privprep command turns into a failed
    record, removing what was staged.

    ``partitions``: spread the rows over this many partitions before the row stages (a CSV with
    multi-line fields is read one task per file); by default they stay as Spark read them."""
    import os

    done = _privprep(
        ["external", "begin", str(pipeline), "--engine", "spark", "--pid", str(os.getpid())]
        + (["--key-file", str(key_file)] if key_file else []),
        state_dir,
    )
    if done.returncode != 0:
        raise PlanError((done.stderr or done.stdout).strip())
    begun = json.loads(done.stdout)
    plan_json = json.dumps(begun["plan"])
    finished = {"run_id": begun["run_id"]}
    conf = "spark.sql.parquet.outputTimestampType"
    before = spark.conf.get(conf, None)
    try:
        # Timestamps as the CLI writes them (INT64 microseconds), not Spark's INT96 default.
        spark.conf.set(conf, "TIMESTAMP_MICROS")
        key, index = load_keys(plan_json, state_dir, key_file)
        finished.update(_execute(spark, begun, plan_json, key, index, partitions))
    except Exception as e:  # recorded as failed below; nothing is committed
        finished["error"] = _describe(e)
    finally:
        if before is None:
            spark.conf.unset(conf)
        else:
            spark.conf.set(conf, before)
    result = Path(begun["scratch"]) / "result.json"
    result.write_text(json.dumps(finished))
    clock = _Phases()
    done = _privprep(
        ["external", "commit", str(pipeline), str(result), "--format", "json"], state_dir
    )
    clock.mark("commit (CLI)")
    clock.report()
    try:
        summary = json.loads(done.stdout)
    except ValueError:
        summary = None
    if done.returncode != 0:
        raise RunFailed((done.stderr or done.stdout).strip(), summary)
    return summary


def main(argv=None) -> int:
    """``python -m privprep.spark PIPELINE [--state-dir DIR] [--key-file F] [--format json]``,
    for ``spark-submit``: runs the pipeline on the session's cluster and prints the summary."""
    import argparse
    import sys

    parser = argparse.ArgumentParser(
        prog="python -m privprep.spark", description="Run a privprep pipeline on Spark."
    )
    parser.add_argument("pipeline")
    parser.add_argument("--state-dir", default=None)
    parser.add_argument("--key-file", default=None)
    parser.add_argument("--format", choices=["text", "json"], default="text")
    parser.add_argument(
        "--partitions", type=int, default=None,
        help="spread the rows over this many partitions before the row stages",
    )
    args = parser.parse_args(argv)
    from pyspark.sql import SparkSession

    spark = SparkSession.builder.appName("privprep").getOrCreate()
    try:
        summary = run(spark, args.pipeline, args.state_dir, args.key_file, args.partitions)
    except (PlanError, RunFailed) as e:
        if args.format == "json" and getattr(e, "summary", None):
            print(json.dumps(getattr(e, "summary"), indent=2))
        print(f"error: {e}", file=sys.stderr)
        return 2 if isinstance(e, PlanError) else 1
    if args.format == "json":
        print(json.dumps(summary, indent=2))
    else:
        print(
            f"run {summary['run_id']} on Spark: read {summary['rows_read']}, wrote "
            f"{summary['rows_written']}, dropped {sum(summary['dropped'].values())}, "
            f"quarantined {summary['quarantined']}"
        )
        for o in summary["outputs"]:
            print(f"  {o['split']}: {o['path']} ({o['rows']} rows)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
