//! The lineage store as OpenLineage run events (spec 2-0-2), for Marquez, DataHub and the
//! other consumers of the standard.
//!
//! Each run becomes two events: `START` at its start, with its inputs, and `COMPLETE` (or
//! `FAIL`) at its end, with inputs and outputs. Datasets are files (namespace `file`, name
//! the path). Facets:
//! - inputs: `dataSource` (the dataset id) and `inputStatistics` (rows, bytes);
//! - outputs: `schema`, `columnLineage` 1-2-0 (per output column, its input fields with the
//!   transformation's type, subtype, description and `masking`), `outputStatistics`;
//! - the job: `jobType` (batch job of privprep);
//! - the run: `errorMessage` for a failed run, and `privprep`, privprep's own facet (policy,
//!   drops by reason, quarantined rows, key id, DP spends, leak gate verdicts, erasures, and the
//!   record's place in the hash chain), whose JSON Schema is `schemas/openlineage/PrivprepRunFacet.json`.
//!
//! The run id is a UUID derived from privprep's run id (SHA-256, version 8), so the same run
//! always exports with the same id. No cell value is in any event.

use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use super::record::{ColumnLineage, RunRecord, RunStatus};

/// The events' schema.
pub const SCHEMA_URL: &str = "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent";

/// privprep's run facet schema, as its `$id` names it.
pub const PRIVPREP_FACET_SCHEMA: &str = "urn:privprep:openlineage:PrivprepRunFacet:1-0-0";

const FILE_NAMESPACE: &str = "file";

fn producer() -> String {
    format!("urn:privprep:{}", env!("CARGO_PKG_VERSION"))
}

fn facet(schema_url: &str, body: Value) -> Value {
    let mut m = Map::new();
    m.insert("_producer".into(), producer().into());
    m.insert("_schemaURL".into(), schema_url.into());
    if let Value::Object(b) = body {
        m.extend(b);
    }
    Value::Object(m)
}

/// The OpenLineage run id of privprep run `run_id`: a UUID (version 8) from its SHA-256.
pub fn run_uuid(run_id: &str) -> String {
    let d = Sha256::new()
        .chain_update(b"privprep-openlineage-run:")
        .chain_update(run_id.as_bytes())
        .finalize();
    let mut b = [0u8; 16];
    b.copy_from_slice(&d[..16]);
    b[6] = (b[6] & 0x0f) | 0x80;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// A path as an OpenLineage file dataset name: absolute where it can be made so.
fn dataset_name(path: &str) -> String {
    std::path::absolute(path)
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| path.to_string())
}

/// The `START` and end events of one stored run (`seq` and `record_hash` are its place in the
/// chain).
pub fn run_events(seq: i64, record_hash: &str, record: &RunRecord, namespace: &str) -> [Value; 2] {
    let run_id = run_uuid(&record.run_id);
    let job = json!({
        "namespace": namespace,
        "name": record.pipeline_name,
        "facets": {
            "jobType": facet(
                "https://openlineage.io/spec/facets/2-0-4/JobTypeJobFacet.json#/$defs/JobTypeJobFacet",
                json!({"processingType": "BATCH", "integration": "PRIVPREP", "jobType": "JOB"}),
            )
        }
    });
    let inputs: Vec<Value> = record
        .inputs
        .iter()
        .map(|i| {
            json!({
                "namespace": FILE_NAMESPACE,
                "name": dataset_name(&i.path),
                "facets": {
                    "dataSource": facet(
                        "https://openlineage.io/spec/facets/1-0-1/DatasourceDatasetFacet.json#/$defs/DatasourceDatasetFacet",
                        json!({"name": i.dataset_id}),
                    )
                },
                "inputFacets": {
                    "inputStatistics": facet(
                        "https://openlineage.io/spec/facets/1-0-0/InputStatisticsInputDatasetFacet.json#/$defs/InputStatisticsInputDatasetFacet",
                        json!({"rowCount": i.rows_read, "size": i.bytes, "fileCount": 1}),
                    )
                }
            })
        })
        .collect();
    let start = json!({
        "eventType": "START",
        "eventTime": record.started_at,
        "producer": producer(),
        "schemaURL": SCHEMA_URL,
        "run": {"runId": run_id},
        "job": job,
        "inputs": inputs,
        "outputs": [],
    });

    let mut outputs: Vec<Value> = record
        .outputs
        .iter()
        .map(|o| {
            let fields: Vec<Value> = o
                .schema
                .iter()
                .enumerate()
                .map(|(n, f)| json!({"name": f.name, "type": f.data_type, "ordinal_position": n + 1}))
                .collect();
            json!({
                "namespace": FILE_NAMESPACE,
                "name": dataset_name(&o.path),
                "facets": {
                    "schema": facet(
                        "https://openlineage.io/spec/facets/1-2-0/SchemaDatasetFacet.json#/$defs/SchemaDatasetFacet",
                        json!({"fields": fields}),
                    ),
                    "columnLineage": facet(
                        "https://openlineage.io/spec/facets/1-2-0/ColumnLineageDatasetFacet.json#/$defs/ColumnLineageDatasetFacet",
                        column_lineage(record, o.schema.iter().map(|f| f.name.as_str())),
                    ),
                },
                "outputFacets": {
                    "outputStatistics": facet(
                        "https://openlineage.io/spec/facets/1-0-2/OutputStatisticsOutputDatasetFacet.json#/$defs/OutputStatisticsOutputDatasetFacet",
                        json!({"rowCount": o.rows, "fileCount": 1}),
                    )
                }
            })
        })
        .collect();
    outputs.extend(record.releases.iter().map(|r| {
        json!({
            "namespace": FILE_NAMESPACE,
            "name": dataset_name(&r.path),
            "outputFacets": {
                "outputStatistics": facet(
                    "https://openlineage.io/spec/facets/1-0-2/OutputStatisticsOutputDatasetFacet.json#/$defs/OutputStatisticsOutputDatasetFacet",
                    json!({"rowCount": r.rows, "fileCount": 1}),
                )
            }
        })
    }));

    let mut run_facets = Map::new();
    run_facets.insert("privprep".into(), privprep_facet(seq, record_hash, record));
    let failed = record.status != RunStatus::Succeeded;
    if failed {
        run_facets.insert(
            "errorMessage".into(),
            facet(
                "https://openlineage.io/spec/facets/1-0-1/ErrorMessageRunFacet.json#/$defs/ErrorMessageRunFacet",
                json!({
                    "message": record.error.clone().unwrap_or_else(|| "the run failed".into()),
                    "programmingLanguage": "rust",
                }),
            ),
        );
    }
    let end = json!({
        "eventType": if failed { "FAIL" } else { "COMPLETE" },
        "eventTime": record.finished_at,
        "producer": producer(),
        "schemaURL": SCHEMA_URL,
        "run": {"runId": run_id, "facets": run_facets},
        "job": start["job"].clone(),
        "inputs": start["inputs"].clone(),
        "outputs": outputs,
    });
    [start, end]
}

