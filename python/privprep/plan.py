"""Plans and keys: the CLI resolves, this module reads.

The plan comes from ``privprep plan FILE --format json`` (the CLI on the driver:
one resolver, the same diagnostics as ``privprep validate``). Keys are read as
the CLI reads them, from a key file or the environment, and handed to the
engine, which checks the run key's id against the plan's.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Optional, Tuple

from ._native import RowEngine


class PlanError(Exception):
    """The pipeline could not be planned; the message is the CLI's diagnostics."""


def cli() -> str:
    """The privprep binary: ``$PRIVPREP_BIN``, else ``privprep`` on the PATH."""
    path = os.environ.get("PRIVPREP_BIN") or shutil.which("privprep")
    if not path:
        raise PlanError(
            "the privprep CLI was not found\n"
            "  = hint: install it on the driver (cargo install --path . in the privprep "
            "repository) or set PRIVPREP_BIN to its path"
        )
    return path


def state_dir(explicit: Optional[str] = None) -> Path:
    """The state folder: the argument, ``$PRIVPREP_STATE_DIR``, or ``.privprep``."""
    return Path(explicit or os.environ.get("PRIVPREP_STATE_DIR") or ".privprep")


def resolve_plan(
    pipeline: str, state: Optional[str] = None, key_file: Optional[str] = None
) -> str:
    """The plan's JSON text, from the CLI. Raises :class:`PlanError` with the CLI's
    diagnostics (file, line, column, hint) when the pipeline is not valid."""
    args = [cli(), "--state-dir", str(state_dir(state)), "--no-progress", "plan", str(pipeline)]
    if key_file:
        args += ["--key-file", str(key_file)]
    done = subprocess.run(args, capture_output=True, text=True)
    if done.returncode != 0:
        raise PlanError((done.stderr or done.stdout).strip())
    json.loads(done.stdout)  # one JSON document, or the CLI is broken
    return done.stdout


def _read_key_file(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError as e:
        raise PlanError(f"cannot read the key file {path}: {e.strerror}") from None


def load_keys(
    plan_json: str, state: Optional[str] = None, key_file: Optional[str] = None
) -> Tuple[Optional[str], Optional[str]]:
    """(run key text, subject index key text), read as the CLI reads them: the run key from
    ``key_file``, ``$PRIVPREP_KEY_FILE``, ``$PRIVPREP_KEY`` or ``<state>/keys/default.key``
    (only when the plan needs one); the index key from ``<state>/keys/index.key``."""
    plan = json.loads(plan_json)
    folder = state_dir(state)
    key = None
    if plan.get("key_id"):
        explicit = key_file or os.environ.get("PRIVPREP_KEY_FILE")
        if explicit:
            key = _read_key_file(Path(explicit))
        elif os.environ.get("PRIVPREP_KEY"):
            key = os.environ["PRIVPREP_KEY"].strip()
        else:
            key = _read_key_file(folder / "keys" / "default.key")
    index_path = folder / "keys" / "index.key"
    index = _read_key_file(index_path) if index_path.exists() else None
    return key, index


def load_engine(
    pipeline: str, state: Optional[str] = None, key_file: Optional[str] = None
) -> RowEngine:
    """The row engine of a pipeline file, planned by the CLI, with its keys."""
    plan = resolve_plan(pipeline, state, key_file)
    key, index = load_keys(plan, state, key_file)
    return RowEngine(plan, key, index)
