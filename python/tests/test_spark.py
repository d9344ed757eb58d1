"""The row stages on Spark (PySpark in local[2], a JVM) against the CLI's outputs, for CSV,
Parquet and NDJSON sources. ``test_sail.py`` runs the same check on Sail."""

import json
import shutil
from pathlib import Path

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


def _copy(w, tmp_path, edit=None):
    """A copy of workspace ``w`` (data, pipeline, state: the same keys and store), so a run
    on Spark replaces none of ``w``'s outputs. ``edit`` rewrites the pipeline text; the CLI's
    outputs are removed from the copy."""
    from conftest import Workspace

    root = tmp_path / "copy"
    shutil.copytree(w.root, root)
    shutil.rmtree(root / "out")
    c = Workspace(root)
    c.source, c.format, c.summary = root / w.source.relative_to(w.root), w.format, w.summary
    if edit:
        c.pipeline.write_text(edit(c.pipeline.read_text()))
    return c


def _left_behind(c):
    """Staging and scratch a run left: hidden entries beside the outputs, journal entries,
    scratch folders."""
    out = c.root / "out"
    hidden = [p.name for p in out.iterdir() if p.name.startswith(".")] if out.exists() else []
    runs = [p.name for p in (c.state / "runs").glob("*")]
    tmp = [p.name for p in (c.state / "tmp").glob("*")]
    return hidden + runs + tmp