/// The `columnLineage` facet body of an output with columns `columns`: each column's input
/// fields in every input file, with what was done to them.
fn column_lineage<'a>(record: &RunRecord, columns: impl Iterator<Item = &'a str>) -> Value {
    let mut fields = Map::new();
    for name in columns {
        let Some(c) = record
            .column_lineage
            .iter()
            .find(|c| c.output_column == name)
        else {
            continue;
        };
        let (subtype, kind) = transformation(c);
        let mut input_fields = Vec::new();
        for input in &record.inputs {
            for field in &c.input_columns {
                input_fields.push(json!({
                    "namespace": FILE_NAMESPACE,
                    "name": dataset_name(&input.path),
                    "field": field,
                    "transformations": [{
                        "type": kind,
                        "subtype": subtype,
                        "description": c.transformation,
                        "masking": c.masked,
                    }],
                }));
            }
        }
        fields.insert(name.to_string(), json!({"inputFields": input_fields}));
    }
    json!({"fields": fields})
}

/// The OpenLineage transformation (subtype, type) of a column's lineage.
fn transformation(c: &ColumnLineage) -> (&'static str, &'static str) {
    if !c.masked && c.transformation.starts_with("kept") {
        ("IDENTITY", "DIRECT")
    } else {
        ("TRANSFORMATION", "DIRECT")
    }
}

