//! The OGC requests' own parameters (OGC API – Features Part 1: `f`, `bbox` with optional
//! heights, `bbox-crs`, `datetime` intervals, a clamped `limit`); property filters beside them
//! are the REST API's parts.

use std::str::FromStr;

use chrono::{DateTime, Duration, Utc};
use serde::Deserialize;
use utoipa::IntoParams;

use super::CRS84;
use crate::domain::geo::GeoError;
use crate::domain::Bounds;
use crate::error::{ApiError, ApiResult};
use crate::http::query::{self, QueryPart};

/// `f`: only JSON encodings are offered, asked for by name or media type.
#[derive(Debug)]
pub(super) struct OgcFormat;

impl FromStr for OgcFormat {
    type Err = &'static str;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "json" | "geojson" | "application/json" | "application/geo+json" => Ok(Self),
            _ => Err("must be json or geojson"),
        }
    }
}

/// The parameters of every document but items: `f` alone.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct FormatOnly {
    /// json or geojson.
    #[serde(default, deserialize_with = "query::from_str")]
    #[param(value_type = Option<String>)]
    #[allow(dead_code)] // read to be validated
    f: Option<OgcFormat>,
}

impl QueryPart for FormatOnly {}

/// An items request's own parameters (OGC API – Features Part 1); property filters beside them
/// are the REST API's.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct ItemParams {
    /// minLon,minLat,maxLon,maxLat, or six numbers with heights (ignored: fixes are 2D), CRS84.
    #[serde(default, deserialize_with = "query::from_str")]
    #[param(value_type = Option<String>)]
    pub bbox: Option<OgcBBox>,
    /// The bbox's CRS: only CRS84.
    #[serde(rename = "bbox-crs", default, deserialize_with = "query::from_str")]
    #[param(value_type = Option<String>)]
    #[allow(dead_code)] // read to be validated
    bbox_crs: Option<Crs84>,
    /// An RFC 3339 instant, or an interval start/end (`..` or empty for an open end).
    #[serde(default, deserialize_with = "query::from_str")]
    #[param(value_type = Option<String>)]
    pub datetime: Option<Interval>,
    /// Page size, 1 or more; above the maximum is the maximum (/req/core/fc-limit).
    pub limit: Option<u64>,
    /// Cursor from a `next` link.
    pub after: Option<String>,
    /// json or geojson.
    #[serde(default, deserialize_with = "query::from_str")]
    #[param(value_type = Option<String>)]
    #[allow(dead_code)] // read to be validated
    f: Option<OgcFormat>,
}

impl QueryPart for ItemParams {}

impl ItemParams {
    /// The page size: the default when absent, the maximum when above it.
    pub fn limit(&self, default: u32, max: u32) -> ApiResult<u32> {
        match self.limit {
            None => Ok(default),
            Some(0) => Err(ApiError::bad_parameter(
                "limit",
                "must be a positive integer",
            )),
            Some(n) => Ok(n.min(u64::from(max)) as u32),
        }
    }

    pub fn interval(&self) -> (Option<DateTime<Utc>>, Option<DateTime<Utc>>) {
        self.datetime
            .as_ref()
            .map_or((None, None), |i| (i.start, i.end))
    }
}

/// `bbox-crs`: CRS84 is the only one.
#[derive(Debug)]
pub(super) struct Crs84;

impl FromStr for Crs84 {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == CRS84 {
            Ok(Self)
        } else {
            Err(format!("only {CRS84}"))
        }
    }
}

/// OGC `bbox`: four numbers, or six (the heights are ignored: fixes are 2D here), in CRS84; a
/// west edge east of the east edge spans the antimeridian.
#[derive(Debug)]
pub(super) struct OgcBBox(pub Bounds);

impl FromStr for OgcBBox {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let parts: Vec<&str> = s.split(',').map(str::trim).collect();
        let four = match parts.len() {
            4 => parts.join(","),
            6 => [parts[0], parts[1], parts[3], parts[4]].join(","),
            _ => {
                return Err(
                    "must be minLon,minLat,maxLon,maxLat (or with heights, six numbers)".into(),
                )
            }
        };
        let edges: Vec<f64> = four
            .split(',')
            .map(str::parse)
            .collect::<Result<_, _>>()
            .map_err(|_| GeoError::BBox.to_string())?;
        Bounds::from_edges(edges[0], edges[1], edges[2], edges[3])
            .map(Self)
            .map_err(|e| e.to_string())
    }
}