def test_a_run_on_spark_commits_what_the_cli_commits(
    spark, any_workspace, tmp_path, utc_timestamps=False
):
    """``utc_timestamps``: the engine is a Spark Connect server like Sail, which writes datetime
    columns as UTC-adjusted timestamps (compared with the CLI's naive ones as the same instants
    in UTC) and gives no file metadata (record indices only for files read whole)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    w = any_workspace
    c = _copy(w, tmp_path)
    # Spread over 3 partitions after the rows are placed (file, record), before the stages.
    summary = pspark.run(spark, str(c.pipeline), str(c.state), partitions=3)
    assert set(summary) == set(w.summary)
    for field in ("status", "rows_read", "rows_written", "dropped", "quarantined", "key_id",
                  "leak_gate", "text_columns"):
        assert summary[field] == w.summary[field], field
    assert summary["status"] == "succeeded" and summary["rows_written"] > 500
    assert [(o["split"], o["rows"]) for o in summary["outputs"]] == [
        (o["split"], o["rows"]) for o in w.summary["outputs"]
    ]
    for ours, theirs in zip(summary["outputs"], w.summary["outputs"]):
        folder = c.root / ours["path"]
        assert folder.is_dir() and folder.name == (w.root / theirs["path"]).name
        got, want = pq.read_table(folder), pq.read_table(w.root / theirs["path"])
        assert got.column_names == want.column_names
        if utc_timestamps:
            for i, f in enumerate(got.schema):
                if pa.types.is_timestamp(f.type) and f.type.tz in ("UTC", "Etc/UTC"):
                    naive = got.column(i).cast(pa.timestamp(f.type.unit))
                    got = got.set_column(i, pa.field(f.name, naive.type), naive)
        assert got.schema == want.schema.remove_metadata()
        assert sorted(map(repr, got.to_pylist())) == sorted(map(repr, want.to_pylist()))
        meta = json.loads((folder / "_privprep.json").read_text())
        assert (meta["run_id"], meta["split"], meta["rows"]) == (
            summary["run_id"], ours["split"], ours["rows"],
        )
    # The quarantine report names the same records, columns and reasons (Spark knows no
    # line numbers).
    if w.summary["quarantined"]:
        def entries(root, report):
            lines = (root / report).read_text().splitlines()
            found = [{k: v for k, v in json.loads(x).items() if k != "line"} for x in lines]
            for e in found:
                e["file"] = str(Path(e["file"]).resolve().relative_to(root.resolve()))
            return found

        ours, theirs = entries(c.root, summary["quarantine_report"]), entries(
            w.root, w.summary["quarantine_report"]
        )
        if utc_timestamps:
            # A Connect server without file metadata (Sail) knows a record's index only in a
            # file it read as one partition; otherwise the entry leaves it out.
            unknown = {e["file"] for e in ours if "record" not in e}
            theirs = [
                {k: v for k, v in e.items() if k != "record" or e["file"] not in unknown}
                for e in theirs
            ]
            key = lambda e: (e["file"], e.get("record", -1), e["column"])  # noqa: E731
            ours, theirs = sorted(ours, key=key), sorted(theirs, key=key)
        else:
            assert all("record" in e for e in ours)
        assert ours == theirs
    assert _left_behind(c) == []
    # The record is in the same store, chained, and says which engine ran it.
    c.privprep("lineage", "verify")
    shown = json.loads(c.privprep("lineage", "show", summary["run_id"], "--format", "json").stdout)
    assert shown["record"]["engine"] == "spark"
    # Every subject is found in the Spark run's outputs exactly where the CLI's run put it.
    subjects = json.loads(c.privprep("subject", "find", w.erased, "--format", "json").stdout)
    assert subjects[0]["holdings"] == [] or all(
        h["run_id"] != summary["run_id"] for h in subjects[0]["holdings"]
    )
    import csv

    if w.format == "csv":
        with open(w.source, newline="") as f:
            ids = sorted({r["subject_id"] for r in csv.DictReader(f)})[:40]
        (c.root / "ids.txt").write_text("\n".join(ids) + "\n")
        found = json.loads(
            c.privprep("subject", "find", "--ids", "ids.txt", "--format", "json").stdout
        )
        for subject in found:
            runs = {}
            for h in subject["holdings"]:
                runs.setdefault(h["run_id"], set()).add((h["kind"], h["split"]))
            assert runs.get(summary["run_id"], set()) == runs.get(w.summary["run_id"], set())
        assert any(summary["run_id"] in {h["run_id"] for h in s["holdings"]} for s in found)


@pytest.mark.parametrize("case", ["leak", "bad rows", "job"])
def test_a_failed_run_on_spark_leaves_no_output(spark, case, request, tmp_path):
    if case == "leak":
        w = request.getfixturevalue("leaky_workspace")
        edit = lambda t: t.replace('leak_gate = "warn"', 'leak_gate = "fail"')  # noqa: E731
        why = "leak gate"
    elif case == "bad rows":
        w = request.getfixturevalue("workspace")
        edit = lambda t: t.replace("max_bad_rows = 1000", "max_bad_rows = 1")  # noqa: E731
        why = "more than max_bad_rows = 1"
    else:  # the source vanishes after the plan: the Spark job itself fails
        w = request.getfixturevalue("workspace")
        edit, why = None, "the Spark job failed"
    c = _copy(w, tmp_path, edit)
    if case == "job":
        real = pspark._execute

        def vanish(spark_, begun, *rest):
            c.source.unlink()
            return real(spark_, begun, *rest)

        pspark._execute = vanish
    try:
        with pytest.raises(pspark.RunFailed, match=why) as failed:
            pspark.run(spark, str(c.pipeline), str(c.state))
    finally:
        if case == "job":
            pspark._execute = real
    assert failed.value.summary["status"] == "failed"
    assert failed.value.summary["outputs"] == []
    written = sorted(p.name for p in (c.root / "out").glob("*")) if (c.root / "out").exists() else []
    if case == "bad rows":
        # The report is what the user needs to fix the data: it alone is in place.
        report = c.root / failed.value.summary["quarantine_report"]
        assert written == [report.name]
        assert len(report.read_text().splitlines()) == w.summary["quarantined"]
    else:
        assert written == []
    assert _left_behind(c) == []
    c.privprep("lineage", "verify")
    shown = json.loads(
        c.privprep("lineage", "show", failed.value.summary["run_id"], "--format", "json").stdout
    )
    assert shown["record"]["status"] == "failed" and shown["record"]["engine"] == "spark"


RELEASES = """
[[release]]
name = "by_country"
path = "out/by_country.parquet"
group_by = ["country"]
keys = "public"
key_file = "data/countries.csv"
max_rows_per_subject = 3
max_rows = 100000
privacy = { epsilon = 1e4 }
aggregates = [{ kind = "count" }, { kind = "sum", column = "satisfaction", bounds = [1.0, 5.0] }]

[[release]]
name = "private_provenance"
path = "out/private_provenance.parquet"
group_by = ["country", "provenance"]
keys = "private"
max_rows_per_group = 2
max_groups = 2
max_rows = 100000
max_keys = 1000
privacy = { epsilon = 1000.0, delta = 1e-6 }
aggregates = [{ kind = "count" }, { kind = "mean", column = "handle_time_minutes", bounds = [0.0, 60.0] }]

