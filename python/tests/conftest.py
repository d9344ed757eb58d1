"""Generated data, a pipeline and its CLI run, shared by the wheel's tests."""

import json
import os
import subprocess
from pathlib import Path

import pytest

PIPELINE = """
[pipeline]
name = "parity"

[source]
path = "data/tickets.csv"
manifest = "data/manifest.toml"

[policy]
purpose = "training"
allowed_status = ["given"]
allowed_provenance = ["app", "web", "partner_api"]
revocations = ["data/revocations.csv"]
retention_days = 1095
as_of = "2026-11-01"

[columns]
subject_id = { action = "tokenize" }
full_name = { action = "drop" }
email = { action = "tokenize" }
phone = { action = "mask", keep_last = 2 }
birth_date = { action = "generalize", to = "year" }
zip = { action = "generalize", prefix = 3 }
country = { action = "keep" }
satisfaction = { action = "keep" }
created_at = { action = "keep" }
handle_time_minutes = { action = "generalize", width = 5 }
body = { action = "redact", actions = { email = "tokenize", ssn = "drop_row", phone = "mask" } }

[output]
path = "out/parity.parquet"
max_bad_rows = 1000

[output.split]
train = 0.7
validation = 0.2
test = 0.1
"""


def cli() -> str:
    path = os.environ.get("PRIVPREP_BIN")
    if not path:
        target = os.environ.get("CARGO_TARGET_DIR", str(Path(__file__).parents[2] / "target"))
        path = str(Path(target) / "debug" / "privprep")
    if not Path(path).exists():
        pytest.skip(f"no privprep binary at {path}; build it with cargo build or set PRIVPREP_BIN")
    os.environ["PRIVPREP_BIN"] = path
    return path


class Workspace:
    def __init__(self, root: Path):
        self.root = root
        self.state = root / "state"
        self.pipeline = root / "parity.toml"

    def privprep(self, *args: str) -> subprocess.CompletedProcess:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PRIVPREP_KEY")}
        env["PRIVPREP_STATE_DIR"] = str(self.state)
        done = subprocess.run(
            [cli(), "--no-progress", *args], cwd=self.root, env=env, capture_output=True, text=True
        )
        assert done.returncode == 0, f"privprep {args}: {done.stderr}"
        return done

    def privprep_fails(self, *args: str) -> str:
        """Runs privprep, which must fail; gives its stderr."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("PRIVPREP_KEY")}
        env["PRIVPREP_STATE_DIR"] = str(self.state)
        done = subprocess.run(
            [cli(), "--no-progress", *args], cwd=self.root, env=env, capture_output=True, text=True
        )
        assert done.returncode != 0, f"privprep {args} succeeded"
        return done.stderr


def _workspace(root: Path, fmt: str, pipeline: str = PIPELINE) -> Workspace:
    """3000 generated tickets (CSV with bad dates planted, Parquet as datagen types it, or
    NDJSON of text fields), one subject erased, and the pipeline run by the CLI (its JSON
    summary in ``summary``)."""
    import csv as csvmod

    w = Workspace(root)
    data = w.root / "data"
    w.privprep("datagen", "--rows", "3000", "--seed", "11", "--out", str(data),
               *(["--format", "parquet"] if fmt == "parquet" else []))
    if fmt == "parquet":
        source = data / "tickets.parquet"
        import pyarrow.parquet as pq

        subjects = pq.read_table(source).column("subject_id").to_pylist()
    else:
        csv = data / "tickets.csv"
        with open(csv, newline="") as f:
            rows = list(csvmod.reader(f))
        birth = rows[0].index("birth_date")
        for r in rows[1::97]:
            r[birth] = r[birth].replace("-", "/", 1)
        subjects = [r[rows[0].index("subject_id")] for r in rows[1:]]
        if fmt == "csv":
            source = csv
            with open(csv, "w", newline="") as f:
                csvmod.writer(f).writerows(rows)
        else:
            # Every field as JSON text, empty ones null, as a CSV reader gives them.
            source = data / "tickets.ndjson"
            with open(source, "w") as f:
                for r in rows[1:]:
                    f.write(json.dumps({k: (v or None) for k, v in zip(rows[0], r)}) + "\n")
            csv.unlink()
    w.source, w.format = source, fmt
    w.pipeline.write_text(
        pipeline.replace('path = "data/tickets.csv"', f'path = "data/{source.name}"')
    )
    w.privprep("run", str(w.pipeline), "--format", "json")
    w.erased = subjects[len(subjects) // 2]
    w.privprep("subject", "forget", w.erased, "--reason", "erasure request")
    w.summary = json.loads(w.privprep("run", str(w.pipeline), "--format", "json").stdout)
    return w


@pytest.fixture(scope="session")
def workspace(tmp_path_factory) -> Workspace:
    """The CSV workspace (see ``_workspace``)."""
    return _workspace(tmp_path_factory.mktemp("privprep"), "csv")


_BY_FORMAT = {}


def workspace_of(fmt: str, tmp_path_factory) -> Workspace:
    """The session's workspace of source format ``fmt`` (made once)."""
    if fmt not in _BY_FORMAT:
        _BY_FORMAT[fmt] = _workspace(tmp_path_factory.mktemp(f"privprep-{fmt}"), fmt)
    return _BY_FORMAT[fmt]