/// A `datetime` instant or interval (`a/b`, either end `..` or empty for open) as a half-open
/// `[start, end)`: OGC intervals include their end, so a closed end moves on by a microsecond
/// (the database's resolution).
#[derive(Debug, PartialEq)]
pub(super) struct Interval {
    pub start: Option<DateTime<Utc>>,
    pub end: Option<DateTime<Utc>>,
}

impl FromStr for Interval {
    type Err = &'static str;
    fn from_str(value: &str) -> Result<Self, Self::Err> {
        const BAD: &str =
            "must be an RFC 3339 instant or an interval start/end (`..` for an open end)";
        let instant = |s: &str| -> Result<Option<DateTime<Utc>>, &'static str> {
            let s = s.trim();
            if s.is_empty() || s == ".." {
                return Ok(None);
            }
            DateTime::parse_from_rfc3339(s)
                .map(|t| Some(t.with_timezone(&Utc)))
                .map_err(|_| BAD)
        };
        let one_past = |t: DateTime<Utc>| t + Duration::microseconds(1);
        match value.split_once('/') {
            None => {
                let t = instant(value)?.ok_or(BAD)?;
                Ok(Self {
                    start: Some(t),
                    end: Some(one_past(t)),
                })
            }
            Some((a, b)) => {
                let (start, end) = (instant(a)?, instant(b)?.map(one_past));
                if start.is_none() && end.is_none() && !(a.trim() == ".." || b.trim() == "..") {
                    return Err(BAD);
                }
                if let (Some(s), Some(e)) = (start, end) {
                    if s >= e {
                        return Err("the interval ends before it starts");
                    }
                }
                Ok(Self { start, end })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::Collection;
    use super::*;
    use crate::http::params::PropertyParams;
    use crate::http::transmitters::TransmitterPropertyParams;

    type Ends = (Option<DateTime<Utc>>, Option<DateTime<Utc>>);

    fn interval(s: &str) -> Result<Ends, &'static str> {
        s.parse::<Interval>().map(|i| (i.start, i.end))
    }

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .expect("test time")
            .with_timezone(&Utc)
    }

    #[test]
    fn datetimes_are_instants_or_intervals_open_at_either_end() {
        let a = "2026-11-01T00:00:00Z";
        let b = "2026-11-02T00:00:00Z";
        let us = Duration::microseconds(1);
        assert_eq!(interval(a).expect("valid"), (Some(t(a)), Some(t(a) + us)));
        assert_eq!(
            interval(&format!("{a}/{b}")).expect("valid"),
            (Some(t(a)), Some(t(b) + us))
        );
        assert_eq!(
            interval(&format!("../{b}")).expect("valid"),
            (None, Some(t(b) + us))
        );
        assert_eq!(
            interval(&format!("{a}/..")).expect("valid"),
            (Some(t(a)), None)
        );
        assert_eq!(
            interval(&format!("{a}/")).expect("valid"),
            (Some(t(a)), None)
        );
        assert_eq!(interval("../..").expect("valid"), (None, None));
        for bad in [
            "",
            "/",
            "yesterday",
            "2026-11-02T00:00:00Z/2026-11-01T00:00:00Z",
        ] {
            assert!(interval(bad).is_err(), "{bad}");
        }
    }

    fn refused(c: Collection, q: &str) -> bool {
        match c {
            Collection::Detections => query::parse::<(ItemParams, PropertyParams)>(q).is_err(),
            Collection::Transmitters => {
                query::parse::<(ItemParams, TransmitterPropertyParams)>(q).is_err()
            }
        }
    }

    #[test]
    fn a_six_number_bbox_drops_its_heights() {
        let (item, _) =
            query::parse::<(ItemParams, PropertyParams)>("bbox=13,52,0,14,53,100").expect("valid");
        let Bounds::One(b) = item.bbox.expect("bbox").0 else {
            panic!("one box")
        };
        assert_eq!(
            (b.min_lon, b.min_lat, b.max_lon, b.max_lat),
            (13.0, 52.0, 14.0, 53.0)
        );
    }

    #[test]
    fn a_limit_above_the_maximum_is_the_maximum() {
        let (item, _) = query::parse::<(ItemParams, PropertyParams)>("limit=5000").expect("valid");
        assert_eq!(item.limit(10, 1000).expect("limit"), 1000);
    }

    #[test]
    fn each_collection_refuses_the_other_collections_filters() {
        assert!(refused(Collection::Detections, "radio=wifi"));
        assert!(refused(Collection::Transmitters, "ssid=x"));
    }

    #[test]
    fn other_crs_or_encodings_are_refused() {
        assert!(refused(Collection::Detections, "bbox-crs=EPSG:3857"));
        assert!(refused(Collection::Detections, "f=xml"));
    }
}
