"""The wheel's row engine over pyarrow batches against the CLI's outputs."""

import collections
import json
import os

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

import privprep
from conftest import SPLITS, assert_same_as_cli
from privprep.plan import PlanError, load_keys, resolve_plan


def engine_for(w):
    os.environ["PRIVPREP_STATE_DIR"] = str(w.state)
    plan = resolve_plan(str(w.pipeline), str(w.state))
    key, index = load_keys(plan, str(w.state))
    return plan, privprep.RowEngine(plan, key, index)


def read_text_csv(path, block_size=1 << 16):
    names = pacsv.read_csv(path, read_options=pacsv.ReadOptions(block_size=1 << 20)).column_names
    return pacsv.read_csv(
        path,
        read_options=pacsv.ReadOptions(block_size=block_size),
        parse_options=pacsv.ParseOptions(newlines_in_values=True),
        convert_options=pacsv.ConvertOptions(
            column_types={n: pa.string() for n in names}, strings_can_be_null=True
        ),
    )


def read_batches(w, columns):
    """The workspace's source as pyarrow batches of 700 rows: CSV and NDJSON as text (empty
    fields null), Parquet as stored."""
    if w.format == "csv":
        table = read_text_csv(w.source)
    elif w.format == "parquet":
        table = pq.read_table(w.source)
    else:
        import pyarrow.json as pajson

        schema = pa.schema([(c, pa.string()) for c in columns])
        table = pajson.read_json(w.source, parse_options=pajson.ParseOptions(explicit_schema=schema))
    return table.to_batches(max_chunksize=700)


def test_the_wheel_keeps_drops_and_transforms_rows_as_the_cli(any_workspace):
    w = any_workspace
    plan, engine = engine_for(w)
    spec = json.loads(plan)
    names = [o["name"] for o in spec["outputs"]]
    batches = read_batches(w, [c["name"] for c in spec["columns"]])
    assert len(batches) > 2
    out = pa.Table.from_batches([engine.apply(b) for b in batches])
    statuses = dict(collections.Counter(out.column(privprep.STATUS).to_pylist()))
    kept = out.filter(pc.equal(out.column(privprep.STATUS), 0))
    by_split = {
        code: [tuple(r[n] for n in names) for r in
               kept.filter(pc.equal(kept.column(privprep.SPLIT), code)).select(names).to_pylist()]
        for code in SPLITS.values()
    }
    assert_same_as_cli(w, statuses, by_split, names)
    texts = {c: dropped for c, _, _, _, dropped in engine.text_stats()}
    assert texts["body"] == w.summary["dropped"]["pii_in_text"]
    # Subject keys only on kept rows, and the plan holds no subject id.
    assert out.column(privprep.SUBJECT_KEY).null_count == out.num_rows - statuses[0]
    assert w.erased not in plan


def test_an_invalid_pipeline_reports_the_clis_diagnostics(workspace):
    bad = workspace.root / "bad.toml"
    bad.write_text(workspace.pipeline.read_text().replace('purpose = "training"', 'purpose = 5'))
    with pytest.raises(PlanError) as e:
        resolve_plan(str(bad), str(workspace.state))
    assert "bad.toml" in str(e.value) and "purpose" in str(e.value)


def test_a_wrong_key_or_a_missing_column_is_a_clear_error(workspace):
    plan, engine = engine_for(workspace)
    with pytest.raises(ValueError, match="the plan was made for"):
        privprep.RowEngine(plan, "ab" * 32, None)
    table = read_text_csv(workspace.root / "data" / "tickets.csv").drop_columns(["email"])
    with pytest.raises(ValueError, match="no column `email`"):
        engine.apply(table.to_batches()[0])