@pytest.fixture(scope="session", params=["csv", "parquet", "ndjson"])
def any_workspace(request, tmp_path_factory) -> Workspace:
    """A workspace of each source format."""
    if request.param == "csv":
        return request.getfixturevalue("workspace")
    return workspace_of(request.param, tmp_path_factory)


@pytest.fixture(scope="session")
def ndjson_workspace(tmp_path_factory) -> Workspace:
    """The NDJSON workspace (the one ``any_workspace`` gives)."""
    return workspace_of("ndjson", tmp_path_factory)


SPLITS = {"train": 0, "validation": 1, "test": 2}


def assert_same_as_cli(w: Workspace, statuses, kept_rows_by_split, names):
    """Counts by status (a ``{code: rows}`` map) and kept rows per split code (lists of
    tuples in ``names`` order) equal the CLI's summary and outputs."""
    import pyarrow.parquet as pq

    import privprep

    reasons = dict(privprep.DROP_REASONS)
    assert statuses.get(1, 0) == w.summary["quarantined"]
    assert statuses.get(0, 0) == w.summary["rows_written"] > 500
    dropped = {reasons[s]: n for s, n in statuses.items() if s >= 2}
    assert dropped == {k: v for k, v in w.summary["dropped"].items() if v}
    for output in w.summary["outputs"]:
        want = pq.read_table(w.root / output["path"]).select(names).to_pylist()
        want = [tuple(r[n] for n in names) for r in want]
        got = kept_rows_by_split.get(SPLITS[output["split"]], [])
        assert sorted(got, key=repr) == sorted(want, key=repr), output["split"]


@pytest.fixture(scope="session")
def leaky_workspace(tmp_path_factory) -> Workspace:
    """A pipeline whose outputs leak, committed because its gate only warns: the body's
    phone numbers and names are not redacted, and phones are kept."""
    leaky = PIPELINE.replace(
        'body = { action = "redact", actions = { email = "tokenize", ssn = "drop_row", phone = "mask" } }',
        'body = { action = "redact", detectors = ["email", "ssn"] }',
    ) + '\n[pii]\nleak_gate = "warn"\n'
    return _workspace(tmp_path_factory.mktemp("privprep-leaky"), "csv", leaky)


@pytest.fixture(scope="session")
def surrogate_workspace(tmp_path_factory) -> Workspace:
    """Texts and identifiers given realistic surrogates (which the leak gate must not take for
    leaks), run by the CLI."""
    pipeline = PIPELINE.replace(
        'body = { action = "redact", actions = { email = "tokenize", ssn = "drop_row", phone = "mask" } }',
        'body = { action = "redact", actions = { email = "surrogate", name = "surrogate", phone = "surrogate", ssn = "drop_row" } }',
    ).replace('email = { action = "tokenize" }', 'email = { action = "surrogate" }')
    return _workspace(tmp_path_factory.mktemp("privprep-surrogates"), "csv", pipeline)
