//! Rogue flags that need a transmitter's neighbours, recomputed when the registry saves entries:
//! evil twins among access points, cells heard under several area codes.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use sqlx::{PgConnection, Row};

use crate::db::observe;
use crate::domain::registry::Entry;
use crate::domain::rogue::{self, Flag, Security, Twin};
use crate::domain::SignalType;

async fn write_related(
    conn: &mut PgConnection,
    radio: SignalType,
    flags: BTreeMap<String, Vec<Flag>>,
) -> Result<(), sqlx::Error> {
    if flags.is_empty() {
        return Ok(());
    }
    #[derive(Serialize)]
    struct Out<'a> {
        identifier: &'a str,
        flags: &'a [Flag],
    }
    let rows: Vec<Out<'_>> = flags
        .iter()
        .map(|(identifier, flags)| Out { identifier, flags })
        .collect();
    let text = crate::db::json_text(&rows)?;
    observe(
        "registry_related_flags",
        sqlx::query(
            "UPDATE sigint.transmitters t SET related_flags = r.flags \
             FROM jsonb_to_recordset($2::text::jsonb) AS r(identifier text, flags jsonb) \
             WHERE t.radio = $1::sigint.signal_type AND t.identifier = r.identifier \
               AND t.related_flags IS DISTINCT FROM r.flags",
        )
        .bind(radio.as_str())
        .bind(text)
        .execute(&mut *conn),
    )
    .await?;
    Ok(())
}

/// Recomputes the flags that need neighbours for the entries just saved and for those
/// neighbours: evil twins among access points, cells heard under several area codes.
pub async fn refresh_related_flags(
    conn: &mut PgConnection,
    entries: &[Entry],
) -> Result<(), sqlx::Error> {
    let wifi: Vec<&str> = entries
        .iter()
        .filter(|e| {
            e.key.radio == SignalType::Wifi && !e.security.is_empty() && !e.names.is_empty()
        })
        .map(|e| e.key.identifier.as_str())
        .collect();
    if !wifi.is_empty() {
        const TWINS: &str = r#"
            SELECT t.identifier, t.names, t.security, o.identifier AS other,
                   o.security AS other_security, o.distance_m
            FROM sigint.transmitters t
            -- Only twins whose security differs, the nearest few: a dense area full of one
            -- SSID (eduroam) costs a bounded answer, not one row per pair.
            LEFT JOIN LATERAL (
                SELECT o.identifier, o.security,
                       ST_Distance(t.location::geography, o.location::geography) AS distance_m
                FROM sigint.transmitters o
                WHERE o.radio = 'wifi' AND o.names && t.names AND o.identifier <> t.identifier
                  AND cardinality(o.security) > 0 AND NOT (o.security && t.security)
                  AND o.location IS NOT NULL
                  AND ST_DWithin(t.location::geography, o.location::geography, $2)
                ORDER BY 3 LIMIT 20
            ) o ON true
            WHERE t.radio = 'wifi' AND t.identifier = ANY($1) AND t.location IS NOT NULL
              AND cardinality(t.security) > 0
        "#;
        let twins = |ids: Vec<String>| sqlx::query(TWINS).bind(ids).bind(rogue::EVIL_TWIN_RADIUS_M);
        let first = observe(
            "registry_twins",
            twins(wifi.iter().map(|s| s.to_string()).collect()).fetch_all(&mut *conn),
        )
        .await?;
        let mut all: BTreeSet<String> = wifi.iter().map(|s| s.to_string()).collect();
        for row in &first {
            if let Some(other) = row.try_get::<Option<String>, _>("other")? {
                all.insert(other);
            }
        }
        let rows = observe(
            "registry_twins",
            twins(all.iter().cloned().collect()).fetch_all(&mut *conn),
        )
        .await?;
        type Group = (Vec<String>, Vec<Security>, Vec<Twin>);
        let mut groups: BTreeMap<String, Group> = BTreeMap::new();
        for row in rows {
            let id: String = row.try_get("identifier")?;
            let g = groups.entry(id).or_insert_with(|| {
                (
                    row.try_get("names").unwrap_or_default(),
                    crate::db::registry::security_classes(
                        row.try_get("security").unwrap_or_default(),
                    ),
                    Vec::new(),
                )
            });
            if let Some(other) = row.try_get::<Option<String>, _>("other")? {
                g.2.push(Twin {
                    identifier: other,
                    security: crate::db::registry::security_classes(
                        row.try_get::<Option<Vec<String>>, _>("other_security")?
                            .unwrap_or_default(),
                    ),
                    distance_m: row.try_get::<Option<f64>, _>("distance_m")?.unwrap_or(0.0),
                });
            }
        }
        let flags: BTreeMap<String, Vec<Flag>> = groups
            .into_iter()
            .map(|(id, (names, security, twins))| {
                (
                    id,
                    rogue::evil_twin(&security, &names, &twins)
                        .into_iter()
                        .collect(),
                )
            })
            .collect();
        write_related(conn, SignalType::Wifi, flags).await?;
    }

    let cells: Vec<String> = entries
        .iter()
        .filter(|e| e.key.radio == SignalType::Cellular)
        .map(|e| e.key.identifier.clone())
        .collect();
    if !cells.is_empty() {
        const SAME_CELL: &str = r#"
            SELECT t.identifier,
                   array_agg(o.identifier ORDER BY o.identifier) AS same_cell
            FROM sigint.transmitters t
            JOIN sigint.transmitters o
              ON o.radio = 'cellular'
             AND split_part(o.identifier, '-', 1) = split_part(t.identifier, '-', 1)
             AND split_part(o.identifier, '-', 2) = split_part(t.identifier, '-', 2)
             AND split_part(o.identifier, '-', 4) = split_part(t.identifier, '-', 4)
            WHERE t.radio = 'cellular' AND t.identifier = ANY($1)
            GROUP BY t.identifier
        "#;
        let rows = observe(
            "registry_same_cell",
            sqlx::query(SAME_CELL).bind(&cells).fetch_all(&mut *conn),
        )
        .await?;
        let mut flags: BTreeMap<String, Vec<Flag>> = BTreeMap::new();
        for row in rows {
            let group: Vec<String> = row.try_get("same_cell")?;
            for id in &group {
                flags.insert(
                    id.clone(),
                    rogue::cell_area_change(id, &group).into_iter().collect(),
                );
            }
        }
        write_related(conn, SignalType::Cellular, flags).await?;
    }
    Ok(())
}
