#!/usr/bin/env python3
"""Validates OpenLineage run events (one JSON object per line) against the official schemas.

Usage: openlineage_validate.py EVENTS.jsonl SCHEMA_DIR PRIVPREP_FACET_SCHEMA
Every event is checked against OpenLineage.json#/$defs/RunEvent, and every facet against its own
facet schema (the facet's `_schemaURL` names it); the schema files are the only source (no
network). Prints one line per problem and exits 1 if there is any.
"""

import json
import pathlib
import sys

from jsonschema import Draft202012Validator
from referencing import Registry, Resource


def main():
    events_path, schema_dir, own = sys.argv[1], pathlib.Path(sys.argv[2]), pathlib.Path(sys.argv[3])
    schemas = [json.loads(p.read_text()) for p in sorted(schema_dir.glob("*.json"))]
    schemas.append(json.loads(own.read_text()))
    registry = Registry().with_resources(
        (s["$id"], Resource.from_contents(s)) for s in schemas
    )
    by_id = {s["$id"]: s for s in schemas}
    checker = Draft202012Validator.FORMAT_CHECKER

    def validator(url):
        base, _, pointer = url.partition("#")
        schema = {"$ref": url} if pointer else by_id[base]
        return Draft202012Validator(schema, registry=registry, format_checker=checker)

    problems = []
    facets_checked = 0

    def check_facets(where, facets):
        nonlocal facets_checked
        for name, facet in (facets or {}).items():
            url = facet.get("_schemaURL", "")
            base = url.partition("#")[0]
            if base not in by_id:
                problems.append(f"{where}: facet {name}: no schema for {url}")
                continue
            for e in validator(base).iter_errors({name: facet}):
                problems.append(f"{where}: facet {name}: {e.message}")
            facets_checked += 1

    run_event = validator("https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent")
    lines = [l for l in pathlib.Path(events_path).read_text().splitlines() if l.strip()]
    for n, line in enumerate(lines, 1):
        event = json.loads(line)
        where = f"event {n} ({event.get('eventType')})"
        for e in run_event.iter_errors(event):
            problems.append(f"{where}: {e.message}")
        check_facets(where + " run", event["run"].get("facets"))
        check_facets(where + " job", event["job"].get("facets"))
        for d in event.get("inputs", []) + event.get("outputs", []):
            check_facets(f"{where} dataset {d['name']}", d.get("facets"))
            check_facets(f"{where} dataset {d['name']}", d.get("inputFacets"))
            check_facets(f"{where} dataset {d['name']}", d.get("outputFacets"))
    for p in problems:
        print(p)
    print(f"{len(lines)} events, {facets_checked} facets checked, {len(problems)} problems")
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