[[release]]
name = "overall"
path = "out/overall.parquet"
max_rows_per_group = 4
max_rows = 100000
privacy = { rho = 1e6 }
aggregates = [{ kind = "count" }, { kind = "mean", column = "satisfaction", bounds = [1.0, 5.0] }, { kind = "quantile", column = "handle_time_minutes", alpha = 0.5, candidates = [0.5, 7.5, 15.5, 30.5, 60.5, 120.5] }]
"""


def test_dp_releases_on_spark_aggregate_as_the_cli(spark, any_workspace, tmp_path):
    """The same releases on both engines at a privacy loss so large that OpenDP's noise
    vanishes: the exact aggregates of the Spark plan (truncation, clamping, grouping, key
    handling) are those of the plan OpenDP analysed on polars. The noise's distributions and
    scales, and the spend, are the same calibration's."""
    import pyarrow.parquet as pq

    w = any_workspace
    countries = "country\nUS\nGB\nDE\nFR\nIN\nBR\nCA\nAU\nES\nIT\nNL\nMX\nPL\nJP\nSE\nAQ\n"

    def with_releases(t):
        return t + RELEASES

    cli = _copy(w, tmp_path / "cli", with_releases)
    (cli.root / "data" / "countries.csv").write_text(countries)
    ours = _copy(w, tmp_path / "spark", with_releases)
    (ours.root / "data" / "countries.csv").write_text(countries)
    theirs = json.loads(cli.privprep("run", str(cli.pipeline), "--format", "json").stdout)
    summary = pspark.run(spark, str(ours.pipeline), str(ours.state))
    assert len(summary["releases"]) == len(theirs["releases"]) == 3
    for a, b in zip(summary["releases"], theirs["releases"]):
        for field in ("name", "noise", "epsilon", "delta", "rho", "global_scale", "threshold",
                      "statistics", "rows"):
            assert a[field] == b[field], (a["name"], field)
        assert a["key_source"].replace(str(ours.root), "") == b["key_source"].replace(
            str(cli.root), ""
        )
        got = pq.read_table(ours.root / a["path"]).to_pylist()
        want = pq.read_table(cli.root / b["path"]).to_pylist()
        assert [sorted(r) for r in got] == [sorted(r) for r in want]
        scale = {n["column"]: n["scale"] for n in a["noise"]}
        for g, t in zip(got, want):
            for k, v in t.items():
                if k.endswith("_ci95"):
                    continue  # derived from the noisy counts
                if k.endswith("_sum") or k.endswith("_mean"):
                    # Both are noisy: they differ by two draws of at most 10 scales each
                    # (P < 1e-4 otherwise); a mean by that over its count.
                    noise = scale[k if k.endswith("_sum") else k + "_sum"]
                    tol = 20 * noise / (max(t["count"], 1) if k.endswith("_mean") else 1)
                    assert g[k] == pytest.approx(v, abs=max(tol, 1e-9)), (a["name"], k)
                else:
                    assert g[k] == v, (a["name"], k)
    by_country = pq.read_table(ours.root / "out" / "by_country.parquet").to_pylist()
    # A public key without rows is released (noise on zero).
    assert any(r["country"] == "AQ" and r["count"] == 0 for r in by_country)
    # The budget ledger holds the Spark run's spend, as the CLI's holds its own.
    spent = json.loads(ours.privprep("budget", "--format", "json").stdout)
    assert [(b["releases"], b["runs"]) for b in spent] == [(3, 1)]
    assert spent == json.loads(cli.privprep("budget", "--format", "json").stdout)
    ours.privprep("lineage", "verify")
    cli.privprep("lineage", "verify")


def test_the_spark_entry_point_prints_the_run_summary(spark, workspace, tmp_path, capsys):
    """``python -m privprep.spark`` (its ``main``, in this session): the summary as JSON,
    exit 0; an invalid pipeline gives the CLI's diagnostics and exit 2."""
    c = _copy(workspace, tmp_path)
    code = pspark.main([str(c.pipeline), "--state-dir", str(c.state), "--format", "json"])
    out = capsys.readouterr().out
    assert code == 0
    summary = json.loads(out)
    assert summary["status"] == "succeeded"
    assert summary["rows_written"] == workspace.summary["rows_written"]
    c.pipeline.write_text(c.pipeline.read_text().replace('purpose = "training"', 'purpose = 7'))
    code = pspark.main([str(c.pipeline), "--state-dir", str(c.state)])
    err = capsys.readouterr().err
    assert code == 2
    assert "parity.toml:" in err and "purpose" in err


def test_a_run_with_surrogates_on_spark_passes_the_gate_as_on_the_cli(
    spark, surrogate_workspace, tmp_path
):
    """Surrogates written into texts look like personal data by design: the engines report
    them to the gate, which does not count them, as the CLI's gate does not."""
    import pyarrow.parquet as pq

    w = surrogate_workspace
    assert any(t["spans_replaced"] for t in w.summary["text_columns"])
    c = _copy(w, tmp_path)
    summary = pspark.run(spark, str(c.pipeline), str(c.state), partitions=2)
    assert summary["leak_gate"] == w.summary["leak_gate"]
    assert all(v["result"] != "leak" for v in summary["leak_gate"])
    assert summary["text_columns"] == w.summary["text_columns"]
    for ours, theirs in zip(summary["outputs"], w.summary["outputs"]):
        got = pq.read_table(c.root / ours["path"]).to_pylist()
        want = pq.read_table(w.root / theirs["path"]).to_pylist()
        assert sorted(map(repr, got)) == sorted(map(repr, want))


