//! What the API's database role may do to each table, as the compose stack's init script and the
//! migrations leave it. Every test's API runs as this role, so a missing grant fails the test that
//! needs it; this list also catches one given where it is not needed, and a new table nobody
//! thought about (it must be added here, with what the API does to it).

use std::collections::BTreeMap;

use crate::helpers::fresh_database;

/// Table of schema `sigint` (or `public`) → the privileges of `shadowcheck_app` on it.
const EXPECTED: &[(&str, &str)] = &[
    ("public._sqlx_migrations", "INSERT,SELECT,UPDATE"),
    ("sigint.allowlist", "DELETE,INSERT,SELECT,UPDATE"),
    ("sigint.api_keys", "INSERT,SELECT,UPDATE"),
    ("sigint.capture_devices", "DELETE,INSERT,SELECT,UPDATE"),
    ("sigint.device_minutes", "INSERT,SELECT,UPDATE"),
    ("sigint.device_reporters", "INSERT,SELECT,UPDATE"),
    ("sigint.feedback", "DELETE,INSERT,SELECT,UPDATE"),
    ("sigint.following", "INSERT,SELECT,UPDATE"),
    ("sigint.following_queue", "DELETE,INSERT,SELECT,UPDATE"),
    ("sigint.idempotency_keys", "DELETE,INSERT,SELECT,UPDATE"),
    ("sigint.imports", "INSERT,SELECT,UPDATE"),
    ("sigint.notification_cursors", "INSERT,SELECT,UPDATE"),
    ("sigint.notification_dead_letters", "INSERT,SELECT,UPDATE"),
    ("sigint.pair_sightings", "INSERT,SELECT,UPDATE"),
    ("sigint.registry_queue", "DELETE,INSERT,SELECT,UPDATE"),
    ("sigint.safe_zones", "DELETE,INSERT,SELECT,UPDATE"),
    ("sigint.signal_detections", "INSERT,SELECT,UPDATE"),
    ("sigint.threat_events", "INSERT,SELECT,UPDATE"),
    ("sigint.transmitter_notes", "DELETE,INSERT,SELECT,UPDATE"),
    ("sigint.transmitters", "INSERT,SELECT,UPDATE"),
];

#[tokio::test]
async fn the_api_role_holds_exactly_the_listed_privileges_on_every_table() {
    let db = fresh_database().await;
    let pool = sqlx::PgPool::connect(&db.superuser_url())
        .await
        .expect("connect");
    // Ordinary and partitioned tables; monthly partitions are checked by the next test.
    let rows: Vec<(String, String)> = sqlx::query_as(
        r#"
        SELECT n.nspname || '.' || c.relname,
               coalesce(string_agg(p.privilege, ',' ORDER BY p.privilege), '')
          FROM pg_class c
          JOIN pg_namespace n ON n.oid = c.relnamespace
          CROSS JOIN LATERAL (
            SELECT unnest(ARRAY['SELECT','INSERT','UPDATE','DELETE','TRUNCATE','REFERENCES','TRIGGER']) AS privilege
          ) p0
          LEFT JOIN LATERAL (
            SELECT p0.privilege WHERE has_table_privilege('shadowcheck_app', c.oid, p0.privilege)
          ) p ON true
         WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition
           AND (n.nspname = 'sigint' OR (n.nspname = 'public' AND c.relname NOT IN ('spatial_ref_sys')))
         GROUP BY 1
         ORDER BY 1
        "#,
    )
    .fetch_all(&pool)
    .await
    .expect("privileges");
    let actual: BTreeMap<String, String> = rows.into_iter().collect();
    let expected: BTreeMap<String, String> = EXPECTED
        .iter()
        .map(|(t, p)| ((*t).to_owned(), (*p).to_owned()))
        .collect();
    assert_eq!(actual, expected);
}

/// Months made later by `sigint.ensure_partition` (as the owner, through SECURITY DEFINER) get
/// the same rights as the detections table, through the owner's default privileges.
#[tokio::test]
async fn a_month_made_at_ingest_is_writable_by_the_api_role() {
    let db = fresh_database().await;
    let app = sqlx::PgPool::connect(&db.app_url())
        .await
        .expect("connect as app");
    let made: String = sqlx::query_scalar("SELECT sigint.ensure_partition('2011-05-01'::date)")
        .fetch_one(&app)
        .await
        .expect("ensure_partition as the app role");
    let rights: String = sqlx::query_scalar(
        "SELECT string_agg(p, ',' ORDER BY p) FROM unnest(ARRAY['SELECT','INSERT','UPDATE','DELETE','TRUNCATE']) p \
         WHERE has_table_privilege('shadowcheck_app', ('sigint.' || $1)::regclass, p)",
    )
    .bind(&made)
    .fetch_one(&app)
    .await
    .expect("rights");
    assert_eq!(rights, "INSERT,SELECT,UPDATE", "{made}");
}
