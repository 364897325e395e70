//! The following detector's SQL: device paths and the scoring queue (fed by the registry
//! updater), scores and their write-back; what the scorer reads (`inputs`), what it found
//! (`threats`) and the operators' decisions it obeys (`decisions`).

use std::collections::BTreeMap;

use chrono::{DateTime, DurationRound, Utc};
use serde::Serialize;
use sqlx::{PgConnection, Row};
use uuid::Uuid;

use crate::db::observe;

mod decisions;
mod inputs;
mod threats;

use crate::domain::following::{self, Assessment, Fix};
use crate::domain::registry::{Sighting, TransmitterKey};
use crate::domain::SignalType;
pub use decisions::*;
pub use inputs::*;
pub use threats::*;

/// A pair and its first and last time together.
pub type Together<'a> = (&'a TransmitterKey, Uuid, (DateTime<Utc>, DateTime<Utc>));

/// A pair re-raises an alert at most this often.
pub const REALERT_HOURS: i64 = 8;

/// Adds the sightings' positions to their capture devices' per-minute paths.
pub async fn add_device_minutes(
    conn: &mut PgConnection,
    sightings: &[Sighting],
) -> Result<(), sqlx::Error> {
    let mut minutes: BTreeMap<(Uuid, DateTime<Utc>), (f64, f64, i32)> = BTreeMap::new();
    for s in sightings {
        // A device's path is where it was: sightings without a fix add nothing to it.
        let (Some(device), Some((lat, lon)), Ok(minute)) = (
            s.device,
            s.fix,
            s.at.duration_trunc(chrono::Duration::minutes(1)),
        ) else {
            continue;
        };
        if s.accuracy_m
            .is_some_and(|a| a > crate::domain::geo::MAX_FIX_ACCURACY_M)
            || s.altitude_m.is_some_and(|h| h > following::MAX_ALTITUDE_M)
        {
            continue;
        }
        let m = minutes.entry((device, minute)).or_default();
        m.0 += lat;
        m.1 += lon;
        m.2 += 1;
    }
    if minutes.is_empty() {
        return Ok(());
    }
    const SQL: &str = r#"
        INSERT INTO sigint.device_minutes AS m (device_id, minute, lat_sum, lon_sum, fixes)
        SELECT * FROM UNNEST($1::uuid[], $2::timestamptz[], $3::float8[], $4::float8[], $5::int4[])
        ON CONFLICT (device_id, minute) DO UPDATE SET
            lat_sum = m.lat_sum + EXCLUDED.lat_sum, lon_sum = m.lon_sum + EXCLUDED.lon_sum,
            fixes = m.fixes + EXCLUDED.fixes
    "#;
    let (keys, sums): (Vec<_>, Vec<_>) = minutes.into_iter().unzip();
    let (devices, at): (Vec<Uuid>, Vec<DateTime<Utc>>) = keys.into_iter().unzip();
    let lat: Vec<f64> = sums.iter().map(|s| s.0).collect();
    let lon: Vec<f64> = sums.iter().map(|s| s.1).collect();
    let n: Vec<i32> = sums.iter().map(|s| s.2).collect();
    observe(
        "following_device_minutes",
        sqlx::query(SQL)
            .bind(devices)
            .bind(at)
            .bind(lat)
            .bind(lon)
            .bind(n)
            .execute(&mut *conn),
    )
    .await?;
    Ok(())
}

