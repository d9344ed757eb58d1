"""The wheel's row engine over pyarrow batches against the CLI's outputs."""

import collections
import os

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

import privprep
from privprep.plan import PlanError, load_keys, resolve_plan

SPLITS = {"train": 0, "validation": 1, "test": 2}


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


def rows(table, names):
    return [tuple(r[n] for n in names) for r in table.select(names).to_pylist()]


def test_the_wheel_keeps_drops_and_transforms_rows_as_the_cli(workspace):
    w = workspace
    plan, engine = engine_for(w)
    names = [o["name"] for o in __import__("json").loads(plan)["outputs"]]
    table = read_text_csv(w.root / "data" / "tickets.csv")
    batches = table.to_batches(max_chunksize=700)
    assert len(batches) > 2
    out = pa.Table.from_batches([engine.apply(b) for b in batches])
    status = out.column(privprep.STATUS).to_pylist()
    reasons = dict(privprep.DROP_REASONS)
    counts = collections.Counter(status)
    assert counts[1] == w.summary["quarantined"]
    dropped = {reasons[s]: n for s, n in counts.items() if s >= 2}
    assert dropped == {k: v for k, v in w.summary["dropped"].items() if v}
    assert counts[0] == w.summary["rows_written"] > 500
    kept = out.filter(pc.equal(out.column(privprep.STATUS), 0))
    for output in w.summary["outputs"]:
        want = rows(pq.read_table(w.root / output["path"]), names)
        mine = kept.filter(pc.equal(kept.column(privprep.SPLIT), SPLITS[output["split"]]))
        assert sorted(rows(mine, names), key=repr) == sorted(want, key=repr)
    texts = {c: (n, changed, dropped_rows) for c, n, changed, _, dropped_rows in engine.text_stats()}
    assert texts["body"][2] == w.summary["dropped"]["pii_in_text"]
    # Subject keys only on kept rows, and the plan holds no subject id.
    keys = out.column(privprep.SUBJECT_KEY)
    assert keys.null_count == len(status) - counts[0]
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
