//! Turning a request body into stored detections: decode (JSON array / wrapper / single object /
//! NDJSON), validate every item, store the valid ones in one transaction, report the rest.
//! A successful return means the rows are committed.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use sqlx::{Acquire, PgConnection};

use crate::db;
use crate::domain::privacy::PrivacyPolicy;
use crate::domain::{Detection, SignalType, ValidationPolicy};
use crate::error::{ApiError, ItemError};

/// Body encodings accepted on ingest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyFormat {
    Json,
    NdJson,
}

/// Outcome of one ingest request, as sent to the client.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct IngestReport {
    pub accepted: u64,
    pub duplicates: u64,
    pub rejected: u64,
    /// Valid but not stored by the privacy policy (exclusion zones, opted-out or randomised).
    pub filtered: u64,
    pub errors: Vec<ItemErrorBody>,
}

/// A batch after validation and the privacy policy.
#[derive(Debug, Default)]
pub struct Validated {
    pub valid: Vec<Detection>,
    pub errors: Vec<ItemError>,
    pub rejected: u64,
    pub filtered: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ItemErrorBody {
    pub index: usize,
    pub field: String,
    pub reason: String,
}

impl From<ItemError> for ItemErrorBody {
    fn from(e: ItemError) -> Self {
        Self {
            index: e.index,
            field: e.field,
            reason: e.reason,
        }
    }
}

/// Items of a batch: either a decoded JSON value or a line that did not parse (NDJSON only).
pub type Items = Vec<Result<Value, String>>;

/// Splits a body into items. JSON syntax errors make the whole request malformed; in NDJSON a
/// bad line is only that item's error, so one corrupt line does not lose the rest.
pub fn decode(body: &[u8], format: BodyFormat, max_items: usize) -> Result<Items, ApiError> {
    let items: Items = match format {
        BodyFormat::Json => {
            let value: Value =
                serde_json::from_slice(body).map_err(|e| ApiError::MalformedBody {
                    detail: format!("invalid JSON: {e}"),
                })?;
            match value {
                Value::Array(items) => items.into_iter().map(Ok).collect(),
                Value::Object(mut map) if map.contains_key("detections") => {
                    match map.remove("detections") {
                        Some(Value::Array(items)) if map.is_empty() => {
                            items.into_iter().map(Ok).collect()
                        }
                        Some(Value::Array(_)) => {
                            return Err(ApiError::MalformedBody {
                                detail: "the wrapper object may hold only `detections`".into(),
                            })
                        }
                        _ => {
                            return Err(ApiError::MalformedBody {
                                detail: "`detections` must be an array".into(),
                            })
                        }
                    }
                }
                single @ Value::Object(_) => vec![Ok(single)],
                _ => return Err(ApiError::MalformedBody {
                    detail:
                        "expected a detection object, an array of them, or {\"detections\": [...]}"
                            .into(),
                }),
            }
        }
        BodyFormat::NdJson => {
            let text = std::str::from_utf8(body).map_err(|_| ApiError::MalformedBody {
                detail: "NDJSON body is not UTF-8".into(),
            })?;
            text.lines()
                .filter(|line| !line.trim().is_empty())
                .map(|line| {
                    serde_json::from_str(line).map_err(|e| format!("invalid JSON line: {e}"))
                })
                .collect()
        }
    };
    if items.len() > max_items {
        return Err(ApiError::PayloadTooLarge {
            detail: format!(
                "{} detections in one request; the limit is {max_items}",
                items.len()
            ),
        });
    }
    if items.is_empty() {
        return Err(ApiError::Unprocessable {
            detail: "the batch holds no detections".into(),
            errors: vec![],
        });
    }
    Ok(items)
}

/// Validates every item, keeping the valid detections and an error per bad field. Rejections are
/// counted in `shadowcheck_ingest_detections_total{outcome="rejected"}` by the signal type the
/// item claimed (`unknown` when it named none valid).
pub fn validate(items: &Items, policy: &ValidationPolicy, privacy: &PrivacyPolicy) -> Validated {
    let mut valid = Vec::with_capacity(items.len());
    let mut errors = Vec::new();
    let mut rejected = 0;
    let mut filtered = 0;
    metrics::histogram!("shadowcheck_ingest_batch_size").record(items.len() as f64);
    for (index, item) in items.iter().enumerate() {
        let parsed = match item {
            Ok(value) => Detection::parse(value, policy),
            Err(reason) => Err(vec![crate::domain::FieldError::new("", reason.clone())]),
        };
        match parsed {
            Ok(d) => match privacy.refuses(&d) {
                Some(_) => {
                    filtered += 1;
                    metrics::counter!("shadowcheck_ingest_detections_total", "signal_type" => d.signal_type.as_str(), "outcome" => "filtered").increment(1);
                }
                None => valid.push(d),
            },
            Err(field_errors) => {
                rejected += 1;
                let claimed = item
                    .as_ref()
                    .ok()
                    .and_then(|v| v.get("signal_type"))
                    .and_then(Value::as_str)
                    .and_then(|s| s.parse::<crate::domain::SignalType>().ok())
                    .map_or("unknown", |t| t.as_str());
                metrics::counter!("shadowcheck_ingest_detections_total", "signal_type" => claimed, "outcome" => "rejected").increment(1);
                errors.extend(
                    field_errors
                        .into_iter()
                        .map(|e| ItemError::from_field(index, e)),
                );
            }
        }
    }
    Validated {
        valid,
        errors,
        rejected,
        filtered,
    }
}

/// How the client asked for idempotency.
pub struct Idempotency {
    pub key: String,
    pub body_hash: Vec<u8>,
}

impl Idempotency {
    pub fn new(key: String, body: &[u8]) -> Self {
        Self {
            key,
            body_hash: Sha256::digest(body).to_vec(),
        }
    }
}

/// What to answer: a fresh report (with the new rows by signal type, for metrics), or the stored
/// answer to an earlier request with the same key.
pub enum Stored {
    Fresh(IngestReport, std::collections::BTreeMap<String, u64>),
    Replayed { status: u16, body: Value },
}

/// Stores the valid detections and, with an idempotency key, the answer, in one transaction.
pub async fn store(
    conn: &mut PgConnection,
    batch: Validated,
    idempotency: Option<&Idempotency>,
    status_for: impl Fn(&IngestReport) -> u16,
) -> Result<Stored, ApiError> {
    let Validated {
        valid,
        errors,
        rejected,
        filtered,
    } = batch;
    let detections = valid.as_slice();
    db::detections::ensure_partitions(conn, detections).await?;
    let mut tx = conn.begin().await?;
    if let Some(idem) = idempotency {
        // A concurrent request with the same key blocks here until the first commits.
        let claimed = sqlx::query(
            r#"INSERT INTO sigint.idempotency_keys (idempotency_key, request_hash)
               VALUES ($1, $2) ON CONFLICT DO NOTHING"#,
        )
        .bind(&idem.key)
        .bind(&idem.body_hash)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        if !claimed {
            let (hash, status, body): (Vec<u8>, Option<i16>, Option<Value>) = sqlx::query_as(
                r#"SELECT request_hash, status_code, response_body
                   FROM sigint.idempotency_keys WHERE idempotency_key = $1"#,
            )
            .bind(&idem.key)
            .fetch_one(&mut *tx)
            .await?;
            tx.rollback().await?;
            if hash != idem.body_hash {
                return Err(ApiError::Conflict {
                    detail: "this Idempotency-Key was already used with a different body".into(),
                });
            }
            return match (status, body) {
                (Some(status), Some(body)) => Ok(Stored::Replayed {
                    status: status as u16,
                    body,
                }),
                _ => Err(ApiError::Conflict {
                    detail: "a request with this Idempotency-Key is still in progress".into(),
                }),
            };
        }
    }
    let inserted_by_type = db::detections::insert_batch(&mut tx, detections).await?;
    let inserted: u64 = inserted_by_type.values().sum();
    let report = IngestReport {
        accepted: inserted,
        duplicates: detections.len() as u64 - inserted,
        rejected,
        filtered,
        errors: errors.into_iter().map(Into::into).collect(),
    };
    if let Some(idem) = idempotency {
        let body = serde_json::to_value(&report).map_err(|e| ApiError::Internal(e.to_string()))?;
        sqlx::query(
            r#"UPDATE sigint.idempotency_keys SET status_code = $2, response_body = $3
               WHERE idempotency_key = $1"#,
        )
        .bind(&idem.key)
        .bind(status_for(&report) as i16)
        .bind(body)
        .execute(&mut *tx)
        .await?;
    }
    db::observe("commit", tx.commit()).await?;
    Ok(Stored::Fresh(report, inserted_by_type))
}

/// Forgets idempotency keys older than `ttl`: a retry after that stores nothing twice anyway
/// (natural-key dedup), it only no longer gets the identical first answer back.
pub async fn purge_idempotency_keys(
    pool: &sqlx::PgPool,
    ttl: chrono::Duration,
) -> Result<u64, sqlx::Error> {
    let query = sqlx::query(
        r#"DELETE FROM sigint.idempotency_keys WHERE created_at < now() - $1::interval"#,
    )
    .bind(
        sqlx::postgres::types::PgInterval::try_from(ttl.to_std().unwrap_or_default())
            .unwrap_or_default(),
    );
    Ok(db::observe("purge_idempotency_keys", query.execute(pool))
        .await?
        .rows_affected())
}

/// How many valid detections of each signal type a batch offers.
pub fn count_by_type(valid: &[Detection]) -> Vec<(SignalType, u64)> {
    SignalType::ALL
        .iter()
        .map(|&k| {
            (
                k,
                valid.iter().filter(|d| d.signal_type == k).count() as u64,
            )
        })
        .collect()
}

/// Counts stored and duplicate detections by signal type.
pub fn record_stored(
    offered: &[(SignalType, u64)],
    inserted_by_type: &std::collections::BTreeMap<String, u64>,
) {
    for &(kind, offered) in offered {
        if offered == 0 {
            continue;
        }
        let accepted = inserted_by_type.get(kind.as_str()).copied().unwrap_or(0);
        let labels = |outcome: &'static str| [("signal_type", kind.as_str()), ("outcome", outcome)];
        if accepted > 0 {
            metrics::counter!("shadowcheck_ingest_detections_total", &labels("accepted"))
                .increment(accepted);
        }
        if offered > accepted {
            metrics::counter!("shadowcheck_ingest_detections_total", &labels("duplicate"))
                .increment(offered - accepted);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_each_shape() {
        let one = br#"{"signal_type":"wifi"}"#;
        let arr = br#"[{"a":1},{"b":2}]"#;
        let wrapped = br#"{"detections":[{"a":1}]}"#;
        assert_eq!(
            decode(one, BodyFormat::Json, 10).map(|i| i.len()).ok(),
            Some(1)
        );
        assert_eq!(
            decode(arr, BodyFormat::Json, 10).map(|i| i.len()).ok(),
            Some(2)
        );
        assert_eq!(
            decode(wrapped, BodyFormat::Json, 10).map(|i| i.len()).ok(),
            Some(1)
        );
        let nd = b"{\"a\":1}\n\n{broken\r\n{\"b\":2}\n";
        let items = decode(nd, BodyFormat::NdJson, 10).expect("ndjson");
        assert_eq!(items.len(), 3);
        assert!(items[1].is_err());
    }

    #[test]
    fn rejects_bad_shapes() {
        assert!(matches!(
            decode(b"[1,", BodyFormat::Json, 10),
            Err(ApiError::MalformedBody { .. })
        ));
        assert!(matches!(
            decode(b"42", BodyFormat::Json, 10),
            Err(ApiError::MalformedBody { .. })
        ));
        assert!(matches!(
            decode(b"[]", BodyFormat::Json, 10),
            Err(ApiError::Unprocessable { .. })
        ));
        assert!(matches!(
            decode(b"[{},{},{}]", BodyFormat::Json, 2),
            Err(ApiError::PayloadTooLarge { .. })
        ));
    }
}
