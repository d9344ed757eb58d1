"""privprep's row stages for Python engines.

The privprep CLI resolves a pipeline file and its manifests into a plan
(``privprep plan FILE --format json``); this package runs that plan's row stages
(parsing and quarantine, the consent/provenance/revocation/erasure/retention
policy, each output column's action, free-text redaction, the keyed split and
the subject-index keys) over ``pyarrow.RecordBatch`` es with the same Rust
kernels the CLI uses, so a token, a redaction or a drop is byte for byte the
same wherever it ran. :mod:`privprep.spark` applies them to Spark DataFrames
with ``mapInArrow``.
"""

from ._native import (
    BADCOL,
    DROP_REASONS,
    ROW_PLAN_VERSION,
    SPLIT,
    STATUS,
    SUBJECT_KEY,
    RowEngine,
    key_id,
)
from .plan import PlanError, load_engine, load_keys, resolve_plan

__all__ = [
    "BADCOL",
    "DROP_REASONS",
    "ROW_PLAN_VERSION",
    "SPLIT",
    "STATUS",
    "SUBJECT_KEY",
    "PlanError",
    "RowEngine",
    "key_id",
    "load_engine",
    "load_keys",
    "resolve_plan",
]