def test_csv_fields_are_named_by_the_header_not_the_manifest_order(spark, workspace, tmp_path):
    """A CSV whose columns are not in the manifest's order: Spark maps CSV fields to a schema
    by position, so the engine reads them in the header's order; the outputs equal the CLI's
    on the same file."""
    import csv as csvmod

    import pyarrow.parquet as pq

    def reorder(root):
        path = root / "data" / "tickets.csv"
        with open(path, newline="") as f:
            rows = list(csvmod.reader(f))
        order = list(reversed(range(len(rows[0]))))
        with open(path, "w", newline="") as f:
            csvmod.writer(f).writerows([[r[i] for i in order] for r in rows])

    cli = _copy(workspace, tmp_path / "cli")
    ours = _copy(workspace, tmp_path / "spark")
    reorder(cli.root)
    reorder(ours.root)
    theirs = json.loads(cli.privprep("run", str(cli.pipeline), "--format", "json").stdout)
    summary = pspark.run(spark, str(ours.pipeline), str(ours.state))
    for field in ("rows_read", "rows_written", "dropped", "quarantined"):
        assert summary[field] == theirs[field], field
    assert summary["rows_written"] == workspace.summary["rows_written"]
    for a, b in zip(summary["outputs"], theirs["outputs"]):
        got = pq.read_table(ours.root / a["path"]).to_pylist()
        want = pq.read_table(cli.root / b["path"]).to_pylist()
        assert sorted(map(repr, got)) == sorted(map(repr, want))


def test_a_source_of_uris_runs_on_spark_and_is_refused_by_the_cli(spark, any_workspace, tmp_path):
    """``[source] path`` as a URI with a glob (``file:///…/*.csv`` here; ``s3a://`` and the
    like on a cluster): the CLI plans it from the manifest without reading it, Spark finds and
    reads the files, and the run commits what a run over the local path commits. The CLI's own
    engine refuses it, saying where it runs."""
    import pyarrow.parquet as pq

    w = any_workspace
    c = _copy(w, tmp_path)
    uri = (c.source.parent.resolve() / f"tickets*{c.source.suffix}").as_uri().replace("%2A", "*")
    c.pipeline.write_text(
        c.pipeline.read_text().replace(f'path = "data/{c.source.name}"', f'path = "{uri}"')
    )
    assert uri in c.pipeline.read_text()
    c.privprep("validate", str(c.pipeline))
    refused = c.privprep_fails("run", str(c.pipeline))
    assert "is a URI" in refused and "privprep.spark" in refused
    summary = pspark.run(spark, str(c.pipeline), str(c.state))
    for field in ("rows_read", "rows_written", "dropped", "quarantined", "leak_gate"):
        assert summary[field] == w.summary[field], field
    for ours, theirs in zip(summary["outputs"], w.summary["outputs"]):
        got = pq.read_table(c.root / ours["path"]).to_pylist()
        want = pq.read_table(w.root / theirs["path"]).to_pylist()
        assert sorted(map(repr, got)) == sorted(map(repr, want))
    record = json.loads(c.privprep("lineage", "show", summary["run_id"], "--format", "json").stdout)
    inputs = record["record"]["inputs"]
    assert [i["path"] for i in inputs] == [c.source.resolve().as_uri()]
    assert inputs[0]["rows_read"] == w.summary["rows_read"]


@pytest.mark.parametrize("fmt", ["ndjson", "csv"])
def test_files_split_in_many_blocks_and_spread_keep_their_record_indices(
    spark, fmt, request, tmp_path
):
    """An input Spark splits into many blocks (small ``maxPartitionBytes``; a CSV with
    multi-line fields is never split), spread over partitions: every row still gets its file
    and record index, so the quarantine report names the CLI's records and the outputs are
    the CLI's."""
    w = request.getfixturevalue(f"{fmt if fmt != 'csv' else ''}_workspace".lstrip("_"))
    before = spark.conf.get("spark.sql.files.maxPartitionBytes")
    spark.conf.set("spark.sql.files.maxPartitionBytes", str(64 * 1024))
    try:
        test_a_run_on_spark_commits_what_the_cli_commits(spark, w, tmp_path)
    finally:
        spark.conf.set("spark.sql.files.maxPartitionBytes", before)