/// Counts the sightings per (transmitter, capture device) and queues for rescoring every pair
/// the sightings touch that has the sightings the first gate needs; cells are never followers
/// (their flags are the registry's).
pub async fn queue_pairs(
    conn: &mut PgConnection,
    sightings: &[Sighting],
) -> Result<(), sqlx::Error> {
    let mut pairs: BTreeMap<(&'static str, &str, Uuid), i64> = BTreeMap::new();
    for s in sightings
        .iter()
        .filter(|s| s.key.radio != SignalType::Cellular)
    {
        if let Some(device) = s.device {
            *pairs
                .entry((s.key.radio.as_str(), s.key.identifier.as_str(), device))
                .or_default() += 1;
        }
    }
    if pairs.is_empty() {
        return Ok(());
    }
    let radios: Vec<&str> = pairs.keys().map(|p| p.0).collect();
    let ids: Vec<&str> = pairs.keys().map(|p| p.1).collect();
    let devices: Vec<Uuid> = pairs.keys().map(|p| p.2).collect();
    let counts: Vec<i64> = pairs.values().copied().collect();
    observe(
        "following_queue",
        sqlx::query(
            "WITH counted AS ( \
                INSERT INTO sigint.pair_sightings AS p (radio, identifier, device_id, sightings) \
                SELECT r::sigint.signal_type, i, d, n \
                FROM UNNEST($1::text[], $2::text[], $3::uuid[], $4::int8[]) AS u(r, i, d, n) \
                ON CONFLICT (radio, identifier, device_id) \
                DO UPDATE SET sightings = p.sightings + EXCLUDED.sightings \
                RETURNING radio, identifier, device_id, sightings) \
             INSERT INTO sigint.following_queue (radio, identifier, device_id) \
             SELECT radio, identifier, device_id FROM counted WHERE sightings >= $5 \
             ON CONFLICT DO NOTHING",
        )
        .bind(radios)
        .bind(ids)
        .bind(devices)
        .bind(counts)
        .bind(following::MIN_SIGHTINGS as i64)
        .execute(&mut *conn),
    )
    .await?;
    Ok(())
}

/// Takes up to `limit` pairs off the scoring queue that have waited at least `settle_ms` (so a
/// pair seen in every chunk is scored once per interval, not once per chunk).
pub async fn claim_pairs(
    conn: &mut PgConnection,
    limit: i64,
    settle_ms: i64,
) -> Result<Vec<(TransmitterKey, Uuid)>, sqlx::Error> {
    // Fresh pairs in batches; once none is due, one pair that failed before (see `defer`).
    const SQL: &str = r#"
        WITH fresh AS (
            SELECT EXISTS (SELECT 1 FROM sigint.following_queue
                           WHERE attempts = 0
                             AND queued_at <= now() - make_interval(secs => $2::float8 / 1000)) AS due
        )
        DELETE FROM sigint.following_queue
        WHERE ctid = ANY (ARRAY(
            SELECT q.ctid FROM sigint.following_queue q
            WHERE q.queued_at <= now() - make_interval(secs => $2::float8 / 1000)
              AND (q.attempts = 0) = (SELECT due FROM fresh)
            ORDER BY q.queued_at
            LIMIT CASE WHEN (SELECT due FROM fresh) THEN $1 ELSE 1 END
            FOR UPDATE SKIP LOCKED))
        RETURNING radio::text AS radio, identifier, device_id
    "#;
    let rows = observe(
        "following_claim",
        sqlx::query(SQL)
            .bind(limit)
            .bind(settle_ms as f64)
            .fetch_all(&mut *conn),
    )
    .await?;
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let radio: String = row.try_get("radio")?;
        let Ok(radio) = radio.parse::<SignalType>() else {
            continue;
        };
        out.push((
            TransmitterKey {
                radio,
                identifier: row.try_get("identifier")?,
            },
            row.try_get("device_id")?,
        ));
    }
    Ok(out)
}

/// Puts back pairs whose scoring failed, with one more attempt counted and a backoff of
/// 5 s × 2^attempts (10 s, 20 s, … at most ~23 h): they are retried one per transaction, after
/// every fresh pair, so the good ones of a failed batch are scored within seconds.
pub async fn defer(
    conn: &mut PgConnection,
    pairs: &[(TransmitterKey, Uuid)],
) -> Result<(), sqlx::Error> {
    let radios: Vec<&str> = pairs.iter().map(|p| p.0.radio.as_str()).collect();
    let ids: Vec<&str> = pairs.iter().map(|p| p.0.identifier.as_str()).collect();
    let devices: Vec<Uuid> = pairs.iter().map(|p| p.1).collect();
    observe(
        "following_defer",
        sqlx::query(
            "INSERT INTO sigint.following_queue AS q (radio, identifier, device_id, attempts, queued_at) \
             SELECT k.radio::sigint.signal_type, k.identifier, k.device, 1, now() + interval '10 seconds' \
             FROM UNNEST($1::text[], $2::text[], $3::uuid[]) AS k(radio, identifier, device) \
             ON CONFLICT (radio, identifier, device_id) DO UPDATE SET attempts = q.attempts + 1, \
                 queued_at = now() + interval '5 seconds' * power(2, least(q.attempts + 1, 14))",
        )
        .bind(&radios)
        .bind(&ids)
        .bind(&devices)
        .execute(&mut *conn),
    )
    .await?;
    Ok(())
}

