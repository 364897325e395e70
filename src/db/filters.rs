//! SQL terms shared by every query over detections and transmitters: filters, boxes, points and
//! radii, each appended to a `QueryBuilder` with its values bound, never formatted in.

use sqlx::{Postgres, QueryBuilder};

use crate::domain::search::{covering_boxes, Filters};
use crate::domain::Position;

/// `%text%` for `ILIKE`, with the pattern characters in `text` taken literally.
pub fn like_pattern(text: &str) -> String {
    format!(
        "%{}%",
        text.replace('\\', "\\\\")
            .replace('%', "\\%")
            .replace('_', "\\_")
    )
}

/// Appends the filters of detections (`d`) as `AND ...` terms, all bound, never formatted.
pub fn push_filters(q: &mut QueryBuilder<'_, Postgres>, f: &Filters) {
    if !f.with_estimated {
        q.push(" AND d.position_source IS DISTINCT FROM 'estimated'");
    }
    if let Some(start) = f.window.start() {
        q.push(" AND d.detected_at >= ").push_bind(start);
    }
    if let Some(end) = f.window.end() {
        q.push(" AND d.detected_at < ").push_bind(end);
    }
    push_signal_types(q, "d.signal_type", &f.signal_types);
    if let Some(mac) = f.bssid {
        q.push(" AND d.bssid = ")
            .push_bind(mac.to_string())
            .push("::macaddr");
    }
    if let Some(mac) = f.bt_address {
        q.push(" AND d.bt_address = ")
            .push_bind(mac.to_string())
            .push("::macaddr");
    }
    if let Some(ssid) = &f.ssid {
        q.push(" AND d.ssid ILIKE ")
            .push_bind(like_pattern(ssid.as_str()));
    }
    if let Some(device) = f.device_id {
        q.push(" AND d.device_id = ").push_bind(device);
    }
    if let Some(flag) = f.is_suspicious {
        q.push(" AND d.is_suspicious = ").push_bind(flag);
    }
    if let Some(score) = f.min_score {
        q.push(" AND d.surveillance_score >= ")
            .push_bind(score.value());
    }
    if let Some(dbm) = f.min_signal_dbm {
        q.push(" AND COALESCE(d.signal_strength_dbm, d.bt_rssi) >= ")
            .push_bind(dbm.dbm());
    }
}

/// `ST_MakeEnvelope` of a box in degrees, its corners bound.
pub fn push_envelope(q: &mut QueryBuilder<'_, Postgres>, b: crate::domain::BBox) {
    q.push("ST_MakeEnvelope(")
        .push_bind(b.min_lon)
        .push(", ")
        .push_bind(b.min_lat)
        .push(", ")
        .push_bind(b.max_lon)
        .push(", ")
        .push_bind(b.max_lat)
        .push(", 4326)");
}

/// `column` inside any of the boxes (two across the antimeridian), each by the index.
pub fn push_within(
    q: &mut QueryBuilder<'_, Postgres>,
    column: &str,
    bounds: &crate::domain::Bounds,
) {
    q.push("(");
    for (i, b) in bounds.parts().into_iter().enumerate() {
        if i > 0 {
            q.push(" OR ");
        }
        q.push(format!("{column} && "));
        push_envelope(q, b);
    }
    q.push(")");
}

/// `AND column = ANY(types)` when any types are given (none: every type).
pub fn push_signal_types(
    q: &mut QueryBuilder<'_, Postgres>,
    column: &str,
    types: &[crate::domain::SignalType],
) {
    if !types.is_empty() {
        let types: Vec<&str> = types.iter().map(|t| t.as_str()).collect();
        q.push(format!(" AND {column} = ANY("))
            .push_bind(types)
            .push("::sigint.signal_type[])");
    }
}

pub fn push_point(q: &mut QueryBuilder<'_, Postgres>, lon: f64, lat: f64) {
    q.push("ST_SetSRID(ST_MakePoint(")
        .push_bind(lon)
        .push(", ")
        .push_bind(lat)
        .push("), 4326)");
}

/// `AND` within `radius_m` geodesic metres of `center`: index-friendly boxes first (two across
/// the antimeridian, a longitude band near a pole), then the exact spheroid test.
pub fn push_radius(q: &mut QueryBuilder<'_, Postgres>, center: Position, radius_m: f64) {
    q.push(" AND (false");
    for [min_lon, min_lat, max_lon, max_lat] in covering_boxes(center, radius_m) {
        q.push(" OR d.location && ");
        push_envelope(
            q,
            crate::domain::BBox {
                min_lon,
                min_lat,
                max_lon,
                max_lat,
            },
        );
    }
    q.push(")");
    // Exact on the spheroid, but cheaply: the sphere and the spheroid disagree by under 0.6 %,
    // so rows outside the sphere circle grown by 0.7 % are out, rows inside the one shrunk by
    // 0.7 % are in, and only the thin ring between pays for the spheroid computation.
    q.push(" AND ST_DWithin(d.location::geography, ");
    push_point(q, center.lon(), center.lat());
    q.push("::geography, ")
        .push_bind(radius_m * 1.007)
        .push(", false)");
    q.push(" AND (ST_DWithin(d.location::geography, ");
    push_point(q, center.lon(), center.lat());
    q.push("::geography, ")
        .push_bind(radius_m * 0.993)
        .push(", false) OR ST_DWithin(d.location::geography, ");
    push_point(q, center.lon(), center.lat());
    q.push("::geography, ").push_bind(radius_m).push("))");
}