/// privprep's run facet: what the standard facets have no place for.
fn privprep_facet(seq: i64, record_hash: &str, r: &RunRecord) -> Value {
    facet(
        PRIVPREP_FACET_SCHEMA,
        json!({
            "runId": r.run_id,
            "status": match r.status { RunStatus::Succeeded => "succeeded", _ => "failed" },
            "chain": {"seq": seq, "recordHash": record_hash},
            "pipelineSha256": r.pipeline_sha256,
            "privprepVersion": r.privprep_version,
            "policy": {
                "purpose": r.policy.purpose,
                "allowedStatus": r.policy.allowed_status,
                "allowedProvenance": r.policy.allowed_provenance,
                "revocationLists": r.policy.revocation_lists.iter().map(|l| json!({"path": l.path, "sha256": l.sha256, "entries": l.entries})).collect::<Vec<_>>(),
                "retentionDays": r.policy.retention_days,
                "asOf": r.policy.as_of,
            },
            "rowsRead": r.rows_read,
            "rowsWritten": r.rows_written,
            "quarantined": r.quarantined,
            "dropped": r.dropped,
            "keyId": r.key_id,
            "budgetSpends": r.budget_spends.clone().unwrap_or_default().iter().map(|s| json!({
                "dataset": s.dataset_id,
                "release": s.release,
                "measure": s.measure,
                "epsilon": s.epsilon,
                "delta": s.delta,
                "rho": s.rho,
            })).collect::<Vec<_>>(),
            "leakGate": r.leak_gate.iter().map(|g| json!({
                "column": g.column,
                "result": serde_json::to_value(g.result).unwrap_or(Value::Null),
                "valuesScanned": g.values_scanned,
            })).collect::<Vec<_>>(),
            "encryption": r.encryption.as_ref().map(|e| json!({
                "algorithm": e.algorithm,
                "columns": e.columns,
                "footerKey": {"id": e.footer_key.id, "fingerprint": e.footer_key.fingerprint},
                "columnKey": {"id": e.column_key.id, "fingerprint": e.column_key.fingerprint},
            })),
            "kAnonymity": r.risk.as_ref().map(|k| json!({
                "quasiIdentifiers": k.quasi_identifiers,
                "k": k.k,
                "action": k.action,
                "classes": k.classes,
                "classesBelowK": k.classes_below_k,
                "rowsBelowK": k.rows_below_k,
                "kReached": k.k_reached,
                "lDiversity": k.l_diversity,
            })),
            "outputChanges": r.output_changes().map(|o| json!({
                "kind": r.kind(),
                "path": o.path,
                "sourceRun": o.run_id,
                "action": o.action,
                "oldSha256": o.old_sha256,
                "newSha256": o.new_sha256,
            })).collect::<Vec<_>>(),
            "erasures": r.erasure.iter().map(|e| json!({
                "command": e.command,
                "requestedAt": e.requested_at,
                "reason": e.reason,
                "subjectKeys": e.subjects,
                "outputs": e.outputs.iter().map(|o| json!({
                    "path": o.path,
                    "sourceRun": o.run_id,
                    "action": o.action,
                    "oldSha256": o.old_sha256,
                    "newSha256": o.new_sha256,
                    "rowsBefore": o.rows_before,
                    "rowsAfter": o.rows_after,
                    "note": o.note,
                })).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_ids_are_stable_version_8_uuids() {
        let a = run_uuid("20261126T000000Z-abcdef");
        assert_eq!(a, run_uuid("20261126T000000Z-abcdef"));
        assert_ne!(a, run_uuid("20261126T000000Z-abcdeg"));
        let parts: Vec<&str> = a.split('-').collect();
        assert_eq!(
            parts.iter().map(|p| p.len()).collect::<Vec<_>>(),
            [8, 4, 4, 4, 12]
        );
        assert!(parts[2].starts_with('8'));
        assert!(matches!(parts[3].as_bytes()[0], b'8' | b'9' | b'a' | b'b'));
    }
}

/// Why events could not be posted. Messages name the endpoint, never an event's content.
#[derive(Debug, thiserror::Error)]
pub enum PostError {
    #[error("OpenLineage endpoint {url}: {reason}\n  = hint: give an http:// URL such as http://localhost:5000/api/v1/lineage (Marquez); for https, post through a local collector or proxy")]
    Url { url: String, reason: String },
    #[error("OpenLineage endpoint {url}: {error}\n  = hint: is the server running and reachable?")]
    Io { url: String, error: std::io::Error },
    #[error("OpenLineage endpoint {url} refused event {n}: HTTP {status}\n  = hint: the server's log says why; `--out FILE` keeps the events to look at")]
    Refused { url: String, n: usize, status: u16 },
}

/// Posts each event to the OpenLineage HTTP endpoint `url` (`http://host[:port]/path`), one
/// request per event, in order; stops at the first refusal. Returns how many were accepted.
pub fn post(url: &str, events: &[Value]) -> Result<usize, PostError> {
    use std::io::{Read, Write};
    use std::net::TcpStream;
    use std::time::Duration;
    let bad = |reason: &str| PostError::Url {
        url: url.to_string(),
        reason: reason.to_string(),
    };
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| bad("only http:// endpoints are supported"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/api/v1/lineage"),
    };
    if authority.is_empty() {
        return Err(bad("no host"));
    }
    let address = if authority.contains(':') {
        authority.to_string()
    } else {
        format!("{authority}:80")
    };
    let io = |error| PostError::Io {
        url: url.to_string(),
        error,
    };
    for (n, event) in events.iter().enumerate() {
        let body = serde_json::to_vec(event).map_err(|e| io(std::io::Error::other(e)))?;
        let mut stream = TcpStream::connect(&address).map_err(io)?;
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .map_err(io)?;
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: {authority}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nUser-Agent: privprep/{}\r\nConnection: close\r\n\r\n",
            body.len(),
            env!("CARGO_PKG_VERSION")
        );
        stream.write_all(head.as_bytes()).map_err(io)?;
        stream.write_all(&body).map_err(io)?;
        stream.flush().map_err(io)?;
        let mut response = Vec::new();
        stream
            .take(64 * 1024)
            .read_to_end(&mut response)
            .map_err(io)?;
        let status = std::str::from_utf8(&response)
            .ok()
            .and_then(|r| r.split_whitespace().nth(1))
            .and_then(|s| s.parse::<u16>().ok())
            .unwrap_or(0);
        if !(200..300).contains(&status) {
            return Err(PostError::Refused {
                url: url.to_string(),
                n: n + 1,
                status,
            });
        }
    }
    Ok(events.len())
}