/// Pairs waiting to be scored.
pub async fn queue_len(conn: &mut PgConnection) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT count(*) FROM sigint.following_queue")
        .fetch_one(&mut *conn)
        .await
}

/// Scored pairs by level.
pub async fn level_counts(conn: &mut PgConnection) -> Result<Vec<(String, i64)>, sqlx::Error> {
    sqlx::query_as("SELECT level::text, count(*) FROM sigint.following GROUP BY level")
        .fetch_all(&mut *conn)
        .await
}

/// For each (pair, times together): other transmitters that passed the gates with the same
/// device over at least half of the shorter of the two times together.
pub async fn crowds(
    conn: &mut PgConnection,
    items: &[Together<'_>],
) -> Result<Vec<i64>, sqlx::Error> {
    if items.is_empty() {
        return Ok(Vec::new());
    }
    let radios: Vec<&str> = items.iter().map(|i| i.0.radio.as_str()).collect();
    let ids: Vec<&str> = items.iter().map(|i| i.0.identifier.as_str()).collect();
    let devices: Vec<Uuid> = items.iter().map(|i| i.1).collect();
    let from: Vec<DateTime<Utc>> = items.iter().map(|i| i.2 .0).collect();
    let to: Vec<DateTime<Utc>> = items.iter().map(|i| i.2 .1).collect();
    let rows: Vec<(i64, i64)> = observe(
        "following_crowd",
        sqlx::query_as(
            "SELECT k.i, (SELECT count(*) FROM sigint.following f \
                WHERE f.device_id = k.device AND f.gates_passed \
                  AND NOT (f.radio = k.radio::sigint.signal_type AND f.identifier = k.identifier) \
                  AND f.together_from < k.t AND f.together_to > k.f \
                  AND LEAST(f.together_to, k.t) - GREATEST(f.together_from, k.f) \
                      >= 0.5 * LEAST(f.together_to - f.together_from, k.t - k.f)) \
             FROM UNNEST($1::text[], $2::text[], $3::uuid[], $4::timestamptz[], $5::timestamptz[]) \
                  WITH ORDINALITY AS k(radio, identifier, device, f, t, i) ORDER BY k.i",
        )
        .bind(radios)
        .bind(ids)
        .bind(devices)
        .bind(from)
        .bind(to)
        .fetch_all(&mut *conn),
    )
    .await?;
    Ok(rows.into_iter().map(|r| r.1).collect())
}

/// What storing a score changed.
#[derive(Clone, Debug, Default)]
pub struct Stored {
    /// The pair raised an alert now (new, or the last one is older than [`REALERT_HOURS`]).
    pub alerted: bool,
    /// Whether it passed the gates before (None: first score).
    pub passed_before: Option<bool>,
    pub score_before: Option<f32>,
    pub level_before: Option<String>,
}

/// Stores the pairs' scores in one statement, raising the alert mark when due; answers in the
/// order of `items`.
pub async fn store(
    conn: &mut PgConnection,
    items: &[(&TransmitterKey, Uuid, &Assessment)],
) -> Result<Vec<Stored>, sqlx::Error> {
    if items.is_empty() {
        return Ok(Vec::new());
    }
    const SQL: &str = r#"
        WITH input AS (
            SELECT * FROM jsonb_to_recordset($1::text::jsonb) AS r(i bigint, radio text,
                identifier text, device_id uuid, score real, level text, gates_passed boolean,
                together_from timestamptz, together_to timestamptz, explanation jsonb)
        ), prev AS (
            SELECT i.i, f.gates_passed, f.score, f.level::text AS level FROM input i
            JOIN sigint.following f ON f.radio = i.radio::sigint.signal_type
             AND f.identifier = i.identifier AND f.device_id = i.device_id
        ), up AS (
            INSERT INTO sigint.following AS f (radio, identifier, device_id, score, level,
                gates_passed, together_from, together_to, explanation, computed_at, alerted_at)
            SELECT radio::sigint.signal_type, identifier, device_id, score,
                   level::sigint.follow_level, gates_passed,
                   together_from, together_to, explanation, now(),
                   CASE WHEN level = 'alert' THEN now() END
            FROM input
            ON CONFLICT (radio, identifier, device_id) DO UPDATE SET
                score = EXCLUDED.score, level = EXCLUDED.level,
                gates_passed = EXCLUDED.gates_passed, together_from = EXCLUDED.together_from,
                together_to = EXCLUDED.together_to, explanation = EXCLUDED.explanation,
                computed_at = now(),
                alerted_at = CASE
                    WHEN EXCLUDED.level = 'alert' AND (f.alerted_at IS NULL
                         OR f.alerted_at < now() - make_interval(hours => $2))
                    THEN now() ELSE f.alerted_at END
            RETURNING radio::text AS radio, identifier, device_id,
                      alerted_at IS NOT DISTINCT FROM now() AND level = 'alert' AS alerted
        )
        SELECT i.i, up.alerted, prev.gates_passed, prev.score, prev.level
        FROM up
        JOIN input i ON i.radio = up.radio AND i.identifier = up.identifier
         AND i.device_id = up.device_id
        LEFT JOIN prev ON prev.i = i.i
    "#;
    #[derive(Serialize)]
    struct Out<'a> {
        i: usize,
        radio: &'static str,
        identifier: &'a str,
        device_id: Uuid,
        score: f32,
        level: &'static str,
        gates_passed: bool,
        together_from: Option<DateTime<Utc>>,
        together_to: Option<DateTime<Utc>>,
        explanation: &'a following::Explanation,
    }
    let rows: Vec<Out<'_>> = items
        .iter()
        .enumerate()
        .map(|(i, (key, device, a))| Out {
            i,
            radio: key.radio.as_str(),
            identifier: &key.identifier,
            device_id: *device,
            score: a.score,
            level: a.level.as_str(),
            gates_passed: a.gates_passed,
            together_from: a.together.map(|t| t.0),
            together_to: a.together.map(|t| t.1),
            explanation: &a.explanation,
        })
        .collect();
    let text = crate::db::json_text(&rows)?;
    let answers = observe(
        "following_store",
        sqlx::query(SQL)
            .bind(text)
            .bind(REALERT_HOURS as i32)
            .fetch_all(&mut *conn),
    )
    .await?;
    let mut out = vec![Stored::default(); items.len()];
    for row in answers {
        let i: i64 = row.try_get("i")?;
        if let Some(slot) = usize::try_from(i).ok().and_then(|i| out.get_mut(i)) {
            *slot = Stored {
                alerted: row.try_get("alerted")?,
                passed_before: row.try_get("gates_passed")?,
                score_before: row.try_get("score")?,
                level_before: row.try_get("level")?,
            };
        }
    }
    Ok(out)
}

