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


@pytest.fixture(scope="session")
def workspace(tmp_path_factory) -> Workspace:
    """3000 generated tickets with bad dates planted, one subject erased, and the pipeline
    run by the CLI (its JSON summary in ``workspace.summary``)."""
    w = Workspace(tmp_path_factory.mktemp("privprep"))
    w.privprep("datagen", "--rows", "3000", "--seed", "11", "--out", str(w.root / "data"))
    csv = w.root / "data" / "tickets.csv"
    import csv as csvmod

    with open(csv, newline="") as f:
        rows = list(csvmod.reader(f))
    birth = rows[0].index("birth_date")
    for r in rows[1::97]:
        r[birth] = r[birth].replace("-", "/", 1)
    with open(csv, "w", newline="") as f:
        csvmod.writer(f).writerows(rows)
    w.pipeline.write_text(PIPELINE)
    w.privprep("run", str(w.pipeline), "--format", "json")
    subject = rows[len(rows) // 2][rows[0].index("subject_id")]
    w.privprep("subject", "forget", subject, "--reason", "erasure request")
    w.erased = subject
    w.summary = json.loads(w.privprep("run", str(w.pipeline), "--format", "json").stdout)
    return w