/// Writes scores onto detections (the design's `surveillance_score`), marking them suspicious
/// at `suspicious` or above: each item is (fixes, score, suspicious, only_new). The detector
/// raises `is_suspicious`, never clears it: a capture device or an analyst may have set it.
/// With `only_new`, only detections not yet scored are written (the level did not change:
/// rewriting thousands of rows for a point of score would cost ingest its speed).
pub async fn write_back(
    conn: &mut PgConnection,
    items: &[(&[Fix], f32, bool, bool)],
) -> Result<(), sqlx::Error> {
    let (mut ids, mut at, mut score, mut suspicious, mut only_new) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (fixes, s, susp, new) in items {
        for f in *fixes {
            ids.push(f.id);
            at.push(f.at);
            score.push(*s);
            suspicious.push(*susp);
            only_new.push(*new);
        }
    }
    if ids.is_empty() {
        return Ok(());
    }
    observe(
        "following_write_back",
        sqlx::query(
            "UPDATE sigint.signal_detections d SET surveillance_score = u.score, \
             is_suspicious = d.is_suspicious OR u.suspicious, updated_at = now() \
             FROM UNNEST($1::int8[], $2::timestamptz[], $3::float4[], $4::bool[], $5::bool[]) \
                  AS u(id, at, score, suspicious, only_new) \
             WHERE d.id = u.id AND d.detected_at = u.at \
               AND (d.surveillance_score IS DISTINCT FROM u.score OR (u.suspicious AND NOT d.is_suspicious)) \
               AND (NOT u.only_new OR d.surveillance_score IS NULL)",
        )
        .bind(ids)
        .bind(at)
        .bind(score)
        .bind(suspicious)
        .bind(only_new)
        .execute(&mut *conn),
    )
    .await?;
    Ok(())
}

/// Each registry row carries its highest score and level over capture devices.
pub async fn roll_up(conn: &mut PgConnection, keys: &[TransmitterKey]) -> Result<(), sqlx::Error> {
    let radios: Vec<&str> = keys.iter().map(|k| k.radio.as_str()).collect();
    let ids: Vec<&str> = keys.iter().map(|k| k.identifier.as_str()).collect();
    observe(
        "following_roll_up",
        sqlx::query(
            "UPDATE sigint.transmitters t SET surveillance_score = s.score, level = s.level \
             FROM (SELECT DISTINCT ON (f.radio, f.identifier) f.radio, f.identifier, f.score, f.level \
                   FROM sigint.following f \
                   JOIN UNNEST($1::text[], $2::text[]) AS k(radio, identifier) \
                     ON f.radio = k.radio::sigint.signal_type AND f.identifier = k.identifier \
                   ORDER BY f.radio, f.identifier, \
                            f.level DESC, \
                            f.score DESC) s \
             WHERE t.radio = s.radio AND t.identifier = s.identifier \
               AND (t.surveillance_score IS DISTINCT FROM s.score OR t.level <> s.level)",
        )
        .bind(radios)
        .bind(ids)
        .execute(&mut *conn),
    )
    .await?;
    Ok(())
}

/// Queues each device's other gate-passing pairs that overlap the given times together, so
/// their crowd penalty sees the pairs whose gates changed.
pub async fn requeue_overlapping(
    conn: &mut PgConnection,
    items: &[Together<'_>],
) -> Result<(), sqlx::Error> {
    if items.is_empty() {
        return Ok(());
    }
    let radios: Vec<&str> = items.iter().map(|i| i.0.radio.as_str()).collect();
    let ids: Vec<&str> = items.iter().map(|i| i.0.identifier.as_str()).collect();
    let devices: Vec<Uuid> = items.iter().map(|i| i.1).collect();
    let from: Vec<DateTime<Utc>> = items.iter().map(|i| i.2 .0).collect();
    let to: Vec<DateTime<Utc>> = items.iter().map(|i| i.2 .1).collect();
    observe(
        "following_requeue",
        sqlx::query(
            "INSERT INTO sigint.following_queue (radio, identifier, device_id) \
             SELECT DISTINCT f.radio, f.identifier, f.device_id \
             FROM UNNEST($1::text[], $2::text[], $3::uuid[], $4::timestamptz[], $5::timestamptz[]) \
                  AS k(radio, identifier, device, f, t) \
             JOIN sigint.following f ON f.device_id = k.device AND f.gates_passed \
              AND f.together_from < k.t AND f.together_to > k.f \
              AND NOT (f.radio = k.radio::sigint.signal_type AND f.identifier = k.identifier) \
             ON CONFLICT DO NOTHING",
        )
        .bind(radios)
        .bind(ids)
        .bind(devices)
        .bind(from)
        .bind(to)
        .execute(&mut *conn),
    )
    .await?;
    Ok(())
}

/// Queues for rescoring every pair last scored under another rule version than `version`, so a
/// change of the rules reaches what is stored. Returns how many were queued.
pub async fn requeue_other_rules(
    conn: &mut PgConnection,
    version: &str,
) -> Result<u64, sqlx::Error> {
    observe(
        "following_requeue_rules",
        sqlx::query(
            "INSERT INTO sigint.following_queue (radio, identifier, device_id) \
             SELECT radio, identifier, device_id FROM sigint.following \
             WHERE explanation->>'rule_version' IS DISTINCT FROM $1 \
             ON CONFLICT DO NOTHING",
        )
        .bind(version)
        .execute(&mut *conn),
    )
    .await
    .map(|r| r.rows_affected())
}
